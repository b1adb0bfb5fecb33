"""The embedded store: a fakeredis TCP server, run as a child process of the harness.

It runs in a process of its own so that it does not share the harness's GIL and so that
virtual time can reach it: fakeredis expires keys by ``time.time()`` of the process that
hosts it, read once per command. Run as ``python -m harness.store_server --port-file
PATH``; it binds a free loopback port, writes the port number to PATH once it accepts
connections, and serves until SIGTERM.

With ``--clock-file``, a thread follows the virtual clock (through time-machine, which
patches ``time.time()`` for the whole process) and writes each clock state's ``seq`` to
``--ack-file`` once applied, which is how the harness knows the store took a move.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from fakeredis import TcpFakeServer
from fakeredis._clients._tcp_server import TCPFakeRequestHandler

from harness.clock_follower import ClockFollower, TimeMachineDriver

log = logging.getLogger("harness.store_server")


class _NoDelayHandler(TCPFakeRequestHandler):
    # Without TCP_NODELAY, a pipeline or MULTI/EXEC stalls about 44 ms on Nagle's
    # algorithm meeting delayed ACKs; with it, a 10-command pipeline takes about 0.5 ms.
    disable_nagle_algorithm = True


CLOCK_POLL_INTERVAL_S = 0.002


def follow_clock(clock_file: Path, ack_file: Path, stop: threading.Event) -> None:
    """Apply every new clock state to this process and acknowledge it, until ``stop``."""
    follower = ClockFollower(clock_file, TimeMachineDriver())
    acknowledged = -1
    while not stop.wait(CLOCK_POLL_INTERVAL_S):
        seq = follower.sync()
        if seq != acknowledged:
            temporary = ack_file.with_suffix(".tmp")
            temporary.write_text(str(seq), encoding="utf-8")
            os.replace(temporary, ack_file)
            acknowledged = seq


def serve(host: str, port: int, port_file: Path, clock_file: Path | None = None,
          ack_file: Path | None = None) -> None:
    server = TcpFakeServer((host, port), server_type="redis")
    server.RequestHandlerClass = _NoDelayHandler
    server.daemon_threads = True
    bound_port = server.server_address[1]

    def stop(signum: int, frame: FrameType | None) -> None:
        # shutdown() blocks until serve_forever() returns, so it must not run on the
        # thread that serves.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    temporary = port_file.with_suffix(".tmp")
    temporary.write_text(str(bound_port), encoding="utf-8")
    os.replace(temporary, port_file)
    log.info("embedded store listening on %s:%d (pid %d)", host, bound_port, os.getpid())

    stopped = threading.Event()
    if clock_file is not None and ack_file is not None:
        threading.Thread(target=follow_clock, args=(clock_file, ack_file, stopped),
                         name="clock-follower", daemon=True).start()

    server.serve_forever(poll_interval=0.1)
    stopped.set()
    server.server_close()
    log.info("embedded store stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="TCP port; 0 picks a free one")
    parser.add_argument("--port-file", type=Path, required=True,
                        help="file that receives the bound port once the store is ready")
    parser.add_argument("--clock-file", type=Path, default=None,
                        help="virtual clock file to follow; default: the real clock")
    parser.add_argument("--ack-file", type=Path, default=None,
                        help="file that receives the seq of each clock state applied")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve(args.host, args.port, args.port_file, args.clock_file, args.ack_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())

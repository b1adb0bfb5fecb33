"""The embedded store: a fakeredis TCP server, run as a child process of the harness.

It runs in a process of its own so that it does not share the harness's GIL and so that
virtual time can reach it: fakeredis expires keys by the clock of the process that
hosts it. Run as ``python -m harness.store_server --port-file PATH``; it binds a free
loopback port, writes the port number to PATH once it accepts connections, and serves
until SIGTERM.
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

log = logging.getLogger("harness.store_server")


class _NoDelayHandler(TCPFakeRequestHandler):
    # Without TCP_NODELAY, a pipeline or MULTI/EXEC stalls about 44 ms on Nagle's
    # algorithm meeting delayed ACKs; with it, a 10-command pipeline takes about 0.5 ms.
    disable_nagle_algorithm = True


def serve(host: str, port: int, port_file: Path) -> None:
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

    server.serve_forever(poll_interval=0.1)
    server.server_close()
    log.info("embedded store stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="TCP port; 0 picks a free one")
    parser.add_argument("--port-file", type=Path, required=True,
                        help="file that receives the bound port once the store is ready")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve(args.host, args.port, args.port_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())

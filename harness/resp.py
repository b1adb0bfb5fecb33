"""RESP, the Redis protocol: just enough parsing to find command names and reply bounds.

A client sends each *command* as an array of bulk strings, such as
``*2\\r\\n$3\\r\\nGET\\r\\n$1\\r\\nk\\r\\n``, or as one *inline* line of words. The
server replies to each command with one *reply*, whose first byte gives its type: the RESP2
types ``+ - : $ *`` and the RESP3 types ``_ # , ( ! = % ~ > |``. A push (``>``) arrives
out of band and answers no command, and an attribute (``|``) comes in front of the reply
it describes.

The functions here take a buffer and an offset and return the offset past one command or
reply, raising ``Incomplete`` when the buffer ends first, so a caller can parse a stream
chunk by chunk.
"""

from __future__ import annotations


class ProtocolError(ValueError):
    """Bytes that are not valid RESP."""


class Incomplete(Exception):
    """The buffer ends inside a command or a reply; wait for more bytes."""


def command_name(command: list[bytes]) -> str:
    """Return the command's name in upper case, with the subcommand for CLIENT, SCRIPT…"""
    if not command:
        return ""
    name = command[0].decode("latin-1").upper()
    if name in ("CLIENT", "SCRIPT", "CONFIG", "FUNCTION", "OBJECT") and len(command) > 1:
        return f"{name} {command[1].decode('latin-1').upper()}"
    return name


def _read_line(buffer: bytes | bytearray, start: int) -> tuple[bytes, int]:
    end = buffer.find(b"\r\n", start)
    if end < 0:
        raise Incomplete
    return bytes(buffer[start:end]), end + 2


def _parse_int(line: bytes) -> int:
    try:
        return int(line)
    except ValueError as error:
        raise ProtocolError(f"expected an integer, got {line[:40]!r}") from error


def parse_command(buffer: bytes | bytearray, start: int) -> tuple[list[bytes], int]:
    """Parse one command at ``start``: a RESP array of bulk strings, or an inline command.

    Returns the arguments and the offset just past the command. Raises Incomplete when
    the buffer ends first, ProtocolError when the bytes are not a command.
    """
    if start >= len(buffer):
        raise Incomplete
    if buffer[start] != ord("*"):
        line, end = _read_line(buffer, start)
        return line.split(), end

    line, position = _read_line(buffer, start + 1)
    count = _parse_int(line)
    arguments = []
    for _ in range(max(count, 0)):
        if position >= len(buffer):
            raise Incomplete
        if buffer[position] != ord("$"):
            raise ProtocolError(f"expected a bulk string in a command, got {buffer[position]!r}")
        line, position = _read_line(buffer, position + 1)
        length = _parse_int(line)
        end = position + length
        if len(buffer) < end + 2:
            raise Incomplete
        arguments.append(bytes(buffer[position:end]))
        position = end + 2
    return arguments, position


def skip_reply(buffer: bytes | bytearray, start: int) -> int:
    """Return the offset just past the reply at ``start`` (RESP2 or RESP3).

    Raises Incomplete when the buffer ends inside the reply, ProtocolError for an
    unknown type byte.
    """
    if start >= len(buffer):
        raise Incomplete
    kind = chr(buffer[start])
    line, position = _read_line(buffer, start + 1)
    if kind in "+-:_#,(":
        return position
    if kind in "$!=":
        length = _parse_int(line)
        if length < 0:
            return position
        if len(buffer) < position + length + 2:
            raise Incomplete
        return position + length + 2
    if kind in "*~>%|":
        count = _parse_int(line)
        if kind in "%|":
            count *= 2
        for _ in range(max(count, 0)):
            position = skip_reply(buffer, position)
        if kind == "|":
            # An attribute map comes in front of the reply it describes.
            return skip_reply(buffer, position)
        return position
    raise ProtocolError(f"unknown RESP type byte {kind!r}")


def error_reply(message: str) -> bytes:
    """Return ``message`` as a RESP error reply, on one line."""
    text = " ".join(message.split())
    return f"-{text}\r\n".encode()

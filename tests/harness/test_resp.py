"""RESP parsing: commands, replies of every type, and buffers that end too early."""

from __future__ import annotations

import pytest

from harness.resp import Incomplete, command_name, error_reply, parse_command, skip_reply


def test_parse_resp_command() -> None:
    data = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n*1\r\n$4\r\nPING\r\n"

    command, end = parse_command(data, 0)
    second, second_end = parse_command(data, end)

    assert command == [b"SET", b"k", b"hello"]
    assert second == [b"PING"]
    assert second_end == len(data)


def test_parse_inline_command() -> None:
    assert parse_command(b"PING now\r\n", 0) == ([b"PING", b"now"], 10)


@pytest.mark.parametrize("cut", [1, 5, 12, 20])
def test_parse_incomplete_command(cut: int) -> None:
    data = b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n"

    with pytest.raises(Incomplete):
        parse_command(data[:cut], 0)


@pytest.mark.parametrize("reply", [
    b"+OK\r\n",
    b"-ERR wrong\r\n",
    b":42\r\n",
    b"$5\r\nhello\r\n",
    b"$-1\r\n",
    b"*-1\r\n",
    b"*2\r\n$1\r\na\r\n*1\r\n:1\r\n",
    b"%1\r\n+key\r\n:1\r\n",
    b"_\r\n",
    b"#t\r\n",
    b",1.5\r\n",
    b"=8\r\ntxt:abcd\r\n",
    b"|1\r\n+ttl\r\n:3\r\n$2\r\nok\r\n",
])
def test_skip_complete_reply(reply: bytes) -> None:
    assert skip_reply(reply + b"+NEXT\r\n", 0) == len(reply)


@pytest.mark.parametrize("reply", [b"$5\r\nhel", b"*2\r\n:1\r\n", b"+OK", b"|1\r\n+a\r\n:1\r\n"])
def test_skip_incomplete_reply(reply: bytes) -> None:
    with pytest.raises(Incomplete):
        skip_reply(reply, 0)


def test_error_reply_is_one_line() -> None:
    assert error_reply("ERR store\nunavailable") == b"-ERR store unavailable\r\n"


def test_command_name_with_subcommand() -> None:
    assert command_name([b"client", b"setinfo", b"LIB-NAME", b"x"]) == "CLIENT SETINFO"
    assert command_name([b"evalsha", b"abc", b"0"]) == "EVALSHA"
    assert command_name([]) == ""

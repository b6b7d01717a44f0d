"""Line protocol shared by the dispatcher and the relays (reference §2.5, §5.4).

Everything is CRLF-terminated text.  OpenSIPS → dispatcher: a command line,
``name: value`` header lines, an empty line.  Dispatcher → relay: the same with
``"<name> <seq>"`` as the first line; the relay answers ``"<seq> <payload>"``.
"""

from __future__ import annotations

import asyncio
from typing import NamedTuple

VERSION = "4.1.2"  # the AG MediaProxy release whose protocols this speaks
DEFAULT_SOCKET = "/var/run/mediaproxy/dispatcher.sock"
DEFAULT_RELAY_PORT = 25060
MAX_LINE = 16384

REQUIRED_HEADERS = {
    "update": {"call_id", "from_tag", "from_uri", "to_uri", "cseq", "user_agent", "type"},
    "remove": {"call_id", "from_tag"},
    "summary": set(),
    "sessions": set(),
}


class CommandError(Exception):
    """A command that must be answered with ``error``."""


class Media(NamedTuple):
    """One entry of the ``media:`` header."""

    type: str
    ip: str
    port: int
    direction: str
    ice: bool


async def read_line(reader: asyncio.StreamReader):
    """Next line without its line break, or None at end of stream.

    A line longer than MAX_LINE raises ValueError (the caller drops the connection).
    """
    line = await reader.readline()
    if not line:
        return None
    if not line.endswith(b"\n"):
        return None  # connection closed mid-line
    return line.rstrip(b"\r\n").decode("utf-8", "surrogateescape")


def stream_limit() -> int:
    return MAX_LINE + 2


def dispatcher_headers(lines) -> dict:
    """Headers of an OpenSIPS command as the dispatcher reads them (``split(": ", 1)``)."""
    headers = {}
    for line in lines:
        name, sep, value = line.partition(": ")
        if not sep:
            raise CommandError("could not parse headers from OpenSIPS")
        headers[name] = value
    return headers


def encode_command(name: str, seq: int, lines) -> bytes:
    """Dispatcher → relay framing: ``"<name> <seq>"``, the header lines, an empty line."""
    return "\r\n".join(["%s %d" % (name, seq), *lines, "", ""]).encode("utf-8", "surrogateescape")


def decode_media(value: str) -> list:
    """``type:ip:port:direction[:k=v...],...`` → [Media]; ValueError if malformed."""
    entries = []
    for item in value.split(","):
        fields = item.split(":")
        if len(fields) < 4:
            raise ValueError("bad media entry %r" % item)
        mtype, ip, port, direction = fields[:4]
        params = dict(f.split("=", 1) for f in fields[4:] if "=" in f)
        entries.append(Media(mtype, ip, int(port), direction, params.get("ice") == "yes"))
    return entries


def relay_headers(command: str, lines) -> dict:
    """Headers of a command as a relay reads them (reference §5.4).

    ``cseq`` becomes an int, ``type`` must be request|reply and ``media`` a list of
    Media; a header that does not decode is dropped (so ``media`` with an IPv6
    address is simply absent).  A missing required header raises CommandError.
    """
    if command not in REQUIRED_HEADERS:
        raise CommandError("unknown command %r" % command)
    headers = {}
    for line in lines:
        name, sep, value = line.partition(": ")
        if not sep:
            continue
        try:
            if name == "cseq":
                value = int(value)
            elif name == "type" and value not in ("request", "reply"):
                raise ValueError(value)
            elif name == "media":
                value = decode_media(value)
        except ValueError:
            continue
        headers[name] = value
    missing = REQUIRED_HEADERS[command] - headers.keys()
    if missing:
        raise CommandError("missing mandatory header(s) %s from %r command"
                           % (", ".join(sorted(missing)), command))
    return headers


def parse_address(text: str, default_port: int) -> tuple:
    """``host[:port]`` → (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep:
        return text, default_port
    return host, int(port)

"""RESP (the Redis serialization protocol, version 2): a command encoder, an incremental
reply parser (no I/O), and a blocking connection with timeouts.

    conn = Connection("127.0.0.1", 6379, connect_timeout=5.0, query_timeout=5.0)
    conn.command("SET", "k", "v")        -> "OK"   (a Status)
    conn.command("GET", "k")             -> b"v"   (bulk strings are bytes)
    conn.command("INCRBY", "n", 2)       -> 2
    conn.command("HGETALL", "missing")   -> []
    conn.command("GET", "nokey")         -> None
    conn.command("FOO")                  -> Error("ERR unknown command ...")  (returned)

Connection and protocol failures raise `ConnectionFailed` (an OSError): the caller drops
the connection and may reconnect.
"""
from __future__ import annotations

import socket
import time


class Status(str):
    """A simple-string reply (+OK, +PONG, +QUEUED)."""


class Error(str):
    """An error reply (-ERR ..., -WRONGTYPE ...): returned, not raised."""


class ProtocolError(ValueError):
    pass


class ConnectionFailed(OSError):
    """The server cannot be reached, went away or timed out."""


def _arg(a) -> bytes:
    if isinstance(a, bytes):
        return a
    if isinstance(a, str):
        return a.encode("utf-8", "surrogateescape")
    if isinstance(a, bool):
        return b"1" if a else b"0"
    if isinstance(a, (int, float)):
        return str(a).encode()
    raise TypeError(f"cannot send {type(a).__name__} to redis")


def encode(*args) -> bytes:
    """A command as a RESP array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        b = _arg(a)
        parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(parts)


class Parser:
    """Feed bytes, take complete replies. Nested arrays are supported."""

    _NOTHING = object()

    def __init__(self):
        self.buf = bytearray()

    def feed(self, data: bytes):
        self.buf += data

    def get(self):
        """One complete reply, or `Parser.NEED_MORE` (the class attribute) when the buffer
        does not hold one yet."""
        value, pos = self._parse(0)
        if value is self._NOTHING:
            return self.NEED_MORE
        del self.buf[:pos]
        return value

    NEED_MORE = _NOTHING

    def _line(self, pos):
        end = self.buf.find(b"\r\n", pos)
        if end < 0:
            return None, pos
        return bytes(self.buf[pos:end]), end + 2

    def _parse(self, pos):
        if pos >= len(self.buf):
            return self._NOTHING, pos
        kind = self.buf[pos:pos + 1]
        line, nxt = self._line(pos + 1)
        if line is None:
            return self._NOTHING, pos
        if kind == b"+":
            return Status(line.decode("utf-8", "surrogateescape")), nxt
        if kind == b"-":
            return Error(line.decode("utf-8", "surrogateescape")), nxt
        if kind == b":":
            try:
                return int(line), nxt
            except ValueError:
                raise ProtocolError(f"bad integer reply {line!r}") from None
        if kind == b"$":
            try:
                n = int(line)
            except ValueError:
                raise ProtocolError(f"bad bulk length {line!r}") from None
            if n < 0:
                return None, nxt
            if len(self.buf) < nxt + n + 2:
                return self._NOTHING, pos
            if self.buf[nxt + n:nxt + n + 2] != b"\r\n":
                raise ProtocolError("bulk string not terminated by CRLF")
            return bytes(self.buf[nxt:nxt + n]), nxt + n + 2
        if kind == b"*":
            try:
                n = int(line)
            except ValueError:
                raise ProtocolError(f"bad array length {line!r}") from None
            if n < 0:
                return None, nxt
            items = []
            p = nxt
            for _ in range(n):
                item, p = self._parse(p)
                if item is self._NOTHING:
                    return self._NOTHING, pos
                items.append(item)
            return items, p
        raise ProtocolError(f"unknown reply type {kind!r}")


class Connection:
    """One blocking connection to one Redis server."""

    def __init__(self, host: str, port: int = 6379, *, connect_timeout: float | None = 5.0,
                 query_timeout: float | None = 5.0):
        self.host = host
        self.port = port
        self.connect_timeout = connect_timeout or None
        self.query_timeout = query_timeout or None
        self.sock = None
        self.parser = Parser()

    @property
    def connected(self) -> bool:
        return self.sock is not None

    def connect(self):
        self.close()
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except OSError as e:
            raise ConnectionFailed(f"cannot connect to redis {self.host}:{self.port}: "
                                   f"{e.strerror or e}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(self.query_timeout)
        self.sock = sock
        self.parser = Parser()

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None

    def command(self, *args):
        """Send one command, wait for its reply (bounded by the query timeout)."""
        if self.sock is None:
            self.connect()
        deadline = time.monotonic() + self.query_timeout if self.query_timeout else None
        try:
            self.sock.sendall(encode(*args))
            while True:
                try:
                    reply = self.parser.get()
                except ProtocolError as e:
                    raise ConnectionFailed(f"redis protocol error: {e}") from None
                if reply is not Parser.NEED_MORE:
                    return reply
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise socket.timeout("timed out")
                    self.sock.settimeout(left)
                data = self.sock.recv(65536)
                if not data:
                    raise ConnectionFailed(f"redis {self.host}:{self.port} closed the "
                                           f"connection")
                self.parser.feed(data)
        except ConnectionFailed:
            self.close()
            raise
        except socket.timeout:
            self.close()
            raise ConnectionFailed(f"redis {self.host}:{self.port}: query timed out") from None
        except OSError as e:
            self.close()
            raise ConnectionFailed(f"redis {self.host}:{self.port}: {e.strerror or e}") from None

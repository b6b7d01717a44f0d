"""A memcached client speaking the text protocol over blocking TCP sockets, spreading keys
over several servers as libmemcached does by default (one-at-a-time hash, modulo the number
of servers), so that other libmemcached clients find the same keys on the same servers.

    c = Client([("127.0.0.1", 11211), ("127.0.0.1", 11212)])
    c.set("k", b"v", 60); c.get("k") -> b"v"; c.delete("k") -> True
    c.incr("n", 2) -> 2 (None: no such key); c.decr("n", 1)

Every failure (server down or timed out, a rejected key, an error reply) raises
`MemcachedError`. A server that could not be reached is not tried again for
`retry_timeout` seconds (libmemcached's server failure back-off), so a dead server costs one
connect timeout, not one per request.
"""
from __future__ import annotations

import socket
import time

MAX_KEY = 250


class MemcachedError(Exception):
    pass


def one_at_a_time(key: bytes) -> int:
    """libmemcached's default hash (hashkit_one_at_a_time); its bytes are read as C chars,
    so bytes above 0x7f are sign-extended as they are there."""
    h = 0
    for b in key:
        v = b if b < 0x80 else (b - 0x100) & 0xFFFFFFFF
        h = (h + v) & 0xFFFFFFFF
        h = (h + (h << 10)) & 0xFFFFFFFF
        h ^= h >> 6
    h = (h + (h << 3)) & 0xFFFFFFFF
    h ^= h >> 11
    h = (h + (h << 15)) & 0xFFFFFFFF
    return h


def check_key(key) -> bytes:
    b = key.encode("utf-8", "surrogateescape") if isinstance(key, str) else bytes(key)
    if not b:
        raise MemcachedError("empty key")
    if len(b) > MAX_KEY:
        raise MemcachedError(f"key longer than {MAX_KEY} bytes")
    if any(c <= 0x20 or c == 0x7F for c in b):
        raise MemcachedError(f"key {key!r} has blanks or control characters (memcached "
                             f"keys may not)")
    return b


class Server:
    def __init__(self, host, port=11211, connect_timeout=4.0, io_timeout=1.0,
                 retry_timeout=2.0):
        self.host = host
        self.port = port or 11211
        self.connect_timeout = connect_timeout
        self.io_timeout = io_timeout
        self.retry_timeout = retry_timeout
        self.sock = None
        self.buf = bytearray()
        self.down_until = 0.0

    def __repr__(self):
        return f"{self.host}:{self.port}"

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None
        self.buf = bytearray()

    def _connect(self):
        now = time.monotonic()
        if now < self.down_until:
            raise MemcachedError(f"memcached {self} is marked down (retrying in "
                                 f"{self.down_until - now:.1f}s)")
        try:
            s = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except OSError as e:
            self.down_until = time.monotonic() + self.retry_timeout
            raise MemcachedError(f"cannot connect to memcached {self}: {e.strerror or e}") \
                from None
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.settimeout(self.io_timeout)
        self.sock = s
        self.buf = bytearray()

    def _readline(self, deadline) -> bytes:
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return line
            self._recv(deadline)

    def _readexact(self, n, deadline) -> bytes:
        while len(self.buf) < n:
            self._recv(deadline)
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def _recv(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("timed out")
        self.sock.settimeout(left)
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("connection closed by the server")
        self.buf += data

    def call(self, request: bytes, reader):
        """Send a request, read its reply with `reader(server, deadline)`; one reconnect
        when a kept connection turns out to be dead."""
        for attempt in range(2):
            fresh = self.sock is None
            if fresh:
                self._connect()
            deadline = time.monotonic() + self.io_timeout
            try:
                self.sock.sendall(request)
                return reader(self, deadline)
            except MemcachedError:
                self.close()
                raise
            except socket.timeout:
                self.close()
                raise MemcachedError(f"memcached {self}: timed out") from None
            except OSError as e:
                self.close()
                if fresh or attempt:
                    raise MemcachedError(f"memcached {self}: {e.strerror or e}") from None


def _simple(server, deadline):
    return server._readline(deadline)


def _get_reader(server, deadline):
    line = server._readline(deadline)
    value = None
    while line != b"END":
        parts = line.split()
        if len(parts) >= 4 and parts[0] == b"VALUE":
            try:
                n = int(parts[3])
            except ValueError:
                raise MemcachedError(f"bad reply {line!r}") from None
            value = server._readexact(n + 2, deadline)[:-2]
        else:
            raise MemcachedError(_error_text(line))
        line = server._readline(deadline)
    return value


def _error_text(line: bytes) -> str:
    return line.decode("utf-8", "replace") or "empty reply"


class Client:
    def __init__(self, servers, connect_timeout=4.0, io_timeout=1.0, retry_timeout=2.0):
        self.servers = [Server(h, p, connect_timeout, io_timeout, retry_timeout)
                        for h, p in servers]
        if not self.servers:
            raise ValueError("no memcached server")

    def server_for(self, key: bytes) -> Server:
        if len(self.servers) == 1:
            return self.servers[0]
        return self.servers[one_at_a_time(key) % len(self.servers)]

    def close(self):
        for s in self.servers:
            s.close()

    def get(self, key):
        k = check_key(key)
        return self.server_for(k).call(b"get " + k + b"\r\n", _get_reader)

    def set(self, key, value, exptime=0, flags=0):
        k = check_key(key)
        v = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else bytes(value)
        req = b"set %s %d %d %d\r\n%s\r\n" % (k, flags, max(int(exptime), 0), len(v), v)
        line = self.server_for(k).call(req, _simple)
        if line != b"STORED":
            raise MemcachedError(f"set {key}: {_error_text(line)}")

    def delete(self, key) -> bool:
        k = check_key(key)
        line = self.server_for(k).call(b"delete " + k + b"\r\n", _simple)
        if line == b"DELETED":
            return True
        if line == b"NOT_FOUND":
            return False
        raise MemcachedError(f"delete {key}: {_error_text(line)}")

    def _arith(self, cmd, key, delta):
        k = check_key(key)
        line = self.server_for(k).call(b"%s %s %d\r\n" % (cmd, k, delta), _simple)
        if line == b"NOT_FOUND":
            return None
        try:
            return int(line)
        except ValueError:
            raise MemcachedError(f"{cmd.decode()} {key}: {_error_text(line)}") from None

    def incr(self, key, delta):
        return self._arith(b"incr", key, delta)

    def decr(self, key, delta):
        return self._arith(b"decr", key, delta)

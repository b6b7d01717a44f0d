"""cachedb_memcached: the cachedb engine for memcached servers (text protocol over TCP).

    loadmodule "cachedb_memcached.so"
    modparam("cachedb_memcached", "cachedb_url", "memcached:local://127.0.0.1:11211,10.0.0.2/")

    cache_store("memcached:local", "key", "value"[, expire])   set
    cache_fetch("memcached:local", "key", $avp(v))             get; -2 when not there
    cache_remove / cache_add / cache_sub / cache_counter_fetch  delete, incr, decr, get

Several servers in one URL share the keys: each key lives on one of them, chosen as
libmemcached chooses by default (one-at-a-time hash modulo the number of servers), so
OpenSIPS and other libmemcached clients of the same servers see the same keys.
cache_add/cache_sub on a missing key store the amount given (as OpenSIPS does, for both);
memcached counters do not go below 0. Keys may not hold blanks or control characters
(-1 and a log line). No raw queries (memcached has none).

Timeouts: 4 s to connect, 1 s per request (libmemcached's defaults); a server that cannot be
reached is skipped for 2 s before the next attempt.
"""
from __future__ import annotations

from modules.cachedb_memcached.client import Client, MemcachedError
from runtime import cachedb
from runtime.cachedb import CacheError, int32
from runtime.module import Module, Param

exports = Module(
    name="cachedb_memcached",
    params=[
        Param("cachedb_url", str, multi=True,
              check=lambda v: cachedb.check_url(v, "memcached", DEFAULT_PORT)),
        Param("exec_threshold", int, 0),
    ],
    functions=cachedb.functions(),
    init="init",
    destroy="destroy",
)

DEFAULT_PORT = 11211


class MemcachedEngine:
    """One group of memcached servers, as the cache_* functions use it."""

    def __init__(self, servers, label="memcached", log=None, exec_threshold_us=0):
        self.client = Client(servers)
        self.label = label
        self.log = log
        self.threshold = exec_threshold_us

    def _do(self, what, fn, *args):
        import time
        t0 = time.monotonic()
        try:
            return fn(*args)
        except MemcachedError as e:
            raise CacheError(f"{self.label} {what}: {e}") from None
        finally:
            if self.threshold and self.log:
                took = (time.monotonic() - t0) * 1e6
                if took > self.threshold:
                    self.log.warning(f"{self.label} {what} took too long: {took:.0f} us",
                                     "cachedb_memcached")

    def store(self, key, value, expire=0):
        self._do("insert", self.client.set, key, value, expire or 0)

    def fetch(self, key):
        v = self._do("get", self.client.get, key)
        return None if v is None else v.decode("utf-8", "surrogateescape")

    def remove(self, key):
        self._do("remove", self.client.delete, key)

    def add(self, key, delta, expire=0):
        if delta < 0:
            return self.sub(key, -delta, expire)
        new = self._do("add", self.client.incr, key, delta)
        if new is None:                      # no such key: store the amount
            self._do("add", self.client.set, key, str(delta), expire or 0)
            return delta
        return int32(new)

    def sub(self, key, delta, expire=0):
        new = self._do("sub", self.client.decr, key, delta)
        if new is None:                      # OpenSIPS stores the amount itself here too
            self._do("sub", self.client.set, key, str(delta), expire or 0)
            return delta
        return int32(new)

    def counter_fetch(self, key):
        v = self._do("counter fetch", self.client.get, key)
        if v is None:
            return None
        try:
            return int(v.strip())
        except ValueError:
            raise CacheError(f"{self.label}: the value of '{key}' is not a number") from None

    def close(self):
        self.client.close()


api = cachedb.register("cachedb_memcached")


def init(rt):
    p = rt.modparams["cachedb_memcached"]
    api.from_urls(rt, "cachedb_memcached", p["cachedb_url"], DEFAULT_PORT,
                  lambda url: MemcachedEngine(url.hosts, url.label, rt.log, p["exec_threshold"]))


def destroy(rt):
    api.replace({})

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
from modules.cachedb_redis.cachedb_core import CacheError, core_functions, parse_url
from runtime.module import Module, Param

exports = Module(
    name="cachedb_memcached",
    params=[
        Param("cachedb_url", str, multi=True, check=lambda v: _check_url(v)),
        Param("exec_threshold", int, 0),
    ],
    functions=core_functions(),
    init="init",
    destroy="destroy",
)

DEFAULT_PORT = 11211


def _check_url(url):
    try:
        u = parse_url(url, DEFAULT_PORT)
    except ValueError as e:
        return str(e)
    if u.scheme != "memcached":
        return f"cachedb_url '{url}' is not a memcached URL (memcached[:group]://host[:port]/)"
    return None


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
        return _int32(new)

    def sub(self, key, delta, expire=0):
        new = self._do("sub", self.client.decr, key, delta)
        if new is None:                      # OpenSIPS stores the amount itself here too
            self._do("sub", self.client.set, key, str(delta), expire or 0)
            return delta
        return _int32(new)

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


def _int32(n: int) -> int:
    return ((n + 2 ** 31) % 2 ** 32) - 2 ** 31


class Api:
    """rt.apis["cachedb_memcached"]: the engines by group (None: the URL without one)."""

    def __init__(self):
        self.engines: dict = {}

    def engine(self, group):
        return self.engines.get(group or None)

    def replace(self, engines):
        for old in self.engines.values():
            old.close()
        self.engines = engines


api = Api()
exports.api = api


def init(rt):
    p = rt.modparams["cachedb_memcached"]
    engines = {}
    for text in p["cachedb_url"]:
        url = parse_url(text, DEFAULT_PORT)
        if url.group in engines:
            rt.log.warning(f"cachedb_url '{text}': group '{url.group or ''}' is already "
                           f"defined, ignored", "cachedb_memcached")
            continue
        engines[url.group] = MemcachedEngine(url.hosts, url.label, rt.log,
                                             p["exec_threshold"])
    api.replace(engines)


def destroy(rt):
    api.replace({})

"""cachedb_redis: the cachedb engine for Redis servers, speaking RESP over TCP.

    loadmodule "cachedb_redis.so"
    modparam("cachedb_redis", "cachedb_url", "redis://127.0.0.1:6379/")          # "redis"
    modparam("cachedb_redis", "cachedb_url", "redis:grp://:secret@10.0.0.1,10.0.0.2/3")

    cache_store("redis:grp", "key", "value"[, expire])   SET (+ EXPIRE)
    cache_fetch("redis", "key", $var(v))                 GET; -2 when the key is not there
    cache_remove / cache_add / cache_sub / cache_counter_fetch   DEL, INCRBY, DECRBY, GET
    cache_raw_query("redis:grp", "HGET h $var(k)", "$avp(res)")  any command

A URL names one server, or several separated by commas (failover: the next one is used when
the current one cannot be reached); `user:password@` authenticates (AUTH), `/N` selects a
database. Connections open on first use (at start-up with `shutdown_on_error`), each command
waits at most `query_timeout` ms, each connect `connect_timeout` ms; a broken connection is
reopened once before the query fails (-1).

cache_raw_query splits the query on blanks (with `enable_raw_query_quoting`, "double quoted"
words keep their blanks); an integer or string reply is one result, an array reply gives one
result per element ($(avp(res)[0]) is the first), nil returns -2, a status reply returns 1
with no results, an error reply -1.

Not here: Redis Cluster slot routing (a cluster node answers MOVED: the query fails), TLS
(`use_tls`), the RedisJSON/FT.SEARCH map API.
"""
from __future__ import annotations

import shlex

from modules.cachedb_redis.resp import Connection, ConnectionFailed, Error, Status
from runtime import cachedb
from runtime.cachedb import CacheError, int32
from runtime.module import Module, Param

exports = Module(
    name="cachedb_redis",
    params=[
        Param("cachedb_url", str, multi=True,
              check=lambda v: cachedb.check_url(v, "redis", DEFAULT_PORT)),
        Param("connect_timeout", int, 5000),
        Param("query_timeout", int, 5000),
        Param("shutdown_on_error", int, 0),
        Param("use_tls", int, 0),
        Param("enable_raw_query_quoting", int, 0),
        Param("lazy_connect", int, 0),
        Param("redis_keepalive", int, 0),
        Param("ftsearch_index_name", str, "idx:usrloc"),
        Param("ftsearch_json_prefix", str, "usrloc:"),
        Param("ftsearch_max_results", int, 10000),
        Param("ftsearch_json_mset_expire", int, 3600),
    ],
    functions=cachedb.functions(),
    init="init",
    destroy="destroy",
)

DEFAULT_PORT = 6379


class RedisEngine:
    """The servers of one cachedb_url (one group)."""

    def __init__(self, url, connect_timeout_ms=5000, query_timeout_ms=5000, quoting=False,
                 log=None):
        self.url = url
        self.quoting = quoting
        self.log = log
        self.nodes = [Connection(h, p or DEFAULT_PORT,
                                 connect_timeout=connect_timeout_ms / 1000.0,
                                 query_timeout=query_timeout_ms / 1000.0)
                      for h, p in url.hosts]
        self.current = 0

    # --- connections -----------------------------------------------------------------
    def _open(self, conn):
        conn.connect()
        if self.url.password is not None:
            args = ("AUTH", self.url.user, self.url.password) if self.url.user else \
                ("AUTH", self.url.password)
            r = conn.command(*args)
            if isinstance(r, Error):
                conn.close()
                raise ConnectionFailed(f"redis {conn.host}:{conn.port}: AUTH failed: {r}")
        if self.url.database:
            r = conn.command("SELECT", self.url.database)
            if isinstance(r, Error):
                conn.close()
                raise ConnectionFailed(f"redis {conn.host}:{conn.port}: SELECT "
                                       f"{self.url.database} failed: {r}")

    def connect(self):
        """Open the first reachable server (start-up with shutdown_on_error)."""
        self.run("PING")

    def close(self):
        for c in self.nodes:
            c.close()

    def run(self, *args):
        """One command on the current server, with one reconnect, then failover."""
        last = None
        n = len(self.nodes)
        for i in range(n):
            idx = (self.current + i) % n
            conn = self.nodes[idx]
            for _attempt in range(2):
                try:
                    if not conn.connected:
                        self._open(conn)
                    reply = conn.command(*args)
                except ConnectionFailed as e:
                    last = e
                    continue
                if idx != self.current:
                    if self.log:
                        self.log.info(f"failing over to redis {conn.host}:{conn.port}",
                                      "cachedb_redis")
                    self.current = idx
                if isinstance(reply, Error):
                    raise CacheError(f"redis query failed: {reply}")
                return reply
        raise CacheError(str(last) if last else "no redis server")

    # --- the engine API --------------------------------------------------------------
    def store(self, key, value, expire=0):
        self.run("SET", key, value)
        if expire:
            self.run("EXPIRE", key, expire)

    def fetch(self, key):
        r = self.run("GET", key)
        if r is None:
            return None
        return _text(r)

    def remove(self, key):
        self.run("DEL", key)

    def _incr(self, cmd, key, delta, expire):
        r = self.run(cmd, key, delta)
        if not isinstance(r, int):
            raise CacheError(f"redis {cmd}: unexpected reply {r!r}")
        if expire:
            self.run("EXPIRE", key, expire)
        return int32(r)

    def add(self, key, delta, expire=0):
        return self._incr("INCRBY", key, delta, expire)

    def sub(self, key, delta, expire=0):
        return self._incr("DECRBY", key, delta, expire)

    def counter_fetch(self, key):
        r = self.run("GET", key)
        if r is None or r == b"":
            return None
        text = _text(r).strip()
        try:
            return int(text)
        except ValueError:
            raise CacheError(f"the value of '{key}' is not a counter") from None

    def split(self, query):
        if self.quoting:
            try:
                return shlex.split(query, posix=True)
            except ValueError as e:
                raise CacheError(f"malformed Redis RAW query: '{query}' ({e})") from None
        return query.split()

    def raw_query(self, query, want_rows=True):
        args = self.split(query)
        if len(args) < 2:
            raise CacheError(f"malformed Redis RAW query: '{query}'")
        r = self.run(*args)
        if r is None:
            return -2, []
        if isinstance(r, Status) or not want_rows:
            return 1, []
        if isinstance(r, int):
            return 1, [int32(r)]
        if isinstance(r, bytes):
            return 1, [_text(r)]
        rows = []
        for item in r:
            if item is None:
                rows.append(None)
            elif isinstance(item, int) and not isinstance(item, Status):
                rows.append(int32(item))
            elif isinstance(item, bytes):
                rows.append(_text(item))
            # nested arrays (and statuses) are skipped, as OpenSIPS does
        return 1, rows


def _text(b) -> str:
    return b.decode("utf-8", "surrogateescape") if isinstance(b, bytes) else str(b)


api = cachedb.register("cachedb_redis")


def init(rt):
    p = rt.modparams["cachedb_redis"]
    if p["use_tls"]:
        rt.log.warning("use_tls: TLS to Redis is not supported, the connections are plain "
                       "TCP", "cachedb_redis")
    api.from_urls(rt, "cachedb_redis", p["cachedb_url"], DEFAULT_PORT,
                  lambda url: RedisEngine(url, p["connect_timeout"], p["query_timeout"],
                                          bool(p["enable_raw_query_quoting"]), rt.log))
    if not api.engines:
        rt.log.warning("no cachedb_url: the cache_* functions have no redis engine",
                       "cachedb_redis")
    if p["shutdown_on_error"]:
        for eng in api.engines.values():
            try:
                eng.connect()
            except CacheError as e:
                raise ValueError(f"cannot connect to {eng.url.label}: {e}") from None


def destroy(rt):
    api.replace({})

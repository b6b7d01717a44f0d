"""The cachedb core (OpenSIPS's cachedb/): the `cachedb_url` syntax, the registry of the
engines the cachedb modules provide, and the core `cache_*` script functions.

Each cachedb module registers its engines by group (`register(module)` gives its place in
the registry) and lists `functions()` in its export block; a call finds its engine by the
first argument:

    "local[:group]"                 -> cachedb_local's engine of the group
    "redis" / "redis:group"         -> cachedb_redis's
    "memcached:group"               -> cachedb_memcached's
    "memcached_group" (1.x)         -> the memcached module's

An engine has `store(key, value, expire)`, `fetch(key)` (None: no such key), `remove(key)`,
`add(key, delta, expire)` -> new value, `counter_fetch(key)` (None: no such key), and
optionally `sub(key, delta, expire)`, `raw_query(text, want_rows)` -> (rc, rows) and
`close()`. Every failure is a `CacheError`.

Return codes as OpenSIPS's: 1 success, -1 error, -2 no such key (fetch, counter_fetch, a raw
query answered with nil).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from runtime.module import ALL, INT, STR, STR_NO_EXPAND, VAR, Arg, Func
from runtime.pv import PVError, bind, parse_pv_text


class CacheError(Exception):
    pass


# --- cachedb_url ---------------------------------------------------------------------------

@dataclass
class CachedbURL:
    scheme: str
    group: str | None
    hosts: list = field(default_factory=list)     # [(host, port or None)]
    user: str | None = None
    password: str | None = None
    database: str | None = None
    options: str | None = None
    text: str = ""

    @property
    def label(self) -> str:
        return f"{self.scheme}{':' + self.group if self.group else ''}"


_URL = re.compile(r"^(?P<scheme>[A-Za-z0-9_]+)(?::(?P<group>[^:/]*))?://(?P<rest>.*)$", re.S)


def parse_url(text: str, default_port: int | None = None) -> CachedbURL:
    """`scheme[:group]://[user[:password]@]host[:port][,host[:port]...][/database][?opts]`
    (ValueError when it is not one)."""
    text = str(text).strip()
    m = _URL.match(text)
    if m is None:
        raise ValueError(f"bad cachedb_url '{text}' (scheme[:group]://host[:port]/...)")
    rest = m.group("rest")
    options = None
    if "?" in rest:
        rest, _, options = rest.partition("?")
    hostpart, slash, database = rest.partition("/")
    user = password = None
    if "@" in hostpart:
        cred, _, hostpart = hostpart.rpartition("@")
        user, colon, pw = cred.partition(":")
        password = pw if colon else None
        user = user or None
        if not colon:           # "redis://secret@host": a password alone
            password, user = user, None
    hosts = []
    for item in hostpart.split(","):
        item = item.strip()
        if not item:
            continue
        if item.startswith("["):
            host, _, after = item[1:].partition("]")
            port = after[1:] if after.startswith(":") else ""
        else:
            host, _, port = item.partition(":")
        if port and not port.isdigit():
            raise ValueError(f"bad port '{port}' in cachedb_url '{text}'")
        if port and not 0 < int(port) < 65536:
            raise ValueError(f"port {port} out of range in cachedb_url '{text}'")
        hosts.append((host, int(port) if port else default_port))
    if not hosts:
        raise ValueError(f"no host in cachedb_url '{text}'")
    group = m.group("group")
    return CachedbURL(m.group("scheme").lower(), group or None, hosts, user, password,
                      database.strip("/") or None, options or None, text)


def check_url(text, scheme: str, default_port: int) -> str | None:
    """A modparam check: the error in a `scheme[:group]://...` cachedb_url, if any."""
    try:
        url = parse_url(text, default_port)
    except ValueError as e:
        return str(e)
    if url.scheme != scheme:
        return f"cachedb_url '{text}' is not a {scheme} URL ({scheme}[:group]://host[:port]/)"
    return None


def int32(n: int) -> int:
    """What a C int keeps of a counter (OpenSIPS stores counters as int)."""
    return ((n + 2 ** 31) % 2 ** 32) - 2 ** 31


# --- the registry --------------------------------------------------------------------------

class Engines:
    """A cachedb module's engines by group (None: its URL without a group)."""

    def __init__(self):
        self.engines: dict = {}

    def engine(self, group):
        return self.engines.get(group or None)

    def has_group(self, rt, group) -> bool:
        """Whether a group may be named in the script (checked at load; True: a group
        without a URL is found, and logged, at run time, as in OpenSIPS)."""
        return True

    def replace(self, engines: dict):
        """Use these engines from now on; close the ones there were."""
        for old in self.engines.values():
            old.close()
        self.engines = engines

    def from_urls(self, rt, module, urls, default_port, make):
        """replace() with one engine per group of the `cachedb_url` values
        (make(CachedbURL) -> engine); a group given twice is warned about, the first kept."""
        engines = {}
        for text in urls:
            url = parse_url(text, default_port)
            if url.group in engines:
                rt.log.warning(f"cachedb_url '{text}': group '{url.group or ''}' is already "
                               f"defined, ignored", module)
                continue
            engines[url.group] = make(url)
        self.replace(engines)


_registry: dict[str, Engines] = {}


def register(module: str, engines: Engines | None = None) -> Engines:
    """The place of a cachedb module's engines (`engines`, or a new Engines)."""
    _registry[module] = engines if engines is not None else Engines()
    return _registry[module]


def engine_id(value, rt):
    """The fixup of the first argument: (module, group). A load-time error when no loaded
    module provides the engine, or when the module knows the group is not there."""
    text = str(value).strip()
    scheme, colon, group = text.partition(":")
    scheme_l = scheme.lower()
    if not colon and scheme_l.startswith("memcached_") and "memcached" in rt.modules:
        return "memcached", scheme[len("memcached_"):] or None     # 1.x "memcached_<group>"
    mod = f"cachedb_{scheme_l}"
    if mod not in rt.modules:
        if scheme_l == "memcached" and "memcached" in rt.modules:
            return "memcached", group or None
        raise ValueError(f"no cachedb engine '{text}' (loadmodule \"{mod}.so\"?)")
    if not rt.check_only and not _registry[mod].has_group(rt, group or None):
        raise ValueError(f"no cachedb_url for '{value}'")
    return mod, group or None


def _engine(ctx, eid, fname):
    mod, group = eid
    engines = _registry.get(mod)
    eng = engines.engine(group) if engines is not None else None
    if eng is None:
        name = mod[8:] if mod.startswith("cachedb_") else mod
        ctx.rt.log.error(f"{fname}: failed to get connection for group "
                         f"'{group or ''}' of engine '{name}': check cachedb_url", "cachedb")
    return eng


# --- the script functions ------------------------------------------------------------------

def _fail(ctx, fname, err):
    ctx.rt.log.error(f"{fname}: {err}", "cachedb")
    return -1


_FAILED = object()


def _apply(ctx, fname, eid, key, op):
    """op(engine) for the script function `fname`; _FAILED (and a log line) when the key
    is empty, there is no engine or the engine fails."""
    if not key:
        _fail(ctx, fname, "attribute cannot be empty")
        return _FAILED
    eng = _engine(ctx, eid, fname)
    if eng is None:
        return _FAILED
    try:
        return op(eng)
    except CacheError as e:
        _fail(ctx, fname, e)
        return _FAILED


def _fetch(ctx, fname, eid, key, result, op):
    v = _apply(ctx, fname, eid, key, op)
    if v is _FAILED:
        return -1
    if v is None:
        return -2
    result.set(ctx, v)
    return 1


def cache_store(ctx, eid, key, value, expire=None):
    done = _apply(ctx, "cache_store", eid, key, lambda eng: eng.store(key, value, expire or 0))
    return -1 if done is _FAILED else 1


def cache_fetch(ctx, eid, key, result):
    return _fetch(ctx, "cache_fetch", eid, key, result, lambda eng: eng.fetch(key))


def cache_remove(ctx, eid, key):
    done = _apply(ctx, "cache_remove", eid, key, lambda eng: eng.remove(key))
    return -1 if done is _FAILED else 1


def _counter(ctx, fname, eid, key, delta, expire, var, sub):
    def op(eng):
        if sub and hasattr(eng, "sub"):
            return eng.sub(key, delta, expire or 0)
        return eng.add(key, -delta if sub else delta, expire or 0)
    new = _apply(ctx, fname, eid, key, op)
    if new is _FAILED:
        return -1
    if var is not None:
        var.set(ctx, new)
    return 1


def cache_add(ctx, eid, key, inc, expire=None, var=None):
    return _counter(ctx, "cache_add", eid, key, inc, expire, var, False)


def cache_sub(ctx, eid, key, dec, expire=None, var=None):
    return _counter(ctx, "cache_sub", eid, key, dec, expire, var, True)


def cache_counter_fetch(ctx, eid, key, result):
    return _fetch(ctx, "cache_counter_fetch", eid, key, result,
                  lambda eng: eng.counter_fetch(key))


def cache_raw_query(ctx, eid, query, avps=None):
    """Run a backend query; with `avps` ("$avp(a)" or a list), each returned value becomes
    one value of the first AVP, the first one on top ($(avp(a)[0]))."""
    if not query:
        return _fail(ctx, "cache_raw_query", "raw query cannot be empty")
    eng = _engine(ctx, eid, "cache_raw_query")
    if eng is None:
        return -1
    if not hasattr(eng, "raw_query"):
        return _fail(ctx, "cache_raw_query", "the backend does not support raw queries")
    try:
        rc, rows = eng.raw_query(query, avps is not None)
    except CacheError as e:
        return _fail(ctx, "cache_raw_query", e)
    if rc > 0 and avps:
        first = avps[0]
        for value in reversed(rows):          # pushed last-first: row 0 ends on top
            if value is None:
                ctx.avps.setdefault(first._sub(ctx), []).append(None)
            else:
                first.set(ctx, value)
    return rc


def avp_list(text, rt):
    """The fixup of cache_raw_query's third argument: `"$avp(a)"`, or several separated by
    `;`, `,` or blanks -> bound AVP specs."""
    out = []
    for part in re.split(r"[;,\s]+", str(text).strip()):
        if not part:
            continue
        try:
            pv = bind(parse_pv_text(part))
        except PVError as e:
            raise ValueError(f"bad result AVP '{part}': {e}") from None
        if pv.d.name != "avp":
            raise ValueError(f"'{part}' is not an AVP (cache_raw_query stores results in AVPs)")
        out.append(pv)
    if not out:
        raise ValueError("no AVP given for the results")
    return out


def functions() -> list:
    """The cache_* functions, as each cachedb module exports them."""
    eng = Arg(STR, fixup=engine_id, name="engine")
    return [
        Func("cache_store", cache_store, [eng, Arg(STR, name="key"), Arg(STR, name="value"),
                                          Arg(INT, optional=True, name="expire")], ALL),
        Func("cache_fetch", cache_fetch, [eng, Arg(STR, name="key"), Arg(VAR, name="result")],
             ALL),
        Func("cache_remove", cache_remove, [eng, Arg(STR, name="key")], ALL),
        Func("cache_add", cache_add, [eng, Arg(STR, name="key"), Arg(INT, name="increment"),
                                      Arg(INT, optional=True, name="expire"),
                                      Arg(VAR, optional=True, name="new value")], ALL),
        Func("cache_sub", cache_sub, [eng, Arg(STR, name="key"), Arg(INT, name="decrement"),
                                      Arg(INT, optional=True, name="expire"),
                                      Arg(VAR, optional=True, name="new value")], ALL),
        Func("cache_counter_fetch", cache_counter_fetch,
             [eng, Arg(STR, name="key"), Arg(VAR, name="result")], ALL),
        Func("cache_raw_query", cache_raw_query,
             [eng, Arg(STR, name="query"),
              Arg(STR_NO_EXPAND, optional=True, fixup=avp_list, name="result AVPs")], ALL),
    ]

"""What the cachedb engines of this package share (cachedb_redis, cachedb_memcached and the
1.x `memcached` module): the `cachedb_url` syntax, and the core `cache_*` script functions
with an engine lookup that knows every engine name form.

The `cache_*` functions belong to the OpenSIPS core. Here they are exported by each cachedb
module (cachedb_local exports the same functions); whichever module is loaded, the call
finds its engine by the first argument:

    "redis" / "redis:group"         -> rt.apis["cachedb_redis"].engine(group)
    "memcached:group"               -> rt.apis["cachedb_memcached"].engine(group)
    "memcached_group" (1.x)         -> rt.apis["memcached"].engine(group)
    "local[:group]"                 -> rt.apis["cachedb_local"].engine(group)

An engine has `store(key, value, expire)`, `fetch(key)` (None: no such key), `remove(key)`,
`add(key, delta, expire)` -> new value, `counter_fetch(key)` (None: no such key), and
optionally `sub(key, delta, expire)` and `raw_query(text, want_rows)` -> (rc, rows). Every
failure is a `CacheError` (cachedb_local's class, so its own wrappers handle ours).

Return codes as OpenSIPS's: 1 success, -1 error, -2 no such key (fetch, counter_fetch, a raw
query answered with nil).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from modules.cachedb_local import CacheError
from runtime.module import ALL, INT, STR, STR_NO_EXPAND, VAR, Arg, Func

__all__ = ["CacheError", "CachedbURL", "parse_url", "core_functions", "engine_id"]


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


# --- engine ids ----------------------------------------------------------------------------

def engine_id(value, rt):
    """The fixup of the first argument: (module, group). A load-time error when no loaded
    module provides the engine; a group without a URL is found (and logged) at run time, as
    in OpenSIPS."""
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
    return mod, group or None


def _engine(ctx, eid, fname):
    mod, group = eid
    api = ctx.rt.apis.get(mod)
    eng = api.engine(group) if api is not None else None
    if eng is None:
        name = mod[8:] if mod.startswith("cachedb_") else mod
        ctx.rt.log.error(f"{fname}: failed to get connection for group "
                         f"'{group or ''}' of engine '{name}': check cachedb_url", "cachedb")
    return eng


def _fail(ctx, fname, err):
    ctx.rt.log.error(f"{fname}: {err}", "cachedb")
    return -1


# --- the script functions ------------------------------------------------------------------

def cache_store(ctx, eid, key, value, expire=None):
    if not key:
        return _fail(ctx, "cache_store", "attribute cannot be empty")
    eng = _engine(ctx, eid, "cache_store")
    if eng is None:
        return -1
    try:
        eng.store(key, value, expire or 0)
    except CacheError as e:
        return _fail(ctx, "cache_store", e)
    return 1


def cache_fetch(ctx, eid, key, result):
    if not key:
        return _fail(ctx, "cache_fetch", "attribute cannot be empty")
    eng = _engine(ctx, eid, "cache_fetch")
    if eng is None:
        return -1
    try:
        v = eng.fetch(key)
    except CacheError as e:
        return _fail(ctx, "cache_fetch", e)
    if v is None:
        return -2
    result.set(ctx, v)
    return 1


def cache_remove(ctx, eid, key):
    if not key:
        return _fail(ctx, "cache_remove", "attribute cannot be empty")
    eng = _engine(ctx, eid, "cache_remove")
    if eng is None:
        return -1
    try:
        eng.remove(key)
    except CacheError as e:
        return _fail(ctx, "cache_remove", e)
    return 1


def _counter(ctx, fname, eid, key, delta, expire, var, sub):
    if not key:
        return _fail(ctx, fname, "attribute cannot be empty")
    eng = _engine(ctx, eid, fname)
    if eng is None:
        return -1
    try:
        if sub and hasattr(eng, "sub"):
            new = eng.sub(key, delta, expire or 0)
        else:
            new = eng.add(key, -delta if sub else delta, expire or 0)
    except CacheError as e:
        return _fail(ctx, fname, e)
    if var is not None:
        var.set(ctx, new)
    return 1


def cache_add(ctx, eid, key, inc, expire=None, var=None):
    return _counter(ctx, "cache_add", eid, key, inc, expire, var, False)


def cache_sub(ctx, eid, key, dec, expire=None, var=None):
    return _counter(ctx, "cache_sub", eid, key, dec, expire, var, True)


def cache_counter_fetch(ctx, eid, key, result):
    if not key:
        return _fail(ctx, "cache_counter_fetch", "attribute cannot be empty")
    eng = _engine(ctx, eid, "cache_counter_fetch")
    if eng is None:
        return -1
    try:
        v = eng.counter_fetch(key)
    except CacheError as e:
        return _fail(ctx, "cache_counter_fetch", e)
    if v is None:
        return -2
    result.set(ctx, v)
    return 1


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
    from runtime.pv import PVError, bind, parse_pv_text
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


def core_functions() -> list:
    """The cache_* functions, as each cachedb module exports them."""
    eng = Arg(STR, fixup=engine_id, name="engine")
    funcs = [
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
    return funcs

"""cachedb_local: an in-memory key-value cache (collections of keys with expiry), and the
core `cache_*` functions that scripts use on any cachedb engine.

    modparam("cachedb_local", "cachedb_url", "local://")              # collection "default"
    modparam("cachedb_local", "cachedb_url", "local:grp1:///coll1")  # "local:grp1" in scripts
    modparam("cachedb_local", "cache_collections", "default; coll1")

    cache_store("local", "key", "value"[, expire])     1, -1 on error
    cache_fetch("local", "key", $var(v))               1, -2 when the key is not there
    cache_remove("local", "key")                       1
    cache_add("local", "key", 5, expire[, $var(new)])  atomic counter add (cache_sub)
    cache_counter_fetch("local", "key", $var(n))       1, -2 when not there
    cache_remove_chunk([collection,] "glob")           remove the keys matching a glob

The `cache_*` functions belong to the OpenSIPS core; they are exported here (and, the same,
by the other cachedb modules: modules/cachedb_redis/cachedb_core.py) and find the engine by
the scheme of their first argument (`"local"` -> this module, `"redis:x"` ->
`rt.apis["cachedb_redis"]`, 1.x `"memcached_x"` -> `rt.apis["memcached"]`), so a cachedb
module only has to provide an `api` with the methods of `Engine`."""
import fnmatch
import re
import time

from runtime.module import ALL, INT, STR, VAR, Arg, Func, Module, Param

exports = Module(
    name="cachedb_local",
    params=[
        Param("cachedb_url", str, multi=True, check=lambda v: _check_url(v)),
        Param("cache_collections", str, "default"),
        Param("cache_clean_period", int, 600), Param("cache_table_size", int, 9),
        Param("cluster_id", int, 0), Param("cluster_persistency", str, "none"),
        Param("enable_restart_persistency", int, 0),
    ],
    functions=[
        Func("cache_store", "cache_store",
             [Arg(STR, fixup=lambda v, rt: _engine_id(v, rt), name="engine"),
              Arg(STR, name="key"), Arg(STR, name="value"), Arg(INT, optional=True)], ALL),
        Func("cache_fetch", "cache_fetch",
             [Arg(STR, fixup=lambda v, rt: _engine_id(v, rt), name="engine"),
              Arg(STR, name="key"), Arg(VAR, name="result")], ALL),
        Func("cache_remove", "cache_remove",
             [Arg(STR, fixup=lambda v, rt: _engine_id(v, rt), name="engine"),
              Arg(STR, name="key")], ALL),
        Func("cache_add", "cache_add",
             [Arg(STR, fixup=lambda v, rt: _engine_id(v, rt), name="engine"),
              Arg(STR, name="key"), Arg(INT, name="increment"), Arg(INT, optional=True),
              Arg(VAR, optional=True, name="new value")], ALL),
        Func("cache_sub", "cache_sub",
             [Arg(STR, fixup=lambda v, rt: _engine_id(v, rt), name="engine"),
              Arg(STR, name="key"), Arg(INT, name="decrement"), Arg(INT, optional=True),
              Arg(VAR, optional=True, name="new value")], ALL),
        Func("cache_counter_fetch", "cache_counter_fetch",
             [Arg(STR, fixup=lambda v, rt: _engine_id(v, rt), name="engine"),
              Arg(STR, name="key"), Arg(VAR, name="result")], ALL),
        Func("cache_remove_chunk", "cache_remove_chunk",
             [Arg(STR, name="collection or glob"), Arg(STR, optional=True, name="glob")], ALL),
    ],
    init="init",
    mi={"cache_remove_chunk": "mi_cache_remove_chunk",
        "cache_fetch_chunk": "mi_cache_fetch_chunk"},
)


class CacheError(Exception):
    pass


class Collection:
    """One hash table: key -> (value, expires at (monotonic) or 0)."""

    def __init__(self, name):
        self.name = name
        self.data: dict = {}

    def _live(self, key, now):
        item = self.data.get(key)
        if item is None:
            return None
        if item[1] and item[1] <= now:
            del self.data[key]
            return None
        return item

    def clean(self, now=None):
        now = time.monotonic() if now is None else now
        for k in [k for k, (_, exp) in self.data.items() if exp and exp <= now]:
            del self.data[k]


class Engine:
    """What the cache_* functions ask of a cachedb engine (one per "scheme:group")."""

    def __init__(self, collection: Collection):
        self.coll = collection

    @staticmethod
    def _expiry(expire):
        return time.monotonic() + expire if expire and expire > 0 else 0

    def store(self, key, value, expire=0):
        self.coll.data[key] = (value, self._expiry(expire))

    def fetch(self, key):
        item = self.coll._live(key, time.monotonic())
        return None if item is None else item[0]

    def remove(self, key):
        self.coll.data.pop(key, None)

    def add(self, key, delta, expire=0):
        """Atomic add (the event loop runs one script at a time); the new value."""
        item = self.coll._live(key, time.monotonic())
        if item is None:
            new = delta
        else:
            try:
                new = int(item[0]) + delta
            except (TypeError, ValueError):
                raise CacheError(f"the value of '{key}' is not a number") from None
        exp = self._expiry(expire) if expire else (item[1] if item is not None else 0)
        self.coll.data[key] = (new, exp)
        return new

    def counter_fetch(self, key):
        v = self.fetch(key)
        if v is None:
            return None
        try:
            return int(v)
        except (TypeError, ValueError):
            raise CacheError(f"the value of '{key}' is not a number") from None


class Api:
    """rt.apis["cachedb_local"]: the engines by group (None: the URL without a group)."""

    def __init__(self):
        self.collections: dict = {}
        self.engines: dict = {}

    def engine(self, group):
        return self.engines.get(group or None)


_URL = re.compile(r"^local(?::(?P<group>[^:/]+))?://(?:[^/]*)(?:/(?P<coll>[^/]*))?$", re.I)


def _check_url(url):
    if _URL.match(str(url).strip()) is None:
        return f"bad cachedb_url '{url}' (local[:group]://[/collection])"
    return None


def parse_urls(urls, collections_text):
    """(collections by name, group -> collection name); ValueError on a bad URL or an
    unknown collection."""
    colls = {}
    for part in (collections_text or "default").split(";"):
        name = part.split("=")[0].strip().split("/")[0].strip()
        if name:
            colls[name] = Collection(name)
    groups = {}
    for url in urls or ["local://"]:
        m = _URL.match(url.strip())
        if m is None:
            raise ValueError(f"cachedb_local: bad cachedb_url '{url}' "
                             f"(local[:group]://[/collection])")
        coll = m.group("coll") or "default"
        if coll not in colls:
            raise ValueError(f"cachedb_local: collection '{coll}' of '{url}' is not in "
                             f"cache_collections")
        groups[m.group("group")] = coll
    return colls, groups


api = Api()
exports.api = api


def init(rt):
    p = rt.modparams["cachedb_local"]
    colls, groups = parse_urls(p["cachedb_url"], p["cache_collections"])
    api.collections = colls
    api.engines = {g: Engine(colls[c]) for g, c in groups.items()}
    period = p["cache_clean_period"]
    if period > 0:
        rt.timers.append((period, lambda: [c.clean() for c in api.collections.values()]))


# --- the core cache_* functions ----------------------------------------------------------------

def _engine_id(value, rt):
    """`"local"` / `"local:group"` -> (module name, group); a load error when the engine's
    module is not loaded."""
    scheme, colon, group = str(value).strip().partition(":")
    low = scheme.lower()
    if not colon and low.startswith("memcached_") and "memcached" in rt.modules:
        return "memcached", scheme[len("memcached_"):] or None     # 1.x "memcached_<group>"
    mod = f"cachedb_{low}"
    if mod not in rt.modules:
        if low == "memcached" and "memcached" in rt.modules:
            return "memcached", group or None
        raise ValueError(f"no cachedb engine '{value}' (loadmodule \"{mod}.so\"?)")
    if mod == "cachedb_local" and not rt.check_only:
        urls = rt.modparams["cachedb_local"]["cachedb_url"]
        try:
            _, groups = parse_urls(urls, rt.modparams["cachedb_local"]["cache_collections"])
        except ValueError:
            groups = {None: "default"}
        if (group or None) not in groups:
            raise ValueError(f"no cachedb_url for '{value}'")
    return mod, group or None


def _engine(ctx, eid):
    mod, group = eid
    a = ctx.rt.apis.get(mod)
    eng = a.engine(group) if a is not None else None
    if eng is None:
        ctx.rt.log.error(f"cachedb: no engine for '{mod[8:]}{':' + group if group else ''}'",
                         "cachedb")
    return eng


def cache_store(ctx, eid, key, value, expire=None):
    eng = _engine(ctx, eid)
    if eng is None:
        return -1
    try:
        eng.store(key, value, expire or 0)
    except CacheError as e:
        ctx.rt.log.error(f"cache_store: {e}", "cachedb")
        return -1
    return 1


def cache_fetch(ctx, eid, key, result):
    eng = _engine(ctx, eid)
    if eng is None:
        return -1
    try:
        v = eng.fetch(key)
    except CacheError as e:
        ctx.rt.log.error(f"cache_fetch: {e}", "cachedb")
        return -1
    if v is None:
        return -2
    result.set(ctx, v)
    return 1


def cache_remove(ctx, eid, key):
    eng = _engine(ctx, eid)
    if eng is None:
        return -1
    eng.remove(key)
    return 1


def _add(ctx, eid, key, delta, expire, var):
    eng = _engine(ctx, eid)
    if eng is None:
        return -1
    try:
        new = eng.add(key, delta, expire or 0)
    except CacheError as e:
        ctx.rt.log.error(f"cache_add: {e}", "cachedb")
        return -1
    if var is not None:
        var.set(ctx, new)
    return 1


def cache_add(ctx, eid, key, inc, expire=None, var=None):
    return _add(ctx, eid, key, inc, expire, var)


def cache_sub(ctx, eid, key, dec, expire=None, var=None):
    return _add(ctx, eid, key, -dec, expire, var)


def cache_counter_fetch(ctx, eid, key, result):
    eng = _engine(ctx, eid)
    if eng is None:
        return -1
    try:
        v = eng.counter_fetch(key)
    except CacheError as e:
        ctx.rt.log.error(f"cache_counter_fetch: {e}", "cachedb")
        return -1
    if v is None:
        return -2
    result.set(ctx, v)
    return 1


# --- cache_remove_chunk ------------------------------------------------------------------------

def _remove_chunk(collection, glob):
    colls = [api.collections[collection]] if collection else list(api.collections.values())
    n = 0
    for c in colls:
        for k in [k for k in c.data if fnmatch.fnmatchcase(str(k), glob)]:
            del c.data[k]
            n += 1
    return n


def cache_remove_chunk(ctx, a, b=None):
    collection, glob = (a, b) if b is not None else (None, a)
    if collection and collection not in api.collections:
        ctx.rt.log.error(f"cache_remove_chunk: no collection '{collection}'", "cachedb_local")
        return -1
    _remove_chunk(collection, glob)
    return 1


def mi_cache_remove_chunk(rt, glob: str, collection: str = None):
    from runtime.mi import MIError
    if collection and collection not in api.collections:
        raise MIError(500, f"Collection {collection} not found")
    _remove_chunk(collection, glob)
    return "OK"


def mi_cache_fetch_chunk(rt, glob: str, collection: str = None):
    from runtime.mi import MIError
    if collection and collection not in api.collections:
        raise MIError(500, f"Collection {collection} not found")
    now = time.monotonic()
    out = []
    for c in ([api.collections[collection]] if collection else api.collections.values()):
        for k in list(c.data):
            item = c._live(k, now)
            if item is not None and fnmatch.fnmatchcase(str(k), glob):
                out.append({"name": k, "value": item[0]})
    return {"keys": out}


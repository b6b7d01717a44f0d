"""cachedb_local: an in-memory key-value cache (collections of keys with expiry), the
engine of the `"local"` cache_* calls.

    modparam("cachedb_local", "cachedb_url", "local://")              # collection "default"
    modparam("cachedb_local", "cachedb_url", "local:grp1:///coll1")  # "local:grp1" in scripts
    modparam("cachedb_local", "cache_collections", "default; coll1")

    cache_store("local", "key", "value"[, expire])     1, -1 on error
    cache_fetch("local", "key", $var(v))               1, -2 when the key is not there
    cache_remove("local", "key")                       1
    cache_add("local", "key", 5, expire[, $var(new)])  atomic counter add (cache_sub)
    cache_counter_fetch("local", "key", $var(n))       1, -2 when not there
    cache_remove_chunk([collection,] "glob")           remove the keys matching a glob

The `cache_*` functions belong to the OpenSIPS core (runtime/cachedb.py), which finds this
module's engines in its registry; each cachedb module exports them."""
import fnmatch
import re
import time

from runtime import cachedb
from runtime.cachedb import CacheError
from runtime.module import ALL, STR, Arg, Func, Module, Param

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
        *cachedb.functions(),
        Func("cache_remove_chunk", "cache_remove_chunk",
             [Arg(STR, name="collection or glob"), Arg(STR, optional=True, name="glob")], ALL),
    ],
    init="init",
    mi={"cache_remove_chunk": "mi_cache_remove_chunk",
        "cache_fetch_chunk": "mi_cache_fetch_chunk"},
)


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
    """The engine of one group: its collection (runtime/cachedb.py: what an engine does)."""

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


class Api(cachedb.Engines):
    """The engines by group (None: the URL without a group), and their collections."""

    def __init__(self):
        super().__init__()
        self.collections: dict = {}

    def has_group(self, rt, group) -> bool:
        """Only the groups of the cachedb_url modparams (a load-time error otherwise)."""
        p = rt.modparams["cachedb_local"]
        try:
            _, groups = parse_urls(p["cachedb_url"], p["cache_collections"])
        except ValueError:
            groups = {None: "default"}
        return group in groups


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


api = cachedb.register("cachedb_local", Api())


def init(rt):
    p = rt.modparams["cachedb_local"]
    colls, groups = parse_urls(p["cachedb_url"], p["cache_collections"])
    api.collections = colls
    api.engines = {g: Engine(colls[c]) for g, c in groups.items()}
    period = p["cache_clean_period"]
    if period > 0:
        rt.timers.append((period, lambda: [c.clean() for c in api.collections.values()]))


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


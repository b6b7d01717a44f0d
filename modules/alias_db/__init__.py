"""alias_db: aliases from the `dbaliases` table (alias -> canonical user, or back with 'r')."""
from runtime import db
from runtime.context import Branch
from runtime.module import (BRANCH, FAILURE, LOCAL, ONREPLY, REQUEST, STARTUP, STR, VAR, Arg,
                            Func, Module, Param)
from runtime.pv import parse_uri


def _fix_flags(value, rt):
    flags = set(str(value or "").lower())
    bad = flags - {"r", "d"}
    if bad:
        raise ValueError(f"unsupported flag '{sorted(bad)[0]}' (r: reverse, d: no domain)")
    return frozenset(flags)


exports = Module(
    name="alias_db",
    params=[
        Param("db_url", str, None, check=db.check_url),
        Param("user_column", str, "username"), Param("domain_column", str, "domain"),
        Param("alias_user_column", str, "alias_username"),
        Param("alias_domain_column", str, "alias_domain"),
        Param("domain_prefix", str, None), Param("append_branches", int, 0),
        Param("use_domain", int, None),   # 1.x; 3.x uses the domain unless flag 'd'
    ],
    functions=[
        Func("alias_db_lookup", "alias_db_lookup",
             [Arg(STR, name="table"), Arg(STR, optional=True, fixup=_fix_flags, name="flags")],
             REQUEST | FAILURE),
        Func("alias_db_find", "alias_db_find",
             [Arg(STR, name="table"), Arg(STR, name="input"), Arg(VAR, name="output"),
              Arg(STR, optional=True, fixup=_fix_flags, name="flags")],
             REQUEST | FAILURE | ONREPLY | BRANCH | LOCAL | STARTUP),
    ],
    init="init",
    child_init="child_init",
)


_state: dict = {}


def init(rt):
    p = rt.modparams["alias_db"]
    url = db.module_url(rt, "alias_db")
    _state.update(rt=rt, params=p, url=url)


def child_init(rt):
    _state["db"] = db.connect(_state["url"])


def _find(table, uri, flags):
    """The URIs `uri` is an alias of (or, with 'r', the aliases of `uri`); None on error."""
    from runtime.db import DBError
    p = _state["params"]
    flags = flags or ()
    u = parse_uri(uri) if uri else None
    if u is None or not u.user:
        return None
    if "r" in flags:
        keys = (p["user_column"], p["domain_column"])
        cols = (p["alias_user_column"], p["alias_domain_column"])
    else:
        keys = (p["alias_user_column"], p["alias_domain_column"])
        cols = (p["user_column"], p["domain_column"])
    where = {keys[0]: u.user}
    use_domain = "d" not in flags and p["use_domain"] != 0
    if use_domain:
        host = u.host
        prefix = p["domain_prefix"]
        if prefix and len(prefix) < len(host) and host.lower().startswith(prefix.lower()):
            host = host[len(prefix):]
        where[keys[1]] = host
    try:
        rows = _state["db"].query(table, where, list(cols))
    except DBError as e:
        _state["rt"].log.error(f"alias lookup in '{table}' failed: {e}", "alias_db")
        return None
    return [f"sip:{r[cols[0]]}@{r[cols[1]]}" for r in rows if r[cols[0]] is not None]


def alias_db_lookup(ctx, table, flags=None):
    """Rewrite the R-URI to the user it is an alias of (more branches: append_branches)."""
    found = _find(table, ctx.ruri, flags)
    if not found:
        return -1
    ctx.new_ruri = found[0]
    if _state["params"]["append_branches"]:
        ctx.branches.extend(Branch(uri) for uri in found[1:])
    return 1


def alias_db_find(ctx, table, uri, output, flags=None):
    found = _find(table, uri, flags)
    if not found:
        return -1
    output.set(ctx, found[0])
    return 1

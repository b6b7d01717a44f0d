"""domain: which domains this proxy serves, from the `domain` table (multi-domain setups)."""
from runtime import db
from runtime.module import ALL, STR, VAR, Arg, Func, Module, Param
from runtime.pv import parse_uri
from runtime.sip.headers import SIPError

exports = Module(
    name="domain",
    params=[
        Param("db_url", str, None, check=db.check_url),
        Param("db_mode", int, 0), Param("domain_table", str, "domain"),
        Param("domain_col", str, "domain"), Param("attrs_col", str, "attrs"),
        Param("subdomain_col", str, "accept_subdomain"),
    ],
    functions=[
        Func("is_from_local", "is_from_local", [Arg(VAR, optional=True, name="attrs")], ALL),
        Func("is_uri_host_local", "is_uri_host_local", [Arg(VAR, optional=True, name="attrs")],
             ALL),
        Func("is_domain_local", "is_domain_local",
             [Arg(STR, name="domain"), Arg(VAR, optional=True, name="attrs")], ALL),
    ],
    init="init",
    child_init="child_init",
)


_state: dict = {}


def init(rt):
    p = rt.modparams["domain"]
    url = db.module_url(rt, "domain")
    _state.update(rt=rt, params=p, url=url, cache=None)


def child_init(rt):
    _state["db"] = db.connect(_state["url"])
    if _state["params"]["db_mode"]:
        _state["cache"] = _load()


def _load():
    """{domain (lowercase): (attrs, accept_subdomain)} from the table; None on a DB error."""
    from runtime.db import DBError
    p = _state["params"]
    cols = [p["domain_col"], p["attrs_col"], p["subdomain_col"]]
    try:
        rows = _state["db"].query(p["domain_table"], None, cols)
    except DBError as e:
        _state["rt"].log.error(f"cannot read table '{p['domain_table']}': {e}", "domain")
        return None
    return {str(r[cols[0]]).lower(): (r[cols[1]], bool(r[cols[2]])) for r in rows}


def _lookup(host):
    """(attrs,) when `host` is one of our domains (or a subdomain of one accepting them)."""
    domains = _state["cache"] if _state["cache"] is not None else _load()
    if not domains or not host:
        return None
    host = host.strip("[]").lower()
    hit = domains.get(host)
    if hit is not None:
        return (hit[0],)
    for name, (attrs, subdomains) in domains.items():
        if subdomains and host.endswith("." + name):
            return (attrs,)
    return None


def _check(ctx, host, attrs_var):
    found = _lookup(host)
    if found is None:
        return -1
    if attrs_var is not None and found[0] is not None:
        attrs_var.set(ctx, str(found[0]))
    return 1


def _host(uri):
    u = parse_uri(uri) if uri else None
    return u.host if u is not None else None


def is_from_local(ctx, attrs_var=None):
    try:
        host = _host(ctx.msg.from_.uri)
    except SIPError:
        return -1
    return _check(ctx, host, attrs_var)


def is_uri_host_local(ctx, attrs_var=None):
    return _check(ctx, _host(ctx.ruri), attrs_var)


def is_domain_local(ctx, domain, attrs_var=None):
    return _check(ctx, domain, attrs_var)

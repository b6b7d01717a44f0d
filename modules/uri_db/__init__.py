"""uri_db: the OpenSIPS 1.x URI checks over the database (`check_to`, `check_from`,
`does_uri_exist`, 1.6's `get_auth_id`).

OpenSIPS 2.x moved these into `uri` and 3.x into `auth_db`, which implements them here:
this module is the 1.x front of auth_db's functions, with the 1.x parameters
(`use_uri_table` chooses between the `uri` table and the `subscriber` table). The queries
go through auth_db's connection and column names; a uri_db parameter that says otherwise
is reported at start-up."""
from runtime.module import FAILURE, LOCAL, REQUEST, STR, VAR, Arg, Func, Module, Param

exports = Module(
    name="uri_db",
    params=[
        Param("db_url", str, None), Param("db_table", str, None),
        Param("user_column", str, None), Param("domain_column", str, None),
        Param("uriuser_column", str, None),
        Param("use_uri_table", int, 0), Param("use_domain", int, 0),
        # OpenSIPS 1.2/1.3 (OpenSER) names
        Param("uri_table", str, None), Param("uri_user_column", str, None),
        Param("uri_domain_column", str, None), Param("uri_uriuser_column", str, None),
        Param("subscriber_table", str, None), Param("subscriber_user_column", str, None),
        Param("subscriber_domain_column", str, None),
    ],
    functions=[
        Func("check_to", "check_to", routes=REQUEST),
        Func("check_from", "check_from", routes=REQUEST),
        Func("does_uri_exist", "does_uri_exist", routes=REQUEST | FAILURE | LOCAL),
        Func("get_auth_id", "get_auth_id", [Arg(STR, name="uri"), Arg(VAR, name="user"),
                                            Arg(VAR, name="realm")], REQUEST | FAILURE | LOCAL),
    ],
    depends=("auth_db",),
    init="init",
)

_state: dict = {}


def _tables(p):
    """(uri table, subscriber table) as the 1.x parameters name them."""
    uri = p["uri_table"] or (p["db_table"] if p["use_uri_table"] and p["db_table"] else "uri")
    sub = p["subscriber_table"] or (p["db_table"] if not p["use_uri_table"] and p["db_table"]
                                    else "subscriber")
    return uri, sub


def init(rt):
    p = rt.modparams["uri_db"]
    adb = rt.modules["auth_db"]
    funcs = adb.functions_by_name
    _state.update(p=p, funcs={n: funcs[n].impl for n in (
        "db_does_uri_exist", "db_is_to_authorized", "db_is_from_authorized", "check_to",
        "check_from", "db_get_auth_id")})
    _state["uri_table"], _state["subscriber_table"] = _tables(p)
    # what auth_db will use for the columns and the connection: say where uri_db differs
    ap = rt.modparams["auth_db"]
    mine_vs_auth_db = [
        ("db_url", p["db_url"], ap["db_url"] or rt.config.get("db_default_url")),
        ("use_domain", p["use_domain"], ap["use_domain"])]
    if p["use_uri_table"]:
        mine_vs_auth_db += [
            ("user_column", p["uri_user_column"] or p["user_column"], ap["uri_user_column"]),
            ("domain_column", p["uri_domain_column"] or p["domain_column"],
             ap["uri_domain_column"]),
            ("uriuser_column", p["uri_uriuser_column"] or p["uriuser_column"],
             ap["uri_uriuser_column"])]
    else:
        mine_vs_auth_db += [
            ("user_column", p["subscriber_user_column"] or p["user_column"], ap["user_column"]),
            ("domain_column", p["subscriber_domain_column"] or p["domain_column"],
             ap["domain_column"])]
    for name, mine, theirs in mine_vs_auth_db:
        if mine is not None and mine != theirs:
            rt.log.warning(f"uri_db: '{name}' is {mine!r} but auth_db's is {theirs!r}: the "
                           f"checks run through auth_db, with its value", "uri_db")


def _truth(rc):
    return 1 if rc > 0 else -1


def check_to(ctx):
    """The To user belongs to the authenticated user: in the uri table (use_uri_table), or
    is the digest user itself."""
    f = _state["funcs"]
    if _state["p"]["use_uri_table"]:
        return _truth(f["db_is_to_authorized"](ctx, _state["uri_table"]))
    return _truth(f["check_to"](ctx))


def check_from(ctx):
    f = _state["funcs"]
    if _state["p"]["use_uri_table"]:
        return _truth(f["db_is_from_authorized"](ctx, _state["uri_table"]))
    return _truth(f["check_from"](ctx))


class _Sink:
    """A write-only holder for the values a lookup gives back and nobody reads."""

    def set(self, ctx, value, *a):
        pass


def does_uri_exist(ctx):
    """The R-URI user is known: a `uri_user` of the uri table (use_uri_table), else a
    subscriber."""
    f = _state["funcs"]
    if _state["p"]["use_uri_table"]:
        return _truth(f["db_get_auth_id"](ctx, _state["uri_table"], ctx.ruri, _Sink(),
                                          _Sink()))
    return _truth(f["db_does_uri_exist"](ctx, None, _state["subscriber_table"]))


def get_auth_id(ctx, uri, user_var, realm_var):
    """1.6: the digest user and realm that the uri table gives for `uri`."""
    return _truth(_state["funcs"]["db_get_auth_id"](ctx, _state["uri_table"], uri, user_var,
                                                    realm_var))

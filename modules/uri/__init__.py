"""uri (OpenSIPS <= 2.4): the R-URI helpers old scripts load this module for. Its database
checks (does_uri_exist, check_to/check_from) moved to auth_db and come with it."""
from modules import sipmsgops as ops
from runtime.module import ALL, BRANCH, FAILURE, REQUEST, STR, Arg, Func, Module, Param
from runtime.pv import credentials, parse_uri

exports = Module(
    name="uri",
    # the database checks (does_uri_exist, check_to/check_from) come with auth_db, which
    # reads its own db_url; these are accepted so that old scripts load unchanged
    params=[Param("db_url", str, None), Param("use_uri_table", int, 0),
            Param("use_domain", int, 0), Param("db_table", str, "subscriber"),
            Param("user_column", str, "username"), Param("domain_column", str, "domain"),
            Param("uriuser_column", str, "uri_user"),
            # 1.x RADIUS checks
            Param("use_sip_uri_host", int, 0), Param("service_type", int, 10),
            Param("radius_config", str, None)],
    functions=[
        Func("has_totag", ops.has_totag, routes=ops.SIP_ROUTES),
        Func("uri_param", "uri_param", [Arg(STR), Arg(STR, optional=True)],
             REQUEST | FAILURE | BRANCH),
        Func("add_uri_param", "add_uri_param", [Arg(STR)], REQUEST | FAILURE | BRANCH),
        Func("del_uri_param", ops.ruri_del_param, [Arg(STR)], REQUEST | FAILURE | BRANCH),
        Func("is_user", "is_user", [Arg(STR)], REQUEST | FAILURE | BRANCH),
        Func("tel2sip", "tel2sip", routes=REQUEST | FAILURE | BRANCH),
        Func("is_uri_user_e164", ops.is_uri_user_e164, [Arg(STR)], ALL),
    ],
)


def uri_param(ctx, name, value=None):
    return ops.ruri_has_param(ctx, name, value)


def add_uri_param(ctx, param):
    return ops.ruri_add_param(ctx, param)


def is_user(ctx, user):
    creds = credentials(ctx)
    if not creds or not creds.get("username"):
        return -1
    return 1 if creds["username"].partition("@")[0] == user else -1


def tel2sip(ctx):
    u = parse_uri(ctx.ruri)
    if u is None or u.scheme.lower() != "tel":
        return 1
    try:
        host = parse_uri(ctx.msg.from_.uri).host
    except (ValueError, AttributeError):
        return -1
    ctx.new_ruri = f"sip:{u.user}@{host};user=phone"
    return 1

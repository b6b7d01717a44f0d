"""auth_db: digest authentication against the `subscriber` table, and the URI checks that
need the database (with the names the 1.x/2.x `uri`/`uri_db` modules gave them)."""
from runtime import db
from runtime.module import FAILURE, INT, LOCAL, REQUEST, STR, VAR, Arg, Func, Module, Param
from runtime.pv import credentials, parse_uri, set_avp
from runtime.sip.headers import SIPError

exports = Module(
    name="auth_db",
    params=[
        Param("db_url", str, None, check=db.check_url),
        Param("user_column", str, "username"), Param("domain_column", str, "domain"),
        Param("password_column", str, "ha1"), Param("password_column_2", str, "ha1b"),
        Param("hash_column_sha256", str, "ha1_sha256"),
        Param("hash_column_sha512t256", str, "ha1_sha512t256"),
        Param("uri_user_column", str, "username"), Param("uri_domain_column", str, "domain"),
        Param("uri_uriuser_column", str, "uri_user"),
        Param("calculate_ha1", int, 0), Param("use_domain", int, 0),
        Param("load_credentials", str, "rpid"), Param("skip_version_check", int, 0),
        Param("db_table", str, "subscriber"),
    ],
    functions=[
        Func("www_authorize", "www_authorize", [Arg(STR, name="realm"), Arg(STR, name="table")],
             REQUEST),
        Func("proxy_authorize", "proxy_authorize",
             [Arg(STR, name="realm"), Arg(STR, name="table")], REQUEST),
        Func("db_does_uri_exist", "db_does_uri_exist",
             [Arg(STR, optional=True, name="uri"), Arg(STR, optional=True, name="table")],
             REQUEST | FAILURE | LOCAL),
        Func("db_is_to_authorized", "db_is_to_authorized", [Arg(STR, name="table")], REQUEST),
        Func("db_is_from_authorized", "db_is_from_authorized", [Arg(STR, name="table")],
             REQUEST),
        Func("db_get_auth_id", "db_get_auth_id",
             [Arg(STR, name="table"), Arg(STR, name="uri"), Arg(VAR, name="user"),
              Arg(VAR, name="realm")], REQUEST | FAILURE | LOCAL),
        # Kamailio names (with Kamailio's return codes)
        Func("www_authenticate", "www_authenticate",
             [Arg(STR, name="realm"), Arg(STR, name="table"), Arg(STR, optional=True)], REQUEST),
        Func("proxy_authenticate", "proxy_authenticate",
             [Arg(STR, name="realm"), Arg(STR, name="table")], REQUEST),
        Func("auth_check", "auth_check",
             [Arg(STR, name="realm"), Arg(STR, name="table"), Arg(INT, name="flags")], REQUEST),
        Func("is_subscriber", "is_subscriber",
             [Arg(STR, name="uri"), Arg(STR, name="table"), Arg(INT, optional=True)],
             REQUEST | FAILURE | LOCAL),
        # the 1.x/2.x uri_db/uri module names
        Func("does_uri_exist", "does_uri_exist", routes=REQUEST | FAILURE | LOCAL),
        Func("check_to", "check_to", routes=REQUEST),
        Func("check_from", "check_from", routes=REQUEST),
        Func("db_check_to", "check_to", routes=REQUEST),
        Func("db_check_from", "check_from", routes=REQUEST),
    ],
    depends=("auth",),
    init="init",
    child_init="child_init",
)


_state: dict = {"db": None}


def _load_spec(text):
    """load_credentials: `$avp(name)=column;column2` -> [(avp name, column)]."""
    out = []
    for part in (text or "").split(";"):
        part = part.strip()
        if not part:
            continue
        avp, eq, column = part.partition("=")
        if not eq:
            out.append((part, part))
            continue
        avp = avp.strip()
        if not (avp.startswith("$avp(") and avp.endswith(")")):
            raise ValueError(f"auth_db: load_credentials: '{avp}' is not an AVP")
        out.append((avp[5:-1], column.strip()))
    return out


def init(rt):
    p = rt.modparams["auth_db"]
    url = db.module_url(rt, "auth_db")
    _state.update(rt=rt, params=p, url=url, load=_load_spec(p["load_credentials"]),
                  api=rt.apis["auth"])


def child_init(rt):
    _state["db"] = db.connect(_state["url"])


def _query(table, where, columns):
    """Rows or None on a database error (logged)."""
    from runtime.db import DBError
    try:
        return _state["db"].query(table, where, columns)
    except DBError as e:
        _state["rt"].log.error(f"query on table '{table}' failed: {e}", "auth_db")
        return None


# --- authorization -------------------------------------------------------------------------

def _column_for(alg, username):
    p = _state["params"]
    if p["calculate_ha1"]:
        return p["password_column"]
    if alg == "SHA-256":
        return p["hash_column_sha256"]
    if alg == "SHA-512-256":
        return p["hash_column_sha512t256"]
    return p["password_column_2"] if "@" in username else p["password_column"]


def _authorize(ctx, realm, table, hftype):
    p = _state["params"]
    api = _state["api"]
    found = {}

    def get_ha1(ctx, username, realm, alg):
        column = _column_for(alg, username)
        where = {p["user_column"]: username.partition("@")[0]}
        if p["use_domain"]:
            where[p["domain_column"]] = realm
        rows = _query(table, where, [column, *dict.fromkeys(c for _, c in _state["load"])])
        if rows is None:
            return -5, None
        if not rows:
            return -1, None
        row = rows[0]
        secret = row.get(column)
        if not secret:
            return -2, None
        found["row"] = row
        if p["calculate_ha1"]:
            return 1, api.ha1(alg, username, realm, str(secret))
        return 1, str(secret)

    rc = api.authorize(ctx, realm, hftype, get_ha1)
    if rc == 1:
        _load_credentials(ctx, found["row"])
    return rc


def _load_credentials(ctx, row):
    for avp, column in _state["load"]:
        value = row.get(column)
        if value is not None:
            set_avp(ctx.avps, avp, value)


def www_authorize(ctx, realm, table):
    return _authorize(ctx, realm, table, "www")


def proxy_authorize(ctx, realm, table):
    return _authorize(ctx, realm, table, "proxy")


# --- Kamailio names ------------------------------------------------------------------------

_KAMAILIO_RC = {-1: -3, -2: -2, -3: -4, -4: -5, -5: -1}


def _kamailio(rc):
    return _KAMAILIO_RC.get(rc, rc)


def www_authenticate(ctx, realm, table, method=None):
    return _kamailio(_authorize(ctx, realm, table, "www"))


def proxy_authenticate(ctx, realm, table):
    return _kamailio(_authorize(ctx, realm, table, "proxy"))


def auth_check(ctx, realm, table, flags):
    """www for REGISTER, proxy otherwise; flags & 1: the auth user must be the To (REGISTER)
    or From user (-8 otherwise)."""
    hftype = "www" if ctx.msg.method == "REGISTER" else "proxy"
    rc = _kamailio(_authorize(ctx, realm, table, hftype))
    if rc == 1 and flags & 1:
        cred = credentials(ctx)
        user = _uri_user(ctx, "to" if hftype == "www" else "from")
        if not cred or user != cred.get("username", "").partition("@")[0]:
            return -8
    return rc


def is_subscriber(ctx, uri, table, flags=None):
    """Kamailio: 1 if `uri` is a subscriber (flags 1: match the domain too, 2: load the
    load_credentials columns)."""
    p = _state["params"]
    u = parse_uri(uri) if uri else None
    if u is None or not u.user:
        return -1
    where = {p["user_column"]: u.user}
    if (flags or 0) & 1:
        where[p["domain_column"]] = u.host
    cols = [p["user_column"], *dict.fromkeys(c for _, c in _state["load"])]
    rows = _query(table, where, cols)
    if not rows:
        return -1
    if (flags or 0) & 2:
        _load_credentials(ctx, rows[0])
    return 1


# --- URI checks ----------------------------------------------------------------------------

def db_does_uri_exist(ctx, uri=None, table=None):
    """Is the user of `uri` (the R-URI) a subscriber? 1, or -5 when not found, -1 on a bad
    URI."""
    p = _state["params"]
    uri = ctx.ruri if uri is None else uri
    table = table or p["db_table"]
    u = parse_uri(uri) if uri else None
    if u is None or not u.user:
        return -1
    where = {p["user_column"]: u.user}
    if p["use_domain"]:
        where[p["domain_column"]] = u.host
    rows = _query(table, where, [p["user_column"]])
    if rows is None:
        return -4
    return 1 if rows else -5


def does_uri_exist(ctx):
    """1.x/2.x: is the R-URI's user a subscriber (modparam db_table)?"""
    return db_does_uri_exist(ctx)


def _authorized_cred(ctx):
    """The credentials www/proxy_authorize accepted (None if none)."""
    if ctx.local_data.get("auth_cred") is None:
        _state["rt"].log.error("no authorized credentials: call www_authorize or "
                               "proxy_authorize first", "auth_db")
        return None
    return credentials(ctx)


def _uri_user(ctx, which):
    try:
        u = parse_uri(ctx.msg.to.uri if which == "to" else ctx.msg.from_.uri)
    except SIPError:
        return None
    return u.user if u is not None else None


def _in_uri_table(ctx, table, which):
    """The uri table lists which To/From users each digest user may use: 1, or -9 when
    the pair is not there (spoofed), -2 without credentials, -4 without a user."""
    p = _state["params"]
    cred = _authorized_cred(ctx)
    if cred is None:
        return -2
    user = _uri_user(ctx, which)
    if not user:
        return -4
    rows = _query(table, {p["uri_user_column"]: cred["username"].partition("@")[0],
                          p["uri_domain_column"]: cred.get("realm", ""),
                          p["uri_uriuser_column"]: user}, [p["uri_user_column"]])
    if rows is None:
        return -8
    return 1 if rows else -9


def db_is_to_authorized(ctx, table):
    return _in_uri_table(ctx, table, "to")


def db_is_from_authorized(ctx, table):
    return _in_uri_table(ctx, table, "from")


def _same_user(ctx, which):
    """1.x/2.x check_to/check_from (no uri table): the digest user is the To/From user."""
    cred = _authorized_cred(ctx)
    if cred is None:
        return -2
    user = _uri_user(ctx, which)
    return 1 if user and user == cred["username"].partition("@")[0] else -1


def check_to(ctx):
    return _same_user(ctx, "to")


def check_from(ctx):
    return _same_user(ctx, "from")


def db_get_auth_id(ctx, table, uri, user_var, realm_var):
    """The digest user and realm the uri table gives for `uri`."""
    p = _state["params"]
    u = parse_uri(uri) if uri else None
    if u is None or not u.user:
        return -1
    where = {p["uri_uriuser_column"]: u.user}
    if p["use_domain"]:
        where[p["uri_domain_column"]] = u.host
    rows = _query(table, where, [p["uri_user_column"], p["uri_domain_column"]])
    if rows is None:
        return -8
    if not rows:
        return -4
    user_var.set(ctx, str(rows[0][p["uri_user_column"]]))
    realm_var.set(ctx, str(rows[0][p["uri_domain_column"]]))
    return 1

"""auth: digest challenges and the checks every authentication module shares.

www_challenge/proxy_challenge answer 401/407 with a fresh nonce; auth_db (and
pv_www_authorize/pv_proxy_authorize here) verify the credentials through `api.authorize`,
which returns OpenSIPS's codes: 1 authorized, -1 unknown user, -2 wrong password,
-3 stale nonce, -4 no credentials, -5 error (0: a 400 was sent for malformed credentials).
"""
import hmac
import re

from runtime.forward import send_local_reply
from runtime.module import BRANCH, FAILURE, INT, REQUEST, STR, Arg, Func, Module, Param
from runtime.pv import PVS, PVError, bind, parse_pv_text, parse_uri
from runtime.sip.auth import parse_digest
from runtime.sip.headers import SIPError

from . import digest


def _fix_qop(value, rt):
    """'auth', 'auth-int', 'auth,auth-int'; 1.x/2.x '1' (auth) and '0'/'' (none)."""
    text = str(value or "").strip()
    if text in ("", "0"):
        return None
    if text == "1":
        return "auth"
    kinds = {p.strip() for p in text.split(",")}
    if not kinds <= {"auth", "auth-int"}:
        raise ValueError(f"bad qop '{text}' (auth, auth-int)")
    return ",".join(k for k in ("auth", "auth-int") if k in kinds)


def _fix_algorithms(value, rt):
    out = []
    for name in str(value or "").split(","):
        if not name.strip():
            continue
        alg = digest.algorithm(name)
        if alg is None:
            raise ValueError(f"unsupported algorithm '{name.strip()}' "
                             f"({', '.join(digest.ALGORITHMS)})")
        out.append(alg)
    return tuple(out)


exports = Module(
    name="auth",
    params=[
        Param("secret", str, None), Param("nonce_expire", int, 30),
        Param("rpid_prefix", str, ""),
        Param("rpid_suffix", str, ";party=calling;id-type=subscriber;screen=yes"),
        Param("realm_prefix", str, ""), Param("rpid_avp", str, "$avp(rpid)"),
        Param("username_spec", str, None), Param("password_spec", str, None),
        Param("calculate_ha1", int, 0), Param("disable_nonce_check", int, 0),
    ],
    functions=[
        Func("www_challenge", "www_challenge",
             [Arg(STR, name="realm"), Arg(STR, optional=True, fixup=_fix_qop, name="qop"),
              Arg(STR, optional=True, fixup=_fix_algorithms, name="algorithms")], REQUEST),
        Func("proxy_challenge", "proxy_challenge",
             [Arg(STR, name="realm"), Arg(STR, optional=True, fixup=_fix_qop, name="qop"),
              Arg(STR, optional=True, fixup=_fix_algorithms, name="algorithms")], REQUEST),
        Func("consume_credentials", "consume_credentials", routes=REQUEST | FAILURE),
        Func("pv_www_authorize", "pv_www_authorize", [Arg(STR, name="realm")], REQUEST),
        Func("pv_proxy_authorize", "pv_proxy_authorize", [Arg(STR, name="realm")], REQUEST),
        Func("is_rpid_user_e164", "is_rpid_user_e164", routes=REQUEST),
        # Kamailio names
        Func("auth_challenge", "auth_challenge",
             [Arg(STR, name="realm"), Arg(INT, optional=True, name="flags")], REQUEST),
        Func("has_credentials", "has_credentials", [Arg(STR, name="realm")], REQUEST),
        Func("append_rpid_hf", "append_rpid_hf",
             [Arg(STR, optional=True, name="prefix"), Arg(STR, optional=True, name="suffix")],
             REQUEST | FAILURE | BRANCH),
    ],
    init="init",
)

_state: dict = {}


def _pv(spec):
    """A PV named by a modparam (None when unset)."""
    if not spec or spec.upper() == "NULL":
        return None
    try:
        return bind(parse_pv_text(spec), PVS)
    except PVError as e:
        raise ValueError(f"auth: bad pseudo-variable '{spec}': {e}") from None


def init(rt):
    p = rt.modparams["auth"]
    _state.update(
        rt=rt, params=p,
        nonces=digest.Nonces(p["secret"], p["nonce_expire"], not p["disable_nonce_check"]),
        username=_pv(p["username_spec"]), password=_pv(p["password_spec"]),
        rpid=_pv(p["rpid_avp"]))


# --- what auth_db & co use -----------------------------------------------------------------

def default_realm(ctx, hftype):
    """The realm "" stands for: the To domain of a REGISTER (www), else the From domain,
    without realm_prefix."""
    msg = ctx.msg
    try:
        uri = msg.to.uri if hftype == "www" and msg.method == "REGISTER" else msg.from_.uri
    except SIPError:
        return None
    u = parse_uri(uri)
    if u is None or not u.host:
        return None
    host = u.host
    prefix = _state["params"]["realm_prefix"]
    if prefix and host.startswith(prefix) and len(host) > len(prefix):
        host = host[len(prefix):]
    return host


def send_reply(ctx, code, reason, headers=()) -> bool:
    """Reply statefully when the request has a transaction, else statelessly (signaling)."""
    tm = ctx.rt.apis.get("tm")
    if tm is not None and ctx.tx is not None:
        extra = ctx.local_data.setdefault("reply_headers", [])
        extra.extend(headers)
        try:
            return tm.t_reply(ctx, code, reason) > 0
        finally:
            del extra[len(extra) - len(headers):]
    return send_local_reply(ctx, code, reason, headers=list(headers))


def authorize(ctx, realm, hftype, get_ha1) -> int:
    """Check the request's credentials for `realm` ('' = from the request).

    `hftype` is 'www' (Authorization) or 'proxy' (Proxy-Authorization);
    `get_ha1(ctx, username, realm, algorithm)` -> (1, ha1) or (negative code, None), the HA1
    being of `algorithm` (MD5, SHA-256 or SHA-512-256)."""
    realm = realm or default_realm(ctx, hftype)
    if realm is None:
        return -5
    found = _credentials(ctx, hftype, realm)
    if found is None:
        return -4
    hdr, cred = found
    qop = cred.get("qop")
    if not all(cred.get(k) for k in ("username", "nonce", "response")) or "uri" not in cred \
            or (qop and not (cred.get("nc") and cred.get("cnonce"))):
        send_reply(ctx, 400, "Bad Credentials")
        return 0
    alg = digest.algorithm(cred.get("algorithm"))
    if alg is None or qop not in (None, "auth", "auth-int"):
        ctx.rt.log.warning(f"unsupported digest algorithm/qop '{cred.get('algorithm')}'/"
                           f"'{qop}' from {cred['username']}", "auth")
        return -5
    nonces = _state["nonces"]
    if nonces.check(cred["nonce"]) != "ok":
        ctx.local_data[f"auth_stale_{hftype}"] = True
        return -3
    rc, ha1 = get_ha1(ctx, cred["username"], realm, digest.base(alg))
    if rc < 0:
        return rc
    expected = digest.response(alg, ha1.lower(), cred["nonce"], ctx.msg.method, cred["uri"],
                               qop=qop, nc=cred.get("nc"), cnonce=cred.get("cnonce"),
                               body=ctx.msg.body or b"")
    if not hmac.compare_digest(expected, cred["response"].lower()):
        return -2
    if not nonces.consume(cred["nonce"], cred.get("nc") if qop else None):
        ctx.rt.log.notice(f"replayed nonce from {cred['username']}@{realm}", "auth")
        ctx.local_data[f"auth_stale_{hftype}"] = True
        return -3
    ctx.local_data["auth_cred"] = hdr
    return 1


def _credentials(ctx, hftype, realm):
    key = "authorization" if hftype == "www" else "proxy-authorization"
    for hdr in ctx.msg.get_headers(key):
        cred = parse_digest(hdr.value)
        if cred is not None and cred.get("realm") == realm:
            return hdr, cred
    return None


class Api:
    """For auth_db and other backends (OpenSIPS bind_auth)."""
    authorize = staticmethod(authorize)
    default_realm = staticmethod(default_realm)
    send_reply = staticmethod(send_reply)
    ha1 = staticmethod(digest.ha1)


exports.api = Api()


# --- script functions ----------------------------------------------------------------------

def _challenge(ctx, hftype, realm, qop, algorithms, code, reason, name):
    realm = realm or default_realm(ctx, hftype)
    if realm is None:
        return 0 if send_reply(ctx, 400, "Bad Request") else -1
    stale = ctx.local_data.get(f"auth_stale_{hftype}")
    headers = []
    for alg in algorithms or (None,):
        parts = [f'Digest realm="{realm}"', f'nonce="{_state["nonces"].new()}"']
        if qop:
            parts.append(f'qop="{qop}"')
        if stale:
            parts.append("stale=true")
        if alg:
            parts.append(f"algorithm={alg}")
        headers.append(f"{name}: {', '.join(parts)}")
    if not send_reply(ctx, code, reason, headers):
        return -1
    return 0  # as OpenSIPS: the challenge ends the script


def www_challenge(ctx, realm, qop=None, algorithms=None):
    return _challenge(ctx, "www", realm, qop, algorithms, 401, "Unauthorized",
                      "WWW-Authenticate")


def proxy_challenge(ctx, realm, qop=None, algorithms=None):
    return _challenge(ctx, "proxy", realm, qop, algorithms, 407,
                      "Proxy Authentication Required", "Proxy-Authenticate")


def auth_challenge(ctx, realm, flags=None):
    """Kamailio: 401 for a REGISTER, 407 otherwise; flags 1 qop=auth, 2 qop=auth-int."""
    qop = ",".join(q for bit, q in ((1, "auth"), (2, "auth-int")) if (flags or 0) & bit)
    if ctx.msg.method == "REGISTER":
        return www_challenge(ctx, realm, qop or None)
    return proxy_challenge(ctx, realm, qop or None)


def has_credentials(ctx, realm):
    """Kamailio: does the request carry credentials for `realm`?"""
    for hftype in ("www", "proxy"):
        if _credentials(ctx, hftype, realm or default_realm(ctx, hftype)) is not None:
            return 1
    return -1


def consume_credentials(ctx):
    """Remove the credentials that authorized the request before it is relayed."""
    hdr = ctx.local_data.get("auth_cred")
    if hdr is None:
        if ctx.msg.method not in ("ACK", "CANCEL"):
            ctx.rt.log.error("consume_credentials(): no authorized credentials (call "
                             "www_authorize/proxy_authorize first)", "auth")
        return -1
    ctx.get_edits().remove_header(hdr)
    return 1


def _pv_authorize(ctx, realm, hftype):
    user_pv, pass_pv = _state["username"], _state["password"]
    if user_pv is None or pass_pv is None:
        ctx.rt.log.error("pv_*_authorize needs modparams username_spec and password_spec",
                         "auth")
        return -5

    def get_ha1(ctx, username, realm, alg):
        user = user_pv.get(ctx)
        password = pass_pv.get(ctx)
        if user is None or str(user) != username.partition("@")[0] or password in (None, ""):
            return -1, None
        if _state["params"]["calculate_ha1"]:
            return 1, digest.ha1(alg, username, realm, str(password))
        return 1, str(password)
    return authorize(ctx, realm, hftype, get_ha1)


def pv_www_authorize(ctx, realm):
    return _pv_authorize(ctx, realm, "www")


def pv_proxy_authorize(ctx, realm):
    return _pv_authorize(ctx, realm, "proxy")


def _rpid(ctx):
    pv = _state["rpid"]
    v = pv.get(ctx) if pv is not None else None
    return None if v is None else str(v)


def is_rpid_user_e164(ctx):
    rpid = _rpid(ctx)
    if not rpid:
        return -1
    m = re.search(r"<([^>]*)>", rpid)
    u = parse_uri(m.group(1) if m else rpid)
    user = u.user if u is not None else rpid
    return 1 if user and re.fullmatch(r"\+\d{1,15}", user) else -1


def append_rpid_hf(ctx, prefix=None, suffix=None):
    rpid = _rpid(ctx)
    if not rpid:
        return -1
    p = _state["params"]
    if prefix is None and suffix is None:
        prefix, suffix = p["rpid_prefix"], p["rpid_suffix"]
    ctx.get_edits().add_header(f"Remote-Party-ID: {prefix or ''}{rpid}{suffix or ''}")
    return 1

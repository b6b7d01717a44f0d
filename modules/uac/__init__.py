"""uac: From/To replacement (restored in replies and, through a Record-Route parameter, in
the sequential requests of the dialog) and uac_auth (answering a downstream 401/407)."""
import base64
import re

from modules.auth import digest  # the digest arithmetic only (uac does not need auth loaded)
from modules.uac_auth import UacAuth  # the credential store, when uac_auth is not loaded
from runtime.module import BRANCH, FAILURE, REQUEST, STR, Arg, Func, Module, Param
from runtime.pv import PVS, PVError, bind, parse_pv_text
from runtime.sip.headers import NameAddr, SIPError


def _fix_algorithms(value, rt):
    algs = set()
    for name in str(value or "").split(","):
        if name.strip():
            alg = digest.algorithm(name)
            if alg is None:
                raise ValueError(f"unsupported algorithm '{name.strip()}'")
            algs.add(alg)
    return frozenset(algs)

exports = Module(
    name="uac",
    params=[
        Param("restore_mode", str, "auto",
              check=lambda v: None if v in ("none", "manual", "auto") else
              "must be none, manual or auto"),
        Param("restore_passwd", str, ""), Param("rr_from_store_param", str, "vsf"),
        Param("rr_to_store_param", str, "vst"), Param("force_dialog", int, 0),
        Param("credential", str, multi=True), Param("auth_realm_avp", str, None),
        # 1.x names
        Param("from_restore_mode", (int, str), None), Param("from_passwd", str, None),
        Param("rr_store_param", str, None),
        Param("auth_username_avp", str, None), Param("auth_password_avp", str, None),
    ],
    functions=[
        Func("uac_replace_from", "uac_replace_from",
             [Arg(STR, optional=True, name="display"), Arg(STR, optional=True, name="uri")],
             REQUEST | BRANCH | FAILURE),
        Func("uac_replace_to", "uac_replace_to",
             [Arg(STR, optional=True, name="display"), Arg(STR, optional=True, name="uri")],
             REQUEST | BRANCH | FAILURE),
        Func("uac_restore_from", "uac_restore_from", routes=REQUEST),
        Func("uac_restore_to", "uac_restore_to", routes=REQUEST),
        Func("uac_auth", "uac_auth",
             [Arg(STR, optional=True, fixup=_fix_algorithms, name="algorithms")], FAILURE),
    ],
    depends=("tm",),
    init="init",
    child_init="child_init",
)

_state: dict = {}
_WHICH = {"from": "rr_from_store_param", "to": "rr_to_store_param"}


def _pv(spec):
    if not spec:
        return None
    try:
        return bind(parse_pv_text(spec), PVS)
    except PVError as e:
        raise ValueError(f"uac: bad pseudo-variable '{spec}': {e}") from None


_OLD_MODES = {0: "none", 1: "manual", 2: "auto", "0": "none", "1": "manual", "2": "auto"}


def init(rt):
    p = rt.modparams["uac"]
    if p["from_restore_mode"] is not None:
        p["restore_mode"] = _OLD_MODES.get(p["from_restore_mode"], p["from_restore_mode"])
    if p["from_passwd"] is not None:
        p["restore_passwd"] = p["from_passwd"]
    if p["rr_store_param"] is not None:
        p["rr_from_store_param"] = p["rr_store_param"]
    # the credentials live in uac_auth (3.x); 1.x/2.x scripts give them to uac itself
    creds = rt.apis.get("uac_auth")
    if creds is None:
        creds = UacAuth()
    creds.attach(rt)
    avps = tuple(_pv(p[k]) for k in ("auth_realm_avp", "auth_username_avp",
                                      "auth_password_avp"))
    if avps[1] is not None and avps[2] is not None:
        creds.realm_pv, creds.user_pv, creds.pass_pv = avps
    for text in p["credential"]:
        try:
            creds.add(text)
        except ValueError as e:
            raise ValueError(f"uac: {e}") from None
    _state.update(rt=rt, params=p, creds=creds, key=(p["restore_passwd"] or "").encode())
    rt.outgoing_hooks.append(_auth_header)


def child_init(rt):
    if _state["params"]["restore_mode"] != "auto" or "rr" not in rt.modules:
        return
    previous = rt.server.request_hook

    def hook(ctx):
        _auto_restore(ctx)
        return previous(ctx) if previous is not None else False
    rt.server.request_hook = hook


# --- the stored original -------------------------------------------------------------------

def _xor(a: bytes, b: bytes, key: bytes) -> bytes:
    n = max(len(a), len(b))
    a, b = a.ljust(n, b"\0"), b.ljust(n, b"\0")
    k = (key or b"\0") * (n // max(len(key), 1) + 1)
    return bytes(x ^ y ^ z for x, y, z in zip(a, b, k))


def _encode(old: str, new: str) -> str:
    """What the RR parameter carries: old XOR new, so either one gives the other back."""
    raw = _xor(old.encode(), new.encode(), _state["key"])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(value: str, current: str) -> str | None:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except ValueError:
        return None
    other = _xor(raw, current.encode(), _state["key"]).rstrip(b"\0")
    try:
        return other.decode()
    except UnicodeDecodeError:
        return None


def _set_header(edits, msg, which, uri, display=None, keep_display=True):
    """Give the From/To header of `msg` (through `edits`) another URI (and display)."""
    hdr = msg.get_header(which)
    old = msg.from_ if which == "from" else msg.to
    na = NameAddr(uri, old.display if keep_display else display, old.params,
                  quoted=old.quoted if keep_display else None)
    edits.replace_header(hdr, f"{hdr.name}: {na}")


# --- replacing -----------------------------------------------------------------------------

def _replace(ctx, which, display, uri):
    if uri is None:          # one argument: the URI
        display, uri = None, display
        keep = True
    else:
        keep = display is None
    if not uri:
        return -1
    try:
        old = (ctx.msg.from_ if which == "from" else ctx.msg.to).uri
    except SIPError:
        return -1
    shown = None if keep else (display or None)
    _set_header(ctx.get_edits(), ctx.msg, which, uri, shown, keep)
    mode = _state["params"]["restore_mode"]
    if mode == "none":
        return 1
    rr = ctx.rt.modules.get("rr")
    if rr is not None and not _has_totag(ctx):
        rr.functions_by_name["add_rr_param"].impl(
            ctx, f";{_state['params'][_WHICH[which]]}={_encode(old, uri)}")
    if mode == "auto":
        _on_replies(ctx, which, old)
    return 1


def _on_replies(ctx, which, original):
    """The replies going back upstream carry the original From/To again."""
    def cb(tx, branch, reply):
        _set_header(branch.edits_for_reply(reply), reply, which, original)
    if ctx.tx is not None:
        ctx.tx.callbacks.append(cb)
    else:
        ctx.local_data.setdefault("tm_callbacks", []).append(cb)


def _has_totag(ctx):
    try:
        return bool(ctx.msg.to.tag)
    except SIPError:
        return False


def uac_replace_from(ctx, display=None, uri=None):
    return _replace(ctx, "from", display, uri)


def uac_replace_to(ctx, display=None, uri=None):
    return _replace(ctx, "to", display, uri)


# --- restoring in sequential requests ------------------------------------------------------

def _route_param(ctx, name):
    """The value of `name` in our topmost Route entry (None if none)."""
    try:
        routes = ctx.msg.routes
    except SIPError:
        return None
    for r in routes[:2]:
        try:
            u = r.parsed_uri
        except SIPError:
            return None
        if ctx.rt.is_myself(u.host, u.port or 0):
            v = u.param(name)
            if v:
                return v
    return None


def _restore(ctx, which):
    """In a sequential request, swap the replaced From (which='from') or To URI back: the
    header holding it is From/To going downstream and To/From going upstream (ftag)."""
    value = _route_param(ctx, _state["params"][_WHICH[which]])
    if value is None:
        return -1
    try:
        ftag = _route_param(ctx, "ftag")
        upstream = ftag is not None and ctx.msg.from_.tag != ftag
        header = {"from": "to", "to": "from"}[which] if upstream else which
        current = (ctx.msg.from_ if header == "from" else ctx.msg.to).uri
    except SIPError:
        return -1
    other = _decode(value, current)
    if not other or not re.match(r"^[a-zA-Z][\w+.-]*:", other):
        return -1
    _set_header(ctx.get_edits(), ctx.msg, header, other)
    _on_replies(ctx, header, current)
    return 1


def _auto_restore(ctx):
    if ctx.msg.is_request and _has_totag(ctx):
        for which in ("from", "to"):
            _restore(ctx, which)


def uac_restore_from(ctx):
    return _restore(ctx, "from")


def uac_restore_to(ctx):
    return _restore(ctx, "to")


# --- uac_auth ------------------------------------------------------------------------------

def _auth_header(ctx, sock):
    """rt.outgoing_hooks: the credentials uac_auth() built, on the branches sent after it."""
    pending = ctx.local_data.get("uac_auth")
    if pending is None or ctx.tx is None or len(ctx.tx.branches) < pending[0]:
        return []
    return [(("end", None), pending[1])]


def uac_auth(ctx, algorithms=None):
    """Answer the 401/407 that ended the transaction: the request t_relay sends again from
    this failure route carries Authorization/Proxy-Authorization for the challenge (the
    credentials: uac_auth's, see modules/uac_auth)."""
    reply = ctx.reply
    if reply is None or ctx.tx is None or reply.status not in (401, 407):
        return -1
    line = _state["creds"].authorize(reply, ctx.msg.method, ctx.ruri, ctx, algorithms)
    if line is None:
        ctx.rt.log.notice(f"uac_auth(): no credentials for the challenge of {reply.status}",
                          "uac")
        return -1
    # for the branches this failure route sends (not the earlier ones, not the next
    # failure route's): added as each leaves, by _auth_header
    ctx.local_data["uac_auth"] = (len(ctx.tx.branches), line)
    return 1

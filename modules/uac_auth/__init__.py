"""uac_auth: the credentials the proxy authenticates itself with (to gateways and
registrars), and the digest answer to a 401/407 challenge, for the modules that act as a
client: uac's `uac_auth()` and uac_registrant.

    modparam("uac_auth", "credential", "user:realm:password")      (several)
    modparam("uac_auth", "auth_realm_avp", "$avp(realm)")         per-call credentials
    modparam("uac_auth", "auth_username_avp", "$avp(user)")
    modparam("uac_auth", "auth_password_avp", "$avp(pass)")

No script functions: other modules use `rt.apis["uac_auth"]` (a `UacAuth`):

    api.credential(ctx, realm) -> (user, password) | None
    api.authorize(reply, method, uri, ctx=None, algorithms=None, credential=None)
        -> "Authorization: Digest ..." / "Proxy-Authorization: Digest ..." | None
"""
import os

from modules.auth import digest          # the digest arithmetic only
from runtime.module import Module, Param
from runtime.pv import PVS, PVError, bind, parse_pv_text
from runtime.sip.auth import parse_digest

exports = Module(
    name="uac_auth",
    params=[
        Param("credential", str, multi=True, check=lambda v: _check_credential(v)),
        Param("auth_realm_avp", str, None),
        Param("auth_username_avp", str, None), Param("auth_password_avp", str, None),
    ],
    init="init",
)


def parse_credential(text):
    """`user:realm:password` -> (user, realm, password); the password may hold ':'."""
    parts = str(text).split(":", 2)
    if len(parts) != 3 or not parts[0]:
        raise ValueError(f"bad credential '{text}' (user:realm:password)")
    return tuple(parts)


def _check_credential(text):
    try:
        parse_credential(text)
    except ValueError as e:
        return str(e)
    return None


def bind_pv(spec, who="uac_auth"):
    if not spec:
        return None
    try:
        return bind(parse_pv_text(spec), PVS)
    except PVError as e:
        raise ValueError(f"{who}: bad pseudo-variable '{spec}': {e}") from None


class UacAuth:
    """Credentials (static and per call) and the digest answer to a challenge."""

    def __init__(self, creds=(), realm_pv=None, user_pv=None, pass_pv=None):
        self.creds = list(creds)
        self.realm_pv, self.user_pv, self.pass_pv = realm_pv, user_pv, pass_pv
        self.rt = None

    def attach(self, rt):
        """Start afresh for a newly loaded script (the api object outlives a runtime)."""
        if self.rt is not rt:
            self.rt = rt
            self.creds = []
            self.realm_pv = self.user_pv = self.pass_pv = None

    def add(self, text):
        self.creds.append(parse_credential(text))

    def credential(self, ctx, realm):
        """The per-call AVP credential when its realm matches (or no realm AVP), else the
        first static credential of that realm."""
        if ctx is not None and self.user_pv is not None and self.pass_pv is not None:
            user, password = self.user_pv.get(ctx), self.pass_pv.get(ctx)
            r = self.realm_pv.get(ctx) if self.realm_pv is not None else realm
            if user is not None and password is not None and str(r) == realm:
                return str(user), str(password)
        for user, r, password in self.creds:
            if r == realm:
                return user, password
        return None

    def authorize(self, reply, method, uri, ctx=None, algorithms=None, credential=None,
                  nc=1, cnonce=None):
        """The credentials header line answering the first usable challenge of a 401/407
        (`credential` (user, password) instead of looking one up), or None."""
        www = reply.status == 401
        for value in reply.get_all("www-authenticate" if www else "proxy-authenticate"):
            challenge = parse_digest(value)
            if not challenge or not challenge.get("nonce"):
                continue
            alg = digest.algorithm(challenge.get("algorithm"))
            if alg is None or (algorithms and alg not in algorithms):
                continue
            realm = challenge.get("realm", "")
            cred = credential or self.credential(ctx, realm)
            if cred is None:
                continue
            line = answer(challenge, alg, cred[0], cred[1], method, uri, nc=nc,
                          cnonce=cnonce)
            return f"{'Authorization' if www else 'Proxy-Authorization'}: {line}"
        return None


def answer(challenge, alg, user, password, method, uri, nc=1, cnonce=None):
    """`Digest username=..., response=...` for one parsed challenge (RFC 2617 / 7616)."""
    realm = challenge.get("realm", "")
    offered = [q.strip() for q in challenge.get("qop", "").split(",") if q.strip()]
    qop = "auth" if "auth" in offered else None
    ncs = f"{nc:08x}"
    cnonce = cnonce or os.urandom(8).hex()
    resp = digest.response(alg, digest.ha1(digest.base(alg), user, realm, password),
                           challenge["nonce"], method, uri, qop=qop, nc=ncs, cnonce=cnonce)
    parts = [f'username="{user}"', f'realm="{realm}"', f'nonce="{challenge["nonce"]}"',
             f'uri="{uri}"', f'response="{resp}"', f"algorithm={alg}"]
    if challenge.get("opaque") is not None:
        parts.append(f'opaque="{challenge["opaque"]}"')
    if qop:
        parts += [f"qop={qop}", f"nc={ncs}", f'cnonce="{cnonce}"']
    return "Digest " + ", ".join(parts)


api = UacAuth()
exports.api = api


def init(rt):
    p = rt.modparams["uac_auth"]
    api.attach(rt)          # uac (loaded first) may have added its 1.x/2.x credentials
    api.creds[:0] = [parse_credential(t) for t in p["credential"]]
    pvs = tuple(bind_pv(p[k]) for k in ("auth_realm_avp", "auth_username_avp",
                                        "auth_password_avp"))
    if pvs[1] is not None and pvs[2] is not None:
        api.realm_pv, api.user_pv, api.pass_pv = pvs

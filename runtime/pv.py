"""Pseudo-variables: the registry (core PVs here, modules add theirs) and PV binding.

A PV in the script is bound once at load (`bind()`): its name resolved, its subname fixed
up, index and transformations prepared; the result has `get(ctx)` and, when writable,
`set(ctx, value, op)`.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Optional

from cfgscript import ast as A
from cfgscript.pvspec import PVSyntaxError, parse_format, parse_pv

from . import transforms as T
from .sip.uri import URI
from .values import StrInt, to_str

# --- the registry --------------------------------------------------------------------------


@dataclass
class PVDef:
    """`get(ctx, sub)` -> value; `set(ctx, sub, value, op)`; `all(ctx, sub)` -> list (indexable);
    `sub`: 'no', 'opt' or 'req'; `fixup(text)` turns a constant subname into what get/set take."""
    name: str
    get: Callable
    set: Optional[Callable] = None
    sub: str = "no"
    fixup: Optional[Callable] = None
    all: Optional[Callable] = None


PVS: dict[str, PVDef] = {}


def pv(name, sub="no", fixup=None, aliases=()):
    """Decorator registering a getter; `.setter`/`.lister` attach the rest."""
    def deco(fn):
        d = PVDef(name, fn, sub=sub, fixup=fixup)
        for n in (name, *aliases):
            PVS[n] = d
        return _Registered(d)
    return deco


class _Registered:
    def __init__(self, d):
        self.d = d

    def setter(self, fn):
        self.d.set = fn
        return self

    def lister(self, fn):
        self.d.all = fn
        return self


class PVError(ValueError):
    pass


# --- binding -------------------------------------------------------------------------------

class BoundPV:
    """A script PV resolved at load time."""
    __slots__ = ("ast", "d", "sub", "dyn_sub", "index", "dyn_index", "transforms", "get",
                 "text", "defs")

    def __init__(self, ast_pv: A.PV, defs: dict):
        self.ast = ast_pv
        self.text = ast_pv.text or f"${ast_pv.name}"
        self.defs = defs
        d = defs.get(ast_pv.name)
        if d is None:
            raise PVError(f"unknown pseudo-variable '${ast_pv.name}'")
        self.d = d
        sub = ast_pv.sub
        self.dyn_sub = None
        self.sub = None
        if sub is not None and d.sub == "no":
            raise PVError(f"'${ast_pv.name}' takes no name in parentheses")
        if sub is None and d.sub == "req":
            raise PVError(f"'${ast_pv.name}' needs a name: ${ast_pv.name}(...)")
        if isinstance(sub, A.PV):
            self.dyn_sub = BoundPV(sub, defs)
        elif sub is not None:
            self.sub = d.fixup(sub) if d.fixup else sub
        idx = ast_pv.index
        self.dyn_index = None
        self.index = None
        if isinstance(idx, A.PV):
            self.dyn_index = BoundPV(idx, defs)
        else:
            self.index = idx
        if (idx is not None) and d.all is None and ast_pv.name not in ("avp", "var"):
            raise PVError(f"'${ast_pv.name}' cannot be indexed")
        self.transforms = tuple(_bind_transform(t, defs) for t in ast_pv.transforms)
        self.get = self._make_getter()

    def _sub(self, ctx):
        if self.dyn_sub is None:
            return self.sub
        v = self.dyn_sub.get(ctx)
        s = to_str(v)
        return self.d.fixup(s) if self.d.fixup else s

    def _make_getter(self):
        d, trs = self.d, self.transforms
        if self.index is None and self.dyn_index is None:
            if self.dyn_sub is None:
                sub = self.sub
                base = d.get
                if not trs:
                    return lambda ctx: base(ctx, sub)
                return lambda ctx: _apply_trs(ctx, trs, base(ctx, sub))
            return lambda ctx: _apply_trs(ctx, trs, d.get(ctx, self._sub(ctx)))
        return lambda ctx: _apply_trs(ctx, trs, self._indexed(ctx))

    def _indexed(self, ctx):
        idx = self.index if self.dyn_index is None else self.dyn_index.get(ctx)
        values = self.d.all(ctx, self._sub(ctx))
        if idx == "*":
            return ", ".join(to_str(v) for v in values) if values else None
        if idx.__class__ is not int:
            return None
        if -len(values) <= idx < len(values):
            return values[idx]
        return None

    @property
    def writable(self) -> bool:
        return self.d.set is not None

    def set(self, ctx, value, op="="):
        if self.d.set is None:
            raise PVError(f"'{self.text}' is read-only")
        idx = self.index if self.dyn_index is None else self.dyn_index.get(ctx)
        self.d.set(ctx, self._sub(ctx), value, op, idx)

    def values(self, ctx) -> list:
        """Every value, for `for (... in $(x[*]))`."""
        if self.d.all is None:
            v = self.get(ctx)
            return [] if v is None else [v]
        return list(self.d.all(ctx, self._sub(ctx)))


def _bind_transform(t: A.Transform, defs):
    spec = T.check(t.name, len(t.params), [_tr_param_const(p) for p in t.params])
    params = []
    dynamic = False
    for p in t.params:
        if isinstance(p, A.PV):
            params.append(BoundPV(p, defs))
            dynamic = True
        else:
            params.append(_tr_param_const(p))
    return spec, tuple(params), dynamic


def _tr_param_const(p):
    if isinstance(p, A.Num):
        return p.value
    if isinstance(p, A.Str):
        return p.value
    return p


def _apply_trs(ctx, trs, value):
    for spec, params, dynamic in trs:
        if value is None:
            return None
        if dynamic:
            params = tuple(p.get(ctx) if isinstance(p, BoundPV) else p for p in params)
        value = T.apply(spec, value, params)
    return value


def bind(pv_ast: A.PV, defs=None) -> BoundPV:
    return BoundPV(pv_ast, PVS if defs is None else defs)


# --- format strings ------------------------------------------------------------------------

class Format:
    """A string with PVs in it; `render(ctx)` -> str (NULL prints as '<null>')."""
    __slots__ = ("parts", "text", "render", "constant")

    def __init__(self, text: str, defs=None, dialect="opensips"):
        self.text = text
        pieces = []
        for p in parse_format(text, dialect=dialect):
            pieces.append(p if isinstance(p, str) else bind(p, defs))
        self.parts = tuple(pieces)
        self.constant = all(isinstance(p, str) for p in pieces)
        if self.constant:
            const = "".join(pieces)
            self.render = lambda ctx: const
        elif len(pieces) == 1:
            g = pieces[0].get
            self.render = lambda ctx: to_str(g(ctx))
        else:
            parts = tuple(p if isinstance(p, str) else p.get for p in pieces)
            self.render = lambda ctx: "".join(
                p if p.__class__ is str else to_str(p(ctx)) for p in parts)


def format_or_const(text: str, defs=None, dialect="opensips"):
    """A constant str when `text` has no PVs, else a Format."""
    f = Format(text, defs, dialect)
    return "".join(f.parts) if f.constant else f


# --- helpers for the core PVs --------------------------------------------------------------

@lru_cache(maxsize=4096)
def parse_uri(text: str):
    try:
        return URI.parse(text)
    except ValueError:
        return None


def _uri_part(text, attr):
    if text is None:
        return None
    u = parse_uri(text)
    if u is None:
        return None
    v = getattr(u, attr)
    if attr == "port":
        return None if v is None else StrInt(str(v), v)
    return v if v != "" or attr == "user" else None


def _port_of(text):
    u = parse_uri(text) if text else None
    if u is None:
        return None
    if u.port is None:
        return StrInt("", 0)
    return StrInt(str(u.port), u.port)


def _transport_of(text):
    u = parse_uri(text) if text else None
    if u is None:
        return None
    return u.param("transport") or "udp"


def _set_uri_part(ctx, attr, value):
    u = parse_uri(ctx.ruri)
    if u is None:
        raise PVError("the Request-URI cannot be parsed")
    if attr == "port":
        value = int(value) if value not in (None, "", 0) else None
    ctx.new_ruri = str(u.replace(**{attr: "" if value is None and attr == "user" else value}))


# --- core PVs ------------------------------------------------------------------------------

@pv("ru", aliases=("ruri",))
def _ru(ctx, sub):
    return ctx.ruri if ctx.msg.is_request else None


@_ru.setter
def _ru_set(ctx, sub, value, op, idx):
    if value is None or parse_uri(str(value)) is None:
        raise PVError(f"invalid Request-URI '{value}'")
    ctx.new_ruri = str(value)


for _name, _alias, _attr in (("rU", "ruri.user", "user"), ("rd", "ruri.domain", "host")):
    def _make(attr):
        def get(ctx, sub):
            return _uri_part(ctx.ruri, attr) if ctx.msg.is_request else None

        def set_(ctx, sub, value, op, idx):
            _set_uri_part(ctx, attr, value)
        return get, set_
    _g, _s = _make(_attr)
    PVS[_name] = PVS[_alias] = PVDef(_name, _g, _s)


@pv("rp", aliases=("ruri.port",))
def _rp(ctx, sub):
    return _port_of(ctx.ruri) if ctx.msg.is_request else None


@_rp.setter
def _rp_set(ctx, sub, value, op, idx):
    _set_uri_part(ctx, "port", value)


@pv("rP", aliases=("ruri.transport",))
def _rP(ctx, sub):
    return _transport_of(ctx.ruri) if ctx.msg.is_request else None


@pv("ru_q")
def _ru_q(ctx, sub):
    return ctx.ruri_q if ctx.ruri_q is not None else -1


@pv("ou", aliases=("ouri",))
def _ou(ctx, sub):
    return ctx.msg.ruri or None


@pv("oU", aliases=("ouri.user",))
def _oU(ctx, sub):
    return _uri_part(ctx.msg.ruri or None, "user")


@pv("od", aliases=("ouri.domain",))
def _od(ctx, sub):
    return _uri_part(ctx.msg.ruri or None, "host")


@pv("op", aliases=("ouri.port",))
def _op(ctx, sub):
    return _port_of(ctx.msg.ruri)


@pv("oP", aliases=("ouri.transport",))
def _oP(ctx, sub):
    return _transport_of(ctx.msg.ruri)


@pv("du", aliases=("duri",))
def _du(ctx, sub):
    return ctx.dst_uri


@_du.setter
def _du_set(ctx, sub, value, op, idx):
    if value is None or value == "":
        ctx.dst_uri = None
        return
    if parse_uri(str(value)) is None:
        raise PVError(f"invalid destination URI '{value}'")
    ctx.dst_uri = str(value)


@pv("dd")
def _dd(ctx, sub):
    return _uri_part(ctx.dst_uri, "host")


@pv("dp")
def _dp(ctx, sub):
    return _port_of(ctx.dst_uri)


@pv("dP")
def _dP(ctx, sub):
    return _transport_of(ctx.dst_uri)


def _nameaddr(ctx, which):
    try:
        return ctx.msg.from_ if which == "f" else ctx.msg.to
    except ValueError:
        return None


for _p, _hdr in (("f", "from"), ("t", "to")):
    def _mk(p):
        def uri(ctx, sub):
            na = _nameaddr(ctx, p)
            return na.uri if na else None

        def user(ctx, sub):
            na = _nameaddr(ctx, p)
            return _uri_part(na.uri, "user") if na else None

        def domain(ctx, sub):
            na = _nameaddr(ctx, p)
            return _uri_part(na.uri, "host") if na else None

        def display(ctx, sub):  # as written: quotes kept, as OpenSIPS's parse_to does
            na = _nameaddr(ctx, p)
            if not na or not na.display:
                return None
            return f'"{na.display}"' if na.quoted else na.display

        def tag(ctx, sub):
            na = _nameaddr(ctx, p)
            return na.tag if na else None
        return uri, user, domain, display, tag
    _fns = _mk(_p)
    full = "from" if _p == "f" else "to"
    for _suffix, _fn, _aliases in (("u", _fns[0], (full,)), ("U", _fns[1], (f"{full}.user",)),
                                   ("d", _fns[2], (f"{full}.domain",)), ("n", _fns[3], ()),
                                   ("t", _fns[4], ())):
        _d = PVDef(_p + _suffix, _fn)
        PVS[_p + _suffix] = _d
        for _a in _aliases:
            PVS[_a] = _d


@pv("ci")
def _ci(ctx, sub):
    return ctx.msg.get("call-id")


@pv("cs")
def _cs(ctx, sub):
    v = ctx.msg.get("cseq")
    return v.split()[0] if v else None


@pv("cl")
def _cl(ctx, sub):
    return ctx.msg.get("content-length")


@pv("cT")
def _cT(ctx, sub):
    return ctx.msg.get("content-type")


@pv("rm")
def _rm(ctx, sub):
    return ctx.msg.method


@pv("rs")
def _rs(ctx, sub):
    m = ctx.msg
    return None if m.is_request else m.status


@pv("rr")
def _rr(ctx, sub):
    m = ctx.msg
    return None if m.is_request else m.reason


@pv("ua")
def _ua(ctx, sub):
    return ctx.msg.get("user-agent")


def _hdr_uri(name):
    def get(ctx, sub):
        v = ctx.msg.get(name)
        if v is None:
            return None
        from .sip.headers import NameAddr
        try:
            return NameAddr.parse(v).uri
        except ValueError:
            return None
    return get


PVS["rt"] = PVDef("rt", _hdr_uri("refer-to"))
PVS["re"] = PVDef("re", _hdr_uri("remote-party-id"))
PVS["ai"] = PVDef("ai", _hdr_uri("p-asserted-identity"))
PVS["pu"] = PVDef("pu", _hdr_uri("p-preferred-identity"))
PVS["di"] = PVDef("di", _hdr_uri("diversion"))


def _diversion_param(name):
    def get(ctx, sub):
        v = ctx.msg.get("diversion")
        if v is None:
            return None
        from .sip.headers import NameAddr
        try:
            return NameAddr.parse(v).param(name)
        except ValueError:
            return None
    return get


PVS["dir"] = PVDef("dir", _diversion_param("reason"))
PVS["dip"] = PVDef("dip", _diversion_param("privacy"))


@pv("ds")
def _ds(ctx, sub):
    """The destination set: the extra branches (append_branch, lookup)."""
    out = []
    for b in ctx.branches:
        q = f";q={b.q / 1000:g}" if b.q is not None else ""
        out.append(f"<{b.uri}>{q}")
    return ", ".join(out) or None


@pv("path")
def _path(ctx, sub):
    vals = ctx.msg.get_all("path")
    return ", ".join(vals) if vals else None


@pv("ct", sub="opt")
def _ct(ctx, sub):
    cts = ctx.msg.contacts if ctx.msg.get("contact") is not None else []
    if not cts:
        return None
    return _ct_field(cts[0], sub)


@_ct.lister
def _ct_all(ctx, sub):
    cts = ctx.msg.contacts if ctx.msg.get("contact") is not None else []
    return [_ct_field(c, sub) for c in cts]


def _ct_field(c, field):
    if field is None:
        return str(c)
    field = field.lower()
    if field == "uri":
        return c.uri
    if field == "name":
        return c.display
    if field == "params":
        return ";".join(k if v is None else f"{k}={v}" for k, v in c.params) or None
    for k, v in c.params:
        if k.lower() == field:
            return v if v is not None else ""
    return None


PVS["ct.fields"] = PVDef("ct.fields", PVS["ct"].get, sub="req", all=PVS["ct"].all)


def _fix_hdr_name(name: str) -> str:
    name = name.strip()
    if not name or any(c in name for c in " \t:"):
        raise PVError(f"invalid header name '{name}'")
    return name.lower()


@pv("hdr", sub="req", fixup=_fix_hdr_name)
def _hdr(ctx, name):
    return ctx.msg.get(name)


@_hdr.lister
def _hdr_all(ctx, name):
    return ctx.msg.get_all(name)


@pv("hdrcnt", sub="req", fixup=_fix_hdr_name)
def _hdrcnt(ctx, name):
    return ctx.msg.count(name)


@pv("hdr_name")
def _hdr_name(ctx, sub):
    hs = ctx.msg.headers
    return hs[0].name if hs else None


@_hdr_name.lister
def _hdr_name_all(ctx, sub):
    return [h.name for h in ctx.msg.headers]


@pv("rb", sub="opt")
def _rb(ctx, sub):
    b = ctx.msg.body
    return b.decode("utf-8", "surrogateescape") if b else None


@pv("mb")
def _mb(ctx, sub):
    return ctx.msg.raw.decode("utf-8", "surrogateescape")


@pv("ml")
def _ml(ctx, sub):
    return len(ctx.msg.raw)


@pv("mi")
def _mi(ctx, sub):
    return id(ctx.msg) & 0x7FFFFFFF


@pv("si", aliases=("src_ip",))
def _si(ctx, sub):
    return ctx.src_ip


@pv("sp", aliases=("src_port",))
def _sp(ctx, sub):
    return ctx.src_port


@pv("Ri")
def _Ri(ctx, sub):
    return ctx.socket.ip if ctx.socket else None


@pv("Rp")
def _Rp(ctx, sub):
    return ctx.socket.port if ctx.socket else None


@pv("pr", aliases=("proto",))
def _pr(ctx, sub):
    return ctx.proto


@pv("af")
def _af(ctx, sub):
    return "INET6" if ":" in (ctx.src_ip or "") else "INET"


def _socket_field(sock, field, proto=None):
    if sock is None:
        return None
    if field is None:
        return str(sock)
    f = field.lower()
    if f == "ip":
        return sock.ip
    if f == "port":
        return sock.port
    if f == "proto":
        return sock.proto
    if f == "advertised_ip":
        return sock.adv_ip or None
    if f == "advertised_port":
        return sock.adv_port or None
    if f == "af":
        return "INET6" if ":" in sock.ip else "INET"
    if f == "tag":
        return sock.tag
    if f == "anycast":
        return 0
    return None


@pv("socket_in", sub="opt")
def _socket_in(ctx, sub):
    return _socket_field(ctx.socket, sub)


@pv("socket_out", sub="opt")
def _socket_out(ctx, sub):
    return _socket_field(ctx.force_socket or ctx.socket, sub)


@_socket_out.setter
def _socket_out_set(ctx, sub, value, op, idx):
    ctx.force_socket = None if value is None else ctx.rt.find_socket(str(value))


@pv("rc", aliases=("retcode",))
def _rc(ctx, sub):
    return ctx.rc


@pv("return", sub="req", fixup=lambda s: int(s) if s.strip().lstrip("-").isdigit() else s)
def _return(ctx, i):
    if isinstance(i, str):
        i = int(i) if i.isdigit() else -1
    return ctx.returns[i] if 0 <= i < len(ctx.returns) else None


def _param_fix(s):
    s = s.strip()
    return int(s) if s.isdigit() else s


@pv("param", sub="req", fixup=_param_fix)
def _param(ctx, i):
    if isinstance(i, str) and i.isdigit():
        i = int(i)
    if isinstance(i, int):
        return ctx.params[i - 1] if 0 < i <= len(ctx.params) else None
    if isinstance(ctx.params, dict):
        return ctx.params.get(i)
    return None


@pv("route", sub="opt")
def _route(ctx, sub):
    return ctx.route_stack[-1][0] if ctx.route_stack else None


@_route.lister
def _route_all(ctx, sub):
    return [r[0] for r in reversed(ctx.route_stack)]


@pv("route.name")
def _route_name(ctx, sub):
    return ctx.route_stack[-1][0] if ctx.route_stack else None


@pv("route.type")
def _route_type(ctx, sub):
    from .module import ROUTE_TYPE_NAMES
    return ROUTE_TYPE_NAMES.get(ctx.route_type, "route").replace("_route", "").replace(
        "route", "request") if ctx.route_type else None


@pv("time", sub="req")
def _time(ctx, fmt):
    return time.strftime(fmt, time.localtime())


@pv("Ts")
def _Ts(ctx, sub):
    return int(time.time())


@pv("Tsm")
def _Tsm(ctx, sub):
    return int(time.time() * 1_000_000) % 1_000_000


@pv("Tf")
def _Tf(ctx, sub):
    return time.ctime()


@pv("TS")
def _TS(ctx, sub):
    return int(ctx.rt.started)


@pv("pp")
def _pp(ctx, sub):
    return os.getpid()


@pv("cfg_line")
def _cfg_line(ctx, sub):
    return ctx.rt.current_line[1] if ctx.rt.current_line else None


@pv("cfg_file")
def _cfg_file(ctx, sub):
    return ctx.rt.current_line[0] if ctx.rt.current_line else None


@pv("log_level")
def _log_level(ctx, sub):
    return ctx.rt.log_level


@_log_level.setter
def _log_level_set(ctx, sub, value, op, idx):
    ctx.rt.set_log_level(None if value is None else int(value))


@pv("argv", sub="req")
def _argv(ctx, name):
    return ctx.rt.argv_vars.get(name)


_COLORS = {"x": 39, "s": 30, "r": 31, "g": 32, "y": 33, "b": 34, "p": 35, "c": 36, "w": 37}


@pv("C", sub="req")
def _C(ctx, xy):
    fg = _COLORS.get(xy[:1], 39)
    bg = _COLORS.get(xy[1:2], 39) + 10
    return f"\x1b[{fg};{bg}m"


@pv("bf")
def _bf(ctx, sub):
    return " ".join(ctx.rt.bflag_names.names(ctx.bflags)) or None


@pv("mf")
def _mf(ctx, sub):
    return " ".join(ctx.rt.flag_names.names(ctx.flags)) or None


@pv("msg.flag", sub="req")
def _msg_flag(ctx, name):
    return 1 if ctx.flags >> ctx.rt.flag_names.bit(name) & 1 else 0


@_msg_flag.setter
def _msg_flag_set(ctx, name, value, op, idx):
    bit = 1 << ctx.rt.flag_names.bit(name)
    ctx.flags = (ctx.flags | bit) if value else (ctx.flags & ~bit)


@pv("msg.is_request")
def _msg_is_request(ctx, sub):
    return 1 if ctx.msg.is_request else 0


@pv("msg.type")
def _msg_type(ctx, sub):
    return "request" if ctx.msg.is_request else "reply"


@pv("err.class")
def _err_class(ctx, sub):
    return 1 if ctx.error_info else None


@pv("err.rcode")
def _err_rcode(ctx, sub):
    return ctx.error_info[0] if ctx.error_info else None


@pv("err.rreason")
def _err_rreason(ctx, sub):
    return ctx.error_info[1] if ctx.error_info else None


@pv("err.info")
def _err_info(ctx, sub):
    return ctx.error_info[1] if ctx.error_info else None


@pv("err.level")
def _err_level(ctx, sub):
    return 1 if ctx.error_info else None


# --- credentials (Authorization / Proxy-Authorization) -------------------------------------

def credentials(ctx):
    """The digest parameters of the request's credentials (Proxy-Authorization first)."""
    cached = ctx.local_data.get("credentials", False)
    if cached is not False:
        return cached
    from .sip.auth import parse_digest
    creds = None
    for name in ("proxy-authorization", "authorization"):
        v = ctx.msg.get(name)
        if v:
            creds = parse_digest(v)
            if creds is not None:
                break
    ctx.local_data["credentials"] = creds
    return creds


def _cred(field, part=None):
    def get(ctx, sub):
        c = credentials(ctx)
        if not c:
            return None
        v = c.get(field)
        if v is None or part is None:
            return v
        user, _, domain = v.partition("@")
        return user if part == "user" else (domain or None)
    return get


for _name, _field, _part in (("au", "username", "user"), ("ad", "username", "domain"),
                             ("aU", "username", None), ("ar", "realm", None),
                             ("adu", "uri", None), ("an", "nonce", None),
                             ("auth.resp", "response", None), ("auth.nonce", "nonce", None),
                             ("auth.cnonce", "cnonce", None), ("auth.opaque", "opaque", None),
                             ("auth.alg", "algorithm", None), ("auth.qop", "qop", None),
                             ("auth.nc", "nc", None)):
    PVS[_name] = PVDef(_name, _cred(_field, _part))


def _Au(ctx, sub):
    """acc's user: the authentication user, else the From user."""
    c = credentials(ctx)
    if c and c.get("username"):
        return c["username"].partition("@")[0]
    return PVS["fU"].get(ctx, None)


PVS["Au"] = PVDef("Au", _Au)


# --- $var and $avp -------------------------------------------------------------------------

@pv("var", sub="req")
def _var(ctx, name):
    return ctx.rt.vars.get(name)


@_var.setter
def _var_set(ctx, name, value, op, idx):
    ctx.rt.vars[name] = value


@pv("avp", sub="req")
def _avp(ctx, name):
    lst = ctx.avps.get(name)
    return lst[-1] if lst else None


@_avp.lister
def _avp_all(ctx, name):
    lst = ctx.avps.get(name)
    return lst[::-1] if lst else []


@_avp.setter
def _avp_set(ctx, name, value, op, idx):
    set_avp(ctx.avps, name, value, op, idx)


def set_avp(avps: dict, name, value, op="=", idx=None):
    """AVP stack semantics: `=` pushes, `:=` replaces all, `= NULL` deletes the newest,
    `[i] = v` replaces index i, `[i] = NULL` deletes it, `[*] = NULL` deletes all,
    `[append] = v` adds at the oldest end."""
    lst = avps.get(name)
    if idx is None:
        if op == ":=":
            if value is None:
                avps.pop(name, None)
            else:
                avps[name] = [value]
            return
        if value is None:
            if lst:
                lst.pop()
            return
        if lst is None:
            avps[name] = [value]
        else:
            lst.append(value)
        return
    if idx == "*":
        if value is None:
            avps.pop(name, None)
        else:
            avps[name] = [value]
        return
    if idx == "append":
        if value is not None:
            avps.setdefault(name, []).insert(0, value)
        return
    if not lst:
        if value is not None and idx in (0, -1):
            avps[name] = [value]
        return
    n = len(lst)
    pos = n - 1 - idx if idx >= 0 else -idx - 1
    if not 0 <= pos < n:
        return
    if value is None:
        del lst[pos]
    else:
        lst[pos] = value


def known(name: str, defs=None) -> bool:
    return name in (PVS if defs is None else defs)


def parse_pv_text(text: str):
    """A PV given as text (modparams like `"$avp(received)"`), parsed for binding."""
    try:
        return parse_pv(text.strip())
    except PVSyntaxError as e:
        raise PVError(str(e)) from None

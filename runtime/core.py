"""Core functions (OpenSIPS `core_cmds.c`), declared like a module's."""
from __future__ import annotations

from .context import Branch
from .forward import forward_request, next_hop
from .log import L_DBG, L_ERR, xlog_level
from .module import ALL, ANY, INT, STATIC, STR, VAR, Arg, Func, Module
from .pv import parse_uri
from .values import to_str


def _flag(value, rt):
    return rt.flag_names.bit(value)


def _bflag(value, rt):
    return rt.bflag_names.bit(value)


_CORE = Module(
    name="core",
    functions=[
        Func("forward", "forward", [Arg(STR, optional=True)]),
        Func("send", "send", [Arg(STR), Arg(STR, optional=True)]),
        Func("setflag", "setflag", [Arg(STATIC, fixup=_flag)]),
        Func("resetflag", "resetflag", [Arg(STATIC, fixup=_flag)]),
        Func("isflagset", "isflagset", [Arg(STATIC, fixup=_flag)]),
        Func("setbflag", "setbflag", [Arg(STATIC, fixup=_bflag), Arg(INT, optional=True)]),
        Func("resetbflag", "resetbflag", [Arg(STATIC, fixup=_bflag), Arg(INT, optional=True)]),
        Func("isbflagset", "isbflagset", [Arg(STATIC, fixup=_bflag), Arg(INT, optional=True)]),
        *[Func(n, "sethost", [Arg(STR)]) for n in ("sethost", "rewritehost", "seth")],
        *[Func(n, "sethostport", [Arg(STR)]) for n in ("sethostport", "rewritehostport", "sethp")],
        *[Func(n, "setuser", [Arg(STR)]) for n in ("setuser", "rewriteuser", "setu")],
        *[Func(n, "setuserpass", [Arg(STR)]) for n in ("setuserpass", "rewriteuserpass", "setup")],
        *[Func(n, "setport", [Arg(STR)]) for n in ("setport", "rewriteport", "setp")],
        *[Func(n, "seturi", [Arg(STR)]) for n in ("seturi", "rewriteuri")],
        Func("prefix", "prefix", [Arg(STR)]),
        Func("strip", "strip", [Arg(INT)]),
        Func("strip_tail", "strip_tail", [Arg(INT)]),
        Func("revert_uri", "revert_uri"),
        Func("setdsturi", "setdsturi", [Arg(STR)]),
        Func("resetdsturi", "resetdsturi"),
        Func("isdsturiset", "isdsturiset"),
        Func("append_branch", "append_branch", [Arg(STR, optional=True), Arg(ANY, optional=True)]),
        Func("append_msg_branch", "append_branch", [Arg(STR, optional=True), Arg(ANY, optional=True)]),
        Func("remove_branch", "remove_branch", [Arg(INT)]),
        Func("remove_msg_branch", "remove_branch", [Arg(INT)]),
        Func("force_rport", "force_rport"),
        Func("add_local_rport", "nothing"),
        Func("force_tcp_alias", "nothing", [Arg(INT, optional=True)]),
        Func("set_advertised_address", "set_advertised_address", [Arg(STR)]),
        Func("set_advertised_port", "set_advertised_port", [Arg(INT)]),
        Func("force_send_socket", "force_send_socket", [Arg(STR)]),
        Func("is_myself", "is_myself", [Arg(STR), Arg(INT, optional=True)]),
        Func("pv_printf", "pv_printf", [Arg(VAR), Arg(STR)]),
        Func("log", "log", [Arg(ANY), Arg(STR, optional=True)]),
        Func("xlog", "xlog", [Arg(STR), Arg(STR, optional=True)]),
        Func("xdbg", "xdbg", [Arg(STR)]),
        Func("error", "error", [Arg(STR), Arg(STR)]),
        Func("assert", "nothing", [Arg(ANY), Arg(STR, optional=True)]),
    ],
)


def exports_for(rt) -> Module:
    import sys
    return Module(**{k: (list(v) if isinstance(v, list) else v)
                     for k, v in _CORE.__dict__.items()}).resolve(sys.modules[__name__])


# --- implementations -----------------------------------------------------------------------

def forward(ctx, dest=None):
    return forward_request(ctx, dest or None)


def send(ctx, dest, headers=None):
    hop = next_hop(dest)
    if hop is None:
        return -1
    proto, ip, port = hop
    sock = ctx.rt.socket_for(proto)
    data = ctx.msg.raw
    if headers:
        head, sep, body = data.partition(b"\r\n\r\n")
        data = head + b"\r\n" + headers.encode().rstrip(b"\r\n") + sep + body
    return 1 if ctx.rt.server.send(sock, (ip, port), data) else -1


def setflag(ctx, bit):
    ctx.flags |= 1 << bit
    return 1


def resetflag(ctx, bit):
    ctx.flags &= ~(1 << bit)
    return 1


def isflagset(ctx, bit):
    return 1 if ctx.flags >> bit & 1 else -1


def _branch_flags(ctx, idx):
    if not idx:
        return ctx.bflags
    return ctx.branches[idx - 1].flags if idx - 1 < len(ctx.branches) else None


def setbflag(ctx, bit, idx=None):
    if not idx:
        ctx.bflags |= 1 << bit
    elif idx - 1 < len(ctx.branches):
        ctx.branches[idx - 1].flags |= 1 << bit
    else:
        return -1
    return 1


def resetbflag(ctx, bit, idx=None):
    if not idx:
        ctx.bflags &= ~(1 << bit)
    elif idx - 1 < len(ctx.branches):
        ctx.branches[idx - 1].flags &= ~(1 << bit)
    else:
        return -1
    return 1


def isbflagset(ctx, bit, idx=None):
    flags = _branch_flags(ctx, idx)
    return 1 if flags is not None and flags >> bit & 1 else -1


def _rewrite(ctx, **fields):
    u = parse_uri(ctx.ruri)
    if u is None:
        ctx.rt.log.error(f"cannot parse the Request-URI '{ctx.ruri}'")
        return -1
    ctx.new_ruri = str(u.replace(**fields))
    return 1


def sethost(ctx, host):
    return _rewrite(ctx, host=host)


def sethostport(ctx, hostport):
    host, _, port = hostport.rpartition(":") if hostport.count(":") == 1 else (hostport, "", "")
    return _rewrite(ctx, host=host, port=int(port) if port.isdigit() else None)


def setuser(ctx, user):
    return _rewrite(ctx, user=user)


def setuserpass(ctx, password):
    return _rewrite(ctx, password=password)


def setport(ctx, port):
    return _rewrite(ctx, port=int(port) if str(port).isdigit() else None)


def seturi(ctx, uri):
    if parse_uri(uri) is None:
        ctx.rt.log.error(f"seturi: invalid URI '{uri}'")
        return -1
    ctx.new_ruri = uri
    return 1


def prefix(ctx, text):
    u = parse_uri(ctx.ruri)
    return -1 if u is None else _rewrite(ctx, user=text + (u.user or ""))


def strip(ctx, n):
    u = parse_uri(ctx.ruri)
    return -1 if u is None else _rewrite(ctx, user=(u.user or "")[n:])


def strip_tail(ctx, n):
    u = parse_uri(ctx.ruri)
    if u is None:
        return -1
    user = u.user or ""
    return _rewrite(ctx, user=user[:-n] if n else user)


def revert_uri(ctx):
    ctx.new_ruri = None
    return 1


def setdsturi(ctx, uri):
    if parse_uri(uri) is None:
        return -1
    ctx.dst_uri = uri
    return 1


def resetdsturi(ctx):
    ctx.dst_uri = None
    return 1


def isdsturiset(ctx):
    return 1 if ctx.dst_uri else -1


def append_branch(ctx, uri=None, q=None):
    uri = uri or ctx.ruri
    if parse_uri(uri) is None:
        return -1
    qv = None
    if q is not None:
        try:
            qv = int(float(q) * 1000) if not isinstance(q, int) else q
        except ValueError:
            qv = None
    ctx.branches.append(Branch(uri, ctx.dst_uri if uri == ctx.ruri else None, qv,
                               flags=ctx.bflags))
    return 1


def remove_branch(ctx, idx):
    if 0 < idx <= len(ctx.branches):
        del ctx.branches[idx - 1]
        return 1
    return -1


def force_rport(ctx):
    ctx.force_rport = True
    return 1


def nothing(ctx, *args):
    return 1


def set_advertised_address(ctx, addr):
    ctx.adv_address = addr
    return 1


def set_advertised_port(ctx, port):
    ctx.adv_port = port
    return 1


def force_send_socket(ctx, text):
    sock = ctx.rt.find_socket(text)
    if sock is None:
        ctx.rt.log.warning(f"force_send_socket: '{text}' is not one of our sockets")
        return -1
    ctx.force_socket = sock
    return 1


def is_myself(ctx, host, port=None):
    if host.startswith(("sip:", "sips:")):
        u = parse_uri(host)
        if u is None:
            return -1
        host, port = u.host, port or u.port
    return 1 if ctx.rt.is_myself(host, port or 0) else -1


def pv_printf(ctx, var, text):
    var.set(ctx, text)
    return 1


def log(ctx, level_or_text, text=None):
    if text is None:
        level, text = L_DBG, to_str(level_or_text)
    else:
        level = level_or_text if isinstance(level_or_text, int) else int(level_or_text)
    ctx.rt.log.raw(level, text)
    return 1


def xlog(ctx, level_or_fmt, fmt=None):
    if fmt is None:
        level = ctx.rt.config.get("xlog_print_level", 2)
        ctx.rt.log.raw(level if isinstance(level, int) else 2, level_or_fmt)
        return 1
    level = xlog_level(level_or_fmt)
    if level is None:
        level = int(level_or_fmt) if level_or_fmt.lstrip("-").isdigit() else L_ERR
    ctx.rt.log.raw(level, fmt)
    return 1


def xdbg(ctx, fmt):
    ctx.rt.log.raw(L_DBG, fmt)
    return 1


def error(ctx, a, b):
    ctx.rt.log.notice("error(): not implemented (as in OpenSIPS)")
    return 1


__all__ = ["exports_for", "ALL"]

"""textops: regex search and replace over the message; also the 1.x names that moved to
sipmsgops (is_method, append_hf, ...), so old scripts run unchanged."""
import time

from modules import sipmsgops as ops
from runtime.module import REGEX, STR, STR_NO_EXPAND, Arg, Func, Module
from runtime.pv import parse_uri
from runtime.values import parse_subst

SIP_ROUTES = ops.SIP_ROUTES


def _subst(value, rt):
    return parse_subst(value)


_legacy = [f for f in ops.exports.functions if f.name in (
    "is_method", "append_hf", "insert_hf", "remove_hf", "is_present_hf", "has_body",
    "append_to_reply", "append_urihf", "is_uri_user_e164")]

exports = Module(
    name="textops",
    functions=[
        Func("search", "search", [Arg(REGEX)], SIP_ROUTES),
        Func("search_body", "search_body", [Arg(REGEX)], SIP_ROUTES),
        Func("search_append", "search_append", [Arg(REGEX), Arg(STR)], SIP_ROUTES),
        Func("search_append_body", "search_append_body", [Arg(REGEX), Arg(STR)], SIP_ROUTES),
        Func("replace", "replace", [Arg(REGEX), Arg(STR)], SIP_ROUTES),
        Func("replace_all", "replace_all", [Arg(REGEX), Arg(STR)], SIP_ROUTES),
        Func("replace_body", "replace_body", [Arg(REGEX), Arg(STR)], SIP_ROUTES),
        Func("replace_body_all", "replace_body_all", [Arg(REGEX), Arg(STR)], SIP_ROUTES),
        Func("subst", "subst", [Arg(STR_NO_EXPAND, fixup=_subst)], SIP_ROUTES),
        Func("subst_body", "subst_body", [Arg(STR_NO_EXPAND, fixup=_subst)], SIP_ROUTES),
        Func("subst_uri", "subst_uri", [Arg(STR_NO_EXPAND, fixup=_subst)], SIP_ROUTES),
        Func("subst_user", "subst_user", [Arg(STR_NO_EXPAND, fixup=_subst)], SIP_ROUTES),
        Func("append_time", "append_time", routes=SIP_ROUTES),
        *[Func(f.name, getattr(ops, f.impl), f.args, f.routes) for f in _legacy],
    ],
)


def _head_text(msg):
    return msg.raw[:len(msg.raw) - len(msg.body)].decode("utf-8", "surrogateescape")


def search(ctx, rx):
    return 1 if rx.search(_head_text(ctx.msg)) else -1


def _body(ctx):
    return ctx.msg.body.decode("utf-8", "surrogateescape")


def search_body(ctx, rx):
    return 1 if rx.search(_body(ctx)) else -1


def _edit_headers(ctx, rx, make, count):
    """Apply `make(match)` (the replacement text) to matches inside header lines."""
    msg = ctx.msg
    done = 0
    edits = None
    for h in msg.headers:
        line = msg.raw[h.start:h.end].decode("utf-8", "surrogateescape")
        new, n = rx.subn(make, line, count=0 if count is None else max(count - done, 0))
        if n and new != line:
            edits = edits or ctx.get_edits()
            edits.replace_header(h, new.rstrip("\r\n"))
        done += n
        if count is not None and done >= count:
            break
    return done


def _edit_body(ctx, rx, make, count):
    body = _body(ctx)
    new, n = rx.subn(make, body, count=0 if count is None else count)
    if n:
        ctx.get_edits().set_body(new.encode("utf-8", "surrogateescape"))
    return n


def search_append(ctx, rx, text):
    n = _edit_headers(ctx, rx, lambda m: m.group(0) + text, 1)
    return 1 if n else -1


def search_append_body(ctx, rx, text):
    return 1 if _edit_body(ctx, rx, lambda m: m.group(0) + text, 1) else -1


def replace(ctx, rx, text):
    n = _edit_headers(ctx, rx, lambda m: text, 1) or _edit_body(ctx, rx, lambda m: text, 1)
    return 1 if n else -1


def replace_all(ctx, rx, text):
    n = _edit_headers(ctx, rx, lambda m: text, None) + _edit_body(ctx, rx, lambda m: text, None)
    return 1 if n else -1


def replace_body(ctx, rx, text):
    return 1 if _edit_body(ctx, rx, lambda m: text, 1) else -1


def replace_body_all(ctx, rx, text):
    return 1 if _edit_body(ctx, rx, lambda m: text, None) else -1


def subst(ctx, s):
    rx, repl, glob = s
    n = _edit_headers(ctx, rx, lambda m: m.expand(repl), None if glob else 1)
    if not n or glob:
        n += _edit_body(ctx, rx, lambda m: m.expand(repl), None if glob else 1)
    return 1 if n else -1


def subst_body(ctx, s):
    rx, repl, glob = s
    return 1 if _edit_body(ctx, rx, lambda m: m.expand(repl), None if glob else 1) else -1


def subst_uri(ctx, s):
    rx, repl, glob = s
    new, n = rx.subn(repl, ctx.ruri, count=0 if glob else 1)
    if not n or parse_uri(new) is None:
        return -1
    ctx.new_ruri = new
    return 1


def subst_user(ctx, s):
    rx, repl, glob = s
    u = parse_uri(ctx.ruri)
    if u is None:
        return -1
    new, n = rx.subn(repl, u.user or "", count=0 if glob else 1)
    if not n:
        return -1
    ctx.new_ruri = str(u.replace(user=new))
    return 1


def append_time(ctx):
    ctx.get_edits().add_header(time.strftime("Date: %a, %d %b %Y %H:%M:%S GMT", time.gmtime()))
    return 1

"""sipmsgops: tests and edits of the SIP message (headers, R-URI params, body)."""
import fnmatch
import re

from runtime.module import (ALL, BRANCH, ERROR, FAILURE, INT, LOCAL, ONREPLY, REGEX, REQUEST,
                            STR, Arg, Func, Module)
from runtime.pv import parse_uri
from runtime.sip.headers import SIPError, canonical_name

SIP_ROUTES = REQUEST | FAILURE | ONREPLY | BRANCH | ERROR | LOCAL


def _methods(value, rt):
    names = frozenset(m.strip().upper() for m in str(value).split("|") if m.strip())
    if not names:
        raise ValueError("no method given")
    return names


def _hdr_name(value, rt):
    name = str(value).strip()
    if not name or any(c in name for c in " \t:\r\n"):
        raise ValueError(f"invalid header name '{name}'")
    return canonical_name(name)


exports = Module(
    name="sipmsgops",
    functions=[
        Func("is_method", "is_method", [Arg(STR, fixup=_methods)], SIP_ROUTES),
        Func("has_totag", "has_totag", routes=SIP_ROUTES),
        Func("has_body", "has_body", [Arg(STR, optional=True)], SIP_ROUTES),
        Func("is_present_hf", "is_present_hf", [Arg(STR, fixup=_hdr_name)], SIP_ROUTES),
        Func("append_hf", "append_hf", [Arg(STR), Arg(STR, optional=True, fixup=_hdr_name)],
             SIP_ROUTES),
        Func("insert_hf", "insert_hf", [Arg(STR), Arg(STR, optional=True, fixup=_hdr_name)],
             SIP_ROUTES),
        Func("remove_hf", "remove_hf", [Arg(STR, fixup=_hdr_name)], SIP_ROUTES),
        Func("remove_hf_re", "remove_hf_re", [Arg(REGEX)], SIP_ROUTES),
        Func("remove_hf_glob", "remove_hf_glob", [Arg(STR)], SIP_ROUTES),
        Func("append_to_reply", "append_to_reply", [Arg(STR)], REQUEST | ERROR),
        Func("append_urihf", "append_urihf", [Arg(STR), Arg(STR)], REQUEST | FAILURE),
        Func("ruri_has_param", "ruri_has_param", [Arg(STR), Arg(STR, optional=True)],
             REQUEST | FAILURE | BRANCH),
        Func("ruri_add_param", "ruri_add_param", [Arg(STR)], REQUEST | FAILURE | BRANCH),
        Func("ruri_del_param", "ruri_del_param", [Arg(STR)], REQUEST | FAILURE | BRANCH),
        Func("is_uri_user_e164", "is_uri_user_e164", [Arg(STR)], ALL),
        Func("sipmsg_validate", "sipmsg_validate", [Arg(STR, optional=True)], SIP_ROUTES),
        Func("change_reply_status", "change_reply_status", [Arg(INT), Arg(STR)], ONREPLY),
        Func("list_hdr_has_option", "list_hdr_has_option", [Arg(STR, fixup=_hdr_name), Arg(STR)],
             SIP_ROUTES),
    ],
)


def is_method(ctx, names):
    if isinstance(names, str):
        names = _methods(names, None)
    return 1 if ctx.msg.method.upper() in names else -1


def has_totag(ctx):
    try:
        return 1 if ctx.msg.to.tag else -1
    except SIPError:
        return -1


def has_body(ctx, mime=None):
    body = ctx.msg.body
    if not body:
        return -1
    if mime is None:
        return 1
    ct = (ctx.msg.content_type or "").split(";")[0].strip().lower()
    return 1 if ct == mime.strip().lower() or mime.lower() in body.decode(
        "latin-1").lower() and ct.startswith("multipart/") else -1


def is_present_hf(ctx, name):
    return 1 if ctx.msg.count(name) else -1


def _line(text):
    return text.rstrip("\r\n")


def append_hf(ctx, text, after=None):
    edits = ctx.get_edits()
    if after:
        h = ctx.msg.get_headers(after)
        if not h:
            return -1
        edits.add_header(_line(text), "after", h[-1])
    else:
        edits.add_header(_line(text), "end")
    return 1


def insert_hf(ctx, text, before=None):
    edits = ctx.get_edits()
    if before:
        h = ctx.msg.get_headers(before)
        if not h:
            return -1
        edits.add_header(_line(text), "before", h[0])
    else:
        edits.add_header(_line(text), "top")
    return 1


def _remove(ctx, match):
    edits = None
    n = 0
    for h in ctx.msg.headers:
        if match(h):
            edits = edits or ctx.get_edits()
            edits.remove_header(h)
            n += 1
    return n if n else -1


def remove_hf(ctx, name):
    return _remove(ctx, lambda h: h.key == name)


def remove_hf_re(ctx, rx):
    return _remove(ctx, lambda h: rx.search(h.name) is not None)


def remove_hf_glob(ctx, pattern):
    return _remove(ctx, lambda h: fnmatch.fnmatch(h.name.lower(), pattern.lower()))


def append_to_reply(ctx, text):
    ctx.local_data.setdefault("reply_headers", []).append(_line(text))
    return 1


def append_urihf(ctx, prefix, suffix):
    ctx.get_edits().add_header(_line(f"{prefix}{ctx.ruri}{suffix}"), "end")
    return 1


def _ruri(ctx):
    return parse_uri(ctx.ruri)


def ruri_has_param(ctx, name, value=None):
    u = _ruri(ctx)
    if u is None:
        return -1
    for k, v in u.params:
        if k.lower() == name.lower():
            return 1 if value is None or v == value else -1
    return -1


def ruri_add_param(ctx, param):
    u = _ruri(ctx)
    if u is None:
        return -1
    name, _, value = param.partition("=")
    ctx.new_ruri = str(u.replace(params=[*u.params, (name, value if "=" in param else None)]))
    return 1


def ruri_del_param(ctx, name):
    u = _ruri(ctx)
    if u is None:
        return -1
    kept = [(k, v) for k, v in u.params if k.lower() != name.lower()]
    if len(kept) == len(u.params):
        return -1
    ctx.new_ruri = str(u.replace(params=kept))
    return 1


_E164 = re.compile(r"^\+[0-9]{2,15}$")


def is_uri_user_e164(ctx, uri):
    u = parse_uri(uri)
    user = u.user if u is not None else uri
    return 1 if user and _E164.match(user) else -1


def sipmsg_validate(ctx, flags=None):
    try:
        ctx.msg.check_mandatory()
        ctx.msg.contacts
        ctx.msg.routes
        ctx.msg.record_routes
    except SIPError:
        return -1
    return 1


def change_reply_status(ctx, code, reason):
    if ctx.msg.is_request or code // 100 != ctx.msg.status // 100 and ctx.msg.status >= 200:
        return -1
    ctx.local_data["new_status"] = (code, reason)
    return 1


def list_hdr_has_option(ctx, name, option):
    opt = option.strip().lower()
    for value in ctx.msg.get_all(name):
        if any(o.strip().lower() == opt for o in value.split(",")):
            return 1
    return -1

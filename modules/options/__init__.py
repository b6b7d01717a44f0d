"""options: answer OPTIONS requests addressed to the proxy itself.

    loadmodule "options.so"
    modparam("options", "accept", "application/sdp")      # default "*/*"
    modparam("options", "accept_encoding", "gzip")         # default "" (no header)
    modparam("options", "accept_language", "en, de")       # default "en"
    modparam("options", "support", "path, timer")          # default "" (no header)

    if (is_method("OPTIONS") && $rU == NULL) { options_reply(); }

options_reply() sends `200 OK` with `Accept:`, `Accept-Encoding:`, `Accept-Language:` and
`Supported:` headers, in that order and each only when its value is not empty, as OpenSIPS
builds them (through signaling's send_reply when that module is loaded: statefully when a
transaction exists; else through sl). It stops the script when the reply went out (returns
0, as OpenSIPS's does) and returns -1 for a request that is not an OPTIONS or whose R-URI has
a user part.
"""
from __future__ import annotations

from runtime.module import REQUEST, Func, Module, Param

exports = Module(
    name="options",
    params=[
        Param("accept", str, "*/*"),
        Param("accept_encoding", str, ""),
        Param("accept_language", str, "en"),
        Param("support", str, ""),
    ],
    functions=[Func("options_reply", "options_reply", routes=REQUEST)],
    init="init",
)


def reply_headers(params) -> list:
    out = []
    for name, key in (("Accept", "accept"), ("Accept-Encoding", "accept_encoding"),
                      ("Accept-Language", "accept_language"), ("Supported", "support")):
        value = params.get(key) or ""
        if value:
            out.append(f"{name}: {value}")
    return out


def _replier(rt):
    """send_reply of signaling (3.x), else sl_send_reply (1.x scripts load sl only)."""
    for mod, fname in (("signaling", "send_reply"), ("sl", "sl_send_reply")):
        m = rt.modules.get(mod)
        if m is not None:
            f = m.functions_by_name.get(fname)
            if f is not None:
                return f.impl
    return None


def init(rt):
    if _replier(rt) is None:
        raise ValueError("options needs module 'signaling' (or 'sl') to send its replies")
    rt.options_reply_headers = reply_headers(rt.modparams["options"])


def options_reply(ctx):
    rt = ctx.rt
    msg = ctx.msg
    if msg.method != "OPTIONS":
        rt.log.error("options_reply: called for non-OPTIONS request", "options")
        return -1
    from runtime.sip.uri import URI
    try:
        uri = URI.parse(ctx.ruri)
    except ValueError:
        rt.log.error("options_reply: error while parsing the R-URI", "options")
        return -1
    if uri.user:
        rt.log.error("options_reply: ruri contains username", "options")
        return -1
    reply = _replier(rt)
    if reply is None:
        rt.log.error("options_reply: no signaling or sl module loaded", "options")
        return -1
    headers = getattr(rt, "options_reply_headers", None)
    if headers is None:
        headers = rt.options_reply_headers = reply_headers(rt.modparams["options"])
    ctx.local_data.setdefault("reply_headers", []).extend(headers)
    if reply(ctx, 200, "OK") == -1:
        rt.log.error("options_reply: failed to send 200 via send_reply", "options")
        return -1
    return 0

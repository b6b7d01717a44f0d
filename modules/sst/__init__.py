"""sst: SIP session timers (RFC 4028) for a proxy: the dialog of a flagged INVITE lives as
long as its session interval, and too short intervals are refused.

    loadmodule "dialog.so"
    loadmodule "sst.so"
    modparam("sst", "sst_flag", "SST_FLAG")
    modparam("sst", "min_se", 120)
    ...
    if (is_method("INVITE")) {
        if (sstCheckMin(1)) exit;           # replied 422 with our Min-SE
        setflag(SST_FLAG);
        create_dialog();
    }

sstCheckMin([send_reply]): true (1) when the INVITE's Session-Expires, or its Min-SE (90
when absent), is below min_se; with send_reply it answers `422 Session Timer Too Small`
with `Min-SE: <min_se>` itself. False (-1) otherwise, or for anything but an INVITE.

When a dialog is created for an INVITE with sst_flag set:
- a Session-Expires below min_se is refused with 422 (and our Min-SE) when the caller
  supports timers (`Supported: timer`) and reject_to_small is on; a caller without timer
  support gets its Min-SE raised in the forwarded INVITE instead (a proxy may not refuse);
- an INVITE without Session-Expires gets one (max of min_se, its Min-SE, sst_interval):
  the proxy asks for session timers;
- the dialog's lifetime becomes the session interval; a 2xx without Session-Expires to a
  caller that supports timers gets `Session-Expires: <interval>;refresher=uac` and
  `Require: timer`; re-INVITEs and UPDATEs in the dialog renew the interval.
"""
from __future__ import annotations

import re
import weakref

from runtime.forward import send_local_reply
from runtime.module import FAILURE, INT, ONREPLY, REQUEST, Arg, Func, Module, Param

exports = Module(
    name="sst",
    params=[
        Param("enable_stats", int, 1), Param("min_se", int, 1800),
        Param("sst_interval", int, 0), Param("reject_to_small", int, 1),
        Param("sst_flag", (int, str), None),
        Param("timeout_avp", str, None),            # 1.x: the dialog's timeout AVP
    ],
    functions=[
        Func("sstCheckMin", "sst_check_min", [Arg(INT, optional=True, name="send_reply")],
             REQUEST | ONREPLY | FAILURE),
    ],
    depends=("dialog",),
    init="init",
    child_init="child_init",
)

REASON_422 = "Session Timer Too Small"
_SE = re.compile(r"^\s*(\d+)\s*(?:;(.*))?$")
_STATE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


class SstError(ValueError):
    pass


def session_expires(msg):
    """(interval, refresher or None) of the Session-Expires header, None when absent;
    SstError when it cannot be read."""
    v = msg.get("session-expires")
    if v is None:
        return None
    m = _SE.match(v)
    if m is None:
        raise SstError(f"bad Session-Expires '{v}'")
    refresher = None
    for p in (m.group(2) or "").split(";"):
        name, _, val = p.partition("=")
        if name.strip().lower() == "refresher":
            refresher = val.strip().lower()
    return int(m.group(1)), refresher


def min_se(msg):
    """The Min-SE value, None when absent; SstError when it cannot be read."""
    v = msg.get("min-se")
    if v is None:
        return None
    v = v.split(";", 1)[0].strip()
    if not v.isdigit():
        raise SstError(f"bad Min-SE '{v}'")
    return int(v)


def supports_timer(msg) -> bool:
    return any(tok.strip().lower() == "timer"
               for v in msg.get_all("supported") for tok in v.split(","))


class _Info:
    """What the module keeps per dialog."""
    __slots__ = ("interval", "supported", "requester")

    def __init__(self, interval, supported, requester):
        self.interval, self.supported, self.requester = interval, supported, requester


def init(rt):
    p = rt.modparams["sst"]
    flag = p["sst_flag"]
    if flag is None or str(flag).strip() == "":
        raise ValueError("sst: modparam 'sst_flag' is not set")
    if p["min_se"] < 90:
        raise ValueError("sst: min_se must be at least 90 (RFC 4028)")
    _STATE[rt] = {"bit": rt.flag_names.bit(str(flag).strip()), "p": p,
                  "stats": {"expired_sst": 0}}
    if p["enable_stats"]:
        rt.stats_groups = getattr(rt, "stats_groups", {})
        rt.stats_groups["sst"] = _STATE[rt]["stats"]


def child_init(rt):
    api = rt.apis.get("dialog")
    if api is not None:
        api.register_created(lambda dlg, ctx: _dialog_created(rt, dlg, ctx))


def _reply(ctx, code, reason, headers):
    """Statefully when the request has a transaction (or tm is loaded: a refused INVITE
    must not be relayed afterwards), else statelessly."""
    tm = ctx.rt.apis.get("tm")
    if tm is not None:
        ctx.local_data.setdefault("reply_headers", []).extend(headers)
        return tm.t_reply(ctx, code, reason) > 0
    return send_local_reply(ctx, code, reason, headers=list(headers))


# --- sstCheckMin ---------------------------------------------------------------------------

def sst_check_min(ctx, send_reply=None):
    msg = ctx.msg
    if not msg.is_request or msg.method != "INVITE":
        return -1
    p = _STATE[ctx.rt]["p"] if ctx.rt in _STATE else ctx.rt.modparams["sst"]
    try:
        se = session_expires(msg)
    except SstError as e:
        ctx.rt.log.error(f"sst: {e}", "sst")
        return 0
    if se is None:
        return -1
    try:
        mse = min_se(msg)
    except SstError as e:
        ctx.rt.log.error(f"sst: {e}", "sst")
        return -1
    if mse is None:
        mse = 90
    if p["min_se"] > min(mse, se[0]):
        if send_reply:
            _reply(ctx, 422, REASON_422, [f"Min-SE: {p['min_se']}"])
        return 1
    return -1


# --- dialogs -------------------------------------------------------------------------------

def _set_lifetime(rt, dlg, seconds):
    dlg.timeout = seconds
    api = rt.apis.get("dialog")
    setter = getattr(api, "set_lifetime", None)      # re-arms a running dialog's timer
    if setter is not None:
        setter(dlg, seconds)


def _replace_min_se(ctx, value):
    edits = ctx.get_edits()
    for h in ctx.msg.get_headers("min-se"):
        edits.remove_header(h)
    edits.add_header(f"Min-SE: {value}")


def _dialog_created(rt, dlg, ctx):
    st = _STATE.get(rt)
    if st is None or not ctx.flags >> st["bit"] & 1:
        return
    msg = ctx.msg
    if not msg.is_request or msg.method != "INVITE":
        return
    p = st["p"]
    ours = p["min_se"]
    try:
        se = session_expires(msg)
        mse = min_se(msg) or 0
    except SstError as e:
        rt.log.error(f"sst: {e}", "sst")
        return
    supported = supports_timer(msg)
    info = _Info(max(p["sst_interval"], ours, 90), supported, "uac" if se else None)
    if se is not None:
        if se[0] < ours:
            if not supported:
                info.interval = max(ours, mse)
                _replace_min_se(ctx, info.interval)
            elif p["reject_to_small"]:
                _reply(ctx, 422, REASON_422, [f"Min-SE: {max(ours, mse, 90)}"])
                return
        else:
            info.interval = se[0]
    else:
        info.interval = max(mse, ours)
        if mse and mse < ours:
            _replace_min_se(ctx, info.interval)
        info.interval = max(info.interval, p["sst_interval"])
        info.requester = "proxy"
        ctx.get_edits().add_header(f"Session-Expires: {info.interval}")
    _set_lifetime(rt, dlg, info.interval)
    dlg.vals["sst_interval"] = str(info.interval)
    dlg.on("response", lambda d, ev, obj, direction: _response(rt, st, d, info, obj))
    dlg.on("request", lambda d, ev, obj, direction: _request(rt, st, d, info, obj))
    dlg.on("terminated", lambda d, ev, obj, direction: _ended(st, d))


def _ended(st, dlg):
    if dlg.end_reason == "timeout":
        st["stats"]["expired_sst"] += 1


def _request(rt, st, dlg, info, ctx):
    """A request in the dialog: a re-INVITE or UPDATE renews the session interval."""
    msg = ctx.msg
    if msg.method not in ("INVITE", "UPDATE"):
        return
    try:
        se = session_expires(msg)
        mse = min_se(msg) or 0
    except SstError:
        return
    info.supported = supports_timer(msg)
    if se is not None:
        p = st["p"]
        info.interval = p["sst_interval"] if p["sst_interval"] > mse else \
            max(se[0], p["min_se"])
    _set_lifetime(rt, dlg, info.interval)


def _response(rt, st, dlg, info, obj):
    """A reply going through: a 422 raises our interval, a 2xx to an INVITE/UPDATE sets
    the session interval (and asks for timers on behalf of a caller that supports them)."""
    reply, branch = obj
    code = reply.status
    try:
        se = session_expires(reply)
        mse = min_se(reply) or 0
        method = reply.cseq[1]
    except (SstError, ValueError):
        return
    if code == 422:
        info.interval = max(info.interval, mse)
        return
    if not 200 <= code < 300 or method not in ("INVITE", "UPDATE"):
        return
    p = st["p"]
    if se is not None:
        info.interval = p["sst_interval"] if p["sst_interval"] > mse else \
            max(se[0], p["min_se"])
        _set_lifetime(rt, dlg, info.interval)
    elif info.supported and branch is not None:
        edits = branch.edits_for_reply(reply)
        edits.add_header(f"Session-Expires: {info.interval};refresher=uac")
        requires = reply.get_headers("require")
        if not any(t.strip().lower() == "timer" for h in requires for t in h.value.split(",")):
            if requires:
                edits.replace_value(requires[0], requires[0].value + ", timer")
            else:
                edits.add_header("Require: timer")
        _set_lifetime(rt, dlg, info.interval)

"""dialog: call state tracking, profiles, dialog values, and callbacks for other modules."""
import itertools
import time

from runtime.module import (BRANCH, FAILURE, INT, ONREPLY, REQUEST, STATIC, STR, VAR, Arg,
                            Func, Module, Param)
from runtime.pv import PVDef
from runtime.sip.headers import SIPError

def _route(name, rt):
    """A route the dialog runs later (dlg_on_answer/hangup/timeout): it must exist."""
    if ("route", name) not in rt.route_infos:
        raise ValueError(f"route '{name}' is not defined")
    return name


# OpenSIPS dialog states
UNCONFIRMED, EARLY, CONFIRMED_NA, CONFIRMED, DELETED = 1, 2, 3, 4, 5

exports = Module(
    name="dialog",
    params=[
        Param("default_timeout", int, 43200), Param("dlg_match_mode", int, 0),
        Param("db_mode", int, 0), Param("db_url", str, None), Param("db_update_period", int, 60),
        Param("profiles_with_value", str, ""), Param("profiles_no_value", str, ""),
        Param("dlg_extra_hdrs", str, ""), Param("timeout_avp", str, None),
        Param("rr_param", str, "did"), Param("enable_stats", int, 1),
        Param("options_ping_interval", int, 30), Param("reinvite_ping_interval", int, 300),
        Param("table_name", str, "dialog"), Param("hash_size", int, 4096),
        Param("dialog_replication_cluster", int, 0), Param("profile_replication_cluster", int, 0),
        Param("race_condition_timeout", int, 5), Param("early_timeout", int, 300),
        Param("dlg_flag", (int, str), None), Param("default_timeout_avp", str, None),
    ],
    functions=[
        Func("create_dialog", "create_dialog", [Arg(STR, optional=True)], REQUEST | BRANCH),
        Func("match_dialog", "match_dialog", [Arg(INT, optional=True)], REQUEST),
        Func("validate_dialog", "validate_dialog", routes=REQUEST),
        Func("fix_route_dialog", "fix_route_dialog", routes=REQUEST),
        Func("set_dlg_profile", "set_dlg_profile", [Arg(STATIC), Arg(STR, optional=True)],
             REQUEST | BRANCH | FAILURE | ONREPLY),
        Func("unset_dlg_profile", "unset_dlg_profile", [Arg(STATIC), Arg(STR, optional=True)],
             REQUEST | BRANCH | FAILURE | ONREPLY),
        Func("is_in_profile", "is_in_profile", [Arg(STATIC), Arg(STR, optional=True)],
             REQUEST | BRANCH | FAILURE | ONREPLY),
        Func("get_profile_size", "get_profile_size",
             [Arg(STATIC), Arg(STR, optional=True), Arg(VAR)], REQUEST | BRANCH | FAILURE | ONREPLY),
        Func("set_dlg_flag", "set_dlg_flag", [Arg(STATIC)], REQUEST | BRANCH | FAILURE | ONREPLY),
        Func("reset_dlg_flag", "reset_dlg_flag", [Arg(STATIC)], REQUEST | BRANCH | FAILURE | ONREPLY),
        Func("is_dlg_flag_set", "is_dlg_flag_set", [Arg(STATIC)], REQUEST | BRANCH | FAILURE | ONREPLY),
        Func("store_dlg_value", "store_dlg_value", [Arg(STR), Arg(STR)],
             REQUEST | BRANCH | FAILURE | ONREPLY),
        Func("fetch_dlg_value", "fetch_dlg_value", [Arg(STR), Arg(VAR)],
             REQUEST | BRANCH | FAILURE | ONREPLY),
        *[Func(f"dlg_on_{event}", f"dlg_on_{event}", [Arg(STATIC, optional=True, fixup=_route)],
               REQUEST | BRANCH | FAILURE | ONREPLY) for event in ("answer", "hangup", "timeout")],
    ],
    pvs={},
    depends=("tm",),
    init="init",
    child_init="child_init",
    mi={"dlg_list": ("mi_dlg_list", "mi_dlg_list_cnt"),
        "dlg_list_ctx": ("mi_dlg_list_ctx", "mi_dlg_list_ctx_cnt")},
)

_ids = itertools.count(1)


class Dialog:
    """One dialog: the initial INVITE's Call-ID and tags, its state and what scripts and
    modules attached to it."""

    def __init__(self, ctx, timeout):
        msg = ctx.msg
        self.id = next(_ids)
        self.h_entry, self.h_id = self.id & 0xFFF, self.id
        self.call_id = msg.call_id
        self.from_tag = msg.from_.tag or ""
        self.to_tag = None
        self.from_uri = msg.from_.uri
        self.to_uri = msg.to.uri
        self.state = UNCONFIRMED
        self.start = None
        self.created = time.time()
        self.timeout = timeout
        self.vals = {}
        self.profiles = []          # (name, value)
        self.flags = set()
        self.callbacks = {}         # event -> [cb(dlg, event, obj, direction)]; obj is the
        #                             request's Context, or (reply, tm branch) for responses
        self.caller = (ctx.src_ip, ctx.src_port)
        self.end_reason = None
        self.timer = None
        self.event_routes = {}      # "answer" | "hangup" | "timeout" -> route name

    @property
    def did(self):
        return f"{self.h_entry}.{self.h_id}"

    def on(self, event, cb):
        self.callbacks.setdefault(event, []).append(cb)


class Dialogs:
    """Every dialog of the process, by Call-ID."""

    def __init__(self, rt, params):
        self.rt = rt
        self.params = params
        self.by_callid = {}
        self.created_callbacks = []  # cb(dlg, ctx): modules that want every new dialog
        self.stats = {"active_dialogs": 0, "early_dialogs": 0, "processed_dialogs": 0,
                      "expired_dialogs": 0, "failed_dialogs": 0}
        self.profiles = {}
        for name in _split(params["profiles_with_value"]) + _split(params["profiles_no_value"]):
            self.profiles[name] = {}

    def match(self, msg):
        try:
            dlgs = self.by_callid.get(msg.call_id)
            if not dlgs:
                return None, None
            ftag, ttag = msg.from_.tag, msg.to.tag
        except SIPError:
            return None, None
        for d in dlgs:
            if d.state == DELETED:
                continue
            if ftag == d.from_tag and (d.to_tag is None or ttag == d.to_tag):
                return d, "downstream"
            if ttag == d.from_tag and (d.to_tag is None or ftag == d.to_tag):
                return d, "upstream"
        return None, None

    def fire(self, dlg, event, obj, direction=None):
        for cb in list(dlg.callbacks.get(event, ())):
            try:
                cb(dlg, event, obj, direction)
            except Exception:
                import traceback
                self.rt.log.error(f"dialog callback '{event}' failed:\n" + traceback.format_exc(),
                                  "dialog")

    def set_state(self, dlg, state, reason=None):
        old = dlg.state
        if state == old:
            return
        dlg.state = state
        if old in (UNCONFIRMED, EARLY) and state in (CONFIRMED_NA, CONFIRMED):
            dlg.start = time.time()
            self.stats["active_dialogs"] += 1
            loop = self.rt.server.loop
            dlg.timer = loop.call_later(dlg.timeout, self.expire, dlg)
        if state == EARLY:
            self.stats["early_dialogs"] += 1
        if old == EARLY and state != EARLY:
            self.stats["early_dialogs"] -= 1
        if state == DELETED:
            dlg.end_reason = reason
            if old in (CONFIRMED_NA, CONFIRMED):
                self.stats["active_dialogs"] -= 1
                self.stats["processed_dialogs"] += 1
            else:
                self.stats["failed_dialogs"] += 1
            if dlg.timer is not None:
                dlg.timer.cancel()
            self.fire(dlg, "terminated" if old in (CONFIRMED_NA, CONFIRMED) else "failed", None)
            for name, value in dlg.profiles:
                prof = self.profiles.get(name, {})
                prof[value] = prof.get(value, 1) - 1
            dlg.profiles = []
            self.rt.server.loop.call_later(5, self._forget, dlg)

    def _forget(self, dlg):
        lst = self.by_callid.get(dlg.call_id)
        if lst and dlg in lst:
            lst.remove(dlg)
            if not lst:
                del self.by_callid[dlg.call_id]

    def expire(self, dlg):
        if dlg.state != DELETED:
            self.stats["expired_dialogs"] += 1
            self.rt.log.notice(f"dialog {dlg.did} ({dlg.call_id}) timed out", "dialog")
            run_event_route(self, dlg, "timeout", None)
            self.set_state(dlg, DELETED, "timeout")


api_state = {"dialogs": None}


class Api:
    """For other modules (mediaproxy's engage mode): dialog callbacks."""

    def register_created(self, cb):
        api_state["dialogs"].created_callbacks.append(cb)

    def current(self, ctx):
        return ctx.local_data.get("dialog")


exports.api = Api()


def _split(text):
    return [p.strip().split("/")[0] for p in (text or "").split(";") if p.strip()]


def _dialogs():
    return api_state["dialogs"]


def init(rt):
    api_state["dialogs"] = Dialogs(rt, rt.modparams["dialog"])
    rt.stats_groups = getattr(rt, "stats_groups", {})
    rt.stats_groups["dialog"] = api_state["dialogs"].stats


def child_init(rt):
    previous = rt.server.request_hook

    def hook(ctx):
        _match_in_dialog(ctx)
        return previous(ctx) if previous is not None else False
    rt.server.request_hook = hook


# --- tracking ------------------------------------------------------------------------------

def _tm_callback(dlgs, dlg):
    """Follows the initial INVITE's replies."""
    def cb(tx, branch, reply):
        code = reply.status
        if dlg.state == DELETED:
            return
        event = (reply, branch)
        if code < 200:
            if code > 100 and reply.to.tag:
                dlg.to_tag = dlg.to_tag or reply.to.tag
                dlgs.set_state(dlg, EARLY)
            dlgs.fire(dlg, "response", event, "upstream")
        elif code < 300:
            dlg.to_tag = reply.to.tag
            dlgs.fire(dlg, "response", event, "upstream")
            answered = dlg.state in (UNCONFIRMED, EARLY)
            dlgs.set_state(dlg, CONFIRMED_NA)
            if answered:
                from runtime.context import Context
                rctx = Context(dlgs.rt, reply, src=branch.dst, route_type=ONREPLY)
                run_event_route(dlgs, dlg, "answer", rctx)
        else:
            dlgs.fire(dlg, "response", event, "upstream")
            # tm calls us before it marks this branch final
            if all(b.final or b is branch for b in tx.branches) and not tx.on_failure:
                dlgs.set_state(dlg, DELETED, "failed")
    return cb


def _match_in_dialog(ctx):
    """In-dialog requests: state changes (ACK, BYE) and callbacks, before the script."""
    msg = ctx.msg
    try:
        if not msg.to.tag:
            return
    except SIPError:
        return
    dlgs = _dialogs()
    dlg, direction = dlgs.match(msg)
    if dlg is None:
        return
    ctx.local_data["dialog"] = dlg
    ctx.local_data["dialog_dir"] = direction
    method = msg.method
    if method == "ACK" and dlg.state == CONFIRMED_NA:
        dlgs.set_state(dlg, CONFIRMED)
    dlgs.fire(dlg, "request", ctx, direction)
    if method == "BYE":
        run_event_route(dlgs, dlg, "hangup", ctx)
        dlgs.set_state(dlg, DELETED, "bye")
    elif method not in ("ACK",):
        def reply_cb(tx, branch, reply, dlg=dlg, direction=direction):
            dlgs.fire(dlg, "response", (reply, branch),
                      "downstream" if direction == "upstream" else "upstream")
        ctx.local_data.setdefault("tm_callbacks", []).append(reply_cb)


def create_dialog(ctx, flags=None):
    dlgs = _dialogs()
    if ctx.msg.method != "INVITE":
        return -1
    if ctx.local_data.get("dialog") is not None:
        return 1
    try:
        dlg = Dialog(ctx, _timeout(ctx, dlgs))
    except SIPError:
        return -1
    dlgs.by_callid.setdefault(dlg.call_id, []).append(dlg)
    ctx.local_data["dialog"] = dlg
    ctx.local_data["dialog_dir"] = "downstream"
    cb = _tm_callback(dlgs, dlg)
    if ctx.tx is not None:  # created from tm's request-in (engage_media_proxy)
        ctx.tx.callbacks.append(cb)
    else:
        ctx.local_data.setdefault("tm_callbacks", []).append(cb)
    for cb in dlgs.created_callbacks:
        cb(dlg, ctx)
    return 1


def _timeout(ctx, dlgs):
    v = ctx.local_data.get("dlg_timeout")
    return v if v else dlgs.params["default_timeout"]


def match_dialog(ctx, mode=None):
    return 1 if ctx.local_data.get("dialog") is not None else -1


def validate_dialog(ctx):
    return 1 if ctx.local_data.get("dialog") is not None else -1


def fix_route_dialog(ctx):
    return 1 if ctx.local_data.get("dialog") is not None else -1


def _dlg(ctx):
    return ctx.local_data.get("dialog")


def set_dlg_profile(ctx, name, value=None):
    dlg = _dlg(ctx)
    dlgs = _dialogs()
    if dlg is None or name not in dlgs.profiles:
        return -1
    dlg.profiles.append((name, value))
    prof = dlgs.profiles[name]
    prof[value] = prof.get(value, 0) + 1
    return 1


def unset_dlg_profile(ctx, name, value=None):
    dlg = _dlg(ctx)
    if dlg is None or (name, value) not in dlg.profiles:
        return -1
    dlg.profiles.remove((name, value))
    prof = _dialogs().profiles[name]
    prof[value] = prof.get(value, 1) - 1
    return 1


def is_in_profile(ctx, name, value=None):
    dlg = _dlg(ctx)
    if dlg is None:
        return -1
    return 1 if any(n == name and (value is None or v == value) for n, v in dlg.profiles) else -1


def get_profile_size(ctx, name, value, var):
    prof = _dialogs().profiles.get(name)
    if prof is None:
        return -1
    size = prof.get(value, 0) if value is not None else sum(prof.values())
    var.set(ctx, size)
    return 1


def set_dlg_flag(ctx, name):
    dlg = _dlg(ctx)
    if dlg is None:
        return -1
    dlg.flags.add(name)
    return 1


def reset_dlg_flag(ctx, name):
    dlg = _dlg(ctx)
    if dlg is None:
        return -1
    dlg.flags.discard(name)
    return 1


def is_dlg_flag_set(ctx, name):
    dlg = _dlg(ctx)
    return 1 if dlg is not None and name in dlg.flags else -1


def store_dlg_value(ctx, name, value):
    dlg = _dlg(ctx)
    if dlg is None:
        return -1
    dlg.vals[name] = value
    return 1


def _on(event):
    def arm(ctx, route=None):
        dlg = _dlg(ctx)
        if dlg is None:
            return -1
        if route is None:
            dlg.event_routes.pop(event, None)
        else:
            dlg.event_routes[event] = route
        return 1
    return arm


dlg_on_answer, dlg_on_hangup, dlg_on_timeout = (_on(e) for e in ("answer", "hangup", "timeout"))


def run_event_route(dlgs, dlg, event, ctx):
    """The route a script armed with dlg_on_<event>(), run on ctx (the reply, the BYE, or
    nothing for a timeout)."""
    name = dlg.event_routes.get(event)
    fn = dlgs.rt.routes.get(("route", name)) if name else None
    if fn is None:
        return
    if ctx is None:
        from runtime.server import _dummy_msg
        from runtime.context import Context
        ctx = Context(dlgs.rt, _dummy_msg())
    ctx.local_data["dialog"] = dlg
    dlgs.rt.server.run(ctx, fn, f"route[{name}]")


def fetch_dlg_value(ctx, name, var):
    dlg = _dlg(ctx)
    if dlg is None or name not in dlg.vals:
        return -1
    var.set(ctx, dlg.vals[name])
    return 1


# --- $DLG_* --------------------------------------------------------------------------------

def _field(fn):
    def get(ctx, sub):
        dlg = _dlg(ctx)
        return None if dlg is None else fn(ctx, dlg)
    return get


def _dlg_val_get(ctx, name):
    dlg = _dlg(ctx)
    return None if dlg is None else dlg.vals.get(name)


def _dlg_val_set(ctx, name, value, op, idx):
    dlg = _dlg(ctx)
    if dlg is None:
        raise ValueError("no dialog")
    if value is None:
        dlg.vals.pop(name, None)
    else:
        dlg.vals[name] = str(value)


def _timeout_set(ctx, sub, value, op, idx):
    dlg = _dlg(ctx)
    if dlg is None:
        ctx.local_data["dlg_timeout"] = value
    else:
        dlg.timeout = int(value)


exports.pvs.update({
    "DLG_status": PVDef("DLG_status", _field(lambda ctx, d: d.state)),
    "DLG_dir": PVDef("DLG_dir", _field(lambda ctx, d: ctx.local_data.get("dialog_dir"))),
    "DLG_did": PVDef("DLG_did", _field(lambda ctx, d: d.did)),
    "DLG_lifetime": PVDef("DLG_lifetime", _field(
        lambda ctx, d: int(time.time() - d.start) if d.start else 0)),
    "DLG_end_reason": PVDef("DLG_end_reason", _field(lambda ctx, d: d.end_reason)),
    "DLG_count": PVDef("DLG_count", lambda ctx, sub: _dialogs().stats["active_dialogs"]),
    "DLG_timeout": PVDef("DLG_timeout", _field(lambda ctx, d: d.timeout), _timeout_set),
    "DLG_flags": PVDef("DLG_flags", _field(lambda ctx, d: len(d.flags))),
    "dlg_val": PVDef("dlg_val", _dlg_val_get, _dlg_val_set, sub="req"),
})


# --- MI commands (OpenSIPS dialog's dlg_list / dlg_list_ctx replies) ------------------------

_MI_FLAG_BITS: dict = {}


def _mi_date(ts):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _mi_dialog(dlg, with_context=False):
    out = {"ID": dlg.did, "db_id": str((dlg.h_entry << 32) + dlg.h_id), "state": dlg.state}
    mask = 0
    for name in dlg.flags:
        mask |= 1 << _MI_FLAG_BITS.setdefault(name, len(_MI_FLAG_BITS) % 32)
    out["user_flags"] = mask
    start = int(dlg.start or 0)
    out["timestart"] = start
    if start:
        out["datestart"] = _mi_date(start)
    timeout = start + int(dlg.timeout) if start and dlg.state in (CONFIRMED_NA, CONFIRMED) \
        else 0
    out["timeout"] = timeout
    if timeout:
        out["dateout"] = _mi_date(timeout)
    out["callid"] = dlg.call_id
    out["from_uri"] = dlg.from_uri
    out["to_uri"] = dlg.to_uri
    out["caller_tag"] = dlg.from_tag
    out["CALLEES"] = [{"callee_tag": dlg.to_tag}] if dlg.to_tag else []
    if with_context:
        ctx = {}
        if dlg.vals:
            ctx["values"] = [{k: str(v)} for k, v in dlg.vals.items()]
        if dlg.profiles:
            ctx["profiles"] = [{n: "" if v is None else str(v)} for n, v in dlg.profiles]
        out["context"] = ctx
    return out


def _mi_all_dialogs():
    dlgs = _dialogs()
    every = [d for lst in (dlgs.by_callid.values() if dlgs else ()) for d in lst]
    return sorted(every, key=lambda d: d.id)


def _mi_list(callid, from_tag, with_context):
    from runtime.mi import MIError
    if callid is None:
        return {"Dialogs": [_mi_dialog(d, with_context) for d in _mi_all_dialogs()]}
    for d in _mi_all_dialogs():
        if d.call_id == callid and (from_tag is None or d.from_tag == from_tag):
            if d.state == DELETED:
                break
            return {"Dialog": _mi_dialog(d, with_context)}
    raise MIError(404, "No such dialog")


def _mi_list_cnt(index, counter, with_context):
    every = _mi_all_dialogs()
    chosen = every[index:index + counter] if counter > 0 else []
    return {"count": len(every), "Dialogs": [_mi_dialog(d, with_context) for d in chosen]}


def mi_dlg_list(rt, callid: str = None, from_tag: str = None):
    """The dialogs (or the one of a Call-ID [and From tag])."""
    return _mi_list(callid, from_tag, False)


def mi_dlg_list_cnt(rt, index: int, counter: int):
    """`counter` dialogs from position `index`, and how many there are."""
    return _mi_list_cnt(index, counter, False)


def mi_dlg_list_ctx(rt, callid: str = None, from_tag: str = None):
    """As dlg_list, with each dialog's values and profiles."""
    return _mi_list(callid, from_tag, True)


def mi_dlg_list_ctx_cnt(rt, index: int, counter: int):
    """As dlg_list with index and counter, with each dialog's values and profiles."""
    return _mi_list_cnt(index, counter, True)

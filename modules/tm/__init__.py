"""tm: stateful processing (transactions, forking, failure/branch/onreply routes)."""
from runtime.module import (ALL, BRANCH, ERROR, FAILURE, INT, LOCAL, ONREPLY, REGEX, REQUEST,
                            STATIC, STR, Arg, Func, Module, Param)
from runtime.pv import PVDef
from runtime.values import StrInt

exports = Module(
    name="tm",
    params=[
        Param("fr_timeout", int, 5), Param("fr_inv_timeout", int, 120),
        Param("wt_timer", int, 5), Param("delete_timer", int, 2),
        Param("T1_timer", int, 500), Param("T2_timer", int, 4000),
        Param("ruri_matching", int, 1), Param("via1_matching", int, 1),
        Param("unix_tx_timeout", int, 2), Param("restart_fr_on_each_reply", int, 1),
        Param("auto_inv_100", int, 1), Param("auto_inv_100_reason", str, "Trying"),
        Param("pass_provisional_replies", int, 0), Param("onreply_avp_mode", int, 0),
        Param("disable_6xx_block", int, 0), Param("enable_stats", int, 1),
        Param("minor_fr_timeout", int, 0), Param("timer_partitions", int, 1),
        Param("tm_replication_cluster", int, 0), Param("cluster_param", str, "instance"),
        Param("syn_branch", int, 1), Param("tw_append", str, multi=True),
        # 1.x: AVPs that override the timers per transaction, and a no-op
        Param("fr_timer_avp", str, None), Param("fr_inv_timer_avp", str, None),
        Param("noisy_ctimer", int, 0),
    ],
    functions=[
        Func("t_relay", "t_relay", [Arg(STR, optional=True, fixup=lambda v, rt: _relay_arg(v)),
                                    Arg(STR, optional=True, fixup=lambda v, rt: _relay_arg(v))],
             REQUEST | FAILURE),
        Func("t_newtran", "t_newtran", routes=REQUEST),
        Func("t_check_trans", "t_check_trans", routes=REQUEST | BRANCH),
        Func("t_reply", "t_reply", [Arg(INT), Arg(STR)], REQUEST | FAILURE | ERROR),
        Func("t_reply_with_body", "t_reply_with_body", [Arg(INT), Arg(STR), Arg(STR)],
             REQUEST | FAILURE),
        Func("t_on_failure", "t_on_failure", [Arg(STATIC, fixup=lambda v, rt: v)],
             REQUEST | FAILURE | BRANCH | ONREPLY),
        Func("t_on_reply", "t_on_reply", [Arg(STATIC, fixup=lambda v, rt: v)],
             REQUEST | FAILURE | BRANCH | ONREPLY),
        Func("t_on_branch", "t_on_branch", [Arg(STATIC, fixup=lambda v, rt: v)],
             REQUEST | FAILURE | BRANCH | ONREPLY),
        Func("t_check_status", "t_check_status", [Arg(REGEX)],
             REQUEST | FAILURE | ONREPLY | BRANCH),
        Func("t_was_cancelled", "t_was_cancelled", routes=REQUEST | FAILURE | ONREPLY | BRANCH),
        Func("t_is_canceled", "t_was_cancelled", routes=REQUEST | FAILURE | ONREPLY | BRANCH),
        Func("t_local_replied", "t_local_replied", [Arg(STR)], REQUEST | FAILURE | ONREPLY),
        Func("t_release", "t_release", routes=REQUEST),
        Func("t_set_fr", "t_set_fr", [Arg(INT), Arg(INT, optional=True)],
             REQUEST | FAILURE | BRANCH | ONREPLY),
        Func("t_reset_fr", "t_reset_fr", routes=REQUEST | FAILURE | BRANCH | ONREPLY),
        Func("t_flush_flags", "t_flush_flags", routes=REQUEST | BRANCH),
        Func("t_add_hdrs", "t_add_hdrs", [Arg(STR)], REQUEST),
    ],
    pvs={},
    init="init",
    child_init="child_init",
    aliases={"fr_timer": "fr_timeout", "fr_inv_timer": "fr_inv_timeout"},  # 1.x names
)

# OpenSIPS <= 3.0 numeric flags and the 3.x names
_FLAG_BITS = {0x01: "no-auto-477", 0x02: "no-auto-477", 0x04: "no-dns-failover",
              0x08: "pass-reason-hdr", 0x10: "allow-no-cancel"}
_FLAG_NAMES = {"no-auto-477", "no-dns-failover", "pass-reason-hdr", "allow-no-cancel",
               "pass-provisional-replies"}


def _relay_arg(value):
    """t_relay takes flags and/or a destination, in either order across versions
    (1.x: t_relay("udp:1.2.3.4:5060", "0x01"); 3.x: t_relay("no-auto-477", "udp:...")):
    flags come back as a frozenset, a destination as a str."""
    if value is None:
        return None
    text = str(value).strip()
    if text.lower().startswith("0x") or text.isdigit():
        n = int(text, 0)
        return frozenset(name for bit, name in _FLAG_BITS.items() if n & bit)
    names = frozenset(f.strip() for f in text.split(",") if f.strip())
    if names and names <= _FLAG_NAMES:
        return names
    if ":" in text or "." in text:
        return text
    raise ValueError(f"unknown t_relay flag(s): {', '.join(sorted(names - _FLAG_NAMES))}")


class Api:
    """What other modules use (as OpenSIPS's load_tm_api)."""

    def __init__(self):
        self.tm = None

    def find_transaction(self, ctx):
        if ctx.tx is None and self.tm is not None:
            ctx.tx = self.tm.lookup(ctx.msg)
        return ctx.tx

    def t_reply(self, ctx, code, reason):
        return t_reply(ctx, code, reason)


api = Api()
exports.api = api


def init(rt):
    from .engine import TM
    from runtime.sip import transaction
    params = rt.modparams["tm"]
    transaction.T1 = params["T1_timer"] / 1000
    transaction.T2 = params["T2_timer"] / 1000
    api.tm = TM(rt, params)
    rt.stats_groups = getattr(rt, "stats_groups", {})
    rt.stats_groups["tm"] = api.tm.stats


def child_init(rt):
    rt.server.reply_hook = api.tm.on_reply


def _tm(ctx):
    return api.tm


# --- script functions ----------------------------------------------------------------------

def _timer_avps(ctx):
    """1.x fr_timer_avp / fr_inv_timer_avp: per-call timers from AVPs (seconds)."""
    p = ctx.rt.modparams["tm"]
    for param, key in (("fr_timer_avp", "fr_timeout"), ("fr_inv_timer_avp", "fr_inv_timeout")):
        spec = p[param]
        if spec and key not in ctx.local_data:
            name = spec[5:-1] if spec.startswith("$avp(") else spec
            values = ctx.avps.get(name)
            if values and str(values[-1]).isdigit():
                ctx.local_data[key] = int(values[-1])


def t_relay(ctx, a=None, b=None):
    tm = _tm(ctx)
    _timer_avps(ctx)
    proxy = a if isinstance(a, str) else b if isinstance(b, str) else None
    method = ctx.msg.method
    if ctx.route_type == REQUEST:
        if method == "ACK":
            r = tm.ack(ctx)
            if r == 0:
                return 0
            from runtime.forward import forward_request
            return forward_request(ctx)  # end-to-end ACK: stateless
        if method == "CANCEL":
            if tm.cancel(ctx) > 0:
                ctx.sent = True
                return 0
            from runtime.forward import forward_request
            return forward_request(ctx)
        if ctx.tx is None and tm.retransmission(ctx):
            return 0
    r = tm.relay(ctx, proxy)
    return r


def t_newtran(ctx):
    tm = _tm(ctx)
    if ctx.tx is not None:
        return 1
    if tm.retransmission(ctx):
        return 0
    if ctx.msg.method == "ACK":
        return -1
    return 1 if tm.new_tx(ctx) is not None else -1


def t_check_trans(ctx):
    tm = _tm(ctx)
    method = ctx.msg.method
    if method == "CANCEL":
        return 1 if tm.lookup(ctx.msg, "INVITE") is not None else -1
    if method == "ACK":
        tx = tm.lookup(ctx.msg, "INVITE")
        if tx is None:
            return -1
        return 1 if tx.last_status >= 300 else -2
    if tm.retransmission(ctx):
        return 0
    return -1


def t_reply(ctx, code, reason):
    tm = _tm(ctx)
    if ctx.msg.method == "ACK":
        return -1
    tx = ctx.tx
    if tx is None:
        if tm.retransmission(ctx):
            return 0
        tx = tm.new_tx(ctx)
        if tx is None:
            return -1
    if not tm.reply(tx, code, reason, local=True):
        return -1
    ctx.sent = ctx.replied = True
    return 1


def t_reply_with_body(ctx, code, reason, body):
    tm = _tm(ctx)
    tx = ctx.tx or tm.new_tx(ctx)
    if tx is None:
        return -1
    ct = ctx.local_data.get("reply_content_type", "application/sdp")
    ok = tm.reply(tx, code, reason, local=True, headers=[f"Content-Type: {ct}"],
                  body=body.encode("utf-8", "surrogateescape"))
    return 1 if ok else -1


def _arm(ctx, name, route):
    ctx.local_data["t_" + name] = route
    if ctx.tx is not None:
        setattr(ctx.tx, name, route)
    return 1


def t_on_failure(ctx, route):
    return _arm(ctx, "on_failure", route)


def t_on_reply(ctx, route):
    return _arm(ctx, "on_reply", route)


def t_on_branch(ctx, route):
    return _arm(ctx, "on_branch", route)


def _status(ctx):
    if ctx.reply is not None:
        return ctx.reply.status
    if not ctx.msg.is_request:
        return ctx.msg.status
    tx = ctx.tx
    if tx is not None:
        if ctx.route_type == FAILURE and tx.winner is not None:
            return tx.winner.status
        return tx.last_status
    return 0


def t_check_status(ctx, rx):
    code = _status(ctx)
    return 1 if code and rx.search(str(code)) else -1


def t_was_cancelled(ctx):
    return 1 if ctx.tx is not None and ctx.tx.cancelled else -1


def t_local_replied(ctx, which):
    tx = ctx.tx
    if tx is None or not tx.local_replied:
        return -1
    if which == "all":
        return 1 if all(tx.local_replied) else -1
    return 1 if tx.local_replied[-1] else -1


def t_release(ctx):
    return 1


def t_set_fr(ctx, fr_inv, fr=None):
    ctx.local_data["fr_inv_timeout"] = fr_inv / 1000 if fr_inv else None
    if fr:
        ctx.local_data["fr_timeout"] = fr / 1000
    if ctx.tx is not None:
        if fr_inv:
            ctx.tx.fr_inv_timeout = fr_inv / 1000
        if fr:
            ctx.tx.fr_timeout = fr / 1000
    return 1


def t_reset_fr(ctx):
    ctx.local_data.pop("fr_inv_timeout", None)
    ctx.local_data.pop("fr_timeout", None)
    return 1


def t_flush_flags(ctx):
    return 1


def t_add_hdrs(ctx, text):
    for line in text.replace("\r\n", "\n").split("\n"):
        if line.strip():
            ctx.get_edits().add_header(line)
    return 1


# --- $T_* ----------------------------------------------------------------------------------

def _t_reply_code(ctx, sub):
    code = _status(ctx)
    return code or None


def _t_reply_reason(ctx, sub):
    if ctx.reply is not None:
        return ctx.reply.reason
    if not ctx.msg.is_request:
        return ctx.msg.reason
    return None


def _t_branch_idx(ctx, sub):
    return ctx.branch_idx


def _t_ruri(ctx, sub):
    return ctx.tx.ctx.ruri if ctx.tx is not None else None


def _t_id(ctx, sub):
    return f"{ctx.tx.id}" if ctx.tx is not None else None


def _fr_get(name):
    def get(ctx, sub):
        v = ctx.local_data.get(name)
        if v is None:
            v = getattr(api.tm, name)
        return int(v)
    return get


def _fr_set(name):
    def set_(ctx, sub, value, op, idx):
        ctx.local_data[name] = None if value is None else int(value)
        if ctx.tx is not None:
            setattr(ctx.tx, name, getattr(api.tm, name) if value is None else int(value))
    return set_


def _t_last_code(ctx, sub):
    tx = ctx.tx
    if tx is None or ctx.branch_idx is None or ctx.branch_idx >= len(tx.branches):
        return None
    return tx.branches[ctx.branch_idx].status or None


exports.pvs.update({
    "T_reply_code": PVDef("T_reply_code", _t_reply_code),
    "T_reply_reason": PVDef("T_reply_reason", _t_reply_reason),
    "T_branch_idx": PVDef("T_branch_idx", _t_branch_idx),
    "T_ruri": PVDef("T_ruri", _t_ruri),
    "T_id": PVDef("T_id", _t_id),
    "T_fr_timeout": PVDef("T_fr_timeout", _fr_get("fr_timeout"), _fr_set("fr_timeout")),
    "T_fr_inv_timeout": PVDef("T_fr_inv_timeout", _fr_get("fr_inv_timeout"),
                              _fr_set("fr_inv_timeout")),
    "T_branch_last_reply_code": PVDef("T_branch_last_reply_code", _t_last_code),
})

__all__ = ["exports", "api", "StrInt", "ALL", "LOCAL"]

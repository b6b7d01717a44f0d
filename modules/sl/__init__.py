"""sl: stateless replies."""
from runtime.forward import send_local_reply
from runtime.module import ERROR, FAILURE, INT, REQUEST, STR, Arg, Func, Module, Param

exports = Module(
    name="sl",
    params=[Param("enable_stats", int, 1)],
    functions=[
        Func("sl_send_reply", "sl_send_reply", [Arg(INT, name="code"), Arg(STR, name="reason")],
             routes=REQUEST | ERROR | FAILURE),
        Func("sl_reply_error", "sl_reply_error", routes=REQUEST | ERROR),
    ],
    init="init",
)

STATS = {"1xx_replies": 0, "2xx_replies": 0, "3xx_replies": 0, "4xx_replies": 0,
         "5xx_replies": 0, "6xx_replies": 0, "sent_replies": 0, "sent_err_replies": 0,
         "received_ACKs": 0}


def init(rt):
    rt.stats_groups = getattr(rt, "stats_groups", {})
    rt.stats_groups["sl"] = STATS


def sl_send_reply(ctx, code, reason):
    """Reply to the request without a transaction (an ACK is never answered)."""
    if ctx.msg.method == "ACK":
        STATS["received_ACKs"] += 1
        return 1
    if not 100 <= code <= 699:
        ctx.rt.log.error(f"sl_send_reply: invalid code {code}", "sl")
        return -1
    if not send_local_reply(ctx, code, reason):
        return -1
    STATS["sent_replies"] += 1
    key = f"{code // 100}xx_replies"
    STATS[key] = STATS.get(key, 0) + 1
    if code >= 300:
        STATS["sent_err_replies"] += 1
    return 1


def sl_reply_error(ctx):
    """Reply with the error of the last failed internal operation (500 when unknown)."""
    code, reason = ctx.error_info or (500, "Server Internal Error")
    return sl_send_reply(ctx, code, reason)

"""signaling: send_reply() replies statefully when a transaction exists, else statelessly."""
from runtime.module import ERROR, FAILURE, INT, REQUEST, STR, Arg, Func, Module

exports = Module(
    name="signaling",
    functions=[
        Func("send_reply", "send_reply", [Arg(INT, name="code"), Arg(STR, name="reason")],
             routes=REQUEST | FAILURE | ERROR),
    ],
    depends=("sl",),
)


def send_reply(ctx, code, reason):
    tm = ctx.rt.apis.get("tm")
    if tm is not None and (ctx.tx is not None or tm.find_transaction(ctx)):
        return tm.t_reply(ctx, code, reason)
    from modules.sl import sl_send_reply
    return sl_send_reply(ctx, code, reason)

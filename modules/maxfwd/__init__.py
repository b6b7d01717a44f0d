"""maxfwd: Max-Forwards processing."""
from runtime.module import BRANCH, FAILURE, INT, REQUEST, Arg, Func, Module, Param
from runtime.sip.headers import SIPError

exports = Module(
    name="maxfwd",
    params=[Param("max_limit", int, 256,
                  check=lambda v: None if 0 < v <= 256 else "must be between 1 and 256")],
    functions=[
        Func("mf_process_maxfwd_header", "mf_process_maxfwd_header", [Arg(INT, name="max")],
             routes=REQUEST),
        Func("is_maxfwd_lt", "is_maxfwd_lt", [Arg(INT, name="limit")],
             routes=REQUEST | FAILURE | BRANCH),
    ],
)


def _value(ctx):
    try:
        return ctx.msg.max_forwards
    except SIPError:
        return -2


def mf_process_maxfwd_header(ctx, default):
    """2: header added; 1: decremented; -1: it was 0 (the script answers 483); -2: bad."""
    v = _value(ctx)
    if v == -2:
        return -2
    if v is None:
        ctx.get_edits().add_header(f"Max-Forwards: {default}", "end")
        return 2
    if v == 0:
        return -1
    limit = ctx.rt.modparams["maxfwd"]["max_limit"]
    new = min(v, limit) - 1
    ctx.get_edits().replace_value(ctx.msg.get_header("max-forwards"), new)
    return 1


def is_maxfwd_lt(ctx, limit):
    v = _value(ctx)
    if v == -2:
        return -2
    if v is None:
        return -1
    return 1 if v < limit else -1

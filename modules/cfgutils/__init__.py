"""cfgutils: randomness, sleeps, shared variables ($shv), $env, $RANDOM, $ctime, locks."""
import os
import random
import time

from runtime.module import ALL, INT, STATIC, STR, VAR, Arg, Func, Module, Param
from runtime.pv import PVDef

exports = Module(
    name="cfgutils",
    params=[Param("initial_probability", int, 10,
                  check=lambda v: None if 0 <= v <= 100 else "must be 0-100"),
            Param("shvset", str, multi=True), Param("varset", str, multi=True),
            Param("hash_file", str, None), Param("lock_pool_size", int, 32)],
    functions=[
        Func("rand_event", "rand_event", [Arg(INT, optional=True)]),
        Func("rand_set_prob", "rand_set_prob", [Arg(INT)]),
        Func("rand_reset_prob", "rand_reset_prob"),
        Func("rand_get_prob", "rand_get_prob"),
        Func("sleep", "sleep", [Arg(INT)]),
        Func("usleep", "usleep", [Arg(INT)]),
        Func("abort", "abort"),
        Func("shuffle_avps", "shuffle_avps", [Arg(VAR)]),
        Func("get_static_lock", "nothing", [Arg(STR)]),
        Func("release_static_lock", "nothing", [Arg(STR)]),
        Func("get_dynamic_lock", "nothing", [Arg(STR)]),
        Func("release_dynamic_lock", "nothing", [Arg(STR)]),
        Func("get_accurate_time", "get_accurate_time", [Arg(VAR), Arg(VAR), Arg(VAR, optional=True)]),
        Func("ts_usec_delta", "ts_usec_delta",
             [Arg(INT), Arg(INT), Arg(INT), Arg(INT), Arg(VAR)]),
    ],
    pvs={},
    init="init",
)

_state = {"prob": 10}


def init(rt):
    _state["prob"] = rt.modparams["cfgutils"]["initial_probability"]
    for item in rt.modparams["cfgutils"]["shvset"] + rt.modparams["cfgutils"]["varset"]:
        name, _, typed = item.partition("=")
        kind, _, value = typed.partition(":")
        rt.shvars[name.strip()] = int(value) if kind.strip() == "i" else value


def _shv_get(ctx, name):
    return ctx.rt.shvars.get(name)


def _shv_set(ctx, name, value, op, idx):
    ctx.rt.shvars[name] = value


def _env(ctx, name):
    return os.environ.get(name)


def _random(ctx, sub):
    return random.randint(0, 2**31 - 1)


def _ctime(ctx, field):
    t = time.localtime()
    return {"sec": t.tm_sec, "min": t.tm_min, "hour": t.tm_hour, "mday": t.tm_mday,
            "mon": t.tm_mon, "year": t.tm_year, "wday": (t.tm_wday + 1) % 7,
            "yday": t.tm_yday}.get(field)


exports.pvs.update({
    "shv": PVDef("shv", _shv_get, _shv_set, sub="req"),
    "env": PVDef("env", _env, sub="req"),
    "RANDOM": PVDef("RANDOM", _random),
    "ctime": PVDef("ctime", _ctime, sub="req"),
})


def nothing(ctx, *args):
    return 1


def rand_event(ctx, prob=None):
    p = _state["prob"] if prob is None else prob
    return 1 if random.random() * 100 < p else -1


def rand_set_prob(ctx, prob):
    if not 0 <= prob <= 100:
        return -1
    _state["prob"] = prob
    return 1


def rand_reset_prob(ctx):
    _state["prob"] = ctx.rt.modparams["cfgutils"]["initial_probability"]
    return 1


def rand_get_prob(ctx):
    return _state["prob"] or -1


def sleep(ctx, seconds):
    time.sleep(max(seconds, 0))  # blocks this worker, as in OpenSIPS
    return 1


def usleep(ctx, usec):
    time.sleep(max(usec, 0) / 1e6)
    return 1


def abort(ctx):
    ctx.rt.log.error("abort() called from the script", "cfgutils")
    os.abort()


def shuffle_avps(ctx, var):
    name = var.ast.sub
    lst = ctx.avps.get(name)
    if not lst:
        return -1
    random.shuffle(lst)
    return 1


def get_accurate_time(ctx, sec, usec, text=None):
    now = time.time()
    sec.set(ctx, int(now))
    usec.set(ctx, int(now * 1e6) % 1_000_000)
    if text is not None:
        text.set(ctx, f"{now:.6f}")
    return 1


def ts_usec_delta(ctx, s1, u1, s2, u2, out):
    out.set(ctx, abs((s1 * 1_000_000 + u1) - (s2 * 1_000_000 + u2)))
    return 1

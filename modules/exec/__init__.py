"""exec: run external commands from the script (/bin/sh -c), with the request's details in
the environment when `setvars` is on.

    exec(cmd[, stdin[, $out[, $err[, $avp(env)]]]])   3.x (also as async(exec(...), resume))
    exec_msg(cmd)          the SIP message on the command's stdin          (1.x/2.x)
    exec_dset(cmd)         R-URI appended; output lines become R-URI + branches (1.x/2.x)
    exec_avp(cmd[, "$avp(a) $avp(b)"])   output lines into AVPs           (1.x/2.x)
    exec_getenv(name[, $avp(x)])

A command whose output nobody asked for is started and left running (as OpenSIPS does);
otherwise the worker waits for it, at most `time_to_kill` seconds when that is set. 1 when
the command ran and exited 0, -1 otherwise."""
import os
import re
import shlex
import subprocess

from runtime.module import (EVENT, FAILURE, LOCAL, ONREPLY, REQUEST, STARTUP, STR,
                            STR_NO_EXPAND, TIMER, VAR, Arg, Func, Module, Param)
from runtime.context import Branch
from runtime.sip.headers import SIPError

_ROUTES = REQUEST | FAILURE | LOCAL | STARTUP | TIMER | EVENT | ONREPLY


def _avp_list(value, rt):
    """exec_avp's AVP list: '$avp(a) $avp(b)' or 'a,b' -> [AVP names]."""
    names = []
    for part in re.split(r"[\s,;]+", str(value or "").strip()):
        if not part:
            continue
        if part.startswith("$"):
            m = re.match(r"^\$avp\(([^)]+)\)$", part)
            if m is None:
                raise ValueError(f"'{part}' is not an AVP")
            part = m.group(1)
        names.append(part[2:] if part[:2] in ("s:", "i:") else part)
    return names


exports = Module(
    name="exec",
    params=[Param("setvars", int, 0), Param("time_to_kill", int, 0)],
    functions=[
        Func("exec", "exec_", [Arg(STR, name="command"), Arg(STR, optional=True, name="stdin"),
                               Arg(VAR, optional=True, name="stdout"),
                               Arg(VAR, optional=True, name="stderr"),
                               Arg(VAR, optional=True, name="env AVP")], _ROUTES,
             is_async=True),
        Func("exec_msg", "exec_msg", [Arg(STR, name="command")], _ROUTES & ~STARTUP),
        Func("exec_dset", "exec_dset", [Arg(STR, name="command")], REQUEST | FAILURE),
        Func("exec_avp", "exec_avp", [Arg(STR, name="command"),
                                      Arg(STR_NO_EXPAND, optional=True, fixup=_avp_list,
                                          name="AVPs")],
             _ROUTES),
        Func("exec_getenv", "exec_getenv", [Arg(STR, name="variable"),
                                            Arg(VAR, optional=True, name="AVP")], _ROUTES),
    ],
    init="init",
    destroy="destroy",
)

_state: dict = {"children": []}


def init(rt):
    _state["params"] = rt.modparams["exec"]
    _state["rt"] = rt
    rt.timers.append((5, _reap))


def destroy(rt):
    _reap()


def _reap():
    """Collect the commands started without waiting (no zombies)."""
    alive = []
    for p in _state["children"]:
        if p.poll() is None:
            alive.append(p)
    _state["children"] = alive


# --- the environment (setvars) ---------------------------------------------------------------

def _sip_env(ctx):
    env = {}
    msg = ctx.msg
    if msg is None or not msg.is_request:
        return env
    hf = {}
    for h in msg.headers:
        name = re.sub(r"[^A-Z0-9]", "_", h.name.upper()) if len(h.name) > 1 else \
            re.sub(r"[^A-Z0-9]", "_", h.key.upper())
        hf.setdefault(name, []).append(h.value)
    for name, values in hf.items():
        env[f"SIP_HF_{name}"] = ",".join(values)
    try:
        via = msg.via1
        env["SIP_TID"] = (via.branch or "") if via is not None else ""
    except SIPError:
        env["SIP_TID"] = ""
    try:
        env["SIP_DID"] = msg.to.tag or ""
    except SIPError:
        env["SIP_DID"] = ""
    env["SIP_SRCIP"] = ctx.src_ip
    env["SIP_ORURI"] = msg.ruri
    env["SIP_RURI"] = ctx.ruri
    from runtime.pv import parse_uri
    u, ou = parse_uri(ctx.ruri), parse_uri(msg.ruri)
    env["SIP_USER"] = (u.user or "") if u is not None else ""
    env["SIP_OUSER"] = (ou.user or "") if ou is not None else ""
    return env


def _env(ctx, extra=None):
    env = dict(os.environ)
    if _state["params"]["setvars"]:
        env.update(_sip_env(ctx))
    if extra:
        env.update(extra)
    return env


# --- running -----------------------------------------------------------------------------------

def _run(ctx, cmd, stdin=None, want_output=True, env_extra=None):
    """(exit status, stdout, stderr) or None when it could not run; with want_output False
    the command is started and left (status 0)."""
    log = ctx.rt.log
    env = _env(ctx, env_extra)
    try:
        if not want_output:
            p = subprocess.Popen(["/bin/sh", "-c", cmd], env=env, stdin=subprocess.PIPE
                                 if stdin is not None else subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 start_new_session=True)
            if stdin is not None:
                try:
                    p.stdin.write(stdin if isinstance(stdin, bytes) else
                                  stdin.encode("utf-8", "surrogateescape"))
                    p.stdin.close()
                except OSError:
                    pass
            _state["children"].append(p)
            return 0, b"", b""
        ttk = _state["params"]["time_to_kill"] or None
        data = None if stdin is None else (stdin if isinstance(stdin, bytes) else
                                           stdin.encode("utf-8", "surrogateescape"))
        r = subprocess.run(["/bin/sh", "-c", cmd], input=data, env=env, capture_output=True,
                           timeout=ttk, stdin=None if data is not None else subprocess.DEVNULL)
        return r.returncode, r.stdout, r.stderr
    except subprocess.TimeoutExpired as e:
        log.warning(f"exec: '{cmd}' killed after time_to_kill", "exec")
        return -1, e.stdout or b"", e.stderr or b""
    except OSError as e:
        log.error(f"exec: cannot run '{cmd}': {e}", "exec")
        return None


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _store(ctx, pv, data: bytes):
    """Output into a variable: each line its own value for an AVP, the text otherwise."""
    text = _text(data)
    if pv.d.name == "avp":
        lines = text.splitlines()
        for line in lines:
            pv.set(ctx, line)
        return
    pv.set(ctx, text)


def exec_(ctx, cmd, stdin=None, out=None, err=None, envavp=None):
    extra = None
    if envavp is not None:
        values = envavp.values(ctx)
        extra = {f"OSIPS_EXEC_{i}": str(v) for i, v in enumerate(values)}
    want = out is not None or err is not None
    r = _run(ctx, cmd, stdin, want_output=want, env_extra=extra)
    if r is None:
        return -1
    status, so, se = r
    if out is not None:
        _store(ctx, out, so)
    if err is not None:
        _store(ctx, err, se)
    return 1 if status == 0 else -1


def exec_msg(ctx, cmd):
    r = _run(ctx, cmd, ctx.msg.raw if ctx.msg is not None else b"", want_output=True)
    if r is None:
        return -1
    return 1 if r[0] == 0 else -1


def exec_dset(ctx, cmd):
    """The R-URI is the last argument; the first output line becomes the R-URI, the others
    new branches."""
    r = _run(ctx, f"{cmd} {shlex.quote(ctx.ruri)}", want_output=True)
    if r is None or r[0] != 0:
        return -1
    uris = [line.strip() for line in _text(r[1]).splitlines() if line.strip()]
    if not uris:
        ctx.rt.log.error(f"exec_dset: no URI from '{cmd}'", "exec")
        return -1
    ctx.new_ruri = uris[0]
    for u in uris[1:]:
        ctx.branches.append(Branch(u))
    return 1


def exec_avp(ctx, cmd, names=None):
    r = _run(ctx, cmd, want_output=True)
    if r is None:
        return -1
    names = list(names or [])
    from runtime.pv import set_avp
    for i, line in enumerate(_text(r[1]).splitlines()):
        name = names[i] if i < len(names) else str(i + 1)
        set_avp(ctx.avps, name, line)
    return 1 if r[0] == 0 else -1


def exec_getenv(ctx, name, avp=None):
    value = os.environ.get(name)
    if value is None:
        return -1
    if avp is not None:
        avp.set(ctx, value)
    else:
        from runtime.pv import set_avp
        set_avp(ctx.avps, "1", value)
    return 1


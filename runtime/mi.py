"""The Management Interface (MI): the command registry and JSON-RPC 2.0 as OpenSIPS 3.x
speaks it, whatever carries it (mi_fifo, mi_http, mi_datagram).

A module declares its commands in its export block, `mi={"ul_dump": "mi_ul_dump", ...}`.
A value is a handler (or the name of one in the module), a tuple of handlers, or a `Cmd`.
A handler is `handler(rt, <params>)`; its parameters after `rt` are the MI parameter names,
and they make the command's *recipes* (the parameter sets it accepts), as OpenSIPS's
`mi_recipe_t` lists do:

    def mi_dlg_list(rt, callid: str = None, from_tag: str = None)   # {} {callid} {callid,from_tag}
    def mi_dlg_list_cnt(rt, index: int, counter: int)               # {index,counter}
    exports = Module(..., mi={"dlg_list": ("mi_dlg_list", "mi_dlg_list_cnt")})

An annotation (`int`, `str`, `list`) converts the JSON value as OpenSIPS's
`get_mi_int_param` & co do, with their errors. A handler returns what goes in `result`
(OpenSIPS's "OK" is the string "OK"), raises `MIError(code, message)` for an error reply,
and may be a coroutine function.

Requests are matched to a recipe as OpenSIPS does: no params (or an empty array/object)
picks the recipe without parameters; positional params pick the recipe with as many
parameters (two such recipes: "Ambiguous call"); named params pick the recipe whose names
are exactly the ones given. Errors carry OpenSIPS's codes and texts.
"""
from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import os
import platform
import sys
import time
import traceback
from dataclasses import dataclass

# JSON-RPC 2.0 codes and texts (OpenSIPS mi/mi.h)
PARSE_ERROR = (-32700, "Parse error")
INVALID_REQUEST = (-32600, "Invalid Request")
METHOD_NOT_FOUND = (-32601, "Method not found")
INVALID_PARAMS = (-32602, "Invalid params")
SERVER_ERROR = (-32000, "Server error")

ERR_POS_PARAMS = "Command only supports named parameters"
ERR_AMBIGUOUS = "Ambiguous call, use named parameters instead"
ERR_NO_PARAMS = "Too few or too many parameters"
ERR_MATCH_PARAMS = "Named parameters do not match"
ERR_CMD_NULL = "Command handler returned null"
ERR_PARAM_HANDLE = "Failed to handle parameter"

OK = "OK"


class MIError(Exception):
    """An MI error reply: {"code": code, "message": message[, "data": data]}."""

    def __init__(self, code: int, message: str, data: str | None = None):
        super().__init__(f"{code} {message}" + (f" ({data})" if data else ""))
        self.code = code
        self.message = message
        self.data = data

    def as_error(self) -> dict:
        err = {"code": self.code, "message": self.message}
        if self.data:
            err["data"] = self.data
        return err


def params_error(detail: str) -> MIError:
    return MIError(*INVALID_PARAMS, detail)


# --- parameter conversions (OpenSIPS mi/item.c get_mi_*_param) --------------------------

def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _as_int(v: float | int) -> int:
    """A JSON number as cJSON's valueint: truncated, saturated to a C int."""
    if isinstance(v, float):
        if v != v:
            return 0
        v = max(min(v, 2147483647.0), -2147483648.0)
        return int(v)
    return max(min(v, 2147483647), -2147483648)


def _no_constants(name):
    raise ValueError(f"{name} is not JSON")


DECODER = json.JSONDecoder(parse_constant=_no_constants)


def _str2sint(text: str) -> int | None:
    t = text[1:] if text[:1] in "+-" else text
    if not t or not t.isdigit() or not t.isascii():
        return None
    return int(text)


def get_int(value, name: str) -> int:
    if _is_number(value):
        return _as_int(value)
    if isinstance(value, str):
        n = _str2sint(value)
        if n is not None:
            return n
    raise params_error(f"Bad type for parameter '{name}'")


def get_str(value, name: str) -> str:
    if isinstance(value, str):
        return value
    if _is_number(value):
        return str(_as_int(value))
    raise params_error(f"Bad type for parameter '{name}'")


def get_array(value, name: str) -> list:
    if not isinstance(value, list):
        raise params_error(f"Bad type for parameter '{name}'")
    if not value:
        raise params_error(f"Empty array in parameter '{name}'")
    return value


def get_arr_str(array: list, i: int, name: str) -> str:
    v = array[i]
    if isinstance(v, str):
        return v
    if _is_number(v):
        return str(_as_int(v))
    raise params_error(f"Bad type for array item in parameter '{name}'")


_CONVERTERS = {"int": get_int, "str": get_str, "list": get_array}


def _converter(annotation):
    if annotation is inspect.Parameter.empty:
        return None
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    return _CONVERTERS.get(text.split("|")[0].split("[")[0].strip())


# --- commands ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Recipe:
    params: tuple
    handler: object
    converters: dict


@dataclass
class Cmd:
    """An MI command with explicit options. `handlers`: one handler or several."""
    handlers: object
    help: str = ""
    named_only: bool = False
    aliases: tuple = ()


@dataclass
class Command:
    name: str
    module: str
    recipes: list
    help: str = ""
    named_only: bool = False
    aliases: tuple = ()

    def param_sets(self) -> list:
        return [list(r.params) for r in self.recipes]


def recipes_of(handler) -> list:
    """The recipes a handler's signature gives: its required parameters, then each
    prefix of its optional ones."""
    sig = inspect.signature(handler)
    ps = [p for p in list(sig.parameters.values())[1:]
          if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in ps if p.default is p.empty]
    optional = [p for p in ps if p.default is not p.empty]
    conv = {p.name: _converter(p.annotation) for p in ps}
    out = []
    for k in range(len(optional) + 1):
        names = tuple(p.name for p in required + optional[:k])
        out.append(Recipe(names, handler, {n: conv[n] for n in names if conv[n]}))
    return out


def make_command(name: str, module: str, spec, pymod=None) -> Command:
    opts = spec if isinstance(spec, Cmd) else Cmd(spec)
    handlers = opts.handlers if isinstance(opts.handlers, (list, tuple)) else [opts.handlers]
    recipes, doc = [], opts.help
    for h in handlers:
        if isinstance(h, str):
            if pymod is None:
                raise ValueError(f"MI command {name}: cannot resolve '{h}'")
            h = getattr(pymod, h)
        recipes.extend(recipes_of(h))
        if not doc and h.__doc__:
            doc = " ".join(h.__doc__.strip().split("\n\n")[0].split())
    return Command(name, module, recipes, doc, opts.named_only, tuple(opts.aliases))


class Registry:
    """Every MI command of the running proxy: the core's, then each loaded module's."""

    def __init__(self):
        self.commands: list[Command] = []
        self.by_name: dict[str, Command] = {}

    def add(self, cmd: Command):
        if cmd.name in self.by_name:
            raise ValueError(f"MI command '{cmd.name}' is registered twice")
        self.commands.append(cmd)
        self.by_name[cmd.name] = cmd
        for alias in cmd.aliases:
            self.by_name.setdefault(alias, cmd)

    def lookup(self, name: str) -> Command | None:
        cmd = self.by_name.get(name)
        if cmd is None and ":" in name:          # "module:command" (OpenSIPS 3.5+ names)
            mod, _, local = name.partition(":")
            cmd = self.by_name.get(local)
            if cmd is not None and cmd.module != mod:
                cmd = None
        return cmd


def registry(rt) -> Registry:
    """The registry of this runtime (built on first use, after the modules loaded)."""
    reg = getattr(rt, "mi_registry", None)
    if reg is None:
        reg = build_registry(rt)
        rt.mi_registry = reg
    return reg


def build_registry(rt) -> Registry:
    from . import stats
    reg = Registry()
    for name, spec in CORE_COMMANDS.items():
        reg.add(make_command(name, "core", spec, sys.modules[__name__]))
    for name, spec in stats.MI_COMMANDS.items():
        reg.add(make_command(name, "core", spec, stats))
    for modname, mod in rt.modules.items():
        if modname == "core" or not mod.mi:
            continue
        try:
            pymod = importlib.import_module(f"modules.{modname}")
        except ImportError:
            pymod = None
        for name, spec in mod.mi.items():
            try:
                reg.add(make_command(name, modname, spec, pymod))
            except (ValueError, AttributeError) as e:
                rt.log.error(f"MI command '{name}' of module {modname}: {e}", "mi")
    return reg


# --- JSON-RPC ---------------------------------------------------------------------------

@dataclass
class Request:
    obj: object = None
    id: object = None            # the id member (None: absent -> a notification)
    has_id: bool = False
    method: str | None = None
    params: object = None        # list, dict or None (absent or empty)
    error: tuple | None = None   # PARSE_ERROR / INVALID_REQUEST


def parse_request(text) -> Request:
    """One JSON-RPC request object, checked as OpenSIPS's parse_mi_request does."""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", errors="replace")
    try:
        obj = DECODER.decode(text)
    except (ValueError, RecursionError):
        return Request(error=PARSE_ERROR)
    return check_request(obj)


def check_request(obj) -> Request:
    req = Request(obj=obj)
    if not isinstance(obj, dict):
        req.error = INVALID_REQUEST
        return req
    if "id" in obj:
        req.has_id = True
        req.id = obj["id"]
        if not (req.id is None or isinstance(req.id, str) or _is_number(req.id)):
            req.error = INVALID_REQUEST
    if obj.get("jsonrpc") != "2.0":
        req.error = INVALID_REQUEST
    method = obj.get("method")
    if isinstance(method, str):
        req.method = method
    else:
        req.error = INVALID_REQUEST
    if "params" in obj:
        params = obj["params"]
        if not isinstance(params, (list, dict)):
            req.error = INVALID_REQUEST
        elif params:
            req.params = params
    return req


def pick_recipe(cmd: Command, params):
    """The recipe for these params, or MIError as OpenSIPS's get_cmd_recipe reports."""
    positional = isinstance(params, list)
    if positional and cmd.named_only:
        raise params_error(ERR_POS_PARAMS)
    err, match = ERR_NO_PARAMS, None
    for r in cmd.recipes:
        if params is None:
            if not r.params:
                return r
            continue
        if not r.params:
            continue
        if positional:
            if len(r.params) == len(params):
                if match is not None:
                    raise params_error(ERR_AMBIGUOUS)
                match = r
        else:
            if len(r.params) != len(params):
                continue
            err = ERR_MATCH_PARAMS
            if all(p in params for p in r.params):
                return r
    if match is None:
        raise params_error(err)
    return match


async def run_command(rt, cmd: Command, params):
    """Run a command with JSON params; its result, or MIError."""
    recipe = pick_recipe(cmd, params)
    if params is None:
        values = {}
    elif isinstance(params, list):
        values = dict(zip(recipe.params, params))
    else:
        values = {p: params[p] for p in recipe.params}
    try:
        for name, conv in recipe.converters.items():
            values[name] = conv(values[name], name)
        result = recipe.handler(rt, **values)
        if inspect.isawaitable(result):
            result = await result
    except MIError:
        raise
    except Exception:
        rt.log.error(f"MI command {cmd.name} failed:\n{traceback.format_exc()}", "mi")
        raise MIError(*SERVER_ERROR, ERR_CMD_NULL)
    return result


async def execute(rt, req: Request) -> dict | None:
    """The response object for a parsed request (None: a notification, no reply)."""
    if req.error is not None:
        resp = {"jsonrpc": "2.0", "error": {"code": req.error[0], "message": req.error[1]}}
    else:
        cmd = registry(rt).lookup(req.method)
        try:
            if cmd is None:
                raise MIError(*METHOD_NOT_FOUND)
            resp = {"jsonrpc": "2.0", "result": await run_command(rt, cmd, req.params)}
        except MIError as e:
            resp = {"jsonrpc": "2.0", "error": e.as_error()}
    if not req.has_id:
        # a notification is answered only when it could not be read as a request
        if "error" not in resp or resp["error"]["code"] not in (PARSE_ERROR[0],
                                                                  INVALID_REQUEST[0]):
            return None
    rid = req.id if req.has_id and _valid_id(req.id) else None
    resp["id"] = _as_int(rid) if _is_number(rid) else rid
    return resp


def _valid_id(rid) -> bool:
    return rid is None or isinstance(rid, str) or _is_number(rid)


def dumps(resp: dict, pretty: bool = False) -> str:
    if pretty:
        return json.dumps(resp, ensure_ascii=False, indent="\t", separators=(",", ":\t"))
    return json.dumps(resp, ensure_ascii=False, separators=(",", ":"))


async def handle_text(rt, text, pretty: bool = False) -> str | None:
    """Request text in, reply text out (None: nothing to send back)."""
    return await handle_request(rt, parse_request(text), pretty)


async def handle_request(rt, req: Request, pretty: bool = False) -> str | None:
    resp = await execute(rt, req)
    if resp is None:
        return None
    try:
        return dumps(resp, pretty)
    except (TypeError, ValueError):
        rt.log.error(f"MI command {req.method}: its reply is not JSON:\n"
                     f"{traceback.format_exc()}", "mi")
        return dumps({"jsonrpc": "2.0", "error": {"code": SERVER_ERROR[0],
                                                  "message": SERVER_ERROR[1]},
                      "id": resp.get("id")}, pretty)


# --- processes (ps) -----------------------------------------------------------------------

def add_process(rt, desc: str):
    """Name one more job of this process for `ps` (MI FIFO, HTTPD 127.0.0.1:8888 ...)."""
    procs = getattr(rt, "mi_processes", None)
    if procs is None:
        procs = rt.mi_processes = []
    if desc not in procs:
        procs.append(desc)


def processes(rt) -> list:
    """What OpenSIPS runs as processes, cfgscript runs as jobs of one event loop: one PID."""
    descs = ["attendant"]
    tcp = False
    for s in rt.sockets:
        if s.proto == "udp":
            descs.append(f"SIP receiver {s}")
        else:
            tcp = True
    if tcp:
        descs.append("TCP main")
    descs.extend(getattr(rt, "mi_processes", []))
    descs.append("timer")
    return descs


# --- core commands ------------------------------------------------------------------------

def _ctime(t: float) -> str:
    return time.ctime(t)


def mi_uptime(rt):
    """Time information: now, when the proxy started and how long it has run."""
    now = time.time()
    return {"Now": _ctime(now), "Up since": _ctime(rt.started),
            "Up time": f"{int(now - rt.started)} [sec]"}


def _server_string() -> str:
    import cfgscript
    return (f"cfgscript ({cfgscript.__version__} (python{platform.python_version()}/"
            f"{sys.platform}))")


def mi_version(rt, revision: str = None):
    """The version string of the running proxy."""
    out = {"Server": _server_string()}
    if revision is not None:
        import cfgscript
        out["Revision"] = cfgscript.__version__
    return out


def mi_pwd(rt):
    """The working directory of the proxy."""
    return {"WD": os.getcwd()}


def mi_arg(rt):
    """The command line the proxy was started with."""
    return list(sys.argv)


def mi_which(rt, command: str = None):
    """Every MI command, or the parameter sets one command accepts."""
    reg = registry(rt)
    if command is None:
        return [c.name for c in reg.commands]
    if command.endswith(":"):
        names = [c.name for c in reg.commands if c.module == command[:-1]]
        if names:
            return names
        raise MIError(404, "unknown MI command")
    cmd = reg.lookup(command)
    if cmd is None:
        raise MIError(404, "unknown MI command")
    return cmd.param_sets()


def mi_help(rt, mi_cmd: str = None):
    """What an MI command does."""
    if mi_cmd is None:
        return "Usage: help mi_cmd - returns information about 'mi_cmd'"
    cmd = registry(rt).lookup(mi_cmd)
    if cmd is None:
        raise MIError(404, "unknown MI command")
    return {"Help": cmd.help or "not available for this command", "Exported by": cmd.module}


def mi_ps(rt):
    """The jobs of the proxy (one process: every job has its PID)."""
    pid = os.getpid()
    return {"Processes": [{"ID": i, "PID": pid, "Type": d}
                          for i, d in enumerate(processes(rt))]}


def mi_kill(rt):
    """Stop the proxy (as SIGTERM does)."""
    server = rt.server
    if server is None or getattr(server, "stopping", None) is None:
        raise MIError(500, "Internal error")
    server.loop.call_soon(server.stopping.set)
    return OK


def mi_log_level(rt, level: int = None, pid: int = None):
    """Get or set the log level (of the process, or of one PID)."""
    if level is None:
        pid_ = os.getpid()
        return {"Processes": [{"PID": pid_, "Log level": rt.log_level, "Type": d}
                              for d in processes(rt)]}
    if pid is not None and pid != os.getpid():
        raise params_error("Bad PID")
    rt.set_log_level(level)
    return {"Log level" if pid is not None else "New global log level": level}


async def mi_reload_routes(rt):
    """Re-read the script and switch to its routes; transactions, dialogs and
    registrations stay. A script that does not check is refused."""
    return await reload_routes(rt)


# --- reload_routes --------------------------------------------------------------------------

def _script_source(rt):
    """How the running script was read: (path, pipe, defines, listen)."""
    args = getattr(rt, "options", None)
    path = getattr(args, "cfg", None) or rt.script_file
    pipe = getattr(args, "pipe", None)
    defines = {}
    for item in getattr(args, "defines", None) or ():
        name, _, value = item.partition("=")
        defines[name] = value
    listen = list(getattr(args, "listen", None) or ())
    return path, pipe, defines, listen


def _check_script(path, pipe, defines, listen):
    """Parse the script and check it as `cfgscript -C` does: (script, error lines).
    Runs in a worker thread: it builds a fresh runtime and touches nothing live."""
    from cfgscript import CfgError
    from cfgscript.parser import parse_file

    from .loader import load_script
    try:
        script = parse_file(path, pipe=pipe, defines=defines)
    except CfgError as e:
        return None, [d.render(with_source=False) for d in e.diagnostics]
    except OSError as e:
        return None, [f"{path}: error: {e.strerror}"]
    diags = load_script(script, listen=listen, check_only=True).diagnostics
    return script, [d.render(with_source=False) for d in diags if d.severity == "error"]


def _compile_live(rt, script):
    """Compile the script's routes against the running modules (their fixups bind to the
    live runtime): (compiler, compiled, error lines)."""
    from .compiler import Compiler
    from .loader import Resolver, _check_route_types
    diags: list = []
    resolver = Resolver(rt, script.dialect, diags, {})
    for mod in rt.modules.values():
        resolver.add_module(mod)
    instrument = bool(rt.tracing or rt.hit_counts is not None)
    comp = Compiler(resolver, dialect=script.dialect, instrument=instrument,
                    max_while=int(rt.config.get("max_while_loops", 10000)))
    resolver.compiler = comp
    comp.add_routes(script.routes)
    if ("route", None) not in comp.routes:
        return comp, None, ["the script has no main route ('route { ... }')"]
    try:
        compiled = comp.compile()
    except SyntaxError as e:
        return comp, None, [f"internal compiler error: {e}"]
    diags.extend(compiled.diagnostics)
    _check_route_types(comp, resolver, diags)
    return comp, compiled, [d.render(with_source=False) for d in diags
                            if d.severity == "error"]


def _carry_hits(old, new, old_counts):
    """Coverage counters for the new points: a point of the old script keeps its count."""
    by_key: dict = {}
    for point, n in zip(old.points, old_counts):
        by_key[tuple(point)] = by_key.get(tuple(point), 0) + n
    counts = [0] * len(new.points)
    for i, point in enumerate(new.points):
        counts[i] = by_key.pop(tuple(point), 0)
    return counts


def swap_routes(rt, comp, compiled):
    """Switch the running proxy to new compiled routes. No await in here: on the event loop
    this is atomic, every message runs wholly on the old routes or wholly on the new."""
    old = rt.compiled
    if old is not None and "_hit" in old.ns:
        compiled.ns["_hit"] = old.ns["_hit"]
    counts = rt.hit_counts
    if counts is not None and old is not None:
        counts = _carry_hits(old, compiled, counts)
    rt.route_infos = comp.routes
    rt.compiled = compiled
    rt.routes = compiled.functions
    if counts is not None:
        rt.hit_counts = counts


def _collect_old_routes():
    """The old routes are cycles (functions <-> their namespace). When the start-up heap was
    frozen (gc.freeze), they would stay there for good: collect them, freeze again."""
    import gc
    if gc.get_freeze_count():
        gc.unfreeze()
        gc.collect()
        gc.freeze()


async def reload_routes(rt):
    if getattr(rt, "mi_reloading", False):
        raise MIError(500, "reload failed", "a reload is already in progress")
    path, pipe, defines, listen = _script_source(rt)
    if not path:
        raise MIError(500, "reload failed", "the proxy was not started from a script file")
    rt.mi_reloading = True
    try:
        rt.log.info(f"reparsing routes from <{path}> file", "mi")
        loop = asyncio.get_running_loop()
        script, errors = await loop.run_in_executor(None, _check_script, path, pipe, defines,
                                                    listen)
        if errors:
            rt.log.error(f"reload_routes: {path} does not check, keeping the running "
                         f"routes:\n" + "\n".join(errors), "mi")
            raise MIError(500, "reload failed", "\n".join(errors))
        from .module import module_name
        from cfgscript import ast as A
        wanted = {module_name(i.path) for i in script.items if isinstance(i, A.LoadModule)}
        comp, compiled, errors = _compile_live(rt, script)
        if errors:
            added = sorted(wanted - set(rt.modules))
            if added:
                errors.append(f"note: reload_routes reloads the routes only; module"
                              f"{'s' if len(added) > 1 else ''} {', '.join(added)} "
                              f"need a restart to be loaded")
            rt.log.error("reload_routes: the new routes do not compile against the running "
                         "modules, keeping the running routes:\n" + "\n".join(errors), "mi")
            raise MIError(500, "reload failed", "\n".join(errors))
        added = sorted(wanted - set(rt.modules))
        if added:
            rt.log.warning(f"reload_routes: module(s) {', '.join(added)} added to the script "
                           f"are not loaded (routes only are reloaded)", "mi")
        swap_routes(rt, comp, compiled)
        _collect_old_routes()
        rt.log.notice(f"reload_routes: running the routes of {path} "
                      f"({len(compiled.functions)} routes)", "mi")
        return OK
    finally:
        rt.mi_reloading = False


CORE_COMMANDS = {
    "uptime": "mi_uptime",
    "version": "mi_version",
    "pwd": "mi_pwd",
    "arg": "mi_arg",
    "which": "mi_which",
    "ps": "mi_ps",
    "kill": "mi_kill",
    "log_level": "mi_log_level",
    "reload_routes": "mi_reload_routes",
    "help": "mi_help",
}

"""From a parsed script to a runnable one: global parameters, modules, modparams, fixups,
compiled routes (OpenSIPS's start-up checks, every error collected with its file:line)."""
from __future__ import annotations

import re
import socket as pysocket
from dataclasses import dataclass, field

from cfgscript import ast as A
from cfgscript.diagnostics import Diagnostic, did_you_mean

from . import core
from .compiler import CompileError, Compiler, fixup_args, route_types_label
from .engine import DEFAULT_PORTS, Runtime, Socket
from .known import CORE_PARAMS, KAMAILIO_PARAMS, MODULE_OF_FUNCTION, MODULE_OF_PV, OLD_PARAMS
from .log import Logger
from .module import ROUTE_TYPES, Module, ModuleNotFound, find_module, module_name
from .pv import PVS, PVError, bind

# modules whose whole job the core does here, or that have nothing to do in this process
_BUILTIN_NOOP = {"proto_udp", "proto_tcp", "proto_ws", "event_route", "mi_json", "xlog", "pv",
                 "kex", "corex", "tmx", "ctl", "jsonrpcs", "cfg_rpc", "mi_rpc", "xmlrpc"}


@dataclass
class Loaded:
    rt: Runtime
    diagnostics: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(d.severity == "error" for d in self.diagnostics)


class Resolver:
    """What the compiler asks while compiling: functions and PVs, with their fixups."""

    def __init__(self, rt: Runtime, dialect: str, diags: list, unimplemented: dict):
        self.rt = rt
        self.dialect = dialect
        self.diags = diags
        self.unimplemented = unimplemented      # module name -> [positions using it]
        self.functions = {}                     # name -> Func
        self.pvdefs = dict(PVS)
        self.calls = []                         # (route info, func, pos)
        self.edges = []                         # (caller info, callee info)
        self.compiler = None

    def add_module(self, mod: Module):
        for f in mod.functions:
            self.functions[f.name] = f
        self.pvdefs.update(mod.pvs)

    def warn(self, msg, pos):
        self.diags.append(Diagnostic("warning", msg, pos))

    def function(self, call: A.Call, current):
        f = self.functions.get(call.name)
        if f is None:
            owner = MODULE_OF_FUNCTION.get(call.name)
            if owner in self.unimplemented:
                self.unimplemented[owner].append(call.pos)
                return None, None
            if owner:
                raise CompileError(f"unknown function '{call.name}' (it comes with module "
                                   f"'{owner}': missing loadmodule \"{owner}.so\"?)", call.pos)
            raise CompileError(f"unknown function '{call.name}'" + did_you_mean(
                call.name, [*self.functions, *MODULE_OF_FUNCTION]), call.pos)
        fixed = fixup_args(f, call, self)
        self.calls.append((current, f, call.pos))
        return f, fixed

    def pv(self, pv_ast):
        try:
            return bind(pv_ast, self.pvdefs)
        except PVError as e:
            if pv_ast.name not in self.pvdefs:
                owner = MODULE_OF_PV(pv_ast.name)
                if owner in self.unimplemented:
                    self.unimplemented[owner].append(pv_ast.pos)
                    return bind(A.PV("__null__"), {"__null__": _NULL_PV})
                if owner:
                    raise PVError(f"unknown pseudo-variable '${pv_ast.name}' (it comes with "
                                  f"module '{owner}': missing loadmodule \"{owner}.so\"?)")
                raise PVError(f"unknown pseudo-variable '${pv_ast.name}'"
                              + did_you_mean(pv_ast.name, self.pvdefs)) from None
            raise

    def route_hint(self, name):
        names = [n for (k, n) in self.compiler.routes if k == "route" and n]
        return did_you_mean(name, names)

    def note_route_call(self, caller, callee):
        self.edges.append((caller, callee))

    def route_exists(self, kind, name) -> bool:
        return (kind, name) in self.compiler.routes


from .pv import PVDef  # noqa: E402  (after Resolver for readability)

_NULL_PV = PVDef("__null__", lambda ctx, sub: None, lambda ctx, sub, v, op, idx: None, sub="opt")


def load_script(script: A.Script, *, listen=(), check_only=False, instrument=False,
                log: Logger | None = None, argv_vars=None) -> Loaded:
    rt = Runtime(log=log)
    rt.check_only = check_only
    rt.argv_vars = dict(argv_vars or {})
    rt.script_file = script.files[0] if script.files else None
    loaded = Loaded(rt)
    diags = loaded.diagnostics
    unimplemented: dict = {}
    resolver = Resolver(rt, script.dialect, diags, unimplemented)
    core_mod = core.exports_for(rt)
    rt.modules["core"] = core_mod
    resolver.add_module(core_mod)
    rt.modparams = {}
    socket_defs = []

    for item in script.items:
        if isinstance(item, A.GlobalParam):
            _global(rt, item, script.dialect, diags, socket_defs)
        elif isinstance(item, A.LoadModule):
            _loadmodule(rt, item, resolver, diags, unimplemented)
        elif isinstance(item, A.ModParam):
            _modparam(rt, item, diags, unimplemented)

    rt.set_log_level(None)
    _sockets(rt, listen, socket_defs, diags)
    _module_checks(rt, diags)

    comp = Compiler(resolver, dialect=script.dialect, instrument=instrument,
                    max_while=int(rt.config.get("max_while_loops", 10000)))
    resolver.compiler = comp
    rt.route_infos = comp.routes
    comp.add_routes(script.routes)
    if ("route", None) not in comp.routes:
        diags.append(Diagnostic("error", "the script has no main route ('route { ... }')",
                                A.Pos(rt.script_file or "<input>", 1, 1)))
    try:
        compiled = comp.compile()
    except SyntaxError as e:  # a bug in the code generator: say where
        diags.append(Diagnostic("error", f"internal compiler error: {e}", A.Pos("<gen>", 0, 0)))
        return loaded
    diags.extend(compiled.diagnostics)
    rt.compiled = compiled
    rt.routes = compiled.functions
    _check_route_types(comp, resolver, diags)

    for name, uses in unimplemented.items():
        first, rest = uses[0], sorted({(p.file, p.line) for p in uses[1:]})
        d = Diagnostic("error", f"module '{name}' is not implemented", first)
        if rest:
            lines = ", ".join(f"{line}" if f == first.file else f"{f}:{line}" for f, line in rest)
            d.notes.append(f"the script uses it at line{'s' if len(rest) > 1 else ''} {lines}")
        diags.append(d)
    return loaded


# --- global parameters ---------------------------------------------------------------------

def _global(rt, item: A.GlobalParam, dialect, diags, socket_defs):
    name = item.name
    value = item.value
    if name in ("socket", "listen"):
        socket_defs.append(item)
        return
    if name not in CORE_PARAMS and name not in OLD_PARAMS and not (
            dialect == "kamailio" and (name in KAMAILIO_PARAMS or "." in name)):
        diags.append(Diagnostic("error", f"unknown config variable '{name}'"
                                + did_you_mean(name, CORE_PARAMS), item.pos))
        return
    scalar = value.value if isinstance(value, (A.Num, A.Str)) else (
        value.name if isinstance(value, A.Name) else value.text if isinstance(value, A.IPNet)
        else value)
    if name in ("log_level", "debug"):
        if isinstance(value, A.Num):
            rt.config["log_level"] = value.value
        elif isinstance(value, A.Name) and value.name.startswith("L_"):
            from .log import xlog_level
            rt.config["log_level"] = xlog_level(value.name) or 2
        return
    if name == "alias":
        for v in (value if isinstance(value, tuple) else (value,)):
            text = v.value if isinstance(v, A.Str) else getattr(v, "name", getattr(v, "text", ""))
            _alias(rt, text)
        return
    if name in ("max_while_loops", "advertised_port") and not isinstance(scalar, int):
        diags.append(Diagnostic("error", f"'{name}' must be a number", item.pos))
        return
    rt.config[name] = scalar


def _alias(rt, text):
    subdomains = text.endswith(" accept_subdomain")
    text = text.split()[0]
    proto = None
    m = re.match(r"^(udp|tcp|tls|sctp|ws|wss):(.*)$", text, re.I)
    if m:
        proto, text = m.group(1).lower(), m.group(2)
    host, _, port = text.rpartition(":") if re.search(r":\d+$", text) else (text, "", "")
    rt.aliases.append((proto, host.strip("[]"), int(port) if port else 0, subdomains))


# --- modules -------------------------------------------------------------------------------

def _loadmodule(rt, item: A.LoadModule, resolver, diags, unimplemented):
    name = module_name(item.path)
    if name in rt.modules or name in unimplemented:
        diags.append(Diagnostic("warning", f"module '{name}' is loaded twice", item.pos))
        return
    try:
        mod = find_module(name)
    except ModuleNotFound:
        if name in _BUILTIN_NOOP:
            mod = Module(name)
        else:
            unimplemented[name] = [item.pos]
            return
    mod.pos = item.pos
    rt.modules[name] = mod
    rt.modparams[name] = {p.name: ([] if p.multi else p.default) for p in mod.params}
    if mod.api is not None:
        rt.apis[name] = mod.api
    resolver.add_module(mod)


def _modparam(rt, item: A.ModParam, diags, unimplemented):
    try:
        rx = re.compile(f"^(?:{item.module})$", re.I)
    except re.error:
        diags.append(Diagnostic("error", f"invalid module regex '{item.module}'", item.pos))
        return
    targets = [n for n in rt.modules if rx.match(n) and n != "core"]
    missing = [n for n in unimplemented if rx.match(n)]
    for n in missing:
        unimplemented[n].append(item.pos)
    if not targets:
        if not missing:
            diags.append(Diagnostic("error", f"modparam for module '{item.module}', which is not "
                                    f"loaded (loadmodule must come before modparam)", item.pos))
        return
    value = item.value
    v = value.value if isinstance(value, (A.Str, A.Num)) else getattr(value, "name", None)
    for name in targets:
        mod = rt.modules[name]
        p = mod.params_by_name.get(mod.aliases.get(item.param, item.param))
        if p is None:
            if not mod.params and not mod.functions:
                continue  # a module with nothing to configure here (mi_fifo, httpd...)
            diags.append(Diagnostic("error", f"module '{name}' has no parameter '{item.param}'"
                                    + did_you_mean(item.param, mod.params_by_name), item.pos))
            continue
        converted = _convert_param(p, v)
        if isinstance(converted, str) and converted.startswith("\0"):
            diags.append(Diagnostic("error", f"modparam {name}.{item.param}: {converted[1:]}",
                                    item.pos))
            continue
        if p.multi:
            rt.modparams[name][p.name].append(converted)
        else:
            rt.modparams[name][p.name] = converted


def _convert_param(p, v):
    types = p.type if isinstance(p.type, tuple) else (p.type,)
    if int in types and isinstance(v, int):
        out = v
    elif int in types and isinstance(v, str) and v.strip().lstrip("-").isdigit() and str not in types:
        out = int(v)
    elif str in types and isinstance(v, (str, int)):
        out = str(v) if not isinstance(v, str) else v
    else:
        want = " or ".join("an integer" if t is int else "a string" for t in types)
        return f"\0expected {want}, got {v!r}"
    if p.check:
        err = p.check(out)
        if err:
            return "\0" + err
    return out


def _module_checks(rt, diags):
    for name, mod in rt.modules.items():
        for dep in mod.depends:
            if dep not in rt.modules:
                diags.append(Diagnostic("error", f"module '{name}' needs module '{dep}' "
                                        f"(loadmodule \"{dep}.so\")", getattr(mod, "pos", A.NOPOS)))


# --- sockets -------------------------------------------------------------------------------

def _sockets(rt, listen, socket_defs, diags):
    adv = rt.config.get("advertised_address")
    adv_port = rt.config.get("advertised_port")
    if listen:
        for text in listen:
            sd = _parse_cli_listen(text)
            if sd is None:
                diags.append(Diagnostic("error", f"-l {text}: expected proto:ip[:port]",
                                        A.Pos("<command line>", 0, 0)))
                continue
            _add_socket(rt, sd, adv, adv_port, diags, A.Pos("<command line>", 0, 0))
        return
    for item in socket_defs:
        _add_socket(rt, item.value, adv, adv_port, diags, item.pos)
    if not rt.sockets and not socket_defs:
        _add_socket(rt, A.SocketDef("udp", "127.0.0.1", None), adv, adv_port, diags, A.NOPOS)


def _parse_cli_listen(text):
    m = re.match(r"^(?:([A-Za-z_]+):)?(\[[^\]]+\]|[^:]+)(?::(\d+))?$", text.strip())
    if not m:
        return None
    return A.SocketDef((m.group(1) or "udp").lower(), m.group(2), m.group(3))


def _add_socket(rt, sd, adv, adv_port, diags, pos):
    if not isinstance(sd, A.SocketDef):
        diags.append(Diagnostic("error", "cannot read this socket definition", pos))
        return
    proto = (sd.proto or "udp").lower()
    if proto not in ("udp", "tcp"):
        diags.append(Diagnostic("warning", f"transport '{proto}' is not supported yet: "
                                f"socket {sd.proto}:{sd.host} ignored", pos))
        return
    host = sd.host.strip("[]")
    if host == "*":
        host = "0.0.0.0"
    ip = host if _is_ip(host) else (_interface_ip(host) or _resolve(host))
    if ip is None:
        # -C checks the script, not this host: a listen address of another machine (an
        # interface name, a host name) is only a warning there
        severity = "warning" if rt.check_only else "error"
        diags.append(Diagnostic(severity, f"cannot resolve listen address '{sd.host}'", pos))
        return
    ports = _ports(sd.port, proto)
    if ports is None:
        diags.append(Diagnostic("error", f"bad port '{sd.port}'", pos))
        return
    sock_adv, sock_adv_port, tag = adv, adv_port, None
    for key, val in sd.params:
        if key in ("as", "advertise") and val:
            h, _, p = val.rpartition(":") if re.search(r":\d+$", val) else (val, "", "")
            sock_adv, sock_adv_port = h.strip("[]"), int(p) if p else None
        elif key == "tag":
            tag = val
    for port in ports:
        rt.sockets.append(Socket(proto, ip, port, sock_adv, sock_adv_port, tag))


def _ports(text, proto):
    if not text:
        return [DEFAULT_PORTS.get(proto, 5060)]
    out = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            return None
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def _resolve(host):
    try:
        return pysocket.getaddrinfo(host, None)[0][4][0]
    except (OSError, UnicodeError):
        return None


def _interface_ip(name):
    """The IPv4 address of a network interface (`eth0`), as OpenSIPS accepts in listen=."""
    import fcntl
    import struct
    s = pysocket.socket(pysocket.AF_INET, pysocket.SOCK_DGRAM)
    try:
        packed = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name.encode()[:15]))
        return pysocket.inet_ntoa(packed[20:24])  # SIOCGIFADDR
    except (OSError, UnicodeError):
        return None
    finally:
        s.close()


def _is_ip(host):
    try:
        pysocket.inet_pton(pysocket.AF_INET6 if ":" in host else pysocket.AF_INET, host)
        return True
    except OSError:
        return False


# --- route types ---------------------------------------------------------------------------

def _check_route_types(comp, resolver, diags):
    """Each function may only run in the route types it allows; a sub-route inherits the
    types of every route that calls it."""
    types = {}
    for key, info in comp.routes.items():
        kind, name = key
        if kind == "route" and name is not None:
            types[id(info)] = 0
        else:
            types[id(info)] = ROUTE_TYPES.get(kind, 0)
    changed = True
    while changed:
        changed = False
        for caller, callee in resolver.edges:
            new = types[id(callee)] | types[id(caller)]
            if new != types[id(callee)]:
                types[id(callee)] = new
                changed = True
    for info in comp.routes.values():
        info.types = types[id(info)]
    callers = {}
    for caller, callee in resolver.edges:
        callers.setdefault(id(callee), []).append(caller)
    seen = set()
    for info, func, pos in resolver.calls:
        bad = info.types & ~func.routes
        if not bad or (func.name, pos) in seen:
            continue
        seen.add((func.name, pos))
        allowed = route_types_label(func.routes)
        if info.kind != "route" or info.name is None:
            diags.append(Diagnostic(
                "error", f"function '{func.name}' cannot be used in {info.kind}; it is "
                f"allowed in {allowed}", pos))
            continue
        # reached through route(...) calls: OpenSIPS 3.x refuses the script, older versions
        # (which many scripts were written for) ran it; warn and let it run
        tops = _top_routes(info, callers, bad)
        diags.append(Diagnostic(
            "warning", f"function '{func.name}' is not allowed in {route_types_label(bad)}, "
            f"which calls route[{info.name}] (from {', '.join(tops)}); it is allowed in "
            f"{allowed} (OpenSIPS 3.x refuses this, older versions ran it)", pos))


def _top_routes(info, callers, bad):
    """The top-level routes of the `bad` types that reach sub-route `info`."""
    found, todo, seen = [], [info], {id(info)}
    while todo:
        for caller in callers.get(id(todo.pop()), ()):
            if id(caller) in seen:
                continue
            seen.add(id(caller))
            if caller.kind == "route" and caller.name is not None:
                todo.append(caller)
            elif ROUTE_TYPES.get(caller.kind, 0) & bad:
                found.append(caller.kind if caller.name is None else f"{caller.kind}[{caller.name}]")
    return sorted(found)

"""The module API: what an OpenSIPS module written in Python declares, in one export block.

    exports = Module(
        name="maxfwd",
        params=[Param("max_limit", int, 256)],
        functions=[Func("mf_process_maxfwd_header", "process_maxfwd", [Arg(INT)],
                        routes=REQUEST)],
    )

Function implementations are named by string (resolved in the same Python module when it is
loaded), so the export block can stand at the top of `__init__.py`. An implementation is
called as `impl(ctx, *args)` with its arguments already fixed up, and returns an int:
>0 true, <0 false, 0 stops the script.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable, Optional

# route types (bit flags), named as OpenSIPS names them
REQUEST, FAILURE, ONREPLY, BRANCH, ERROR, LOCAL, STARTUP, TIMER, EVENT, ONSEND = (
    1 << i for i in range(10))
ALL = (1 << 10) - 1
ROUTE_TYPES = {
    "route": REQUEST, "failure_route": FAILURE, "onreply_route": ONREPLY,
    "branch_route": BRANCH, "error_route": ERROR, "local_route": LOCAL,
    "startup_route": STARTUP, "timer_route": TIMER, "event_route": EVENT,
    "onsend_route": ONSEND,
}
ROUTE_TYPE_NAMES = {v: k for k, v in ROUTE_TYPES.items()}

# argument kinds (OpenSIPS CMD_PARAM_*)
INT = "int"          # unquoted number, or a PV holding an integer
STR = "str"          # a string (a format string: $vars expanded) or a PV
STR_NO_EXPAND = "str-literal"   # a string taken as written
STATIC = "static"    # a constant string only (no PVs): flag names, table names
VAR = "var"          # a PV reference (written by the function, or read as a holder)
REGEX = "regex"      # a regex string (compiled at load) or a PV (compiled per call)
ANY = "any"          # int or string, as given


@dataclass(frozen=True)
class Arg:
    kind: str
    optional: bool = False
    fixup: Optional[Callable] = None  # fixup(value, loader, pos) -> fixed value (constants only)
    name: str = ""                    # for messages


@dataclass(frozen=True)
class Func:
    name: str
    impl: object                      # callable, or the name of one in the module
    args: tuple = ()
    routes: int = ALL
    is_async: bool = False

    def __post_init__(self):
        object.__setattr__(self, "args", tuple(self.args))


@dataclass(frozen=True)
class Param:
    """A modparam. `type` is int, str or (int, str). `multi`: may be given several times."""
    name: str
    type: object
    default: object = None
    multi: bool = False
    check: Optional[Callable] = None  # check(value) -> error message or None


@dataclass
class Module:
    name: str
    params: list = field(default_factory=list)
    functions: list = field(default_factory=list)
    pvs: dict = field(default_factory=dict)        # name -> runtime.pv.PVDef
    mi: dict = field(default_factory=dict)         # MI command name -> callable
    init: Optional[str] = None        # init(runtime): after modparams, before listening
    child_init: Optional[str] = None  # child_init(runtime): in the running event loop
    destroy: Optional[str] = None     # destroy(runtime): at shutdown
    depends: tuple = ()               # modules this one needs loaded
    aliases: dict = field(default_factory=dict)  # old modparam name -> its current name
    api: object = None                # what other modules may use (load_tm_api & co)

    def resolve(self, pymod) -> "Module":
        """Bind implementations named by string to the Python module's functions."""
        funcs = []
        for f in self.functions:
            impl = getattr(pymod, f.impl) if isinstance(f.impl, str) else f.impl
            funcs.append(Func(f.name, impl, f.args, f.routes, f.is_async))
        self.functions = funcs
        for hook in ("init", "child_init", "destroy"):
            v = getattr(self, hook)
            if isinstance(v, str):
                setattr(self, hook, getattr(pymod, v))
        return self

    @property
    def functions_by_name(self):
        return {f.name: f for f in self.functions}

    @property
    def params_by_name(self):
        return {p.name: p for p in self.params}


class ModuleNotFound(LookupError):
    pass


def module_name(path: str) -> str:
    """`"modules/tm/tm.so"`, `"/usr/lib/x/tm.so"`, `"tm"` -> `tm`."""
    base = path.rstrip("/").rsplit("/", 1)[-1]
    return base[:-3] if base.endswith(".so") else base


def find_module(name: str) -> Module:
    """The export block of `modules/<name>/` (a fresh copy per load)."""
    if not name.replace("_", "").replace(".", "").isalnum():
        raise ModuleNotFound(name)
    try:
        pymod = importlib.import_module(f"modules.{name}")
    except ModuleNotFoundError as e:
        if e.name in (f"modules.{name}", "modules"):
            raise ModuleNotFound(name) from None
        raise
    exports = getattr(pymod, "exports", None)
    if not isinstance(exports, Module):
        raise ModuleNotFound(name)
    fresh = Module(**{k: (list(v) if isinstance(v, list) else dict(v) if isinstance(v, dict) else v)
                      for k, v in exports.__dict__.items()})
    return fresh.resolve(pymod)

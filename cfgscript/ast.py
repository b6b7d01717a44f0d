"""The script's syntax tree: frozen dataclasses, each carrying its source position.

One tree for both dialects (OpenSIPS 1.x-3.6 and Kamailio); older syntax is kept as written
(`LegacyTest`, `Name`) and given its 3.x meaning by the runtime.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union


@dataclass(frozen=True, slots=True)
class Pos:
    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


NOPOS = Pos("<builtin>", 0, 0)


# --- values and expressions -------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Transform:
    """One `{class.name,param,...}` transformation; params are `Str`, `Num` or `PV`."""
    name: str
    params: tuple
    pos: Pos = field(default=NOPOS, compare=False)


@dataclass(frozen=True, slots=True)
class PV:
    """A pseudo-variable: `$name`, `$name(sub)`, `$(<ctx>name(sub)[index]{tr}...)`.

    `sub` is the literal subname text or a nested `PV`; `index` is None, an int, '*',
    'append' or a `PV`.
    """
    name: str
    sub: Union[None, str, "PV"] = None
    index: Union[None, int, str, "PV"] = None
    transforms: tuple = ()
    context: Optional[str] = None
    text: str = ""
    pos: Pos = field(default=NOPOS, compare=False)


@dataclass(frozen=True, slots=True)
class Str:
    """A string literal (escapes done). Whether `$` in it is expanded depends on where it is
    used: the runtime reads it as a format string only for parameters that take one."""
    value: str
    pos: Pos = field(default=NOPOS, compare=False)


@dataclass(frozen=True, slots=True)
class Num:
    value: int
    pos: Pos = field(default=NOPOS, compare=False)


@dataclass(frozen=True, slots=True)
class Null:
    pos: Pos = field(default=NOPOS, compare=False)


@dataclass(frozen=True, slots=True)
class IPNet:
    """An unquoted IP address or network (`10.0.0.0/8`, `192.168.0.0/255.255.0.0`)."""
    text: str
    pos: Pos = field(default=NOPOS, compare=False)


@dataclass(frozen=True, slots=True)
class Name:
    """A bare word in an expression: `myself`, `INVITE` in `method==INVITE`, `UDP`..."""
    name: str
    pos: Pos = field(default=NOPOS, compare=False)


@dataclass(frozen=True, slots=True)
class LegacyTest:
    """A 1.x/2.x core test operand: `method`, `uri`, `src_ip`, `msg:len`, `proto`..."""
    name: str
    pos: Pos = field(default=NOPOS, compare=False)


@dataclass(frozen=True, slots=True)
class Empty:
    """An omitted optional argument: `t_relay(, "udp:1.2.3.4")`."""
    pos: Pos = field(default=NOPOS, compare=False)


@dataclass(frozen=True, slots=True)
class Logic:
    op: str  # '&&' or '||'
    left: object
    right: object
    pos: Pos = field(default=NOPOS, compare=False)


@dataclass(frozen=True, slots=True)
class Not:
    operand: object
    pos: Pos = field(default=NOPOS, compare=False)


@dataclass(frozen=True, slots=True)
class Compare:
    op: str  # == != =~ !~ < > <= >= (Kamailio: eq ne ieq ine too)
    left: object
    right: object
    pos: Pos = field(default=NOPOS, compare=False)


@dataclass(frozen=True, slots=True)
class BinOp:
    op: str  # + - * / % | & ^ << >>
    left: object
    right: object
    pos: Pos = field(default=NOPOS, compare=False)


@dataclass(frozen=True, slots=True)
class Unary:
    op: str  # '-', '~', 'defined', '(int)', '(str)'
    operand: object
    pos: Pos = field(default=NOPOS, compare=False)


@dataclass(frozen=True, slots=True)
class Bracket:
    """OpenSIPS `[ expr ]`: arithmetic evaluated as a condition."""
    expr: object
    pos: Pos = field(default=NOPOS, compare=False)


@dataclass(frozen=True, slots=True)
class Call:
    """A function call (core or module)."""
    name: str
    args: tuple
    pos: Pos = field(default=NOPOS, compare=False)


@dataclass(frozen=True, slots=True)
class RouteCall:
    """`route(name, args...)`; `name` is a str, or a `Str`/`PV` resolved at run time."""
    name: object
    args: tuple
    pos: Pos = field(default=NOPOS, compare=False)


# --- statements ------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Block:
    body: tuple
    pos: Pos = field(default=NOPOS, compare=False)


@dataclass(frozen=True, slots=True)
class ExprStmt:
    expr: object
    pos: Pos = field(default=NOPOS, compare=False)


@dataclass(frozen=True, slots=True)
class Assign:
    target: PV
    op: str  # = := += -= *= /= %= &= |= ^=
    value: object
    pos: Pos = field(default=NOPOS, compare=False)


@dataclass(frozen=True, slots=True)
class If:
    cond: object
    then: object
    orelse: object = None
    pos: Pos = field(default=NOPOS, compare=False)


@dataclass(frozen=True, slots=True)
class While:
    cond: object
    body: object
    pos: Pos = field(default=NOPOS, compare=False)


@dataclass(frozen=True, slots=True)
class ForEach:
    var: PV
    iterable: PV
    body: object
    pos: Pos = field(default=NOPOS, compare=False)


@dataclass(frozen=True, slots=True)
class Case:
    """One `case X:` (value is Str/Num) or `default:` (value None) with its statements."""
    value: object
    body: tuple
    pos: Pos = field(default=NOPOS, compare=False)


@dataclass(frozen=True, slots=True)
class Switch:
    subject: object
    cases: tuple
    pos: Pos = field(default=NOPOS, compare=False)


@dataclass(frozen=True, slots=True)
class Return:
    """`return`, `return(n)`, `return expr`, `return(n, v1, ...)` (3.6 extra values)."""
    value: object = None
    extra: tuple = ()
    pos: Pos = field(default=NOPOS, compare=False)


@dataclass(frozen=True, slots=True)
class Exit:
    pos: Pos = field(default=NOPOS, compare=False)


@dataclass(frozen=True, slots=True)
class Drop:
    pos: Pos = field(default=NOPOS, compare=False)


@dataclass(frozen=True, slots=True)
class Break:
    pos: Pos = field(default=NOPOS, compare=False)


@dataclass(frozen=True, slots=True)
class Async:
    call: Call
    route: object
    timeout: object = None
    pos: Pos = field(default=NOPOS, compare=False)


@dataclass(frozen=True, slots=True)
class Launch:
    call: Call
    route: object = None
    param: object = None
    pos: Pos = field(default=NOPOS, compare=False)


# --- top level -------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SocketDef:
    """`[proto:]host[:port|:range] [as addr[:port]] [use_workers N] [anycast] ...`."""
    proto: Optional[str]
    host: str
    port: Optional[str]
    params: tuple = ()  # (name, value) pairs; value None for flags
    pos: Pos = field(default=NOPOS, compare=False)


@dataclass(frozen=True, slots=True)
class GlobalParam:
    """`name = value`; `value` is a Num, Str, Name, IPNet, SocketDef or a tuple of them."""
    name: str
    value: object
    raw: str
    pos: Pos = field(default=NOPOS, compare=False)


@dataclass(frozen=True, slots=True)
class LoadModule:
    path: str
    pos: Pos = field(default=NOPOS, compare=False)

    @property
    def module(self) -> str:
        base = self.path.rsplit("/", 1)[-1]
        return base[:-3] if base.endswith(".so") else base


@dataclass(frozen=True, slots=True)
class ModParam:
    module: str  # a regex matched against loaded module names
    param: str
    value: object  # Str or Num (or PV for Kamailio modparamx)
    pos: Pos = field(default=NOPOS, compare=False)


ROUTE_KINDS = (
    "route", "request_route", "failure_route", "onreply_route", "reply_route",
    "branch_route", "error_route", "local_route", "startup_route", "timer_route",
    "event_route", "onsend_route",
)


@dataclass(frozen=True, slots=True)
class Route:
    """A route block. `kind` is canonical: Kamailio's request_route is 'route' with no name,
    reply_route is 'onreply_route' with no name. `params` holds extra bracket items
    (timer_route interval, event_route sync/async)."""
    kind: str
    name: Optional[str]
    body: Block
    params: tuple = ()
    pos: Pos = field(default=NOPOS, compare=False)


@dataclass(frozen=True, slots=True)
class Script:
    items: tuple
    dialect: str = "opensips"  # or "kamailio"
    files: tuple = ()          # every file read, main first

    @property
    def routes(self):
        return [i for i in self.items if isinstance(i, Route)]

    @property
    def modules(self):
        return [i for i in self.items if isinstance(i, LoadModule)]

"""Per-message state the compiled script works on, and the flag registries."""
from __future__ import annotations

from dataclasses import dataclass, field

from .module import REQUEST
from .sip.edits import Edits


class ScriptExit(Exception):
    """`exit`, `drop`, `return(0)` or a function returning 0: unwind to the top route."""


class ArgError(ValueError):
    """A function argument that has no value of the declared type: the call returns -1."""


class FlagRegistry:
    """Flag names to bit numbers (at most 32). Numeric names (1.x style) are their own bit."""

    def __init__(self, kind: str):
        self.kind = kind
        self.bits: dict[str, int] = {}

    def bit(self, name) -> int:
        key = str(name).strip()
        if key in self.bits:
            return self.bits[key]
        if key.isdigit():
            n = int(key)
            if n > 31:
                raise ValueError(f"{self.kind} flag {n} is out of range (0-31)")
            self.bits[key] = n
            return n
        used = set(self.bits.values())
        for n in range(31, -1, -1):
            if n not in used:
                self.bits[key] = n
                return n
        raise ValueError(f"too many {self.kind} flags (32 at most)")

    def names(self, mask: int) -> list:
        by_bit = {}
        for name, bit in self.bits.items():
            by_bit.setdefault(bit, name)
        return [by_bit.get(b, str(b)) for b in range(32) if mask >> b & 1]


@dataclass(slots=True)
class Branch:
    """One destination of the branch set (index 0 is the Request-URI's own branch)."""
    uri: str
    dst_uri: str | None = None
    q: int | None = None          # q * 1000, None = not set
    path: str | None = None
    flags: int = 0
    socket: object = None
    attrs: dict = field(default_factory=dict)


class Context:
    """The message being routed and everything the script changes about it."""

    __slots__ = (
        "rt", "msg", "edits", "route_type", "src_ip", "src_port", "proto", "socket",
        "new_ruri", "dst_uri", "ruri_q", "flags", "bflags", "branches", "avps", "rc",
        "params", "returns", "route_stack", "force_socket", "adv_address", "adv_port",
        "replied", "dropped", "tx", "branch_idx", "reply", "force_rport", "local_data",
        "trace", "error_info", "sent",
    )

    def __init__(self, rt, msg, *, src=("0.0.0.0", 0), proto="udp", socket=None,
                 route_type=REQUEST):
        self.rt = rt
        self.msg = msg
        self.edits = None            # runtime.sip.edits.Edits, created on first change
        self.route_type = route_type
        self.src_ip, self.src_port = src
        self.proto = proto
        self.socket = socket
        self.new_ruri = None         # the R-URI after rewrites (None: as received)
        self.dst_uri = None          # $du
        self.ruri_q = None
        self.flags = 0               # message flags
        self.bflags = 0              # branch flags of branch 0
        self.branches = []           # extra branches (append_branch, lookup)
        self.avps = {}               # name -> list of values, newest last
        self.rc = 1
        self.params = ()             # route parameters of the current route
        self.returns = ()            # $return(i) values of the last route call
        self.route_stack = []
        self.force_socket = None
        self.adv_address = None
        self.adv_port = None
        self.replied = False
        self.dropped = False
        self.tx = None               # the tm transaction, when there is one
        self.branch_idx = None
        self.reply = None            # in failure/onreply routes: the reply Message
        self.force_rport = False
        self.local_data = {}         # per-message scratch space for modules
        self.trace = None            # list of (route, file, line) when --trace is on
        self.error_info = None       # (code, reason) for error_route / sl_reply_error
        self.sent = False            # something was sent for this message (relay/reply)

    @property
    def ruri(self) -> str:
        return self.new_ruri if self.new_ruri is not None else self.msg.ruri

    def get_edits(self):
        e = self.edits
        if e is None:
            e = self.edits = Edits(self.msg)
        return e

"""pike: flood detection by source IP (a tree of address bytes, as OpenSIPS's pike keeps).

    modparam("pike", "sampling_time_unit", 2)      seconds per sample
    modparam("pike", "reqs_density_per_unit", 30)  requests per sample before blocking
    modparam("pike", "remove_latency", 120)        seconds an IP is remembered after its last hit
    if (!pike_check_req()) { exit; }               -2 first detection, -1 still flooding

An address is learnt byte by byte: a byte's node grows its next byte once it is hot (as many
hits in a sample as the density allows), handing half its hits to the new node, so a single
address needs between x and about 3x requests (IPv4) in a sample before it turns red; an
address next to one already known needs fewer. A red address stays blocked while it stays
hot; each sample ends by shifting the counters. `check_route` turns on the automatic mode:
every request's source is checked before the script (the route may `drop` to exempt it) and
the requests of a flooding source are dropped."""
import ipaddress
import time

from runtime.context import Context
from runtime.module import REQUEST, Func, Module, Param

exports = Module(
    name="pike",
    params=[
        Param("sampling_time_unit", int, 2), Param("reqs_density_per_unit", int, 30),
        Param("remove_latency", int, 120), Param("check_route", str, None),
        Param("pike_log_level", int, 1),
        # Kamailio's
        Param("pike_log_level_name", str, None),
    ],
    functions=[Func("pike_check_req", "pike_check_req", routes=REQUEST)],
    init="init",
    child_init="child_init",
    mi={"pike_list": "mi_pike_list", "pike_rm": "mi_pike_rm"},
)


class Node:
    __slots__ = ("kids", "prev", "cur", "expires", "red", "reported")

    def __init__(self, hits=0):
        self.kids = {}
        self.prev = 0
        self.cur = hits
        self.expires = 0.0
        self.red = False
        self.reported = False


class Tree:
    """The address bytes of recent sources; `hit(ip)` -> 1, -1 (red) or -2 (new red)."""

    def __init__(self, density, latency, now=time.monotonic):
        self.x = max(1, density)
        self.latency = latency
        self.now = now
        self.root = {}

    def _hot(self, n):
        return n.cur >= self.x or n.prev >= self.x or (n.prev + n.cur) / 2 >= self.x

    def hit(self, ip: str) -> int:
        try:
            key = ipaddress.ip_address(ip).packed
        except ValueError:
            return 1
        now = self.now()
        level = self.root
        node = None
        for depth, byte in enumerate(key):
            child = level.get(byte)
            if child is None:
                if node is not None and not self._hot(node):
                    break           # the parent is not hot enough to learn the next byte
                child = Node()
                if node is not None:   # the parent hands over (at most x/2 of) its hits
                    child.cur = min(node.cur // 2, self.x // 2)
                    node.cur -= child.cur
                level[byte] = child
            node = child
            node.cur += 1
            node.expires = now + self.latency
            level = node.kids
            if depth == len(key) - 1:
                if self._hot(node):
                    if node.red:
                        return -1
                    node.red = True
                    return -2
                node.red = False
        return 1

    def tick(self, on_unblock=None):
        """End of a sample: shift the counters, unblock what cooled down, forget the
        addresses not seen for remove_latency."""
        now = self.now()
        self._tick(self.root, now, on_unblock, [])

    def _tick(self, level, now, on_unblock, prefix):
        for byte in list(level):
            n = level[byte]
            n.prev, n.cur = n.cur, 0
            self._tick(n.kids, now, on_unblock, prefix + [byte])
            if n.red and not self._hot(n):
                n.red = False
                if on_unblock is not None:
                    on_unblock(_ip_of(prefix + [byte]))
            if not n.kids and n.expires <= now:
                del level[byte]

    def leaves(self):
        out = []

        def walk(level, prefix):
            for byte, n in level.items():
                p = prefix + [byte]
                if len(p) in (4, 16):
                    out.append((_ip_of(p), n))
                walk(n.kids, p)
        walk(self.root, [])
        return out

    def remove(self, ip) -> bool:
        try:
            key = ipaddress.ip_address(ip).packed
        except ValueError:
            return False
        level, path = self.root, []
        for byte in key:
            n = level.get(byte)
            if n is None:
                return False
            path.append((level, byte))
            level = n.kids
        lvl, byte = path[-1]
        del lvl[byte]
        return True


def _ip_of(b):
    return str(ipaddress.ip_address(bytes(b))) if len(b) in (4, 16) else ".".join(map(str, b))


_state: dict = {}


def init(rt):
    p = rt.modparams["pike"]
    unit = max(1, p["sampling_time_unit"])
    latency = p["remove_latency"]
    if latency < unit:
        latency = unit + 1
    tree = Tree(p["reqs_density_per_unit"], latency)
    _state.update(rt=rt, tree=tree, level=p["pike_log_level"])
    rt.timers.append((unit, lambda: tree.tick(_unblocked)))
    route = p["check_route"]
    if route and ("route", route) not in rt.routes:
        raise ValueError(f"pike: check_route '{route}' is not a route of the script")


def child_init(rt):
    route = rt.modparams["pike"]["check_route"]
    if not route:
        return
    fn = rt.routes[("route", route)]
    previous = rt.server.request_hook

    def hook(ctx):
        if _auto_check(ctx, fn, route):
            return True
        return previous(ctx) if previous is not None else False
    rt.server.request_hook = hook


def _log(text):
    rt, level = _state["rt"], _state["level"]
    if level is None or level < -3:
        return
    rt.log.write(level, text, "pike")


def _unblocked(ip):
    _log(f"PIKE - UNBLOCKing ip {ip}")


def _check(ip):
    rc = _state["tree"].hit(ip)
    if rc == -2:
        _log(f"PIKE - BLOCKing ip {ip}, node may be in a red state")
    return rc


def pike_check_req(ctx):
    return _check(ctx.src_ip)


def _auto_check(ctx, fn, name) -> bool:
    """Automatic mode: the check route decides if the source is monitored (drop: not);
    a flooding source's request is dropped (True)."""
    probe = Context(ctx.rt, ctx.msg, src=(ctx.src_ip, ctx.src_port), proto=ctx.proto,
                    socket=ctx.socket)
    ctx.rt.server.run(probe, fn, f"route[{name}]")
    if probe.dropped:
        return False
    return _check(ctx.src_ip) < 0


# --- MI ----------------------------------------------------------------------------------------

def mi_pike_list(rt):
    now = time.monotonic()
    return {"IPs": [{"ip": ip, "hits": [n.prev, n.cur], "blocked": n.red,
                     "expires": max(0, int(n.expires - now))}
                    for ip, n in _state["tree"].leaves()]}


def mi_pike_rm(rt, IP: str):
    from runtime.mi import MIError
    if not _state["tree"].remove(IP):
        raise MIError(404, "IP not found")
    return "OK"

"""Statistics under OpenSIPS's names, for the MI commands (`get_statistics`,
`list_statistics`, `reset_statistics`) and the prometheus module.

The counters live where they are counted: the server's `stats` dict (the `core` group) and
the dict each module puts in `rt.stats_groups[<module>]` (`sl`, `tm`, `dialog`, ...). A
value that is itself a dict is a sub-table (usrloc's per-domain counters) and its stats are
named `<key>-<name>` as OpenSIPS names them (`usrloc:location-contacts`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Optional

from .mi import Cmd, MIError, get_arr_str, get_array

# the core group: OpenSIPS name -> the server's counter for it
CORE = (
    ("rcv_requests", "rcv_requests"), ("rcv_replies", "rcv_replies"),
    ("fwd_requests", "fwd_requests"), ("fwd_replies", "fwd_replies"),
    ("drop_requests", "drop_requests"), ("drop_replies", "drop_replies"),
    ("err_requests", "err_requests"), ("err_replies", "err_replies"),
    ("bad_URIs_rcvd", "bad_URIs_rcvd"), ("unsupported_methods", "unsupported_methods"),
    ("bad_msg_hdr", "bad_msgs"),
)

# stats OpenSIPS registers as non-incremental (STAT_NO_RESET or functions): gauges
NON_INCREMENTAL = {
    ("core", "timestamp"), ("tm", "inuse_transactions"), ("dialog", "active_dialogs"),
    ("dialog", "early_dialogs"), ("usrloc", "registered_users"),
    ("registrar", "max_expires"), ("registrar", "max_contacts"),
    ("registrar", "default_expire"), ("registrar", "default_expires_range"),
}
NON_INCREMENTAL_SUFFIXES = {"usrloc": ("-users", "-contacts")}


@dataclass
class Stat:
    group: str
    name: str
    get: Callable[[], int]
    reset: Optional[Callable[[], None]]   # None: cannot be reset (non-incremental)

    @property
    def full_name(self) -> str:
        return f"{self.group}:{self.name}"

    @property
    def incremental(self) -> bool:
        return self.reset is not None


def _core(rt) -> list:
    server = rt.server
    counters = getattr(server, "stats", None)
    if counters is None:
        counters = {}
    out = []
    for name, key in CORE:
        def get(k=key):
            return int(counters.get(k, 0))

        def reset(k=key):
            if k in counters:
                counters[k] = 0
        out.append(Stat("core", name, get, reset))
    started = rt.started
    out.append(Stat("core", "timestamp", lambda: int(time.time() - started), None))
    return out


def _gauge(group, name) -> bool:
    if (group, name) in NON_INCREMENTAL:
        return True
    return name.endswith(NON_INCREMENTAL_SUFFIXES.get(group, ()))


def _group(group: str, table: dict) -> list:
    out = []
    if group == "usrloc":
        def users(t=table):
            return sum(int(v.get("users", 0)) for v in t.values() if isinstance(v, dict))
        out.append(Stat("usrloc", "registered_users", users, None))
    for key in list(table):
        value = table[key]
        if isinstance(value, dict):
            for sub in list(value):
                if isinstance(value[sub], (int, float)):
                    out.append(_stat(group, f"{key}-{sub}", value, sub))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out.append(_stat(group, key, table, key))
    return out


def _stat(group, name, table, key) -> Stat:
    def get():
        return int(table.get(key, 0))

    def reset():
        table[key] = 0
    return Stat(group, name, get, None if _gauge(group, name) else reset)


def all_stats(rt) -> list:
    """Every statistic, group by group: core first, then the modules in load order."""
    out = _core(rt)
    for group, table in (getattr(rt, "stats_groups", None) or {}).items():
        if isinstance(table, dict):
            out.extend(_group(group, table))
    return out


def groups(rt) -> list:
    seen = []
    for s in all_stats(rt):
        if s.group not in seen:
            seen.append(s.group)
    return seen


def find(rt, name: str) -> list:
    """The stats a name selects, as OpenSIPS reads it: "all", "group:", a stat name (the
    first of that name, case-insensitive), or "group:name"."""
    stats = all_stats(rt)
    if name == "all":
        return stats
    if len(name) > 1 and name.endswith(":"):
        grp = name[:-1].lower()
        return [s for s in stats if s.group.lower() == grp]
    low = name.lower()
    for s in stats:
        if s.name.lower() == low:
            return [s]
    if ":" in name:
        for s in stats:
            if s.full_name.lower() == low:
                return [s]
    return []


def values(rt, names=("all",)) -> dict:
    """{"group:name": value} for the names (see find)."""
    out = {}
    for n in names:
        for s in find(rt, n):
            out[s.full_name] = s.get()
    return out


# --- MI -----------------------------------------------------------------------------------

def _names(statistics) -> list:
    arr = get_array(statistics, "statistics")
    return [get_arr_str(arr, i, "statistics") for i in range(len(arr))]


def mi_get_statistics(rt, statistics):
    """The current values of statistics: all, a group ("tm:") or single ones."""
    names = _names(statistics)
    out, found = {}, False
    for n in names:
        sel = find(rt, n)
        if sel or n == "all":
            found = True
        for s in sel:
            out[s.full_name] = s.get()
    if not found:
        raise MIError(404, "Statistics Not Found")
    return out


def mi_list_statistics(rt, statistics=None):
    """The statistics there are, and whether each is incremental."""
    if statistics is None:
        return {s.full_name: "incremental" if s.incremental else "non-incremental"
                for s in all_stats(rt)}
    out, found = {}, False
    for n in _names(statistics):
        if len(n) > 1 and n.endswith(":"):
            sel = find(rt, n)
            key = "full_name"
        else:
            sel = find(rt, n) if n != "all" else []
            key = "name"
        for s in sel:
            out[getattr(s, key)] = "incremental" if s.incremental else "non-incremental"
            found = True
    if not found:
        raise MIError(404, "Statistics Not Found")
    return out


def mi_reset_statistics(rt, statistics):
    """Set statistics back to zero (non-incremental ones keep their value)."""
    found = False
    for n in _names(statistics):
        if n == "all" or (len(n) > 1 and n.endswith(":")):
            continue     # OpenSIPS resets single statistics only
        for s in find(rt, n):
            if s.reset is not None:
                s.reset()
            found = True
    if not found:
        raise MIError(404, "Statistics Not Found")
    return "OK"


MI_COMMANDS = {
    "get_statistics": Cmd("mi_get_statistics", aliases=("statistics:get",)),
    "list_statistics": Cmd("mi_list_statistics", aliases=("statistics:list",)),
    "reset_statistics": Cmd("mi_reset_statistics", aliases=("statistics:reset",)),
}

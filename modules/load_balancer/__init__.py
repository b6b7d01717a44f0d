"""load_balancer: calls spread by load over the destinations of the `load_balancer` table.

Each destination (group_id, dst_uri, resources `"pstn=32;transc=10"`, probe_mode) offers
resources with a maximum load; the load is the number of ongoing calls (dialogs) the
balancer sent there, counted per resource and released when the dialog ends (or the call
fails). lb_start(grp, "res1;res2"[, flags]) picks, among the enabled destinations of the
group that offer every requested resource, the one with the largest available slot (the
smallest `max - load` over the requested resources; with "r" the relative free share;
"n" allows exhausted ones; "s" picks at random among equals) and sets $du to it.

    1 selected, -1 internal error, -2 no capacity left, -3 no destination, -4 bad resources

lb_next() moves the call to the next best destination (failover), lb_disable_dst() takes
the current one out of use until a probe (probe_mode 1 or 2) answers again.
"""
from __future__ import annotations

import random
import re

from runtime import db
from runtime.module import (ALL, BRANCH, FAILURE, INT, LOCAL, ONREPLY, REQUEST, STR, Arg,
                            Func, Module, Param)
from runtime.pv import parse_uri
from runtime.values import to_int

from modules.dispatcher.common import check_reply_codes, is_ip, mi_reload, resolve_dest, same_ip
from modules.dispatcher.probe import ProbeUAC, parse_reply_codes, probe_ok, socket_of


def _flags_fixup(value, rt):
    if value is None:
        return ""
    if isinstance(value, int) or str(value).strip().isdigit():   # 1.x: alg 1 = relative
        return "r" if int(value) == 1 else ""
    text = str(value).strip()
    bad = set(text) - set("nrsNRS")
    if bad:
        raise ValueError(f"unknown load_balancer flag(s) '{''.join(sorted(bad))}'")
    return text.lower()


def _res_fixup(value, rt):
    return value if value is None else str(value)


exports = Module(
    name="load_balancer",
    params=[
        Param("db_url", str, None, check=db.check_url),
        Param("db_table", str, "load_balancer"),
        Param("probing_interval", int, 30), Param("probing_method", str, "OPTIONS"),
        Param("probing_from", str, "sip:prober@localhost"),
        Param("probing_reply_codes", str, None, check=check_reply_codes),
        Param("probing_verbose", int, 0), Param("probing_socket", str, None),
        Param("lb_define_blacklist", str, multi=True),
        Param("fetch_freeswitch_stats", int, 0), Param("initial_freeswitch_load", int, 1000),
        Param("cluster_id", int, 0), Param("cluster_sharing_tag", str, None),
        # columns (OpenSIPS names)
        Param("id_col", str, "id"), Param("grp_id_col", str, "group_id"),
        Param("dst_uri_col", str, "dst_uri"), Param("resources_col", str, "resources"),
        Param("probe_mode_col", str, "probe_mode"), Param("attrs_col", str, "attrs"),
        # a customised build's table of interfaces (czentrix): read, not used
        Param("db_interface_table", str, None),
    ],
    functions=[
        Func("lb_start", "lb_start",
             [Arg(INT, name="grp"), Arg(STR, fixup=_res_fixup, name="resources"),
              Arg(STR, optional=True, fixup=_flags_fixup, name="flags")],
             REQUEST | BRANCH | FAILURE),
        Func("lb_next", "lb_next", routes=REQUEST | FAILURE),
        Func("lb_start_or_next", "lb_start_or_next",
             [Arg(INT), Arg(STR, fixup=_res_fixup), Arg(STR, optional=True, fixup=_flags_fixup)],
             REQUEST | BRANCH | FAILURE),
        Func("load_balance", "lb_start_or_next",
             [Arg(INT), Arg(STR, fixup=_res_fixup), Arg(STR, optional=True, fixup=_flags_fixup)],
             REQUEST | BRANCH | FAILURE),
        Func("lb_reset", "lb_reset", routes=REQUEST | FAILURE),
        Func("lb_is_started", "lb_is_started", routes=ALL),
        Func("lb_disable_dst", "lb_disable_dst", routes=REQUEST | FAILURE),
        Func("lb_disable", "lb_disable_dst", routes=REQUEST | FAILURE),      # 1.x name
        Func("lb_is_destination", "lb_is_destination",
             [Arg(STR), Arg(STR, optional=True), Arg(INT, optional=True),
              Arg(INT, optional=True)],
             REQUEST | FAILURE | ONREPLY | BRANCH | LOCAL),
        Func("lb_count_call", "lb_count_call",
             [Arg(STR), Arg(STR), Arg(INT), Arg(STR, fixup=_res_fixup),
              Arg(INT, optional=True)],
             REQUEST | BRANCH | FAILURE),
    ],
    depends=("dialog",),
    mi={"lb_list": "mi_lb_list", "lb_reload": "mi_lb_reload", "lb_status": "mi_lb_status",
        "lb_resize": "mi_lb_resize"},
    init="init",
)


# --- data ----------------------------------------------------------------------------------

class Dest:
    __slots__ = ("id", "group", "uri", "resources", "load", "probe_mode", "enabled", "attrs",
                 "ips", "port", "description")

    def __init__(self):
        self.load = {}


class Hold:
    """One call counted on a destination for some resources."""
    __slots__ = ("dest", "resources", "released")

    def __init__(self, dest, resources):
        self.dest, self.resources, self.released = dest, tuple(resources), False
        for r in self.resources:
            dest.load[r] = dest.load.get(r, 0) + 1

    def release(self):
        if self.released:
            return
        self.released = True
        for r in self.resources:
            self.dest.load[r] = max(0, self.dest.load.get(r, 0) - 1)


class Session:
    __slots__ = ("group", "resources", "flags", "tried", "current", "hold")

    def __init__(self, group, resources, flags):
        self.group, self.resources, self.flags = group, resources, flags
        self.tried = []
        self.current = None
        self.hold = None


def _parse_resources(text):
    """`"pstn=32;transc=10"` -> {"pstn": "32", ...} (values as written)."""
    out = {}
    for part in re.split(r"[;,]", str(text or "")):
        part = part.strip()
        if not part:
            continue
        name, eq, value = part.partition("=")
        if not eq or not name.strip():
            raise ValueError(f"bad resource '{part}'")
        out[name.strip()] = value.strip()
    return out


class State:
    def __init__(self, rt):
        self.rt = rt
        self.p = rt.modparams["load_balancer"]
        self.dests: list[Dest] = []
        self.conn = None
        self.ok_codes, self.ok_classes = parse_reply_codes(self.p["probing_reply_codes"])

    def load(self):
        p = self.p
        url = p["db_url"] or self.rt.config.get("db_default_url")
        if not url:
            self.rt.log.warning("no db_url: no destinations", "load_balancer")
            self.dests = []
            return
        old = {d.id: d for d in self.dests}
        self.conn = conn = db.connect(url)
        conn.create_table(p["db_table"], _SCHEMA, 3)
        dests = []
        for row in conn.query(p["db_table"]):
            d = Dest()
            d.id = to_int(row.get(p["id_col"])) or 0
            d.group = to_int(row.get(p["grp_id_col"]))
            d.uri = str(row.get(p["dst_uri_col"]) or "").strip()
            d.probe_mode = to_int(row.get(p["probe_mode_col"])) or 0
            d.attrs = row.get(p["attrs_col"]) or None
            d.description = row.get("description")
            d.enabled = True
            if d.group is None or parse_uri(d.uri) is None:
                self.rt.log.error(f"bad destination row {row}", "load_balancer")
                continue
            try:
                res = _parse_resources(row.get(p["resources_col"]))
            except ValueError as e:
                self.rt.log.error(f"destination {d.id}: {e}", "load_balancer")
                continue
            d.resources = {}
            for name, value in res.items():
                n = to_int(value)
                if n is None and value.startswith("fs://"):
                    n = p["initial_freeswitch_load"]
                if n is None:
                    self.rt.log.error(f"destination {d.id}: bad capacity '{value}' of "
                                      f"'{name}'", "load_balancer")
                    continue
                d.resources[name] = n
            hop = resolve_dest(d.uri)
            d.ips = [hop[1]] if hop else []
            u = parse_uri(d.uri)
            d.port = u.port or 0
            prev = old.get(d.id)
            if prev is not None:
                d.load, d.enabled = prev.load, prev.enabled
            dests.append(d)
        self.dests = dests
        self.rt.log.info(f"{len(dests)} destination(s) loaded", "load_balancer")

    # --- selection ---------------------------------------------------------------------
    def pick(self, group, resources, flags, exclude=()):
        """(dest, None) or (None, error code)."""
        in_group = [d for d in self.dests if d.group == group]
        known = set()
        for d in in_group:
            known.update(d.resources)
        if not in_group or any(r not in known for r in resources):
            return None, -4 if in_group else -3
        cands = [d for d in in_group if d.enabled and d not in exclude
                 and all(r in d.resources for r in resources)]
        if not cands:
            return None, -3
        best, best_val = [], None
        for d in cands:
            if "r" in flags:
                val = min((100 * (d.resources[r] - d.load.get(r, 0)) // d.resources[r])
                          if d.resources[r] > 0 else 0 for r in resources)
            else:
                val = min(d.resources[r] - d.load.get(r, 0) for r in resources)
            if val <= 0 and "n" not in flags:
                continue
            if best_val is None or val > best_val:
                best, best_val = [d], val
            elif val == best_val:
                best.append(d)
        if not best:
            return None, -2
        return (random.choice(best) if "s" in flags else best[0]), None

    def set_enabled(self, d, enabled, why):
        if d.enabled == enabled:
            return
        d.enabled = enabled
        msg = f"destination {d.uri} (id {d.id}) {'re-enabled' if enabled else 'disabled'} " \
              f"({why})"
        if self.p["probing_verbose"]:
            self.rt.log.info(msg, "load_balancer")
        else:
            self.rt.log.notice(msg, "load_balancer")

    # --- probing -------------------------------------------------------------------------
    def probe_all(self):
        p = self.p
        uac = ProbeUAC.of(self.rt)
        sock = socket_of(self.rt, p["probing_socket"])
        for d in self.dests:
            if d.probe_mode == 0 or (d.probe_mode == 1 and d.enabled):
                continue
            uac.send(p["probing_method"], d.uri, p["probing_from"],
                     lambda code, d=d: self._probed(d, code), sock=sock)

    def _probed(self, d, code):
        if probe_ok(code, self.ok_codes, self.ok_classes):
            self.set_enabled(d, True, f"probe answered {code}")
        elif d.probe_mode == 2:
            self.set_enabled(d, False, f"probe answered {code}")


_SCHEMA = """
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, group_id INTEGER DEFAULT 0 NOT NULL,
    dst_uri CHAR(128) NOT NULL, resources CHAR(255) NOT NULL,
    probe_mode INTEGER DEFAULT 0 NOT NULL, attrs CHAR(255) DEFAULT NULL,
    description CHAR(128) DEFAULT NULL"""


def init(rt):
    st = State(rt)
    rt.apis["load_balancer"] = st
    st.load()
    interval = rt.modparams["load_balancer"]["probing_interval"]
    if interval > 0 and any(d.probe_mode for d in st.dests):
        rt.timers.append((interval, st.probe_all))


def _state(ctx) -> State:
    return ctx.rt.apis["load_balancer"]


# --- load accounting (dialogs) ------------------------------------------------------------

def _holds(ctx) -> list:
    return ctx.local_data.setdefault("lb_holds", [])


def _watch(ctx):
    """Release this call's load when its dialog ends, or when the call fails."""
    if ctx.local_data.get("lb_watching"):
        return
    ctx.local_data["lb_watching"] = True
    holds = _holds(ctx)
    rt = ctx.rt
    try:
        from modules import dialog as dialog_mod
        if ctx.local_data.get("dialog") is None and ctx.msg.method == "INVITE":
            dialog_mod.create_dialog(ctx)
        dlg = ctx.local_data.get("dialog")
    except Exception:
        dlg = None
    if dlg is not None:
        def ended(dlg, event, obj, direction):
            for h in holds:
                h.release()
        dlg.on("terminated", ended)
        dlg.on("failed", ended)

    def release_all():
        for h in holds:
            h.release()

    def reply_cb(tx, branch, reply):
        # a failed call (after any failure route), or a non-INVITE (no dialog) that is over
        if reply.status < 200 or (dlg is not None and reply.status < 300) \
                or rt.server is None:
            return

        def check():
            if tx.final_sent and (dlg is None or tx.last_status >= 300):
                release_all()
        rt.server.loop.call_soon(check)
    if ctx.tx is not None:
        ctx.tx.callbacks.append(reply_cb)
    else:
        ctx.local_data.setdefault("tm_callbacks", []).append(reply_cb)
    if rt.server is not None and rt.server.loop is not None:
        def never_relayed():
            if ctx.tx is None:       # the script ended without a transaction
                release_all()
        rt.server.loop.call_soon(never_relayed)


def _count(ctx, dest, resources) -> Hold:
    h = Hold(dest, resources)
    _holds(ctx).append(h)
    _watch(ctx)
    return h


# --- script functions ----------------------------------------------------------------------

def _resources(text):
    return [r.strip() for r in re.split(r"[;,]", str(text or "")) if r.strip()]


def _use(ctx, st, sess, dest):
    if sess.hold is not None:
        sess.hold.release()
    sess.current = dest
    sess.tried.append(dest)
    sess.hold = _count(ctx, dest, sess.resources)
    ctx.dst_uri = dest.uri
    return 1


def lb_start(ctx, grp, resources, flags=""):
    st = _state(ctx)
    res = _resources(resources)
    if not res:
        return -4
    old = ctx.local_data.get("lb_session")
    if old is not None and old.hold is not None:
        old.hold.release()
    sess = Session(grp, res, flags or "")
    ctx.local_data["lb_session"] = sess
    dest, err = st.pick(grp, res, sess.flags)
    if dest is None:
        return err
    return _use(ctx, st, sess, dest)


def lb_next(ctx):
    st = _state(ctx)
    sess = ctx.local_data.get("lb_session")
    if sess is None:
        return -1
    dest, err = st.pick(sess.group, sess.resources, sess.flags, exclude=sess.tried)
    if dest is None:
        if sess.hold is not None:
            sess.hold.release()
            sess.hold = None
        return err if err != -4 else -3
    return _use(ctx, st, sess, dest)


def lb_start_or_next(ctx, grp, resources, flags=""):
    if ctx.local_data.get("lb_session") is not None:
        return lb_next(ctx)
    return lb_start(ctx, grp, resources, flags)


def lb_reset(ctx):
    sess = ctx.local_data.pop("lb_session", None)
    if sess is not None and sess.hold is not None:
        sess.hold.release()
    return 1


def lb_is_started(ctx):
    return 1 if ctx.local_data.get("lb_session") is not None else -1


def lb_disable_dst(ctx):
    sess = ctx.local_data.get("lb_session")
    if sess is None or sess.current is None:
        return -1
    _state(ctx).set_enabled(sess.current, False, "lb_disable_dst")
    return 1


def _match(st, ip, port, group, active):
    ip = str(ip).strip().strip("[]")
    p = to_int(port) if port not in (None, "") else 0
    p = p or 0
    if not is_ip(ip):
        return None
    for d in st.dests:
        if group not in (None, -1) and d.group != group:
            continue
        if active and not d.enabled:
            continue
        if (d.port == 0 or p == 0 or d.port == p) and any(same_ip(x, ip) for x in d.ips):
            return d
    return None


def lb_is_destination(ctx, ip, port=None, group=None, active=None):
    return 1 if _match(_state(ctx), ip, port, group, bool(active)) else -1


def lb_count_call(ctx, ip, port, group, resources, undo=None):
    st = _state(ctx)
    res = _resources(resources)
    d = _match(st, ip, port, group, False)
    if d is None or not res or any(r not in d.resources for r in res):
        return -1
    if undo:
        for h in _holds(ctx):
            if h.dest is d and not h.released and set(h.resources) & set(res):
                h.release()
        return 1
    _count(ctx, d, res)
    return 1


# --- MI ------------------------------------------------------------------------------------

def mi_lb_list(rt):
    """Every destination with the maximum and current load of each resource."""
    st = rt.apis["load_balancer"]
    out = []
    for d in st.dests:
        out.append({"id": d.id, "group": d.group, "uri": d.uri,
                    "enabled": "yes" if d.enabled else "no",
                    "auto-re": "on" if d.probe_mode else "off",
                    "Resources": [{"name": r, "max": m, "load": d.load.get(r, 0)}
                                  for r, m in d.resources.items()]})
    return {"Destinations": out}


def mi_lb_reload(rt):
    """Load the destinations again (the load of known ones is kept)."""
    return mi_reload(rt.apis["load_balancer"])


def _mi_dest(rt, destination_id):
    from runtime.mi import MIError
    for d in rt.apis["load_balancer"].dests:
        if d.id == destination_id:
            return d
    raise MIError(404, "Destination ID not found")


def mi_lb_status(rt, destination_id: int, new_status: int = None):
    """Read or force (0 disable, 1 enable) the status of a destination."""
    from runtime.mi import OK
    d = _mi_dest(rt, destination_id)
    if new_status is None:
        return {"enable": "yes" if d.enabled else "no"}
    rt.apis["load_balancer"].set_enabled(d, bool(new_status), "MI command")
    return OK


def mi_lb_resize(rt, destination_id: int, res_name: str, new_capacity: int):
    """Change the capacity of one resource of a destination."""
    from runtime.mi import OK, MIError
    d = _mi_dest(rt, destination_id)
    if res_name not in d.resources:
        raise MIError(404, "Resource Name not found")
    d.resources[res_name] = new_capacity
    return OK


__all__ = ["exports", "State", "Dest", "Hold"]

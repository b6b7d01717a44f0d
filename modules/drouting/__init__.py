"""drouting: dynamic routing over the dr_gateways / dr_rules / dr_carriers / dr_groups
tables (OpenSIPS 3.x semantics).

do_routing() finds the caller's group (the argument, else dr_groups by From user[@domain],
else default_group), then the rules of that group for the longest prefix of the R-URI user
(strict length with "L"), the time-valid one of highest priority; its gateways and
carriers (in list order, or weight-based random order for sort_alg 'W' / flag "W"),
disabled ones skipped, become the R-URI `sip:<pri_prefix><user after strip>@<gw address>`
for the first one and `ruri_avp` entries for the others; use_next_gw() takes the next one
(and with "F", falls back to the rules of lower priority or shorter prefix). `gw_id_avp`
lists the gateway ids (current first), as OpenSIPS fills it.

Gateways: probe_mode 0 (never probed), 1 (probed while disabled), 2 (always probed; a
failed probe disables); dr_disable() disables the current gateway.
"""
from __future__ import annotations

import random
import re

from runtime import db
from runtime.context import ScriptExit
from runtime.module import (BRANCH, EVENT, FAILURE, LOCAL, ONREPLY, REQUEST, STARTUP, STR,
                            TIMER, VAR, Arg, Func, Module, Param)
from runtime.pv import parse_uri
from runtime.sip.headers import SIPError
from runtime.values import to_int

from modules.dispatcher.common import PVRef, check_pv, check_reply_codes, is_ip, mi_reload, \
    partition_id, same_ip, split_host_port
from modules.dispatcher.probe import ProbeUAC, parse_reply_codes, probe_ok, socket_of

from .timerec import TimeRec

_RFL = REQUEST | FAILURE | LOCAL


def _grp_fixup(value, rt):
    """`0`, `"1"`, `"$avp(x)"` (rendered), `"part:1"`, `"part:"` -> (partition, group)."""
    return partition_id(value, "routing group", optional=True)


def _flags_fixup(value, rt):
    text = "" if value is None else str(value).strip()
    bad = set(text) - set("WFLCwflc")
    if bad:
        raise ValueError(f"unknown do_routing flag(s) '{''.join(sorted(bad))}'")
    return text.upper()


def _gwflags_fixup(value, rt):
    text = "" if value is None else str(value).strip()
    if text.isdigit():          # 1.x: a non-zero flag applied strip and prefix
        return "sp" if int(text) else ""
    bad = set(text) - set("spinc")
    if bad:
        raise ValueError(f"unknown gateway flag(s) '{''.join(sorted(bad))}'")
    return text


def _type_fixup(value, rt):
    if value is None or str(value).strip() == "":
        return None
    n = to_int(value)
    if n is None:
        raise ValueError(f"'{value}' is not a gateway type")
    return n


exports = Module(
    name="drouting",
    params=[
        Param("db_url", str, None, check=db.check_url),
        Param("drd_table", str, "dr_gateways"), Param("drr_table", str, "dr_rules"),
        Param("drg_table", str, "dr_groups"), Param("drc_table", str, "dr_carriers"),
        Param("drl_table", str, None),              # Kamailio's dr_gw_lists
        Param("ruri_avp", str, None, check=check_pv),
        Param("gw_id_avp", str, None, check=check_pv),
        Param("gw_priprefix_avp", str, None, check=check_pv),
        Param("rule_id_avp", str, None, check=check_pv),
        Param("rule_prefix_avp", str, None, check=check_pv),
        Param("carrier_id_avp", str, None, check=check_pv),
        Param("gw_sock_avp", str, None, check=check_pv),
        Param("rule_attrs_avp", str, None, check=check_pv),
        Param("gw_attrs_avp", str, None, check=check_pv),
        Param("carrier_attrs_avp", str, None, check=check_pv),
        Param("define_blacklist", str, multi=True),
        Param("default_group", int, None), Param("force_dns", int, 1),
        Param("persistent_state", int, 1), Param("no_concurrent_reload", int, 0),
        Param("probing_interval", int, 30), Param("probing_method", str, "OPTIONS"),
        Param("probing_from", str, "sip:prober@localhost"),
        Param("probing_reply_codes", str, None,
              check=check_reply_codes),
        Param("probing_socket", str, None),
        Param("use_domain", int, 1), Param("drg_user_col", str, "username"),
        Param("drg_domain_col", str, "domain"), Param("drg_grpid_col", str, "groupid"),
        Param("use_partitions", int, 0), Param("db_partitions_url", str, None),
        Param("db_partitions_table", str, "dr_partitions"),
        Param("partition_id_pvar", str, None, check=check_pv),
        Param("cluster_id", int, 0), Param("cluster_sharing_tag", str, None),
        Param("enable_restart_persistency", int, 0), Param("extra_prefix_chars", str, None),
        # OpenSIPS 1.x and Kamailio
        Param("sort_order", int, 0), Param("fetch_rows", int, 2000),
        Param("enable_keepalive", int, 0), Param("attrs_avp", str, None, check=check_pv),
        Param("dr_prefix_avp", str, None, check=check_pv),
    ],
    functions=[
        Func("do_routing", "do_routing",
             [Arg(STR, optional=True, fixup=_grp_fixup), Arg(STR, optional=True,
                                                              fixup=_flags_fixup),
              Arg(STR, optional=True), Arg(VAR, optional=True), Arg(VAR, optional=True),
              Arg(VAR, optional=True)], _RFL),
        Func("dr_match", "dr_match",
             [Arg(STR, optional=True, fixup=_grp_fixup), Arg(STR, optional=True,
                                                              fixup=_flags_fixup),
              Arg(STR), Arg(VAR, optional=True)], _RFL | BRANCH | ONREPLY),
        Func("use_next_gw", "use_next_gw",
             [Arg(VAR, optional=True), Arg(VAR, optional=True), Arg(VAR, optional=True)],
             _RFL),
        Func("next_routing", "use_next_gw", routes=_RFL),
        Func("route_to_gw", "route_to_gw", [Arg(STR), Arg(VAR, optional=True)], _RFL),
        Func("route_to_carrier", "route_to_carrier",
             [Arg(STR), Arg(VAR, optional=True), Arg(VAR, optional=True)], _RFL),
        Func("is_from_gw", "is_from_gw",
             [Arg(STR, optional=True, fixup=_type_fixup),
              Arg(STR, optional=True, fixup=_gwflags_fixup), Arg(VAR, optional=True)],
             REQUEST | FAILURE | ONREPLY | BRANCH),
        Func("goes_to_gw", "goes_to_gw",
             [Arg(STR, optional=True, fixup=_type_fixup),
              Arg(STR, optional=True, fixup=_gwflags_fixup), Arg(VAR, optional=True)],
             REQUEST | FAILURE | BRANCH | LOCAL),
        Func("dr_is_gw", "dr_is_gw",
             [Arg(STR), Arg(STR, optional=True, fixup=_type_fixup),
              Arg(STR, optional=True, fixup=_gwflags_fixup), Arg(VAR, optional=True)],
             REQUEST | FAILURE | ONREPLY | BRANCH | LOCAL | STARTUP | TIMER | EVENT),
        Func("dr_disable", "dr_disable", [Arg(STR, optional=True)], REQUEST | FAILURE),
    ],
    mi={"dr_reload": "mi_dr_reload", "dr_gw_status": "mi_dr_gw_status",
        "dr_carrier_status": "mi_dr_carrier_status"},
    init="init",
)


# --- data ----------------------------------------------------------------------------------

class Gateway:
    __slots__ = ("id", "type", "address", "strip", "pri", "attrs", "probe_mode", "disabled",
                 "mi_disabled", "sock", "ips", "host", "port", "params", "row_key")

    @property
    def uri(self):
        return f"sip:{self.host_port}"

    @property
    def host_port(self):
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") \
            else self.host
        return f"{host}:{self.port}" if self.port else host


class Carrier:
    __slots__ = ("id", "gws", "flags", "sort_alg", "disabled", "attrs")


class Rule:
    __slots__ = ("id", "groups", "prefix", "timerec", "priority", "routeid", "dsts",
                 "sort_alg", "attrs")


class Data:
    def __init__(self):
        self.gws: dict[str, Gateway] = {}
        self.carriers: dict[str, Carrier] = {}
        self.rules: list[Rule] = []
        self.index: dict[int, dict[str, list[Rule]]] = {}   # group -> prefix -> rules
        self.groups: dict = {}                               # (user, domain) -> group


class Partition:
    def __init__(self, name, p, props=None):
        props = props or {}
        self.name = name
        self.db_url = props.get("db_url") or p["db_url"]
        self.drd = props.get("drd_table") or p["drd_table"]
        self.drr = props.get("drr_table") or p["drr_table"]
        self.drg = props.get("drg_table") or p["drg_table"]
        self.drc = props.get("drc_table") or p["drc_table"]
        self.drl = p["drl_table"]
        suffix = "" if name == "default" else name

        def avp(key, default):
            text = props.get(key) or (p[key] if p[key] else None)
            if text is None and default is not None:
                text = default.replace("__)", f"__{suffix})") if suffix else default
            return PVRef(text) if text else None
        self.ruri_avp = avp("ruri_avp", "$avp(___dr_ruri__)")
        self.gw_id_avp = avp("gw_id_avp", "$avp(___dr_gw_id__)")
        self.gw_sock_avp = avp("gw_sock_avp", "$avp(___dr_sock__)")
        self.rule_attrs_avp = avp("rule_attrs_avp", "$avp(___dr_ru_att__)")
        self.gw_attrs_avp = avp("gw_attrs_avp", "$avp(___dr_gw_att__)")
        self.carrier_attrs_avp = avp("carrier_attrs_avp", "$avp(___dr_cr_att__)")
        self.gw_priprefix_avp = avp("gw_priprefix_avp", None)
        self.rule_id_avp = avp("rule_id_avp", None)
        self.rule_prefix_avp = avp("rule_prefix_avp", None)
        self.carrier_id_avp = avp("carrier_id_avp", None)
        self.fb = PVRef(f"$avp(___dr_fallback__{suffix})")    # pending fallback rules
        self.data = Data()
        self.conn = None


class State:
    def __init__(self, rt):
        self.rt = rt
        p = self.p = rt.modparams["drouting"]
        self.partitions: dict[str, Partition] = {}
        self.ok_codes, self.ok_classes = parse_reply_codes(p["probing_reply_codes"])
        self.partition_pv = PVRef(p["partition_id_pvar"]) if p["partition_id_pvar"] else None

    def _partitions(self):
        p = self.p
        if not p["use_partitions"]:
            return {"default": Partition("default", p)}
        if not p["db_partitions_url"]:
            raise RuntimeError("use_partitions needs db_partitions_url")
        conn = db.connect(p["db_partitions_url"])
        out = {}
        for row in conn.query(p["db_partitions_table"]):
            name = str(row.get("partition_name") or "").strip()
            if name:
                out[name] = Partition(name, p, {k: v for k, v in row.items() if v})
        return out

    def load(self):
        self.partitions = self._partitions()
        for part in self.partitions.values():
            if not part.db_url:
                self.rt.log.warning(f"partition '{part.name}' has no db_url: no routing data",
                                    "drouting")
                continue
            part.conn = db.connect(part.db_url)
            part.data = self._load(part)
            d = part.data
            self.rt.log.info(f"partition '{part.name}': {len(d.gws)} gateway(s), "
                             f"{len(d.carriers)} carrier(s), {len(d.rules)} rule(s)", "drouting")

    def _load(self, part) -> Data:
        conn, log = part.conn, self.rt.log
        for table, cols, version in ((part.drd, _GW_SCHEMA, 6), (part.drr, _RULE_SCHEMA, 4),
                                     (part.drc, _CR_SCHEMA, 3), (part.drg, _GRP_SCHEMA, 2)):
            conn.create_table(table, cols, version)
        data = Data()
        for row in conn.query(part.drd):
            gw = self._gateway(row)
            if gw is not None:
                data.gws[gw.id] = gw
        lists = {}
        if part.drl:
            try:
                for row in conn.query(part.drl):
                    lists[str(row.get("id"))] = str(row.get("gwlist") or "")
            except db.DBError as e:
                log.warning(f"cannot read {part.drl}: {e}", "drouting")
        try:
            carriers = conn.query(part.drc)
        except db.DBError:
            carriers = []
        for row in carriers:
            cr = Carrier()
            cr.id = str(row.get("carrierid") or row.get("id") or "").strip()
            cr.flags = to_int(row.get("flags")) or 0
            cr.sort_alg = str(row.get("sort_alg") or ("W" if cr.flags & 1 else "N")).upper()
            cr.disabled = bool(cr.flags & 4) or bool(to_int(row.get("state")) or 0)
            cr.attrs = row.get("attrs") or None
            cr.gws = []
            for ref, weight in _dst_list(str(row.get("gwlist") or "")):
                gw = data.gws.get(ref)
                if gw is None:
                    log.warning(f"carrier {cr.id}: unknown gateway '{ref}'", "drouting")
                    continue
                cr.gws.append((gw, weight))
            data.carriers[cr.id] = cr
        for row in conn.query(part.drr):
            try:
                rule = self._rule(row, data, lists)
            except ValueError as e:
                log.error(f"rule {row.get('ruleid')}: {e}", "drouting")
                continue
            data.rules.append(rule)
            for g in rule.groups:
                data.index.setdefault(g, {}).setdefault(rule.prefix, []).append(rule)
        for prefixes in data.index.values():
            for lst in prefixes.values():
                lst.sort(key=lambda r: -r.priority)
        p = self.p
        try:
            for row in conn.query(part.drg):
                user = str(row.get(p["drg_user_col"]) or "")
                domain = str(row.get(p["drg_domain_col"]) or "")
                grp = to_int(row.get(p["drg_grpid_col"]))
                if grp is not None:
                    data.groups[(user.lower(), domain.lower())] = grp
        except db.DBError as e:
            log.warning(f"cannot read {part.drg}: {e}", "drouting")
        return data

    def _gateway(self, row):
        gw = Gateway()
        gw.id = str(row.get("gwid") if row.get("gwid") not in (None, "") else row.get("id"))
        gw.type = to_int(row.get("type")) or 0
        gw.address = str(row.get("address") or "").strip()
        gw.strip = to_int(row.get("strip")) or 0
        gw.pri = str(row.get("pri_prefix") or "")
        gw.attrs = row.get("attrs") or None
        gw.probe_mode = to_int(row.get("probe_mode")) or 0
        state = to_int(row.get("state")) or 0 if self.p["persistent_state"] else 0
        gw.disabled = state != 0
        gw.mi_disabled = state == 2
        gw.sock = socket_of(self.rt, row.get("socket"))
        gw.row_key = row.get("id")
        addr = gw.address
        gw.params = ""
        if addr[:4].lower() in ("sip:", "sips"):
            u = parse_uri(addr)
            if u is None:
                self.rt.log.error(f"gateway {gw.id}: bad address '{addr}'", "drouting")
                return None
            gw.host, gw.port = u.host.strip("[]"), u.port or 0
            gw.params = "".join(f";{k}" + (f"={v}" if v is not None else "")
                                for k, v in u.params)
        else:
            hostport, _, params = addr.partition(";")
            gw.host, gw.port = split_host_port(hostport)
            gw.params = f";{params}" if params else ""
        if not gw.host:
            self.rt.log.error(f"gateway {gw.id}: empty address", "drouting")
            return None
        gw.ips = []
        if is_ip(gw.host):
            gw.ips = [gw.host]
        elif self.p["force_dns"]:
            from runtime.forward import resolve
            ip = resolve(gw.host)
            if ip is None:
                self.rt.log.warning(f"gateway {gw.id}: cannot resolve '{gw.host}'", "drouting")
            else:
                gw.ips = [ip]
        return gw

    def _rule(self, row, data, lists):
        r = Rule()
        r.id = to_int(row.get("ruleid")) or 0
        r.groups = set()
        for g in re.split(r"[,;\s]+", str(row.get("groupid") or "")):
            if g.strip():
                n = to_int(g)
                if n is None:
                    raise ValueError(f"bad group '{g}'")
                r.groups.add(n)
        r.prefix = str(row.get("prefix") or "").strip()
        r.timerec = TimeRec.parse(row.get("timerec") or "")
        r.priority = to_int(row.get("priority")) or 0
        r.routeid = str(row.get("routeid") or "").strip() or None
        r.sort_alg = str(row.get("sort_alg") or "N").strip().upper()[:1] or "N"
        r.attrs = row.get("attrs") or None
        r.dsts = []
        for ref, weight in _dst_list(str(row.get("gwlist") or "")):
            if ref.startswith("#"):
                cid = ref[1:]
                cr = data.carriers.get(cid)
                if cr is None and cid in lists:     # Kamailio: a dr_gw_lists entry
                    for gref, w in _dst_list(lists[cid]):
                        if gref in data.gws:
                            r.dsts.append((data.gws[gref], w))
                    continue
                if cr is None:
                    raise ValueError(f"unknown carrier '{cid}'")
                r.dsts.append((cr, weight))
            else:
                gw = data.gws.get(ref)
                if gw is None:
                    raise ValueError(f"unknown gateway '{ref}'")
                r.dsts.append((gw, weight))
        return r

    def partition(self, name):
        if name is None:
            return self.partitions.get("default") or next(iter(self.partitions.values()), None)
        return self.partitions.get(name)

    # --- states and probing --------------------------------------------------------------
    def set_gw_state(self, part, gw, disabled):
        if gw.disabled == disabled:
            return
        gw.disabled = disabled
        gw.mi_disabled = False
        self.rt.log.notice(f"gateway {gw.id} ({gw.address}) is now "
                           f"{'disabled' if disabled else 'enabled'}", "drouting")
        if self.p["persistent_state"] and part.conn is not None:
            try:
                part.conn.update(part.drd, {"gwid": gw.id}, {"state": 1 if disabled else 0})
            except db.DBError as e:
                self.rt.log.warning(f"cannot store the state of gateway {gw.id}: {e}",
                                    "drouting")

    def probe_all(self):
        p = self.p
        uac = ProbeUAC.of(self.rt)
        sock = socket_of(self.rt, p["probing_socket"])
        for part in self.partitions.values():
            for gw in part.data.gws.values():
                if gw.mi_disabled or gw.probe_mode == 0 or (gw.probe_mode == 1
                                                            and not gw.disabled):
                    continue
                uac.send(p["probing_method"], gw.uri, p["probing_from"],
                         lambda code, part=part, gw=gw: self._probed(part, gw, code),
                         sock=gw.sock or sock)

    def _probed(self, part, gw, code):
        if probe_ok(code, self.ok_codes, self.ok_classes):
            self.set_gw_state(part, gw, False)
        elif gw.probe_mode == 2:
            self.set_gw_state(part, gw, True)


def _dst_list(text):
    """`"gw1=10, #cr2, 3"` -> [("gw1", 10), ("#cr2", 1), ("3", 1)]."""
    out = []
    for item in re.split(r"[,;]", text):
        item = item.strip()
        if not item:
            continue
        ref, eq, w = item.partition("=")
        out.append((ref.strip(), to_int(w) if eq and to_int(w) is not None else 1))
    return out


_GW_SCHEMA = """
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, gwid CHAR(64) NOT NULL,
    type INTEGER DEFAULT 0 NOT NULL, address CHAR(128) NOT NULL,
    strip INTEGER DEFAULT 0 NOT NULL, pri_prefix CHAR(16) DEFAULT NULL,
    attrs CHAR(255) DEFAULT NULL, probe_mode INTEGER DEFAULT 0 NOT NULL,
    state INTEGER DEFAULT 0 NOT NULL, socket CHAR(128) DEFAULT NULL,
    description CHAR(128) DEFAULT NULL, CONSTRAINT dr_gw_idx UNIQUE (gwid)"""
_RULE_SCHEMA = """
    ruleid INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, groupid CHAR(255) NOT NULL,
    prefix CHAR(64) NOT NULL, timerec CHAR(255) DEFAULT NULL,
    priority INTEGER DEFAULT 0 NOT NULL, routeid CHAR(255) DEFAULT NULL,
    gwlist CHAR(255) DEFAULT NULL, sort_alg CHAR(1) DEFAULT 'N' NOT NULL,
    sort_profile INTEGER DEFAULT NULL, attrs CHAR(255) DEFAULT NULL,
    description CHAR(128) DEFAULT NULL"""
_CR_SCHEMA = """
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, carrierid CHAR(64) NOT NULL,
    gwlist CHAR(255) NOT NULL, flags INTEGER DEFAULT 0 NOT NULL,
    sort_alg CHAR(1) DEFAULT 'N' NOT NULL, state INTEGER DEFAULT 0 NOT NULL,
    attrs CHAR(255) DEFAULT '', description CHAR(128) DEFAULT NULL,
    CONSTRAINT dr_carrier_idx UNIQUE (carrierid)"""
_GRP_SCHEMA = """
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, username CHAR(64) NOT NULL,
    domain CHAR(128) DEFAULT '' NOT NULL, groupid INTEGER DEFAULT 0 NOT NULL,
    description CHAR(128) DEFAULT ''"""


def init(rt):
    st = State(rt)
    rt.apis["drouting"] = st
    st.load()
    interval = rt.modparams["drouting"]["probing_interval"]
    if interval > 0 and any(gw.probe_mode for part in st.partitions.values()
                            for gw in part.data.gws.values()):
        rt.timers.append((interval, st.probe_all))


def _state(ctx) -> State:
    return ctx.rt.apis["drouting"]


# --- routing -------------------------------------------------------------------------------

def _sorted(dsts, weighted):
    """Definition order, or weight-based random order (higher weight, likelier first)."""
    items = list(dsts)
    if not weighted:
        return items
    out = []
    while items:
        total = sum(w for _, w in items)
        if total <= 0:
            out.extend(items)
            break
        r = random.random() * total
        acc = 0
        for i, (obj, w) in enumerate(items):
            acc += w
            if r < acc:
                out.append(items.pop(i))
                break
        else:
            out.append(items.pop())
    return out


def _expand(rule, whitelist, weighted):
    """The usable (gateway, carrier or None) of a rule, in order."""
    out = []
    for obj, _ in _sorted(rule.dsts, weighted or rule.sort_alg == "W"):
        if isinstance(obj, Carrier):
            if obj.disabled or (whitelist is not None and f"#{obj.id}" not in whitelist
                                and obj.id not in whitelist):
                continue
            for gw, _ in _sorted(obj.gws, obj.sort_alg == "W"):
                if gw.disabled:
                    continue
                out.append((gw, obj))
                if obj.flags & 2:
                    break
        else:
            if obj.disabled or (whitelist is not None and obj.id not in whitelist):
                continue
            out.append((obj, None))
    return out


def _new_ruri(base, gw):
    u = parse_uri(base)
    if u is None:
        return None
    user = u.user or ""
    user = gw.pri + user[gw.strip:] if user or gw.pri else ""
    params = "".join(f";{k}" + (f"={v}" if v is not None else "") for k, v in u.params
                     if not (gw.params and k.lower() == "transport"))
    return f"sip:{user + '@' if user else ''}{gw.host_port}{gw.params}{params}" + \
        (f"?{u.headers}" if u.headers else "")


def _clear(ctx, part):
    for ref in (part.ruri_avp, part.gw_id_avp, part.gw_sock_avp, part.rule_attrs_avp,
                part.gw_attrs_avp, part.carrier_attrs_avp, part.carrier_id_avp,
                part.gw_priprefix_avp, part.rule_id_avp, part.rule_prefix_avp, part.fb):
        if ref is not None:
            ref.clear(ctx)


def _push_gws(ctx, part, base, gws):
    """The first gateway becomes the R-URI, the others wait in ruri_avp."""
    n = 0
    for gw, cr in gws:
        ruri = _new_ruri(base, gw)
        if ruri is None:
            continue
        if n == 0:
            ctx.new_ruri = ruri
            if gw.sock is not None:
                ctx.force_socket = gw.sock
        else:
            part.ruri_avp.push_last(ctx, ruri)
            part.gw_sock_avp.push_last(ctx, str(gw.sock) if gw.sock else "")
        part.gw_id_avp.push_last(ctx, gw.id)
        part.gw_attrs_avp.push_last(ctx, gw.attrs or "")
        if part.gw_priprefix_avp is not None:
            part.gw_priprefix_avp.push_last(ctx, gw.pri)
        if part.carrier_id_avp is not None:
            part.carrier_id_avp.push_last(ctx, cr.id if cr else "")
        part.carrier_attrs_avp.push_last(ctx, (cr.attrs or "") if cr else "")
        n += 1
    return n


def _candidates(data, group, user, strict):
    """Time-valid rules of `group` for `user`: longest prefix first, highest priority
    first within a prefix; the prefix-less (default) rules last."""
    prefixes = data.index.get(group, {})
    out = []
    for n in range(len(user), 0, -1):
        if strict and n != len(user):
            break
        for r in prefixes.get(user[:n], ()):
            if r.timerec is None or r.timerec.matches():
                out.append((r, user[:n]))
    if not strict or not user:
        for r in prefixes.get("", ()):
            if r.timerec is None or r.timerec.matches():
                out.append((r, ""))
    return out


def _group_of(ctx, st, part):
    try:
        u = parse_uri(ctx.msg.from_.uri)
    except SIPError:
        return None
    if u is None:
        return None
    groups = part.data.groups
    user = (u.user or "").lower()
    key = (user, u.host.lower() if st.p["use_domain"] else "")
    grp = groups.get(key)
    if grp is None and not st.p["use_domain"]:
        grp = next((g for (us, _), g in groups.items() if us == user), None)
    if grp is None:
        grp = st.p["default_group"]
    return grp


def _run_route(ctx, name) -> bool:
    """The rule's script route; False when it dropped the routing."""
    fn = ctx.rt.routes.get(("route", name))
    if fn is None:
        ctx.rt.log.warning(f"rule route '{name}' is not defined", "drouting")
        return True
    saved = ctx.dropped
    ctx.dropped = False
    try:
        fn(ctx)
    except ScriptExit:
        ctx.dropped = True
    dropped = ctx.dropped
    ctx.dropped = saved
    return not dropped


def _set_attrs(ctx, var, value):
    if var is not None:
        var.set(ctx, value or "")


def _route(ctx, st, part, group, flags, whitelist, rule_attrs, gw_attrs, cr_attrs):
    data = part.data
    if "C" not in flags:
        _clear(ctx, part)
    if group is None:
        group = _group_of(ctx, st, part)
        if group is None:
            ctx.rt.log.error("failed to get the routing group of the caller", "drouting")
            return -1
    base = ctx.ruri
    u = parse_uri(base)
    if u is None:
        return -1
    user = u.user or ""
    cands = _candidates(data, group, user, "L" in flags)
    if not cands:
        return -1
    fallback = "F" in flags
    for i, (rule, prefix) in enumerate(cands):
        if rule.routeid and not _run_route(ctx, rule.routeid):
            return -1
        if "C" in flags:
            _rule_avps(ctx, part, rule, prefix, rule_attrs)
            return 1
        gws = _expand(rule, whitelist, "W" in flags)
        if not gws:
            if fallback:
                continue
            return -1
        _push_gws(ctx, part, base, gws)
        _rule_avps(ctx, part, rule, prefix, rule_attrs)
        _set_attrs(ctx, gw_attrs, gws[0][0].attrs)
        _set_attrs(ctx, cr_attrs, gws[0][1].attrs if gws[0][1] else "")
        if fallback:
            rest = ",".join(str(r.id) for r, _ in cands[i + 1:])
            if rest:
                part.fb.push(ctx, f"{base}|{flags}|{','.join(whitelist or [])}|{rest}")
        return 1
    return -1


def _rule_avps(ctx, part, rule, prefix, rule_attrs):
    if part.rule_prefix_avp is not None:
        part.rule_prefix_avp.push(ctx, prefix)
    part.rule_attrs_avp.push(ctx, rule.attrs or "")
    _set_attrs(ctx, rule_attrs, rule.attrs)
    if part.rule_id_avp is not None:
        part.rule_id_avp.push(ctx, rule.id)


def _whitelist(text):
    if text in (None, ""):
        return None
    return {x.strip() for x in str(text).split(",") if x.strip()}


def do_routing(ctx, grp=None, flags="", wl=None, rule_attrs=None, gw_attrs=None,
               cr_attrs=None):
    st = _state(ctx)
    pname, group = grp if grp is not None else (None, None)
    flags = flags or ""
    if st.p["use_partitions"] and pname is None and grp is not None:
        ctx.rt.log.error("do_routing: the partition is mandatory", "drouting")
        return -1
    if pname == "*":
        for name, part in st.partitions.items():
            if _route(ctx, st, part, group, flags, _whitelist(wl), rule_attrs, gw_attrs,
                      cr_attrs) > 0:
                if st.partition_pv is not None:
                    st.partition_pv.push(ctx, name)
                return 1
        return -1
    part = st.partition(pname)
    if part is None:
        return -1
    return _route(ctx, st, part, group, flags, _whitelist(wl), rule_attrs, gw_attrs,
                  cr_attrs)


def dr_match(ctx, grp=None, flags="", number="", rule_attrs=None):
    st = _state(ctx)
    pname, group = grp if grp is not None else (None, None)
    part = st.partition(pname)
    if part is None:
        return -1
    if group is None:
        group = _group_of(ctx, st, part)
        if group is None:
            return -1
    cands = _candidates(part.data, group, str(number), "L" in (flags or ""))
    if not cands:
        return -1
    rule, prefix = cands[0]
    _rule_avps(ctx, part, rule, prefix, rule_attrs)
    return 1


def use_next_gw(ctx, rule_attrs=None, gw_attrs=None, cr_attrs=None):
    st = _state(ctx)
    part = st.partition(None)
    if part is None:
        return -1
    ruri = part.ruri_avp.pop(ctx)
    if ruri is None:
        return _fallback(ctx, st, part, rule_attrs, gw_attrs, cr_attrs)
    if parse_uri(str(ruri)) is None:
        return -1
    ctx.new_ruri = str(ruri)
    sock_text = part.gw_sock_avp.pop(ctx)
    if sock_text:
        sock = ctx.rt.find_socket(str(sock_text))
        if sock is not None:
            ctx.force_socket = sock
    for ref in (part.gw_id_avp, part.gw_attrs_avp, part.gw_priprefix_avp,
                part.carrier_id_avp, part.carrier_attrs_avp):
        if ref is not None:
            ref.pop(ctx)
    _set_attrs(ctx, gw_attrs, part.gw_attrs_avp.get(ctx))
    _set_attrs(ctx, cr_attrs, part.carrier_attrs_avp.get(ctx))
    _set_attrs(ctx, rule_attrs, part.rule_attrs_avp.get(ctx))
    return 1


def _fallback(ctx, st, part, rule_attrs, gw_attrs, cr_attrs):
    state = part.fb.get(ctx)
    if not state:
        return -1
    base, flags, wl, rest = str(state).split("|", 3)
    whitelist = set(wl.split(",")) if wl else None
    ids = [x for x in rest.split(",") if x]
    rules = {r.id: r for r in part.data.rules}
    while ids:
        rid = to_int(ids.pop(0))
        rule = rules.get(rid)
        if rule is None:
            continue
        if rule.routeid and not _run_route(ctx, rule.routeid):
            break
        gws = _expand(rule, whitelist, "W" in flags)
        if not gws:
            continue
        _clear(ctx, part)
        _push_gws(ctx, part, base, gws)
        u = parse_uri(base)
        user = (u.user or "") if u else ""
        prefix = rule.prefix if user.startswith(rule.prefix) else ""
        _rule_avps(ctx, part, rule, prefix, rule_attrs)
        _set_attrs(ctx, gw_attrs, gws[0][0].attrs)
        _set_attrs(ctx, cr_attrs, gws[0][1].attrs if gws[0][1] else "")
        if ids:
            part.fb.push(ctx, f"{base}|{flags}|{wl}|{','.join(ids)}")
        return 1
    part.fb.clear(ctx)
    return -1


def _split_part(ctx, st, text):
    text = str(text)
    if st.p["use_partitions"] and ":" in text:
        name, _, text = text.partition(":")
        return st.partition(name.strip()), text
    return st.partition(None), text


def route_to_gw(ctx, ids, gw_attrs=None):
    st = _state(ctx)
    part, ids = _split_part(ctx, st, ids)
    if part is None:
        return -1
    gws = []
    for gid in (x.strip() for x in ids.split(",")):
        if not gid:
            return -1
        gw = part.data.gws.get(gid)
        if gw is None:
            ctx.rt.log.error(f"no gateway with id <{gid}>", "drouting")
            continue
        if not gw.disabled:
            gws.append((gw, None))
    if not gws:
        return -1
    _clear(ctx, part)
    _push_gws(ctx, part, ctx.ruri, gws)
    _set_attrs(ctx, gw_attrs, gws[0][0].attrs)
    return 1


def route_to_carrier(ctx, ids, gw_attrs=None, cr_attrs=None):
    st = _state(ctx)
    part, ids = _split_part(ctx, st, ids)
    if part is None:
        return -1
    gws = []
    for cid in (x.strip() for x in ids.split(",")):
        cr = part.data.carriers.get(cid)
        if cr is None:
            if cid:
                ctx.rt.log.error(f"carrier <{cid}> was not found", "drouting")
            continue
        if cr.disabled:
            continue
        for gw, _ in _sorted(cr.gws, cr.sort_alg == "W"):
            if not gw.disabled:
                gws.append((gw, cr))
                if cr.flags & 2:
                    break
    _clear(ctx, part)
    if not gws:
        return -1
    _push_gws(ctx, part, ctx.ruri, gws)
    _set_attrs(ctx, gw_attrs, gws[0][0].attrs)
    _set_attrs(ctx, cr_attrs, gws[0][1].attrs if gws[0][1] else "")
    return 1


def _is_gw(ctx, st, part, gtype, flags, ip, port, gw_attrs):
    flags = flags or ""
    if "n" in flags:
        port = 0
    for gw in part.data.gws.values():
        if gtype not in (None, -1, 0) and gw.type != gtype:
            continue
        if not any(same_ip(x, ip) for x in gw.ips):
            continue
        if gw.port and port and gw.port != port:
            continue
        if "s" in flags or "p" in flags:
            u = parse_uri(ctx.ruri)
            if u is not None:
                user = u.user or ""
                if "s" in flags:
                    user = user[gw.strip:]
                if "p" in flags:
                    user = gw.pri + user
                ctx.new_ruri = str(u.replace(user=user))
        if "i" in flags:
            part.gw_id_avp.push(ctx, gw.id)
        if "c" in flags and part.carrier_id_avp is not None:
            cr = next((c for c in part.data.carriers.values()
                       if any(g is gw for g, _ in c.gws)), None)
            part.carrier_id_avp.push(ctx, cr.id if cr else "")
        _set_attrs(ctx, gw_attrs, gw.attrs)
        return 1
    return -1


def is_from_gw(ctx, gtype=None, flags="", gw_attrs=None):
    st = _state(ctx)
    part = st.partition(None)
    if part is None:
        return -1
    return _is_gw(ctx, st, part, gtype, flags, ctx.src_ip, ctx.src_port, gw_attrs)


def goes_to_gw(ctx, gtype=None, flags="", gw_attrs=None):
    st = _state(ctx)
    part = st.partition(None)
    if part is None:
        return -1
    u = parse_uri(ctx.dst_uri or ctx.ruri)
    if u is None or not is_ip(u.host):
        return -1
    return _is_gw(ctx, st, part, gtype, flags, u.host.strip("[]"), u.port or 0, gw_attrs)


def dr_is_gw(ctx, uri, gtype=None, flags="", gw_attrs=None):
    st = _state(ctx)
    part = st.partition(None)
    if part is None:
        return -1
    host, port = split_host_port(uri)
    if not is_ip(host):
        from runtime.forward import resolve
        host = resolve(host)
        if host is None:
            return -1
    return _is_gw(ctx, st, part, gtype, flags, host, port, gw_attrs)


def dr_disable(ctx, partition=None):
    st = _state(ctx)
    part = st.partition(partition)
    if part is None:
        return -1
    gid = part.gw_id_avp.get(ctx)
    gw = part.data.gws.get(str(gid)) if gid is not None else None
    if gw is None:
        return -1
    st.set_gw_state(part, gw, True)
    return 1


# --- MI ------------------------------------------------------------------------------------

def mi_dr_reload(rt):
    """Load gateways, carriers, rules and groups again."""
    return mi_reload(rt.apis["drouting"])


def _gw_state(gw):
    return "Disabled MI" if gw.mi_disabled else "Inactive" if gw.disabled else "Active"


def mi_dr_gw_status(rt, gw_id: str = None, status: int = None):
    """List the gateways' states, read one, or force it (0 disable, 1 enable); a gateway
    disabled here is not probed."""
    from runtime.mi import OK, MIError
    st = rt.apis["drouting"]
    part = st.partition(None)
    if part is None:
        raise MIError(404, "No partition")
    if gw_id is None:
        return {"Gateways": [{"ID": g.id, "IP Address": g.host_port, "State": _gw_state(g)}
                             for g in part.data.gws.values()]}
    gw = part.data.gws.get(gw_id)
    if gw is None:
        raise MIError(404, "Destination ID not found")
    if status is None:
        return {"State": _gw_state(gw)}
    st.set_gw_state(part, gw, not status)
    gw.mi_disabled = not status
    return OK


def mi_dr_carrier_status(rt, carrier_id: str = None, status: int = None):
    """List the carriers' states, read one, or force it (0 disable, 1 enable)."""
    from runtime.mi import OK, MIError
    part = rt.apis["drouting"].partition(None)
    if part is None:
        raise MIError(404, "No partition")
    if carrier_id is None:
        return {"Carriers": [{"ID": c.id, "Enabled": "no" if c.disabled else "yes"}
                             for c in part.data.carriers.values()]}
    cr = part.data.carriers.get(carrier_id)
    if cr is None:
        raise MIError(404, "Carrier ID not found")
    if status is None:
        return {"Enabled": "no" if cr.disabled else "yes"}
    cr.disabled = not status
    return OK


__all__ = ["exports", "State", "Gateway", "Carrier", "Rule", "TimeRec"]

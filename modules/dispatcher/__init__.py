"""dispatcher: destination sets (DB table or list file), selection algorithms 0-9 as
OpenSIPS numbers them, failover AVPs, destination states and OPTIONS probing.

Sets come from the `dispatcher` table of each partition's db_url (3.x columns: setid,
destination, socket, state, probe_mode, weight, priority, attrs, description; the 1.x
`flags` column is read too), or from a 1.x/Kamailio `list_file` (`setid uri [flags
[priority [attrs]]]`). Destinations are kept in priority order (highest first), as
OpenSIPS orders them. States: active, inactive (`ds_mark_dst("i")`, not probed) and probing
(probed every ds_ping_interval until an answer in 200/options_reply_codes comes back).
"""
from __future__ import annotations

import random
import re
import zlib

from runtime import db
from runtime.module import (ALL, BRANCH, EVENT, FAILURE, INT, LOCAL, ONREPLY, REQUEST, STR,
                            TIMER, VAR, Arg, Func, Module, Param)
from runtime.pv import parse_uri
from runtime.sip.headers import SIPError
from runtime.values import to_int

from .common import (PVRef, check_partition, check_pv, check_reply_codes, is_ip, mi_reload,
                     parse_partition, partition_id, resolve_dest, same_ip, split_host_port)
from .probe import ProbeUAC, parse_reply_codes, probe_ok, socket_of

INACTIVE, PROBING = 1, 2
_ROUTES = REQUEST | BRANCH | FAILURE


def _set_fixup(value, rt):
    """`1`, `"1"`, `"part2:1"`, `"part2 : 1"` -> (partition or None, set id)."""
    return partition_id(value, "dispatcher set id")


def _flags_fixup(value, rt):
    """3.x flags `"fud"`, 2.x `"fUsD M 5"`/`"M5"`, 1.x max_results `5` ->
    (flag letters, max_results or None)."""
    if value is None:
        return "", None
    if isinstance(value, int):
        return "", value
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        return "", int(text)
    m = re.match(r"^([A-Za-z]*)\s*(?:[Mm]\s*(\d+))?\s*$", text.replace(",", ""))
    if not m:
        raise ValueError(f"bad dispatcher flags '{value}'")
    letters = m.group(1).lower()
    bad = set(letters) - set("fudas")
    if bad:
        raise ValueError(f"unknown dispatcher flag(s) '{''.join(sorted(bad))}' in '{value}'")
    return letters, int(m.group(2)) if m.group(2) else None


_STATES = {"i": INACTIVE, "0": INACTIVE, "a": 0, "1": 0, "p": PROBING, "2": PROBING}


def _state_filter(value, rt):
    text = str(value).strip().lower()
    if not text or any(c not in _STATES for c in text):
        raise ValueError(f"bad state filter '{value}' (letters a/i/p or digits 1/0/2)")
    return frozenset(_STATES[c] for c in text)


exports = Module(
    name="dispatcher",
    params=[
        Param("db_url", str, None, check=db.check_url),
        Param("table_name", str, None),
        Param("partition", str, multi=True, check=check_partition),
        Param("setid_col", str, "setid"), Param("destination_col", str, "destination"),
        Param("state_col", str, "state"), Param("weight_col", str, "weight"),
        Param("priority_col", str, "priority"), Param("attrs_col", str, "attrs"),
        Param("socket_col", str, "socket"), Param("probe_mode_col", str, "probe_mode"),
        Param("flags_col", str, "flags"), Param("description_col", str, "description"),
        Param("list_file", str, None),
        Param("dst_avp", str, None, check=check_pv), Param("grp_avp", str, None, check=check_pv),
        Param("cnt_avp", str, None, check=check_pv), Param("sock_avp", str, None, check=check_pv),
        Param("attrs_avp", str, None, check=check_pv),
        Param("script_attrs_avp", str, None, check=check_pv),
        Param("hash_pvar", str, None), Param("setid_pvar", str, None, check=check_pv),
        Param("pvar_algo_pattern", str, None), Param("algo_route", str, None),
        Param("ds_ping_method", str, "OPTIONS"),
        Param("ds_ping_from", str, "sip:dispatcher@localhost"),
        Param("ds_ping_interval", int, 0), Param("ds_ping_maxfwd", int, -1),
        Param("ds_probing_sock", str, None), Param("ds_probing_threshold", int, 3),
        Param("ds_probing_mode", int, 0), Param("ds_probing_list", str, None),
        Param("ds_define_blacklist", str, multi=True),
        Param("options_reply_codes", str, None,
              check=check_reply_codes),
        Param("persistent_state", int, 1), Param("cluster_id", int, 0),
        Param("cluster_sharing_tag", str, None), Param("cluster_probing_mode", str, None),
        Param("fetch_freeswitch_stats", int, 0), Param("max_freeswitch_weight", int, 100),
        # OpenSIPS <= 2.0: module-wide selection flags
        Param("flags", int, 0), Param("force_dst", int, None), Param("use_default", int, 0),
        # Kamailio's dispatcher (accepted; the ones without an OpenSIPS meaning do nothing)
        Param("ds_ping_reply_codes", str, None, check=check_reply_codes),
        Param("ds_inactive_threshold", int, 1), Param("attrs_pvname", str, None),
        Param("xavp_dst", str, None), Param("xavp_ctx", str, None),
        Param("xavp_dst_mode", int, 0), Param("xavp_ctx_mode", int, 0),
        Param("dstid_avp", str, None), Param("ds_hash_size", int, 0),
        Param("ds_hash_expire", int, 7200), Param("ds_hash_initexpire", int, 7200),
        Param("ds_hash_check_interval", int, 30), Param("ds_default_socket", str, None),
        Param("ds_timer_mode", int, 0), Param("outbound_proxy", str, None),
        Param("ds_ping_latency_stats", int, 0), Param("ds_db_extra_attrs", str, None),
    ],
    aliases={"ds_probing_threshhold": "ds_probing_threshold", "setid_pvname": "setid_pvar"},
    functions=[
        Func("ds_select_dst", "ds_select_dst",
             [Arg(STR, fixup=_set_fixup, name="set"), Arg(INT, name="alg"),
              Arg(STR, optional=True, fixup=_flags_fixup, name="flags"),
              Arg(STR, optional=True, name="partition"), Arg(INT, optional=True, name="max_res")],
             _ROUTES),
        Func("ds_select_domain", "ds_select_domain",
             [Arg(STR, fixup=_set_fixup, name="set"), Arg(INT, name="alg"),
              Arg(STR, optional=True, fixup=_flags_fixup, name="flags"),
              Arg(STR, optional=True, name="partition"), Arg(INT, optional=True, name="max_res")],
             _ROUTES),
        Func("ds_next_dst", "ds_next_dst", [Arg(STR, optional=True)], _ROUTES),
        Func("ds_next_domain", "ds_next_domain", [Arg(STR, optional=True)], _ROUTES),
        Func("ds_mark_dst", "ds_mark_dst", [Arg(STR, optional=True), Arg(STR, optional=True)],
             _ROUTES),
        Func("ds_count", "ds_count", [Arg(STR, fixup=_set_fixup), Arg(STR, fixup=_state_filter),
                                      Arg(VAR), Arg(STR, optional=True)],
             REQUEST | FAILURE | BRANCH | LOCAL | TIMER | EVENT | ONREPLY),
        Func("ds_is_in_list", "ds_is_in_list",
             [Arg(STR, name="ip"), Arg(STR, optional=True, name="port"),
              Arg(STR, optional=True, fixup=_set_fixup, name="set"),
              Arg(STR, optional=True, name="partition"), Arg(INT, optional=True),
              Arg(STR, optional=True)],
             REQUEST | FAILURE | BRANCH | ONREPLY | LOCAL),
        # OpenSIPS 1.4 and Kamailio: is the source (or `uri`) one of the destinations?
        Func("ds_is_from_list", "ds_is_from_list",
             [Arg(STR, optional=True, fixup=_set_fixup), Arg(INT, optional=True),
              Arg(STR, optional=True)],
             REQUEST | FAILURE | BRANCH | ONREPLY),
        Func("ds_reload", "ds_reload", routes=ALL),   # Kamailio: reload the sets
        Func("ds_push_script_attrs", "ds_push_script_attrs",
             [Arg(STR), Arg(STR), Arg(STR, optional=True), Arg(STR, fixup=_set_fixup),
              Arg(STR, optional=True)], ALL),
        Func("ds_get_script_attrs", "ds_get_script_attrs",
             [Arg(STR), Arg(STR, fixup=_set_fixup), Arg(STR, optional=True), Arg(VAR)], ALL),
    ],
    mi={"ds_list": "mi_ds_list", "ds_reload": "mi_ds_reload",
        "ds_set_state": "mi_ds_set_state"},
    init="init",
    child_init="child_init",
    destroy="destroy",
)


# --- data ----------------------------------------------------------------------------------

class Dest:
    __slots__ = ("uri", "dst_uri", "setid", "flags", "weight", "priority", "attrs", "sock",
                 "probe_mode", "failures", "rr_count", "chosen", "ips", "description",
                 "running", "active_running", "row_id", "script_attrs")

    def __init__(self, uri, setid, flags=0, weight=1, priority=0, attrs=None, sock=None,
                 probe_mode=0, description=None, row_id=None):
        self.uri = uri
        self.dst_uri = _dst_uri(uri)
        self.setid = setid
        self.flags = flags
        self.weight = weight
        self.priority = priority
        self.attrs = attrs
        self.sock = sock
        self.probe_mode = probe_mode
        self.description = description
        self.row_id = row_id
        self.script_attrs = None
        self.failures = 0
        self.rr_count = 0
        self.chosen = 0
        self.running = self.active_running = 0
        hop = resolve_dest(self.dst_uri)
        self.ips = [] if hop is None else [(hop[1], hop[2])]

    @property
    def active(self) -> bool:
        return not self.flags & (INACTIVE | PROBING)

    @property
    def state_name(self) -> str:
        return "inactive" if self.flags & INACTIVE else "probing" if self.flags & PROBING \
            else "active"


def _dst_uri(uri):
    """The URI the destination is reached by: without user, password and headers."""
    u = parse_uri(uri)
    if u is None or not (u.user or u.password or u.headers):
        return uri
    return str(u.replace(user="", password=None, headers=""))


class DSet:
    def __init__(self, setid):
        self.id = setid
        self.dests: list[Dest] = []
        self.last = 0

    def add(self, d: Dest):
        """Keep priority order, highest first; equal priorities in load order."""
        pos = len(self.dests)
        for i, other in enumerate(self.dests):
            if other.priority < d.priority:
                pos = i
                break
        self.dests.insert(pos, d)

    def recalc(self):
        total = active = 0
        for d in self.dests:
            total += d.weight
            d.running = total
            if d.active:
                active += d.weight
            d.active_running = active

    @property
    def active_nr(self):
        return sum(1 for d in self.dests if d.active)


class Partition:
    def __init__(self, name, props):
        self.name = name
        self.db_url = props.get("db_url")
        self.table = props.get("table_name") or "dispatcher"
        suffix = "" if name == "default" else f"_{name}"
        self.dst_avp = PVRef(props.get("dst_avp") or f"$avp(ds_dst_failover{suffix})")
        self.grp_avp = PVRef(props.get("grp_avp") or f"$avp(ds_grp_failover{suffix})")
        self.cnt_avp = PVRef(props.get("cnt_avp") or f"$avp(ds_cnt_failover{suffix})")
        self.sock_avp = PVRef(props.get("sock_avp") or f"$avp(ds_sock_failover{suffix})")
        a = props.get("attrs_avp")
        self.attrs_avp = PVRef(a) if a else None
        a = props.get("script_attrs_avp")
        self.script_attrs_avp = PVRef(a) if a else None
        self.blacklists = props.get("ds_define_blacklist")
        self.list_file = props.get("list_file")
        self.sets: dict[int, DSet] = {}
        self.conn = None


class State:
    """Every partition, the module-wide settings and the prober (`rt.apis['dispatcher']`)."""

    def __init__(self, rt):
        self.rt = rt
        p = rt.modparams["dispatcher"]
        self.p = p
        self.cols = {k: p[k + "_col"] for k in ("setid", "destination", "state", "weight",
                                                "priority", "attrs", "socket", "probe_mode",
                                                "flags", "description")}
        self.partitions: dict[str, Partition] = {}
        self._build_partitions()
        self.hash_fmt = None
        if p["hash_pvar"]:
            self.hash_fmt = _format(rt, p["hash_pvar"])
        self.setid_pv = PVRef(p["setid_pvar"]) if p["setid_pvar"] else None
        self.default_flags = ("u" if p["flags"] & 1 else "") + ("f" if p["flags"] & 2 else "") \
            + ("d" if p["use_default"] else "")
        self.force_dst = p["force_dst"]
        codes = p["options_reply_codes"] or p["ds_ping_reply_codes"]
        self.ok_codes, self.ok_classes = parse_reply_codes(codes)
        self.threshold = max(1, p["ds_probing_threshold"])
        self.probing_list = None
        if p["ds_probing_list"]:
            self.probing_list = {int(x) for x in re.split(r"[,\s]+", p["ds_probing_list"])
                                 if x.strip().lstrip("-").isdigit()}
        self.pattern = p["pvar_algo_pattern"]

    def _build_partitions(self):
        p = self.p
        specific = {k: p[k] for k in ("db_url", "table_name", "dst_avp", "grp_avp", "cnt_avp",
                                      "sock_avp", "attrs_avp", "script_attrs_avp")
                    if p[k] not in (None, "")}
        if p["ds_define_blacklist"]:
            specific["ds_define_blacklist"] = p["ds_define_blacklist"]
        if p["list_file"]:
            specific["list_file"] = p["list_file"]
        defs = {}
        for text in p["partition"]:
            name, props = parse_partition(text)
            if "" in props:   # "default: other" makes `other` the default partition
                defs.setdefault("__alias__", {})[name] = props.pop("")
            defs.setdefault(name, {}).update(props)
        aliases = defs.pop("__alias__", {})
        default = dict(specific)
        default.update(defs.pop("default", {}))
        if default or not defs:
            self.partitions["default"] = Partition("default", default)
        for name, props in defs.items():
            merged = {k: v for k, v in default.items()
                      if k in ("db_url", "table_name", "ds_define_blacklist")}
            merged.update(props)
            self.partitions[name] = Partition(name, merged)
        for alias, target in aliases.items():
            if target in self.partitions:
                self.partitions[alias] = self.partitions[target]

    def partition(self, name) -> Partition | None:
        return self.partitions.get(name or "default")

    # --- loading ---------------------------------------------------------------------------
    def load(self):
        for part in set(self.partitions.values()):
            sets = {}
            if part.db_url:
                self._load_db(part, sets)
            elif part.list_file:
                self._load_file(part, sets)
            else:
                self.rt.log.warning(f"partition '{part.name}' has no db_url: no destinations",
                                    "dispatcher")
            for s in sets.values():
                s.recalc()
            part.sets = sets
            n = sum(len(s.dests) for s in sets.values())
            self.rt.log.info(f"partition '{part.name}': {len(sets)} set(s), {n} destination(s)",
                             "dispatcher")

    def _add(self, sets, part, d):
        if not d.ips:
            self.rt.log.warning(f"could not resolve {d.uri}, skipping it", "dispatcher")
            return
        sets.setdefault(d.setid, DSet(d.setid)).add(d)

    def _load_db(self, part, sets):
        conn = part.conn = db.connect(part.db_url)
        conn.create_table(part.table, _SCHEMA, 9)
        c = self.cols
        for row in conn.query(part.table):
            uri = str(row.get(c["destination"]) or "").strip()
            setid = to_int(row.get(c["setid"]))
            if not uri or setid is None or parse_uri(uri) is None:
                self.rt.log.warning(f"bad destination row {row}", "dispatcher")
                continue
            if c["state"] in row:
                state = to_int(row.get(c["state"])) or 0
                flags = {1: INACTIVE, 2: PROBING}.get(state, 0)
            else:
                flags = (to_int(row.get(c["flags"])) or 0) & (INACTIVE | PROBING)
            if not self.p["persistent_state"]:
                flags = 0
            weight = to_int(row.get(c["weight"]))
            sock = socket_of(self.rt, row.get(c["socket"]))
            self._add(sets, part, Dest(
                uri, setid, flags, 1 if weight is None else weight,
                to_int(row.get(c["priority"])) or 0, row.get(c["attrs"]) or None, sock,
                to_int(row.get(c["probe_mode"])) or 0, row.get(c["description"]),
                row.get("id")))

    def _load_file(self, part, sets):
        try:
            with open(part.list_file) as f:
                lines = f.read().splitlines()
        except OSError as e:
            raise RuntimeError(f"cannot read list_file {part.list_file}: {e.strerror}") from None
        for n, line in enumerate(lines, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            tok = line.split(None, 4)
            setid = to_int(tok[0])
            if setid is None or len(tok) < 2 or parse_uri(tok[1]) is None:
                self.rt.log.warning(f"{part.list_file}:{n}: bad line '{line}'", "dispatcher")
                continue
            flags = (to_int(tok[2]) or 0) & (INACTIVE | PROBING) if len(tok) > 2 else 0
            prio = to_int(tok[3]) or 0 if len(tok) > 3 else 0
            attrs = tok[4] if len(tok) > 4 else None
            weight = 1
            m = re.search(r"(?:^|;)\s*weight=(\d+)", attrs or "")
            if m:
                weight = int(m.group(1))
            sock = None
            m = re.search(r"(?:^|;)\s*socket=([^;]+)", attrs or "")
            if m:
                sock = socket_of(self.rt, m.group(1))
            self._add(sets, part, Dest(tok[1], setid, flags, weight, prio, attrs, sock))

    # --- states ----------------------------------------------------------------------------
    def find(self, part, setid, uri):
        s = part.sets.get(setid)
        if s is None:
            return None, None
        for d in s.dests:
            if d.uri.lower() == str(uri).lower() or d.dst_uri.lower() == str(uri).lower():
                return s, d
        return s, None

    def set_state(self, part, s, d, state, count=False):
        """state: 0 active (resets failures), INACTIVE, PROBING (after `threshold` calls
        when `count`)."""
        if state == PROBING:
            if d.flags & INACTIVE:
                return
            if count:
                d.failures += 1
                if d.failures < self.threshold:
                    return
                d.failures = self.threshold
            new = (d.flags | PROBING) & ~INACTIVE
        elif state == INACTIVE:
            new = (d.flags | INACTIVE) & ~PROBING
        else:
            d.failures = 0
            new = d.flags & ~(INACTIVE | PROBING)
        if new == d.flags:
            return
        old_active = d.active
        d.flags = new
        if old_active != d.active:
            s.recalc()
        self.rt.log.notice(f"destination {d.uri} of set {s.id} is now {d.state_name}",
                           "dispatcher")
        self._persist(part, s, d)

    def _persist(self, part, s, d):
        if not self.p["persistent_state"] or part.conn is None:
            return
        value = 1 if d.flags & INACTIVE else 2 if d.flags & PROBING else 0
        c = self.cols
        try:
            part.conn.update(part.table, {c["setid"]: s.id, c["destination"]: d.uri},
                             {c["state"]: value})
        except db.DBError as e:
            self.rt.log.warning(f"cannot store the state of {d.uri}: {e}", "dispatcher")

    # --- probing ---------------------------------------------------------------------------
    def probe_all(self):
        p = self.p
        uac = ProbeUAC.of(self.rt)
        sock = socket_of(self.rt, p["ds_probing_sock"])
        for part in set(self.partitions.values()):
            for s in part.sets.values():
                if self.probing_list is not None and s.id not in self.probing_list:
                    continue
                for d in s.dests:
                    if d.flags & INACTIVE:
                        continue
                    if not (p["ds_probing_mode"] == 1 or d.probe_mode == 1
                            or d.flags & PROBING):
                        continue
                    uac.send(p["ds_ping_method"], d.uri, p["ds_ping_from"],
                             lambda code, part=part, s=s, d=d: self._probed(part, s, d, code),
                             sock=d.sock or sock, max_forwards=p["ds_ping_maxfwd"])

    def _probed(self, part, s, d, code):
        ok = probe_ok(code, self.ok_codes, self.ok_classes)
        if ok:
            self.set_state(part, s, d, 0)
        elif self.p["ds_probing_mode"] == 1 or d.probe_mode == 1:
            self.set_state(part, s, d, PROBING, count=True)


_SCHEMA = """
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    setid INTEGER DEFAULT 0 NOT NULL, destination CHAR(192) DEFAULT '' NOT NULL,
    socket CHAR(128) DEFAULT NULL, state INTEGER DEFAULT 0 NOT NULL,
    probe_mode INTEGER DEFAULT 0 NOT NULL, weight CHAR(64) DEFAULT 1 NOT NULL,
    priority INTEGER DEFAULT 0 NOT NULL, attrs CHAR(128) DEFAULT NULL,
    description CHAR(64) DEFAULT NULL"""


def _format(rt, text):
    from runtime.pv import PVS, Format
    defs = dict(PVS)
    for m in rt.modules.values():
        defs.update(m.pvs)
    return Format(text, defs)


def _state(ctx) -> State:
    return ctx.rt.apis["dispatcher"]


def init(rt):
    state = State(rt)
    rt.apis["dispatcher"] = state
    state.load()
    interval = rt.modparams["dispatcher"]["ds_ping_interval"]
    if interval > 0:
        rt.timers.append((interval, state.probe_all))


def child_init(rt):
    return None


def destroy(rt):
    return None


# --- hashing -------------------------------------------------------------------------------

def _hash(*parts) -> int:
    return zlib.crc32("\0".join(p or "" for p in parts).encode("utf-8", "surrogateescape"))


def _uri_keys(text, user_only):
    u = parse_uri(text.strip()) if text else None
    if u is None:
        raise ValueError(f"cannot parse URI '{text}'")
    if user_only:
        return (u.user or "",)
    host = u.host
    default = 5061 if u.scheme.lower() == "sips" or (u.param("transport") or "").lower() == "tls" \
        else 5060
    if u.port and u.port != default:
        host = f"{host}:{u.port}"
    return (u.user or "", host)


_AUTH_USER = re.compile(r'username\s*=\s*"([^"]*)"', re.I)


def _auth_username(msg):
    for key in ("proxy-authorization", "authorization"):
        for value in msg.get_all(key):
            m = _AUTH_USER.search(value)
            if m and m.group(1).strip():
                return m.group(1).strip()
    return None


# --- selection -----------------------------------------------------------------------------

def _select(ctx, st, part, setid, alg, flags, max_res, mode):
    """ds_select_dst/ds_select_domain: pick, set $du or the R-URI host, fill the AVPs."""
    rt = ctx.rt
    s = part.sets.get(setid)
    if s is None:
        rt.log.error(f"destination set [{setid}] not found", "dispatcher")
        return -1
    if not s.dests or s.active_nr == 0:
        return -1
    dests = s.dests
    n = len(dests)
    use_default = "d" in flags
    size = n - 1 if use_default and n > 1 else n
    ds_hash, ds_id, selected, order = 0, -1, None, None
    msg = ctx.msg
    try:
        if alg == 0:
            ds_hash = _hash(msg.call_id.strip())
        elif alg in (1, 2):
            nameaddr = msg.from_ if alg == 1 else msg.to
            ds_hash = _hash(*_uri_keys(nameaddr.uri, "u" in flags))
        elif alg == 3:
            ds_hash = _hash(*_uri_keys(ctx.ruri, "u" in flags))
        elif alg == 4:
            last = s.last if s.last < size else 0
            if dests[last].rr_count < dests[last].weight:
                ds_id = last
            else:
                dests[last].rr_count = 0
                ds_id = (last + 1) % size
        elif alg == 5:
            user = _auth_username(msg)
            if user is not None:
                ds_hash = _hash(user)
            else:
                ds_id = s.last if s.last < size else 0
        elif alg == 6:
            ds_hash = random.getrandbits(31)
        elif alg == 7:
            if st.hash_fmt is None:
                rt.log.error("algorithm 7 needs the hash_pvar parameter", "dispatcher")
                return -1
            text = st.hash_fmt.render(ctx).strip()
            if not text:
                rt.log.error("hash_pvar is empty", "dispatcher")
                return -1
            ds_hash = _hash(text)
        elif alg == 8:
            ds_id = 0
        elif alg == 9 and st.pattern:
            order = _pvar_order(ctx, st, s, use_default)
            if not order:
                return -1
            selected, ds_id = order[0], 0
        else:
            if alg not in (8, 9):
                rt.log.warning(f"dispatching via [{setid}] with unknown algorithm [{alg}]: "
                               "using the first entry", "dispatcher")
            ds_id = 0
    except (SIPError, ValueError) as e:
        rt.log.error(f"cannot hash the request for algorithm {alg}: {e}", "dispatcher")
        return -1

    if selected is None:
        if ds_id == -1:
            total = dests[size - 1].running
            if total:
                r = ds_hash % total
                ds_id = next(j for j in range(size) if r < dests[j].running)
            else:
                ds_id = ds_hash % size
        i = ds_id
        while not dests[i].active:
            if ds_hash == 0:
                i = (i + 1) % size
            else:
                cnt = s.active_nr - (1 if use_default and dests[n - 1].active else 0)
                if cnt:
                    total = dests[size - 1].active_running
                    if total:
                        r = ds_hash % total
                        i = next((j for j in range(size)
                                  if dests[j].active and r < dests[j].active_running), ds_id)
                    else:
                        j = ds_hash % cnt
                        for k in range(size):
                            if dests[k].active:
                                j -= 1
                            if j < 0:
                                i = k
                                break
            if i == ds_id:
                if use_default and dests[n - 1].active:
                    i = n - 1
                    break
                return -1
        ds_id = i
        selected = dests[ds_id]
    s.last = ds_id
    if alg == 4:
        selected.rr_count += 1

    if "s" in flags or (st.force_dst == 0 and mode == "dst"):
        if mode == "dst" and ctx.dst_uri:
            rt.log.error(f"destination already set [{ctx.dst_uri}]", "dispatcher")
            return -1
    if not _update(ctx, selected.dst_uri, selected.sock, mode):
        return -1
    selected.chosen += 1

    cnt = 0
    if "f" in flags:
        if "a" not in flags:
            for ref in (part.dst_avp, part.grp_avp, part.cnt_avp, part.sock_avp,
                        part.attrs_avp, part.script_attrs_avp):
                if ref is not None:
                    ref.clear(ctx)
        if use_default and ds_id != n - 1:
            _push(ctx, part, dests[n - 1])
            cnt += 1
        inactive = sum(1 for k, d in enumerate(dests)
                       if not d.active and not (use_default and k == n - 1))
        skip = n - inactive - (1 if use_default else 0) - \
            (max_res if max_res is not None and max_res > 0 else n)
        for iu in range(ds_id - 1 + n, ds_id, -1):
            k = iu % n
            d = order[k] if order is not None and k < len(order) else dests[k]
            if not d.active or (use_default and k == n - 1):
                continue
            if skip > 0:
                skip -= 1
                continue
            _push(ctx, part, d)
            cnt += 1
        part.dst_avp.push(ctx, selected.uri)
        cnt += 1
    if part.attrs_avp is not None:
        part.attrs_avp.push(ctx, selected.attrs or "")
    if part.script_attrs_avp is not None:
        part.script_attrs_avp.push(ctx, selected.script_attrs or "")
    part.grp_avp.push(ctx, setid)
    part.cnt_avp.push(ctx, cnt)
    return 1


def _pvar_order(ctx, st, s, use_default):
    """Algorithm 9: active destinations by the value of pvar_algo_pattern (%u = the URI),
    lowest first; inactive ones after them, the default one last."""
    from runtime.pv import PVS, bind, parse_pv_text
    dests = s.dests
    body = dests[:-1] if use_default and len(dests) > 1 else dests
    scored, rest = [], []
    for d in body:
        if not d.active:
            rest.append(d)
            continue
        try:
            pv = bind(parse_pv_text(st.pattern.replace("%u", d.uri)), PVS)
            v = to_int(pv.get(ctx))
        except Exception:
            continue
        scored.append((v or 0, len(scored), d))
    scored.sort(key=lambda t: (t[0], t[1]))
    order = [d for _, _, d in scored]
    if not order:
        return None
    out = order + rest
    if use_default and len(dests) > 1:
        out.append(dests[-1])
    return out


def _push(ctx, part, d):
    part.sock_avp.push(ctx, str(d.sock) if d.sock is not None else "")
    part.dst_avp.push(ctx, d.dst_uri)
    if part.attrs_avp is not None:
        part.attrs_avp.push(ctx, d.attrs or "")
    if part.script_attrs_avp is not None:
        part.script_attrs_avp.push(ctx, d.script_attrs or "")


def _update(ctx, uri, sock, mode) -> bool:
    if mode == "domain":
        u = parse_uri(uri)
        r = parse_uri(ctx.ruri)
        if u is None or r is None:
            ctx.rt.log.error(f"cannot rewrite the R-URI host with {uri}", "dispatcher")
            return False
        ctx.new_ruri = str(r.replace(host=u.host, port=u.port))
    else:
        ctx.dst_uri = uri
    if sock is not None:
        ctx.force_socket = sock
    return True


def _call(ctx, set_, alg, flags, partition, max_res, mode):
    st = _state(ctx)
    part_name, setid = set_
    part = st.partition(partition or part_name)
    if part is None:
        ctx.rt.log.error(f"unknown partition '{partition or part_name}'", "dispatcher")
        return -1
    letters, mr = flags if flags is not None else ("", None)
    letters = letters or st.default_flags
    if max_res is None:
        max_res = mr
    return _select(ctx, st, part, setid, alg, letters, max_res, mode)


def ds_select_dst(ctx, set_, alg, flags=None, partition=None, max_res=None):
    return _call(ctx, set_, alg, flags, partition, max_res, "dst")


def ds_select_domain(ctx, set_, alg, flags=None, partition=None, max_res=None):
    return _call(ctx, set_, alg, flags, partition, max_res, "domain")


def _next(ctx, partition, mode):
    st = _state(ctx)
    part = st.partition(partition)
    if part is None:
        return -1
    if part.dst_avp.pop(ctx) is None:
        return -1
    for ref in (part.attrs_avp, part.script_attrs_avp):
        if ref is not None:
            ref.pop(ctx)
    uri = part.dst_avp.get(ctx)
    if uri is None or not isinstance(uri, str):
        return -1
    sock_text = part.sock_avp.pop(ctx)
    sock = ctx.rt.find_socket(sock_text) if sock_text else None
    return 1 if _update(ctx, uri, sock, mode) else -1


def ds_next_dst(ctx, partition=None):
    return _next(ctx, partition, "dst")


def ds_next_domain(ctx, partition=None):
    return _next(ctx, partition, "domain")


def ds_mark_dst(ctx, a=None, b=None):
    """ds_mark_dst([state[, partition]]) (3.x) or ds_mark_dst([partition,] state) (2.x)."""
    state_arg, partition = a, b
    if a is not None and str(a).strip().lower() not in _STATES and b is not None:
        state_arg, partition = b, a
    elif a is not None and str(a).strip().lower() not in _STATES and b is None:
        state_arg, partition = None, a
    text = (str(state_arg).strip().lower() if state_arg else "i")[:1]
    if text not in _STATES:
        ctx.rt.log.error(f"ds_mark_dst: bad state '{state_arg}'", "dispatcher")
        return -1
    st = _state(ctx)
    part = st.partition(partition)
    if part is None:
        return -1
    group = to_int(part.grp_avp.get(ctx))
    uri = part.dst_avp.get(ctx)
    if group is None or not isinstance(uri, str):
        return -1
    s, d = st.find(part, group, uri)
    if d is None:
        return -1
    st.set_state(part, s, d, _STATES[text], count=_STATES[text] == PROBING)
    return 1


def ds_count(ctx, set_, states, var, partition=None):
    st = _state(ctx)
    part_name, setid = set_
    part = st.partition(partition or part_name)
    if part is None or setid not in part.sets:
        return -1
    n = 0
    for d in part.sets[setid].dests:
        k = INACTIVE if d.flags & INACTIVE else PROBING if d.flags & PROBING else 0
        if k in states:
            n += 1
    var.set(ctx, n)
    return 1


def _in_list(ctx, st, part, ip, port, setid, active_only, pattern=None):
    if not is_ip(ip):
        ctx.rt.log.error(f"IP val is not IP <{ip}>", "dispatcher")
        return -1
    for s in part.sets.values():
        if setid not in (None, -1) and s.id != setid:
            continue
        for d in s.dests:
            if pattern is not None and pattern not in d.uri:
                continue
            for dip, dport in d.ips:
                if (dport == 0 or port == 0 or port == dport) and same_ip(dip, ip):
                    if active_only and not d.active:
                        continue
                    if setid in (None, -1) and st.setid_pv is not None:
                        st.setid_pv.push(ctx, s.id)
                    if part.attrs_avp is not None:
                        part.attrs_avp.push(ctx, d.attrs or "")
                    return 1
    return -1


def _port(value):
    if value in (None, ""):
        return 0
    n = to_int(value)
    return n if n is not None else 0


def ds_is_in_list(ctx, ip, port=None, set_=None, partition=None, active_only=None,
                  pattern=None):
    st = _state(ctx)
    part_name, setid = set_ if set_ is not None else (None, -1)
    part = st.partition(partition or part_name)
    if part is None:
        return -1
    return _in_list(ctx, st, part, str(ip).strip().strip("[]"), _port(port), setid,
                    bool(active_only), pattern or None)


def ds_is_from_list(ctx, set_=None, mode=None, uri=None):
    st = _state(ctx)
    part_name, setid = set_ if set_ is not None else (None, -1)
    part = st.partition(part_name)
    if part is None:
        return -1
    if uri:
        host, port = split_host_port(uri)
    else:
        host, port = ctx.src_ip, ctx.src_port
    if mode and int(mode) & 1:
        port = 0
    return _in_list(ctx, st, part, host, port, setid, False)


def ds_push_script_attrs(ctx, attrs, ip, port, set_, partition=None):
    """Attach a script string to the destinations of `set` at ip[:port] (3.x)."""
    st = _state(ctx)
    part_name, setid = set_
    part = st.partition(partition or part_name)
    if part is None or setid not in part.sets:
        return -1
    ip = str(ip).strip().strip("[]")
    p = _port(port)
    n = 0
    for d in part.sets[setid].dests:
        if any(same_ip(dip, ip) and (p == 0 or dport == 0 or p == dport) for dip, dport in d.ips):
            d.script_attrs = attrs
            n += 1
    return 1 if n else -1


def ds_get_script_attrs(ctx, uri, set_, partition, var):
    st = _state(ctx)
    part_name, setid = set_
    part = st.partition(partition or part_name)
    if part is None:
        return -1
    s, d = st.find(part, setid, uri)
    if d is None or d.script_attrs is None:
        return -1
    var.set(ctx, d.script_attrs)
    return 1


def ds_reload(ctx):
    st = _state(ctx)
    try:
        st.load()
    except Exception as e:
        ctx.rt.log.error(f"reload failed: {e}", "dispatcher")
        return -1
    return 1


# --- MI ------------------------------------------------------------------------------------

def mi_ds_list(rt, full: int = 0):
    """The sets of every partition, their destinations and states."""
    st = rt.apis["dispatcher"]
    parts = []
    for name, part in st.partitions.items():
        sets = []
        for s in part.sets.values():
            dests = []
            for d in s.dests:
                node = {"URI": d.uri, "state": d.state_name.capitalize(),
                        "first_hit_counter": d.chosen}
                if d.sock is not None:
                    node["socket"] = str(d.sock)
                if d.attrs:
                    node["attr"] = d.attrs
                if d.script_attrs:
                    node["script_attr"] = d.script_attrs
                if full:
                    node.update(weight=d.weight, priority=d.priority)
                    if d.description:
                        node["description"] = d.description
                dests.append(node)
            sets.append({"id": s.id, "Destinations": dests})
        parts.append({"name": name, "SETS": sets})
    return {"PARTITIONS": parts}


def mi_ds_reload(rt, partition: str = None):
    """Load the destinations again (states of known destinations as stored)."""
    return mi_reload(rt.apis["dispatcher"], partition)


def mi_ds_set_state(rt, state: str, group: str, address: str):
    """Set a destination active (a), inactive (i) or probing (p)."""
    from runtime.mi import OK, MIError
    st = rt.apis["dispatcher"]
    code = _STATES.get(str(state).strip().lower()[:1])
    if code is None:
        raise MIError(400, "Bad state value")
    try:
        pname, setid = _set_fixup(group, rt)
    except ValueError:
        raise MIError(400, "Bad group value")
    part = st.partition(pname)
    if part is None:
        raise MIError(400, "Unknown partition")
    s, d = st.find(part, setid, address)
    if d is None:
        raise MIError(404, "Destination not found")
    st.set_state(part, s, d, code)
    return OK


__all__ = ["exports", "State", "Dest", "DSet", "INACTIVE", "PROBING"]

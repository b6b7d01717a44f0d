"""lcr: OpenSIPS 1.x least cost routing — gateways (`gw` table) in groups, rules (`lcr`
table: R-URI user prefix, caller URI pattern, group, priority), and q-value serial forking.

    load_gws([group | caller URI])   the matching gateways, best first, into gw_uri_avp
    next_gw()                        the R-URI to the next gateway (strip, tag, scheme,
                                     transport), flags into flags_avp; -1 when none is left
    from_gw([ip]) / from_gw_grp(g)   does the request come from a gateway?
    to_gw([group])                   does the R-URI point at a gateway?
    load_contacts() / next_contacts()   serial forking by the q of the branches

Gateways are ordered by the longest matching prefix, then the rule's priority (smaller is
better), then at random (prefix_mode 0); with prefix_mode 1 prefixes are regular
expressions and only priority and chance order them. The tables are read at start-up and
on the `lcr_reload` MI command. In a failure route next_gw() sets the R-URI to the next
gateway, so that t_relay() sends the one new branch."""
import random
import re

from runtime import db
from runtime.module import (FAILURE, ONREPLY, REQUEST, STR, Arg, Func, Module, Param)
from runtime.context import Branch
from runtime.pv import parse_uri, set_avp

exports = Module(
    name="lcr",
    params=[
        Param("db_url", str, None), Param("gw_table", str, "gw"),
        Param("gw_name_column", str, "gw_name"), Param("grp_id_column", str, "grp_id"),
        Param("ip_addr_column", str, "ip_addr"), Param("port_column", str, "port"),
        Param("uri_scheme_column", str, "uri_scheme"),
        Param("transport_column", str, "transport"), Param("strip_column", str, "strip"),
        Param("tag_column", str, "tag"), Param("flags_column", str, "flags"),
        Param("lcr_table", str, "lcr"), Param("prefix_column", str, "prefix"),
        Param("from_uri_column", str, "from_uri"), Param("priority_column", str, "priority"),
        Param("contact_avp", str, None), Param("fr_inv_timer_avp", str, None),
        Param("gw_uri_avp", str, None), Param("rpid_avp", str, None),
        Param("ruri_user_avp", str, None), Param("flags_avp", str, None),
        Param("fr_inv_timer", int, 90), Param("fr_inv_timer_next", int, 30),
        Param("prefix_mode", int, 0),
        # 1.3: the "dm" (direct media) flag and column
        Param("dm_flag", (int, str), None), Param("dm_column", str, "dm"),
    ],
    functions=[
        # OpenSIPS 1.x did not follow sub-routes when checking route types: scripts call
        # load_gws() from routes that failure routes also call
        Func("load_gws", "load_gws", [Arg(STR, optional=True, name="group or caller URI")],
             REQUEST | FAILURE),
        Func("load_gws_from_grp", "load_gws_from_grp", [Arg(STR, name="group")],
             REQUEST | FAILURE),
        Func("next_gw", "next_gw", routes=REQUEST | FAILURE),
        Func("from_gw", "from_gw", [Arg(STR, optional=True, name="ip or group")],
             REQUEST | FAILURE | ONREPLY),
        Func("from_gw_grp", "from_gw_grp", [Arg(STR, name="group")],
             REQUEST | FAILURE | ONREPLY),
        Func("to_gw", "to_gw", [Arg(STR, optional=True, name="group")], REQUEST | FAILURE),
        Func("load_contacts", "load_contacts", routes=REQUEST),
        Func("next_contacts", "next_contacts", routes=REQUEST | FAILURE),
    ],
    depends=("tm",),
    init="init",
    child_init="child_init",
    mi={"lcr_reload": "mi_lcr_reload", "lcr_dump": "mi_lcr_dump"},
)

_GW_SQL = """
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, gw_name CHAR(128) NOT NULL,
    grp_id INTEGER NOT NULL, ip_addr CHAR(50) NOT NULL, port SMALLINT(5) DEFAULT NULL,
    uri_scheme SMALLINT DEFAULT NULL, transport SMALLINT DEFAULT NULL,
    strip SMALLINT DEFAULT NULL, tag CHAR(16) DEFAULT NULL, flags INTEGER DEFAULT 0 NOT NULL"""
_LCR_SQL = """
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, prefix CHAR(16) DEFAULT NULL,
    from_uri CHAR(64) DEFAULT NULL, grp_id INTEGER NOT NULL, priority INTEGER NOT NULL"""

_SCHEMES = {None: "sip", "": "sip", 1: "sip", 2: "sips", "1": "sip", "2": "sips",
            "sip": "sip", "sips": "sips"}
_TRANSPORTS = {None: None, "": None, 0: None, 1: "udp", 2: "tcp", 3: "tls", 4: "sctp",
               "0": None, "1": "udp", "2": "tcp", "3": "tls", "4": "sctp", "udp": "udp",
               "tcp": "tcp", "tls": "tls", "sctp": "sctp"}


class Gateway:
    __slots__ = ("name", "grp", "ip", "port", "scheme", "transport", "strip", "tag", "flags")

    def __init__(self, name, grp, ip, port, scheme, transport, strip, tag, flags):
        self.name, self.grp, self.ip, self.port = name, grp, ip, port
        self.scheme, self.transport, self.strip, self.tag, self.flags = (
            scheme, transport, strip, tag, flags)

    def encode(self) -> str:
        """What a gw_uri_avp value holds for this gateway."""
        return "|".join([self.scheme, self.ip, str(self.port or ""), self.transport or "",
                         str(self.strip), self.tag, str(self.flags), self.name])

    @classmethod
    def decode(cls, text):
        parts = str(text).split("|")
        if len(parts) != 8:
            return None
        scheme, ip, port, transport, strip, tag, flags, name = parts
        return cls(name, 0, ip, int(port) if port else None, scheme, transport or None,
                   int(strip or 0), tag, int(flags or 0))

    def uri(self, user):
        user = user[self.strip:] if self.strip > 0 else user
        user = (self.tag or "") + (user or "")
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        u = f"{self.scheme}:{user + '@' if user else ''}{host}"
        if self.port:
            u += f":{self.port}"
        if self.transport:
            u += f";transport={self.transport}"
        return u


class Rule:
    __slots__ = ("prefix", "from_rx", "grp", "priority", "prefix_rx")

    def __init__(self, prefix, from_uri, grp, priority, regex_prefix):
        self.prefix = prefix or ""
        self.prefix_rx = re.compile(self.prefix) if regex_prefix and self.prefix else None
        f = (from_uri or "").strip()
        if "%" in f and not any(c in f for c in "^$*+?[("):
            f = "^" + re.escape(f).replace("%", ".*") + "$"      # 1.x LIKE patterns
        self.from_rx = re.compile(f, re.I) if f else None
        self.grp = grp
        self.priority = priority


_state: dict = {"gws": [], "rules": [], "db": None}


def _pv(spec):
    """`$avp(name)` / `$avp(i:709)` -> the AVP name."""
    if not spec:
        return None
    m = re.match(r"^\$avp\((?:[si]:)?([^)]+)\)$", spec.strip())
    if m is None:
        raise ValueError(f"lcr: '{spec}' is not an AVP")
    return m.group(1)


def init(rt):
    p = rt.modparams["lcr"]
    url = db.module_url(rt, "lcr")
    avps = {k: _pv(p[k]) for k in ("gw_uri_avp", "ruri_user_avp", "contact_avp", "rpid_avp",
                                   "flags_avp", "fr_inv_timer_avp")}
    if avps["gw_uri_avp"] is None or avps["ruri_user_avp"] is None:
        raise ValueError("lcr: gw_uri_avp and ruri_user_avp must be set")
    _state.update(rt=rt, p=p, url=url, avps=avps)


def child_init(rt):
    _state["db"] = db.connect(_state["url"])
    _ensure_tables(_state["db"], _state["p"])
    reload()


def _ensure_tables(conn, p):
    if isinstance(conn, db.SQLite):
        conn.raw_query(f"CREATE TABLE IF NOT EXISTS {conn.q(p['gw_table'])} ({_GW_SQL})")
        conn.raw_query(f"CREATE TABLE IF NOT EXISTS {conn.q(p['lcr_table'])} ({_LCR_SQL})")


def _int(v, default=0):
    try:
        return int(v)
    except (TypeError, ValueError):
        return default


def reload():
    """Read the gw and lcr tables again."""
    p, conn = _state["p"], _state["db"]
    gws, rules = [], []
    for row in conn.query(p["gw_table"]):
        tag = row.get(p["tag_column"])
        if tag is None and p["tag_column"] not in row:
            tag = row.get("prefix")             # 1.2: the gateway's prefix column
        ip = str(row.get(p["ip_addr_column"]) or "")
        if not ip:
            continue
        if ip.isdigit():                        # 1.x stored IPv4 addresses as integers
            import ipaddress
            ip = str(ipaddress.IPv4Address(int(ip).to_bytes(4, "little")))
        gws.append(Gateway(str(row.get(p["gw_name_column"]) or ""),
                           _int(row.get(p["grp_id_column"])), ip,
                           _int(row.get(p["port_column"]), None) or None,
                           _SCHEMES.get(row.get(p["uri_scheme_column"]), "sip"),
                           _TRANSPORTS.get(row.get(p["transport_column"])),
                           _int(row.get(p["strip_column"])), str(tag or ""),
                           _int(row.get(p["flags_column"]))))
    for row in conn.query(p["lcr_table"]):
        try:
            rules.append(Rule(row.get(p["prefix_column"]), row.get(p["from_uri_column"]),
                              _int(row.get(p["grp_id_column"])),
                              _int(row.get(p["priority_column"])), p["prefix_mode"] == 1))
        except re.error as e:
            _state["rt"].log.error(f"lcr: bad pattern in rule {row}: {e}", "lcr")
    _state["gws"], _state["rules"] = gws, rules


# --- choosing gateways -------------------------------------------------------------------------

def matching_gateways(user, caller, group=None, prefix_mode=0):
    """The gateways for an R-URI user and a caller URI, best first (no duplicates)."""
    hits = []
    for r in _state["rules"]:
        if group is not None and r.grp != group:
            continue
        if r.prefix_rx is not None:
            if not r.prefix_rx.search(user):
                continue
            plen = 0
        elif not user.startswith(r.prefix):
            continue
        else:
            plen = len(r.prefix)
        if r.from_rx is not None and not r.from_rx.search(caller or ""):
            continue
        hits.append((r, plen))
    if prefix_mode == 1:
        hits.sort(key=lambda h: (h[0].priority, random.random()))
    else:
        hits.sort(key=lambda h: (-h[1], h[0].priority, random.random()))
    out, seen = [], set()
    for r, _ in hits:
        members = [g for g in _state["gws"] if g.grp == r.grp]
        random.shuffle(members)
        for g in members:
            key = (g.ip, g.port, g.transport, g.scheme, g.strip, g.tag)
            if key not in seen:
                seen.add(key)
                out.append(g)
    return out


def _caller(ctx, given=None):
    if given:
        return given
    rpid = _state["avps"]["rpid_avp"]
    if rpid:
        v = ctx.avps.get(rpid)
        if v and v[-1]:
            return str(v[-1])
    try:
        return ctx.msg.from_.uri
    except Exception:
        return ""


def _load(ctx, group, caller):
    u = parse_uri(ctx.ruri)
    user = (u.user or "") if u is not None else ""
    gws = matching_gateways(user.split(";")[0], caller, group, _state["p"]["prefix_mode"])
    name = _state["avps"]["gw_uri_avp"]
    ctx.avps.pop(name, None)
    for g in reversed(gws):                 # the best one on top of the AVP stack
        set_avp(ctx.avps, name, g.encode())
    return 1 if gws else -1


def load_gws(ctx, arg=None):
    """1.2/1.3 load_gws(group-id), 1.4+ load_gws(caller URI)."""
    if arg is not None and str(arg).strip().isdigit():
        return _load(ctx, int(arg), _caller(ctx))
    return _load(ctx, None, _caller(ctx, arg))


def load_gws_from_grp(ctx, group):
    if not str(group).strip().lstrip("-").isdigit():
        return -1
    return _load(ctx, int(group), _caller(ctx))


def _set_timer(ctx, seconds):
    name = _state["avps"]["fr_inv_timer_avp"]
    if name:
        ctx.avps[name] = [seconds]


def next_gw(ctx):
    avps = _state["avps"]
    stack = ctx.avps.get(avps["gw_uri_avp"])
    if not stack:
        return -1
    g = Gateway.decode(stack.pop())
    if not stack:
        ctx.avps.pop(avps["gw_uri_avp"], None)
    if g is None:
        return -1
    if ctx.route_type & FAILURE:
        saved = ctx.avps.get(avps["ruri_user_avp"])
        user = str(saved[-1]) if saved else ""
    else:
        u = parse_uri(ctx.ruri)
        user = (u.user or "") if u is not None else ""
        ctx.avps[avps["ruri_user_avp"]] = [user]
    ctx.new_ruri = g.uri(user)
    ctx.dst_uri = None
    if avps["flags_avp"]:
        ctx.avps[avps["flags_avp"]] = [g.flags]
    p = _state["p"]
    _set_timer(ctx, p["fr_inv_timer_next"] if ctx.avps.get(avps["gw_uri_avp"])
               else p["fr_inv_timer"])
    return 1


def _from(ctx, ip, group=None):
    for g in _state["gws"]:
        if g.ip == ip and (group is None or g.grp == group):
            flags = _state["avps"]["flags_avp"]
            if flags:
                ctx.avps[flags] = [g.flags]
            return 1
    return -1


def from_gw(ctx, arg=None):
    """from_gw() / from_gw("$si") (1.4+) / from_gw(group) (1.2/1.3)."""
    if arg is not None and str(arg).strip().isdigit():
        return _from(ctx, ctx.src_ip, int(arg))
    return _from(ctx, (arg or ctx.src_ip).strip())


def from_gw_grp(ctx, group):
    if not str(group).strip().lstrip("-").isdigit():
        return -1
    return _from(ctx, ctx.src_ip, int(group))


def to_gw(ctx, group=None):
    u = parse_uri(ctx.ruri)
    if u is None or not u.host:
        return -1
    host = u.host.strip("[]")
    grp = int(group) if group is not None and str(group).strip().lstrip("-").isdigit() \
        else None
    for g in _state["gws"]:
        if g.ip == host and (grp is None or g.grp == grp) and \
                (not u.port or not g.port or u.port == g.port):
            return 1
    return -1


# --- serial forking by q ------------------------------------------------------------------------

def _q(v):
    return 1000 if v is None else v


def load_contacts(ctx):
    """The R-URI and branches, grouped by q (highest first), into contact_avp; nothing to do
    when they all have the same q."""
    name = _state["avps"]["contact_avp"]
    if name is None:
        ctx.rt.log.error("load_contacts: modparam contact_avp is not set", "lcr")
        return -1
    entries = [(ctx.ruri, _q(ctx.ruri_q))] + [(b.uri, _q(b.q)) for b in ctx.branches]
    if len(entries) < 2 or len({q for _, q in entries}) == 1:
        return 1
    ctx.avps.pop(name, None)
    order = sorted(range(len(entries)), key=lambda i: (entries[i][1], -i))
    for i in order:                     # lowest q pushed first: the highest ends on top
        uri, q = entries[i]
        set_avp(ctx.avps, name, f"{q}|{uri}")
    ctx.branches = []
    return 1


def next_contacts(ctx):
    name = _state["avps"]["contact_avp"]
    stack = ctx.avps.get(name) if name else None
    if not stack:
        return -1
    q0 = stack[-1].split("|", 1)[0]
    group = []
    while stack and stack[-1].split("|", 1)[0] == q0:
        group.append(stack.pop().split("|", 1)[1])
    if not stack:
        ctx.avps.pop(name, None)
    ctx.new_ruri = group[0]
    ctx.ruri_q = int(q0)
    ctx.branches = [Branch(u, q=int(q0)) for u in group[1:]]
    p = _state["p"]
    _set_timer(ctx, p["fr_inv_timer_next"] if ctx.avps.get(name) else p["fr_inv_timer"])
    return 1


# --- MI ----------------------------------------------------------------------------------------

def mi_lcr_reload(rt):
    reload()
    return "OK"


def mi_lcr_dump(rt):
    return {"gws": [{"name": g.name, "grp_id": g.grp, "ip_addr": g.ip, "port": g.port or 0,
                     "uri_scheme": g.scheme, "transport": g.transport or "", "strip": g.strip,
                     "tag": g.tag, "flags": g.flags} for g in _state["gws"]],
            "lcrs": [{"prefix": r.prefix, "from_uri": r.from_rx.pattern if r.from_rx else "",
                      "grp_id": r.grp, "priority": r.priority} for r in _state["rules"]]}

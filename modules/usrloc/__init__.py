"""usrloc: the user location tables (contacts per AOR) registrar saves and looks up.

Other modules reach it through `rt.apis["usrloc"]` (an `Api`, OpenSIPS `usrloc_api_t`):
`api.domain("location")` gives the table (`store.Domain`: get / insert / update / delete /
delete_aor / contacts), `api.nat_flag` the branch-flag bit of `nat_bflag` (or None).
"""
from runtime import db
from runtime.module import Module, Param

from .store import (ALL_METHODS, COLUMNS, DB_ONLY, DOMAIN_COLUMN, FL_MEM, FL_NAT, NO_DB,
                    USER_COLUMN, WRITE_BACK, WRITE_THROUGH, Contact, Domain, method_bit)

# working_mode_preset (3.x) -> db_mode
PRESETS = {
    "single-instance-no-db": NO_DB,
    "single-instance-sql-write-through": WRITE_THROUGH,
    "single-instance-sql-write-back": WRITE_BACK,
    "sql-only": DB_ONLY,
}
_CLUSTERED = ("federation-cachedb-cluster", "full-sharing-cluster",
              "full-sharing-cachedb-cluster")

exports = Module(
    name="usrloc",
    params=[
        Param("db_url", str, None, check=db.check_url),
        Param("db_mode", int, NO_DB,
              check=lambda v: None if 0 <= v <= 3 else "must be 0, 1, 2 or 3"),
        Param("working_mode_preset", str, None, check=lambda v: None if (
            v in PRESETS or v in _CLUSTERED) else f"unknown preset (one of {', '.join(PRESETS)})"),
        Param("timer_interval", int, 60,
              check=lambda v: None if v > 0 else "must be a positive number of seconds"),
        Param("nat_bflag", (int, str), None),
        Param("use_domain", int, 0),
        Param("desc_time_order", int, 0),
        Param("matching_mode", int, 0,
              check=lambda v: None if v in (0, 1) else "must be 0 (contact) or 1 (contact+callid)"),
        Param("cseq_delay", int, 20),
        Param("hash_size", int, 9), Param("max_contact_delete", int, 10),
        Param("regen_broken_contactid", int, 0), Param("fetch_rows", int, 2000),
        Param("timer_procs", int, 0), Param("location_cluster", int, 0),
        Param("skip_replicated_db_ops", int, 0), Param("db_update_as_insert", int, 0),
        Param("restart_persistency", str, None), Param("cluster_mode", str, None),
        Param("rr_persist", str, None), Param("sql_write_mode", str, None),
        Param("contact_refresh_timer", int, 0), Param("pinging_mode", str, None),
        *[Param(p, str, d) for p, d in (*COLUMNS.values(), USER_COLUMN, DOMAIN_COLUMN,
                                         ("kv_store_column", "kv_store"))],
    ],
    init="init",
    destroy="destroy",
    mi={"ul_dump": "mi_ul_dump", "ul_show_contact": "mi_ul_show_contact",
        "ul_rm": "mi_ul_rm", "ul_rm_contact": "mi_ul_rm_contact",
        "ul_add": ("mi_ul_add", "mi_ul_add_unused"), "ul_flush": "mi_ul_flush"},
)


class Api:
    """What registrar (and nathelper) use: the tables, the NAT flag, the contact type."""

    Contact = Contact
    FL_MEM = FL_MEM
    FL_NAT = FL_NAT
    method_bit = staticmethod(method_bit)

    def __init__(self, rt, params):
        self.rt = rt
        self.params = params
        mode = params["db_mode"]
        preset = params["working_mode_preset"]
        if preset in _CLUSTERED:
            rt.log.warning(f"working_mode_preset '{preset}': clustering is not supported, "
                           f"running as single-instance-no-db", "usrloc")
            mode = NO_DB
        elif preset is not None:
            mode = PRESETS[preset]
        self.db_mode = mode
        self.db = None
        if mode != NO_DB:
            url = params["db_url"] or rt.config.get("db_default_url")
            if not url:
                raise ValueError(f"db_mode {mode} needs a db_url")
            self.db = db.connect(url)
        flag = params["nat_bflag"]
        self.nat_flag = rt.bflag_names.bit(flag) if flag not in (None, "", -1) else None
        self.use_domain = bool(params["use_domain"])
        self.matching_mode = params["matching_mode"]
        self.cseq_delay = params["cseq_delay"]
        self.domains: dict[str, Domain] = {}
        self.stats = {}

    def domain(self, name: str) -> Domain:
        """The table `name` (registrar's "location"), opened on first use."""
        d = self.domains.get(name)
        if d is None:
            d = Domain(name, db=self.db, db_mode=self.db_mode, use_domain=self.use_domain,
                       desc_time_order=bool(self.params["desc_time_order"]),
                       columns=self.params, flag_names=self.rt.bflag_names)
            self.domains[name] = d
            self.stats[name] = d.stats
        return d

    def timer(self):
        for d in self.domains.values():
            d.expire()

    def flush(self):
        for d in self.domains.values():
            d.flush()


def init(rt):
    api = Api(rt, rt.modparams["usrloc"])
    rt.apis["usrloc"] = api
    rt.timers.append((rt.modparams["usrloc"]["timer_interval"], api.timer))
    rt.stats_groups = getattr(rt, "stats_groups", {})
    rt.stats_groups["usrloc"] = api.stats


def destroy(rt):
    api = rt.apis.get("usrloc")
    if api is not None:
        api.flush()


# --- MI commands (OpenSIPS ul_mi.c: names, parameters, replies) ----------------------------

MI_UL_CALLID = "dfjrewr12386fd6-343@opensips.mi"
MI_UL_UA = "OpenSIPS MI Server"


def _mi_table(rt, table_name, create=False):
    from runtime.mi import MIError
    api = rt.apis.get("usrloc")
    d = api.domains.get(table_name) if api is not None else None
    if d is None and create and api is not None and table_name.replace("_", "").isalnum():
        d = api.domain(table_name)
    if d is None:
        raise MIError(404, "Table not found")
    return d


def _mi_aor(rt, aor):
    from runtime.mi import MIError
    if rt.apis["usrloc"].use_domain:
        if "@" not in aor:
            raise MIError(400, "Domain missing in AOR")
        return aor
    return aor.split("@", 1)[0]


def _mi_contacts(d, aor):
    return d.get(aor) if d.db_mode == DB_ONLY else list(d.records.get(aor, []))


def _mi_q(q):
    if q is None:
        return ""
    if q >= 1000:
        return "1"
    if q <= 0:
        return "0"
    return ("0.%03d" % q).rstrip("0")


def _mi_aor_node(d, aor, contacts, now, brief=False):
    node = {"AOR": aor}
    if brief:
        return node
    out = []
    for c in contacts:
        ct = {"Contact": c.uri, "ContactID": str(c.contact_id)}
        if c.expires == 0:
            ct["Expires"] = "permanent"
        elif now > c.expires:
            ct["Expires"] = "expired"
        else:
            ct["Expires"] = int(c.expires - now)
        ct["Q"] = _mi_q(c.q)
        ct["Callid"] = c.callid
        ct["Cseq"] = c.cseq
        if c.user_agent:
            ct["User-agent"] = c.user_agent
        if c.received:
            ct["Received"] = c.received
        if c.path:
            ct["Path"] = c.path
        if d.db_mode == NO_DB:
            ct["State"] = "CS_NEW"
        elif d.db_mode == WRITE_BACK and c.contact_id in d.dirty:
            ct["State"] = "CS_DIRTY"
        else:
            ct["State"] = "CS_SYNC"
        ct["Flags"] = c.flags
        names = d.flag_names.names(c.cflags) if d.flag_names is not None else []
        ct["Cflags"] = " ".join(names)
        if c.socket:
            ct["Socket"] = c.socket
        ct["Methods"] = ALL_METHODS if c.methods is None else c.methods
        if c.attr:
            ct["Attr"] = c.attr
        if c.instance:
            ct["SIP_instance"] = c.instance
        out.append(ct)
    node["Contacts"] = out
    return node


def mi_ul_dump(rt, brief: int = 0):
    """Every AOR and contact of the location tables (brief: the AORs only)."""
    import time
    api = rt.apis.get("usrloc")
    now = time.time()
    domains = []
    for d in (api.domains.values() if api is not None else ()):
        aors = d.aors() if d.db_mode == DB_ONLY else list(d.records)
        domains.append({"name": d.name, "hash_size": 1 << api.params["hash_size"],
                        "AORs": [_mi_aor_node(d, a, _mi_contacts(d, a), now, bool(brief))
                                 for a in aors]})
    return {"Domains": domains}


def mi_ul_show_contact(rt, table_name: str, aor: str):
    """The contacts of one AOR."""
    import time
    from runtime.mi import MIError
    d = _mi_table(rt, table_name)
    aor = _mi_aor(rt, aor)
    contacts = _mi_contacts(d, aor)
    if not contacts and aor not in d.records:
        raise MIError(404, "AOR not found")
    return _mi_aor_node(d, aor, contacts, time.time())


def mi_ul_rm(rt, table_name: str, aor: str):
    """Delete an AOR and all its contacts."""
    d = _mi_table(rt, table_name)
    d.delete_aor(_mi_aor(rt, aor))
    return "OK"


def mi_ul_rm_contact(rt, table_name: str, aor: str, contact: str):
    """Delete one contact of an AOR."""
    from runtime.mi import MIError
    d = _mi_table(rt, table_name)
    aor = _mi_aor(rt, aor)
    contacts = _mi_contacts(d, aor)
    if not contacts and aor not in d.records:
        raise MIError(404, "AOR not found")
    for c in contacts:
        if c.uri == contact:
            d.delete(c)
            return "OK"
    raise MIError(404, "Contact not found")


def _mi_str2q(text):
    t = text.strip()
    try:
        v = float(t)
    except ValueError:
        return "bad"
    if not t or not 0 <= v <= 1 or not all(ch.isdigit() or ch == "." for ch in t):
        return "bad"
    return round(v * 1000)


def mi_ul_add(rt, table_name: str, aor: str, contact: str, expires: int, q: str,
              flags: int, cflags: int, methods: int):
    """Add a contact to an AOR, or update it (expires 0: a permanent contact)."""
    import time
    from runtime.mi import MIError
    d = _mi_table(rt, table_name, create=True)
    aor = _mi_aor(rt, aor)
    qv = _mi_str2q(q)
    if qv == "bad":
        raise MIError(400, "Bad parameter value")
    meth = None if methods & ALL_METHODS == ALL_METHODS else methods & ALL_METHODS
    absolute = 0 if expires == 0 else int(time.time()) + expires
    for c in _mi_contacts(d, aor):
        if c.uri == contact:
            c.expires, c.q, c.flags, c.cflags, c.methods = absolute, qv, flags, cflags, meth
            c.callid, c.user_agent = MI_UL_CALLID, MI_UL_UA
            d.update(c)
            return "OK"
    d.insert(Contact(aor=aor, uri=contact, expires=absolute, q=qv, callid=MI_UL_CALLID,
                     cseq=1, flags=flags, cflags=cflags, user_agent=MI_UL_UA, methods=meth))
    return "OK"


def mi_ul_add_unused(rt, table_name: str, aor: str, contact: str, expires: int, q: str,
                     unsused, flags: int, cflags: int, methods: int):
    """ul_add of OpenSIPS 3.0-3.3, with an unused sixth parameter."""
    return mi_ul_add(rt, table_name, aor, contact, expires, q, flags, cflags, methods)


def mi_ul_flush(rt):
    """Write the changed contacts to the database now (db_mode 2)."""
    api = rt.apis.get("usrloc")
    if api is not None:
        api.flush()
    return "OK"


__all__ = ["exports", "Api", "Contact", "Domain", "ALL_METHODS", "FL_MEM", "method_bit"]

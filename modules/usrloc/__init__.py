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


__all__ = ["exports", "Api", "Contact", "Domain", "ALL_METHODS", "FL_MEM", "method_bit"]

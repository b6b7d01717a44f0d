"""presence_xml: the `presence` (RFC 3856, PIDF bodies) and `presence.winfo` (RFC 3857,
watcherinfo bodies) event packages for the presence module, and `dialog;sla` when
disable_bla is 0.

    loadmodule "presence_xml.so"
    modparam("presence_xml", "force_active", 1)

- PUBLISH bodies must be well-formed XML (else 415 Unsupported media type); the states of
  several devices are aggregated into one PIDF document per NOTIFY (pidf.aggregate); when a
  state is removed or expires, watchers get it with every tuple closed
  (generate_offline_body, on by default).
- force_active 1: every watcher is accepted. 0 (the default): the presentity's pres-rules
  document in the `xcap` table (what an integrated XCAP server such as OpenXCAP writes)
  decides: allow -> active, confirm or no rule -> pending (202, NOTIFY without a body),
  polite-block -> active with an offline body, block -> terminated;reason=rejected. The
  decision is kept in the `watchers` table; after a rules change, the MI command
  refresh_watchers <presentity> presence 0 re-evaluates it and notifies.
- pidf_manipulation 1: the user's pidf-manipulation document (RFC 4827) is notified with
  the published states, or alone.

The table comes from the xcap module when it is loaded (OpenSIPS 2.x and later); 1.x
scripts set db_url/xcap_table here instead. Documents are only read from the table (the
integrated-server mode): xcap_server (fetching over HTTP through xcap_client) is accepted
and not used.
"""
from __future__ import annotations

import weakref

from runtime.module import Module, Param

from . import pidf

exports = Module(
    name="presence_xml",
    params=[
        Param("force_active", int, 0), Param("pidf_manipulation", int, 0),
        Param("integrated_xcap_server", int, 0), Param("xcap_server", str, multi=True),
        Param("pres_rules_auid", str, None), Param("pres_rules_filename", str, None),
        Param("generate_offline_body", int, 1),
        # 1.x: the xcap table was read by this module
        Param("db_url", str, None), Param("xcap_table", str, "xcap"),
        Param("disable_presence", int, 0), Param("disable_winfo", int, 0),
        Param("disable_bla", int, 1), Param("passive_mode", int, 0),
    ],
    depends=("presence",),
    init="init",
)

PRES_RULES, PIDF_MANIPULATION, OMA_PRES_RULES = 1 << 1, 1 << 4, 1 << 5
_CONNS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def init(rt):
    p = rt.modparams["presence_xml"]
    api = rt.apis["presence"]
    EventPackage = api.EventPackage
    ACTIVE, PENDING, TERMINATED, WINFO_TYPE = api.ACTIVE, api.PENDING, api.TERMINATED, \
        api.WINFO_TYPE
    xcap = _XcapDocs(rt, p)

    def publ_handl(ctx, body):
        if not pidf.well_formed(body):
            return 415, "Unsupported media type"
        return None

    def get_rules_doc(user, domain):
        doc_type = OMA_PRES_RULES if "openmobilealliance" in (p["pres_rules_auid"] or "") \
            else PRES_RULES
        return xcap.get(user, domain, doc_type, p["pres_rules_filename"])

    def get_auth_status(subs, rules_doc):
        if not rules_doc:
            return PENDING, ""
        action = pidf.sub_handling(rules_doc, subs.watcher_uri)
        if action == "allow":
            return ACTIVE, ""
        if action == "polite-block":
            return ACTIVE, "polite-block"
        if action == "block":
            return TERMINATED, "rejected"
        return PENDING, ""

    def apply_auth_nbody(body, subs, rules_doc):
        if subs.reason == "polite-block":
            return pidf.offline(body, subs.pres_uri) or pidf.closed(subs.pres_uri)
        return body

    def agg_nbody(user, domain, bodies):
        return pidf.aggregate(_uri(user, domain), bodies)

    def offline_body(body):
        return pidf.offline(body) if p["generate_offline_body"] else None

    def dummy_body(user, domain):
        return pidf.closed(_uri(user, domain))

    def extra_bodies(user, domain):
        doc = xcap.get(user, domain, PIDF_MANIPULATION)
        return [doc] if doc else []

    if not p["disable_presence"]:
        api.add_event(rt, EventPackage(
            "presence", "application/pidf+xml", 3600, req_auth=not p["force_active"],
            publ_handl=publ_handl, get_rules_doc=get_rules_doc,
            get_auth_status=get_auth_status, apply_auth_nbody=apply_auth_nbody,
            agg_nbody=agg_nbody, offline_body=offline_body, dummy_body=dummy_body,
            extra_bodies=extra_bodies if p["pidf_manipulation"] else None))
    if not p["disable_winfo"]:
        api.add_event(rt, EventPackage("presence.winfo", "application/watcherinfo+xml", 3600,
                                       type=WINFO_TYPE))
    if not p["disable_bla"]:
        api.add_event(rt, EventPackage("dialog;sla", "application/dialog-info+xml", 3600,
                                       etag_not_new=True, publ_handl=publ_handl))


def _uri(user, domain):
    return f"sip:{user}@{domain}" if user else f"sip:{domain}"


class _XcapDocs:
    """The user documents of the xcap table: through the xcap module when it is loaded,
    else (1.x) this module's own db_url/xcap_table (or the presence db_url)."""

    def __init__(self, rt, p):
        self.rt = rt
        self.p = p

    def get(self, user, domain, doc_type, filename=None):
        rt = self.rt
        xcap = rt.apis.get("xcap")
        try:
            if xcap is not None:
                return xcap.get_doc(rt, user, domain, doc_type, filename)[0]
            conn = self._conn()
            if conn is None:
                return None
            where = {"username": user, "domain": domain, "doc_type": doc_type}
            if filename:
                where["doc_uri"] = filename
            rows = conn.query(self.p["xcap_table"], where, ["doc"])
        except Exception as e:
            from runtime.db import DBError
            if not isinstance(e, DBError):
                raise
            rt.log.error(f"presence_xml: cannot read the xcap table: {e}", "presence_xml")
            return None
        if not rows:
            return None
        doc = rows[0]["doc"]
        if isinstance(doc, (bytes, bytearray, memoryview)):
            doc = bytes(doc).decode("utf-8", "surrogateescape")
        return doc or None

    def _conn(self):
        conn = _CONNS.get(self.rt)
        if conn is not None:
            return conn
        url = self.p["db_url"] or (self.rt.modparams.get("presence") or {}).get("db_url")
        if not url:
            return None
        from runtime import db
        conn = db.connect(url)
        conn.create_table(self.p["xcap_table"], _XCAP_SQL, 4)
        _CONNS[self.rt] = conn
        return conn


# the OpenSIPS xcap table (version 4), for an embedded SQLite file of a 1.x-style script
_XCAP_SQL = """
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    username CHAR(64) NOT NULL, domain CHAR(64) NOT NULL, doc BLOB NOT NULL,
    doc_type INTEGER NOT NULL, etag CHAR(64) NOT NULL, source INTEGER NOT NULL,
    doc_uri CHAR(255) NOT NULL, port INTEGER NOT NULL,
    CONSTRAINT xcap_account_doc_type_idx UNIQUE (username, domain, doc_type, doc_uri)"""

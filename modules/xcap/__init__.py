"""xcap: access to the XCAP documents an integrated XCAP server (OpenXCAP) keeps in the
OpenSIPS `xcap` table, for presence_xml (pres-rules, pidf-manipulation) and rls.

    loadmodule "xcap.so"
    modparam("xcap", "db_url", "mysql://opensips:opensipsrw@localhost/opensips")
    modparam("xcap", "xcap_table", "xcap")
    modparam("xcap", "integrated_xcap_server", 1)

No script functions (OpenSIPS's bind_xcap API only): other modules use
`rt.apis["xcap"].get_doc(rt, user, domain, doc_type[, filename])`. A row is (username,
domain, doc, doc_type, etag, source, doc_uri, port); the document types are OpenSIPS's bit
values below. An embedded SQLite database gets the table created when it is missing.
"""
from __future__ import annotations

import weakref

from runtime import db
from runtime.module import Module, Param

# XCAP document types (the doc_type column)
PRES_RULES = 1 << 1
RESOURCE_LISTS = 1 << 2
RLS_SERVICES = 1 << 3
PIDF_MANIPULATION = 1 << 4
OMA_PRES_RULES = 1 << 5

DOC_TYPES = {"pres-rules": PRES_RULES, "resource-lists": RESOURCE_LISTS,
             "rls-services": RLS_SERVICES, "pidf-manipulation": PIDF_MANIPULATION,
             "org.openmobilealliance.pres-rules": OMA_PRES_RULES}

exports = Module(
    name="xcap",
    params=[Param("db_url", str, None), Param("xcap_table", str, "xcap"),
            Param("integrated_xcap_server", int, 0)],
    init="init",
)

_CONNS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def init(rt):
    p = rt.modparams["xcap"]
    url = db.module_url(rt, "xcap")
    _CONNS[rt] = open_table(url, p["xcap_table"])


TABLE_VERSION = 4
TABLE_SQL = """
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    username CHAR(64) NOT NULL, domain CHAR(64) NOT NULL, doc BLOB NOT NULL,
    doc_type INTEGER NOT NULL, etag CHAR(64) NOT NULL, source INTEGER NOT NULL,
    doc_uri CHAR(255) NOT NULL, port INTEGER NOT NULL,
    CONSTRAINT xcap_account_doc_type_idx UNIQUE (username, domain, doc_type, doc_uri)"""


def open_table(url, table):
    """A connection to the database of an xcap table (created in an embedded SQLite file
    when missing; server databases are provisioned by their administrators)."""
    conn = db.connect(url)
    conn.create_table(table, TABLE_SQL, TABLE_VERSION)
    return conn


def get_doc(conn, table, user, domain, doc_type, filename=None, match_etag=None):
    """(document, etag) of a user's document of this type, or (None, None)."""
    where = {"username": user, "domain": domain, "doc_type": int(doc_type)}
    if filename:
        where["doc_uri"] = filename
    if match_etag:
        where["etag"] = match_etag
    rows = conn.query(table, where, ["doc", "etag"])
    if not rows:
        return None, None
    doc = rows[0]["doc"]
    if isinstance(doc, (bytes, bytearray, memoryview)):
        doc = bytes(doc).decode("utf-8", "surrogateescape")
    etag = rows[0]["etag"]
    return (doc or None), (str(etag) if etag is not None else None)


def normalize_sip_uri(uri: str) -> str:
    """`user@domain` or `sip:user@domain;params` -> `sip:user@domain` (as xcap URIs name
    users)."""
    u = uri.strip().strip("<>")
    if not u.lower().startswith(("sip:", "sips:")):
        u = "sip:" + u
    return u.split(";", 1)[0].split("?", 1)[0]


class Api:
    """bind_xcap: what presence_xml and rls use."""

    PRES_RULES, RESOURCE_LISTS, RLS_SERVICES = PRES_RULES, RESOURCE_LISTS, RLS_SERVICES
    PIDF_MANIPULATION, OMA_PRES_RULES = PIDF_MANIPULATION, OMA_PRES_RULES

    def integrated_server(self, rt) -> bool:
        return bool(rt.modparams["xcap"]["integrated_xcap_server"])

    def get_doc(self, rt, user, domain, doc_type, filename=None, match_etag=None):
        conn = _CONNS.get(rt)
        if conn is None:
            return None, None
        return get_doc(conn, rt.modparams["xcap"]["xcap_table"], user, domain, doc_type,
                       filename, match_etag)

    normalize_sip_uri = staticmethod(normalize_sip_uri)


exports.api = Api()

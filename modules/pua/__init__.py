"""pua: the presence user agent library other modules publish through (pua_mi, pua_usrloc,
pua_dialoginfo, rls in OpenSIPS): PUBLISH (RFC 3903) on behalf of a resource, with the
entity tag kept and the publication refreshed before it expires.

    loadmodule "pua.so"
    modparam("pua", "db_url", "mysql://opensips:opensipsrw@localhost/opensips")
    modparam("pua", "update_period", 100)

API (rt.apis["pua"]):

    send_publish(rt, pres_uri, event, body=None, content_type=None, expires=None,
                 id="", outbound_proxy=None, extra_headers=(), callback=None) -> bool

A first PUBLISH carries the body; later ones carry SIP-If-Match with the entity tag the
server gave (a body modifies the state, none refreshes it, expires 0 removes it). A 412 makes
the next PUBLISH an initial one again (with the last body). The timer refreshes every
publication that would expire before the next update_period. With a db_url the
publications are kept in the `pua` table (OpenSIPS columns) and read back at start-up.

pua_update_contact() (1.x script function) answers -1: this module keeps no SUBSCRIBE
dialogs of its own.
"""
from __future__ import annotations

import itertools
import secrets
import socket as pysocket
import time
import weakref

from runtime.forward import next_hop
from runtime.module import REQUEST, Func, Module, Param
from runtime.sip.headers import SIPError

exports = Module(
    name="pua",
    params=[
        Param("hash_size", int, 9), Param("db_url", str, None), Param("db_table", str, "pua"),
        Param("min_expires", int, 0), Param("default_expires", int, 3600),
        Param("update_period", int, 100), Param("outbound_proxy", str, None),
        Param("dlginfo_increase_version", int, 0), Param("reginfo_increase_version", int, 0),
        Param("check_remote_contact", int, 1), Param("db_mode", int, 0),
        Param("fetch_rows", int, 500),
    ],
    functions=[Func("pua_update_contact", "pua_update_contact", routes=REQUEST)],
    init="init",
    child_init="child_init",
    destroy="destroy",
)

# event codes of the pua table's `event` column (OpenSIPS pua event flags)
EVENT_CODES = {"presence": 1, "presence;winfo": 2, "presence.winfo": 2, "message-summary": 4,
               "dialog": 8, "dialog;sla": 16, "call-info": 32, "line-seize": 64}
_CONTENT_TYPES = {"presence": "application/pidf+xml",
                  "message-summary": "application/simple-message-summary",
                  "dialog": "application/dialog-info+xml",
                  "dialog;sla": "application/dialog-info+xml"}

TABLE_VERSION = 8
TABLE_SQL = """
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    pres_uri CHAR(255) NOT NULL, pres_id CHAR(255) NOT NULL, event INTEGER NOT NULL,
    expires INTEGER NOT NULL, desired_expires INTEGER NOT NULL, flag INTEGER NOT NULL,
    etag CHAR(64), tuple_id CHAR(64), watcher_uri CHAR(255), to_uri CHAR(255),
    call_id CHAR(64), to_tag CHAR(64), from_tag CHAR(64), cseq INTEGER,
    record_route TEXT, contact CHAR(255), remote_contact CHAR(255), version INTEGER,
    extra_headers TEXT"""
PUBL_FLAG = 1 << 10          # the flag of publications made through the API

T1, T2 = 0.5, 4.0


class Publication:
    def __init__(self, pres_uri, event, pres_id=""):
        self.pres_uri, self.event, self.id = pres_uri, event, pres_id
        self.etag = None
        self.expires = 0                # absolute
        self.desired_expires = 0        # absolute: until when the caller wants it
        self.body = None
        self.content_type = None
        self.outbound_proxy = None
        self.extra_headers = ()
        self.cseq = 0
        self.call_id = f"{secrets.token_hex(8)}@pua"
        self.from_tag = secrets.token_hex(5)
        self.in_flight = False

    @property
    def key(self):
        return (self.pres_uri, self.id, self.event)


class Pua:
    def __init__(self, rt, p):
        self.rt, self.p = rt, p
        self.pubs: dict = {}
        self.conn = None
        self.pending: dict = {}          # branch -> (callback, timers)
        self.prev_hook = None
        self.hooked = False
        self.tag = secrets.token_hex(4)
        self.ids = itertools.count(1)


_STATES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def init(rt):
    p = rt.modparams["pua"]
    if p["update_period"] <= 0:
        raise ValueError("pua: update_period must be positive")
    st = _STATES[rt] = Pua(rt, p)
    if p["db_url"]:
        from runtime import db
        st.conn = db.connect(p["db_url"])
        table = p["db_table"]
        if isinstance(st.conn, db.SQLite) and not st.conn.raw_query(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (table,)):
            st.conn.raw_query(f"CREATE TABLE IF NOT EXISTS {st.conn.q(table)} ({TABLE_SQL})")
            st.conn.raw_query("INSERT OR REPLACE INTO version (table_name, table_version) "
                              "VALUES (?, ?)", (table, TABLE_VERSION))
        _restore(st)
    rt.timers.append((p["update_period"], lambda: refresh(st)))


def child_init(rt):
    pass


def destroy(rt):
    st = _STATES.get(rt)
    if st is not None:
        _save(st)


def _restore(st):
    codes = {v: k for k, v in EVENT_CODES.items()}
    now = int(time.time())
    for r in st.conn.query(st.p["db_table"], {"flag": PUBL_FLAG, "expires": (">", now)}):
        event = codes.get(int(r["event"] or 0))
        if event is None:
            continue
        pub = Publication(str(r["pres_uri"]), event, str(r["pres_id"] or ""))
        pub.etag = r.get("etag") or None
        pub.expires = int(r["expires"])
        pub.desired_expires = int(r["desired_expires"] or 0)
        pub.extra_headers = tuple(h for h in (r.get("extra_headers") or "").split("\r\n") if h)
        st.pubs[pub.key] = pub


def _save(st):
    if st.conn is None:
        return
    table = st.p["db_table"]
    try:
        st.conn.delete(table, {"flag": PUBL_FLAG})
        for pub in st.pubs.values():
            if not pub.etag:
                continue
            st.conn.insert(table, {
                "pres_uri": pub.pres_uri, "pres_id": pub.id,
                "event": EVENT_CODES.get(pub.event, 0), "expires": pub.expires,
                "desired_expires": pub.desired_expires, "flag": PUBL_FLAG, "etag": pub.etag,
                "tuple_id": "", "extra_headers": "\r\n".join(pub.extra_headers),
                "version": 0})
    except Exception as e:
        from runtime.db import DBError
        if not isinstance(e, DBError):
            raise
        st.rt.log.error(f"pua: cannot write {table}: {e}", "pua")


# --- the API -------------------------------------------------------------------------------

class Api:
    """bind_pua."""

    def send_publish(self, rt, pres_uri, event, body=None, content_type=None, expires=None,
                     id="", outbound_proxy=None, extra_headers=(), callback=None) -> bool:
        st = _STATES.get(rt)
        if st is None:
            return False
        key = (pres_uri, id, event)
        pub = st.pubs.get(key)
        if expires is None:
            expires = st.p["default_expires"]
        if pub is None:
            if expires == 0:
                return False                   # nothing published to remove
            pub = st.pubs[key] = Publication(pres_uri, event, id)
        if body is not None:
            pub.body = body
            pub.content_type = content_type or _CONTENT_TYPES.get(event)
        pub.outbound_proxy = outbound_proxy or st.p["outbound_proxy"]
        pub.extra_headers = tuple(extra_headers)
        pub.desired_expires = int(time.time()) + expires if expires else 0
        if pub.etag is None and pub.body is None:
            return False                       # a first PUBLISH needs a body
        return _publish(st, pub, expires, with_body=body is not None or pub.etag is None,
                        callback=callback)

    def publications(self, rt) -> list:
        st = _STATES.get(rt)
        return list(st.pubs.values()) if st else []


exports.api = Api()


def pua_update_contact(ctx):
    return -1


def refresh(st):
    """Refresh the publications that would expire before the next pass."""
    now = int(time.time())
    for pub in list(st.pubs.values()):
        if pub.in_flight or not pub.etag:
            continue
        if pub.desired_expires and pub.desired_expires <= now:
            del st.pubs[pub.key]
            continue
        if pub.expires - now <= st.p["update_period"]:
            left = pub.desired_expires - now if pub.desired_expires else \
                st.p["default_expires"]
            _publish(st, pub, max(left, st.p["min_expires"]), with_body=False)


def _publish(st, pub, expires, with_body, callback=None) -> bool:
    rt = st.rt
    if rt.server is None or getattr(rt.server, "loop", None) is None:
        return False
    hop = next_hop(pub.outbound_proxy or pub.pres_uri)
    if hop is None:
        rt.log.error(f"pua: cannot resolve '{pub.outbound_proxy or pub.pres_uri}'", "pua")
        return False
    proto, ip, port = hop
    af = pysocket.AF_INET6 if ":" in ip else pysocket.AF_INET
    sock = rt.socket_for(proto, af) or rt.socket_for("udp")
    if sock is None:
        return False
    pub.cseq += 1
    branch = f"z9hG4bK-cfgpua-{st.tag}-{next(st.ids)}"
    body = (pub.body or "") if with_body else ""
    data = body.encode("utf-8", "surrogateescape")
    lines = [f"PUBLISH {pub.pres_uri} SIP/2.0",
             f"Via: SIP/2.0/{sock.proto.upper()} {sock.via_host}:{sock.via_port};"
             f"branch={branch};rport",
             "Max-Forwards: 70",
             f"From: <{pub.pres_uri}>;tag={pub.from_tag}",
             f"To: <{pub.pres_uri}>",
             f"Call-ID: {pub.call_id}",
             f"CSeq: {pub.cseq} PUBLISH",
             f"Event: {pub.event}",
             f"Expires: {expires}"]
    if pub.etag:
        lines.append(f"SIP-If-Match: {pub.etag}")
    lines += list(pub.extra_headers)
    if data:
        lines.append(f"Content-Type: {pub.content_type or 'text/plain'}")
    lines.append(f"Content-Length: {len(data)}")
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape") + data
    pub.in_flight = True
    return _send(st, raw, sock, (ip, port), branch,
                 lambda reply: _published(st, pub, expires, reply, callback))


def _published(st, pub, expires, reply, callback):
    pub.in_flight = False
    code = reply.status if reply is not None else 408
    if 200 <= code < 300:
        if expires == 0:
            st.pubs.pop(pub.key, None)
        else:
            pub.etag = (reply.get("sip-etag") or pub.etag or "").strip() or None
            granted = reply.get("expires")
            n = int(granted) if granted and granted.strip().isdigit() else expires
            pub.expires = int(time.time()) + n
    elif code == 412:
        pub.etag = None                     # the server forgot it: start again
        if expires and pub.body:
            _publish(st, pub, expires, with_body=True, callback=callback)
            return
        st.pubs.pop(pub.key, None)
    else:
        st.rt.log.info(f"pua: PUBLISH for {pub.pres_uri} ({pub.event}) answered {code}", "pua")
    if callback is not None:
        callback(pub, code)


# --- a small non-INVITE client transaction (no tm API for local requests yet) --------------

def _hook(st):
    server = st.rt.server
    if st.hooked or server is None:
        return
    st.prev_hook = server.reply_hook
    server.reply_hook = lambda ctx: _on_reply(st, ctx)
    st.hooked = True


def _on_reply(st, ctx):
    try:
        branch = ctx.msg.via1.branch or ""
    except (SIPError, AttributeError):
        branch = ""
    if branch not in st.pending:
        return st.prev_hook(ctx) if st.prev_hook is not None else False
    if ctx.msg.status >= 200:
        _finish(st, branch, ctx.msg)
    return True


def _send(st, data, sock, addr, branch, callback) -> bool:
    rt = st.rt
    _hook(st)
    loop = rt.server.loop
    fr = float((rt.modparams.get("tm") or {}).get("fr_timeout") or 5)
    timers = [loop.call_later(fr, _finish, st, branch, None)]
    st.pending[branch] = (callback, timers)
    if not rt.server.send(sock, addr, data):
        loop.call_soon(_finish, st, branch, None)
        return False
    if sock.proto == "udp":
        def again(interval):
            if branch in st.pending:
                rt.server.send(sock, addr, data)
                nxt = min(interval * 2, T2)
                timers.append(loop.call_later(nxt, again, nxt))
        timers.append(loop.call_later(T1, again, T1))
    return True


def _finish(st, branch, reply):
    entry = st.pending.pop(branch, None)
    if entry is None:
        return
    callback, timers = entry
    for t in timers:
        t.cancel()
    try:
        callback(reply)
    except Exception:
        import traceback
        st.rt.log.error("pua: reply callback failed:\n" + traceback.format_exc(), "pua")

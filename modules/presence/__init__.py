"""presence: a SIP event notifier and state agent (RFC 3903 PUBLISH, RFC 6665 SUBSCRIBE/NOTIFY),
event independent: the packages come from other modules (presence_xml: presence and
presence.winfo; presence_mwi: message-summary; presence_dialoginfo: dialog).

    loadmodule "presence.so"
    modparam("presence", "db_url", "sqlite:///var/lib/opensips/opensips.db")
    modparam("presence", "fallback2db", 1)
    modparam("presence", "clean_period", 30)
    ...
    if (is_method("PUBLISH")) handle_publish();
    if (is_method("SUBSCRIBE")) handle_subscribe();

handle_publish([sender]) answers every PUBLISH itself: 200 OK with `SIP-ETag` and
`Expires` (new state, refresh without a body, modification with one, removal with
`Expires: 0`), 412 for a `SIP-If-Match` entity tag it does not know, 489 with
`Allow-Events` for a package nobody registered, 400 for a new PUBLISH without a body, and
NOTIFYs to the watchers of the resource when its state changes (not to `sender`).

handle_subscribe([force_active[, sharing_tag]]) answers every SUBSCRIBE itself: an initial
one creates a subscription dialog (our To tag, `Contact: <sip:presence@our socket>`,
`Expires` at most max_expires_subscribe), replied 202 while the watcher waits for
authorization and 200 once accepted (as OpenSIPS does for published packages), then a
NOTIFY with the current state; a refresh in the dialog updates its expiry (481 for a dialog
we do not know, 400 for an old CSeq); `Expires: 0` ends it with a last NOTIFY
(`Subscription-State: terminated;reason=timeout`). Subscriptions that expire are ended the
same way by the clean timer.

Both return 1 on success and -1 on error (the reply is sent either way), and reply
statefully when the request has a transaction (t_newtran() before them, as most scripts do),
else statelessly, as OpenSIPS's signaling module does.

MI: refresh_watchers (alias refreshWatchers) pres_uri event refresh_type, cleanup,
pres_phtable_list (phtable_list), subs_phtable_list.
"""
from __future__ import annotations

import os
import time
import weakref

from runtime.db import DBError
from runtime.forward import send_local_reply
from runtime.module import INT, REQUEST, STR, Arg, Func, Module, Param
from runtime.pv import parse_uri
from runtime.sip.headers import SIPError
from runtime.sip.reply import make_to_tag

from .events import (ACTIVE, PENDING, PUBL_TYPE, STATUS_NAMES, TERMINATED, WAITING,
                     WINFO_TYPE, EventList, EventPackage, parse_event)
from .notify import NotifyUAC, build_notify, destination, dialog_route
from .store import (DbPresentities, MemoryPresentities, Presentity, Subscription,
                    Subscriptions, WatcherAuth, Watchers, ensure_tables)

__all__ = ["EventPackage", "ACTIVE", "PENDING", "TERMINATED", "WAITING", "PUBL_TYPE",
           "WINFO_TYPE"]


def _force_active(value, rt=None):
    text = str(value).strip()
    if text not in ("0", "1"):
        raise ValueError(f"force_active must be 0 or 1, not '{value}'")
    return int(text)


exports = Module(
    name="presence",
    params=[
        Param("db_url", str, None),
        Param("presentity_table", str, "presentity"),
        Param("active_watchers_table", str, "active_watchers"),
        Param("watchers_table", str, "watchers"),
        Param("clean_period", int, 100), Param("db_update_period", int, 100),
        Param("expires_offset", int, 0),
        Param("max_expires_subscribe", int, 3600), Param("max_expires_publish", int, 3600),
        Param("contact_user", str, "presence"),
        Param("server_address", str, None),             # 1.x/2.x: the Contact of our replies
        Param("subs_htable_size", int, 9), Param("pres_htable_size", int, 9),
        Param("fallback2db", int, 0), Param("enable_sphere_check", int, 0),
        Param("waiting_subs_daysno", int, 3), Param("mix_dialog_presence", int, 0),
        Param("bla_presentity_spec", str, None), Param("bla_fix_remote_target", int, 1),
        Param("notify_offline_body", int, 0), Param("end_sub_on_timeout", int, 1),
        Param("cluster_id", int, 0), Param("cluster_federation_mode", str, "disabled"),
        Param("cluster_pres_events", str, ""), Param("cluster_be_active_shtag", str, None),
    ],
    functions=[
        Func("handle_publish", "handle_publish", [Arg(STR, optional=True, name="sender_uri")],
             REQUEST),
        Func("handle_subscribe", "handle_subscribe",
             [Arg(INT, optional=True, name="force_active"),
              Arg(STR, optional=True, name="sharing_tag")], REQUEST),
        # Kamailio's names for the MI refresh (an XCAP server in the script, xhttp)
        Func("pres_update_watchers", "pres_update_watchers",
             [Arg(STR, name="uri"), Arg(STR, name="event")]),
        Func("pres_refresh_watchers", "pres_refresh_watchers",
             [Arg(STR, name="uri"), Arg(STR, name="event"), Arg(INT, name="type"),
              Arg(STR, optional=True, name="file_uri"),
              Arg(STR, optional=True, name="filename")]),
    ],
    init="init",
    child_init="child_init",
    destroy="destroy",
    aliases={"max_expires": "max_expires_subscribe"},     # 1.x name
    mi={"refresh_watchers": "mi_refresh_watchers", "refreshWatchers": "mi_refresh_watchers",
        "cleanup": "mi_cleanup", "pres_phtable_list": "mi_phtable_list",
        "phtable_list": "mi_phtable_list", "subs_phtable_list": "mi_subs_list"},
)


# --- per-runtime state ---------------------------------------------------------------------

_STATES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


class Presence:
    """Everything the module keeps for one running proxy."""

    def __init__(self, rt):
        self.rt = rt
        self.events = EventList()
        self.p = None
        self.conn = None
        self.pres = MemoryPresentities()
        self.subs = Subscriptions()
        self.watchers = Watchers()
        self.uac = None
        self.counter = 0
        self.startup = int(time.time())
        self.stats = {"notifies_sent": 0, "notify_failures": 0}

    def param(self, name):
        return (self.p or {}).get(name, exports.params_by_name[name].default)


def state(rt) -> Presence:
    st = _STATES.get(rt)
    if st is None:
        st = _STATES[rt] = Presence(rt)
    return st


class Api:
    """What other modules use (OpenSIPS's bind_presence): the package description, the
    subscription states, and the calls below (each takes the runtime first)."""

    EventPackage = EventPackage
    ACTIVE, PENDING, TERMINATED, WAITING = ACTIVE, PENDING, TERMINATED, WAITING
    PUBL_TYPE, WINFO_TYPE = PUBL_TYPE, WINFO_TYPE

    def add_event(self, rt, ev: EventPackage) -> None:
        state(rt).events.add(ev)

    def search_event(self, rt, name: str):
        return state(rt).events.find(name)

    def get_event_list(self, rt) -> str:
        return state(rt).events.names()

    def update_watchers_status(self, rt, pres_uri: str, event: str) -> int:
        """Authorization rules of a presentity changed: re-evaluate its watchers."""
        st = state(rt)
        ev = st.events.find(event)
        return update_watchers_status(st, pres_uri, ev) if ev is not None else -1

    def refresh_watchers(self, rt, pres_uri: str, event: str) -> int:
        """The published state changed outside a PUBLISH: notify the watchers."""
        st = state(rt)
        ev = st.events.find(event)
        if ev is None:
            return -1
        user, domain = _user_domain(pres_uri)
        publ_notify(st, ev, user, domain)
        return 1

    def states(self, rt, pres_uri: str, event: str) -> list:
        """The published states (Presentity records) of a resource."""
        st = state(rt)
        user, domain = _user_domain(pres_uri)
        return st.pres.states(user, domain, event)

    def contains_presence(self, rt, pres_uri: str) -> int:
        return 1 if self.states(rt, pres_uri, "presence") else -1


exports.api = Api()


# --- start-up ------------------------------------------------------------------------------

def init(rt):
    st = state(rt)
    p = st.p = rt.modparams["presence"]
    if not 0 <= p["waiting_subs_daysno"] <= 30:
        raise ValueError("presence: waiting_subs_daysno must be 0..30")
    url = p["db_url"]
    if url:
        from runtime import db
        st.conn = db.connect(url)
        ensure_tables(st.conn, {p["presentity_table"]: "presentity",
                                p["active_watchers_table"]: "active_watchers",
                                p["watchers_table"]: "watchers"})
        st.pres = DbPresentities(st.conn, p["presentity_table"])
        st.subs = Subscriptions(st.conn, p["active_watchers_table"], p["fallback2db"])
        st.watchers = Watchers(st.conn, p["watchers_table"])
        if not p["fallback2db"]:
            n = st.subs.load()
            if n:
                rt.log.info(f"presence: {n} subscription(s) restored from "
                            f"{p['active_watchers_table']}", "presence")
    else:
        st.pres, st.subs, st.watchers = MemoryPresentities(), Subscriptions(), Watchers()
    if p["clean_period"] > 0:
        rt.timers.append((p["clean_period"], lambda: clean(st)))
    if url and p["db_update_period"] > 0 and not p["fallback2db"]:
        rt.timers.append((p["db_update_period"], lambda: _sync(st)))
    rt.stats_groups = getattr(rt, "stats_groups", {})
    rt.stats_groups["presence"] = st.stats


def child_init(rt):
    st = state(rt)
    if not st.events.events:
        rt.log.warning("presence: no event package is registered (load presence_xml, "
                       "presence_mwi or presence_dialoginfo)", "presence")
    fr = (rt.modparams.get("tm") or {}).get("fr_timeout") or 5
    st.uac = NotifyUAC(rt, float(fr))


def destroy(rt):
    st = _STATES.get(rt)
    if st is not None:
        _sync(st)


def _sync(st):
    try:
        st.subs.sync()
    except Exception as e:  # a DB that went away: keep serving from memory
        st.rt.log.error(f"presence: cannot update {st.param('active_watchers_table')}: {e}",
                        "presence")


# --- helpers -------------------------------------------------------------------------------

def _user_domain(uri: str):
    u = parse_uri(uri)
    if u is None:
        return "", uri.split(":", 1)[-1]
    return u.user or "", u.host or ""


def _uri(user, domain):
    return f"sip:{user}@{domain}" if user else f"sip:{domain}"


def _reply(ctx, code, reason, headers=()) -> bool:
    """Statefully when the request has a transaction, else statelessly (signaling)."""
    tm = ctx.rt.apis.get("tm")
    if tm is not None and (ctx.tx is not None or tm.find_transaction(ctx)):
        ctx.local_data.setdefault("reply_headers", []).extend(headers)
        return tm.t_reply(ctx, code, reason) > 0
    return send_local_reply(ctx, code, reason, headers=list(headers))


def _bad_event(ctx, st, text):
    ctx.rt.log.info(f"presence: missing or unsupported event '{text or ''}'", "presence")
    _reply(ctx, 489, "Bad Event", [f"Allow-Events: {st.events.names()}"]
           if st.events.events else [])
    return -1


def _expires(msg, default, maximum):
    """The Expires header (default when absent) capped at maximum; None when unreadable."""
    v = msg.get("expires")
    if v is None or not v.strip():
        n = default
    else:
        v = v.strip()
        if not v.isdigit():
            return None
        n = int(v)
    return min(n, maximum)


def _body(msg) -> str:
    try:
        return (msg.body or b"").decode("utf-8", "surrogateescape")
    except AttributeError:
        return ""


def _new_etag(st, n=0) -> str:
    st.counter += 1
    return f"a.{st.startup}.{os.getpid()}.{st.counter}.{n}"


def _next_etag(st, old: str) -> str:
    """A new entity tag for a refreshed/modified state (its last field counts PUBLISHes)."""
    tail = old.rsplit(".", 1)[-1]
    return _new_etag(st, int(tail) + 1 if tail.isdigit() else 1)


# --- PUBLISH (RFC 3903) --------------------------------------------------------------------

def handle_publish(ctx, sender=None):
    st = state(ctx.rt)
    msg = ctx.msg
    now = int(time.time())
    ev = parse_event(msg.get("event"))
    pkg = st.events.search(ev) if ev is not None else None
    if pkg is None or not pkg.type & PUBL_TYPE:
        return _bad_event(ctx, st, ev.text if ev else None)
    etag = msg.get("sip-if-match")
    etag = etag.strip() if etag else None
    expires = _expires(msg, pkg.default_expires, st.param("max_expires_publish"))
    if expires is None:
        _reply(ctx, 400, "Bad request")
        return -1
    ruri = parse_uri(ctx.ruri)
    if ruri is None or not ruri.host:
        _reply(ctx, 400, "Bad request")
        return -1
    user, domain = ruri.user or "", ruri.host
    body = _body(msg)
    if etag is None and not body:
        ctx.rt.log.info("presence: PUBLISH without an entity tag and without a body",
                        "presence")
        _reply(ctx, 400, "Invalid request")
        return -1
    sender_uri = ""
    if sender:
        su = parse_uri(str(sender).strip().strip("<>"))
        if su is None:
            _reply(ctx, 400, "Bad request")
            return -1
        sender_uri = str(sender).strip().strip("<>")
    if body and pkg.publ_handl is not None:
        err = pkg.publ_handl(ctx, body)
        if err:
            _reply(ctx, *err)
            return -1
    offset = st.param("expires_offset")
    try:
        if etag is None:
            p = Presentity(user, domain, pkg.name, _new_etag(st), now + expires, now, body,
                           sender_uri)
            st.pres.insert(p)
            _publ_ok(ctx, expires, offset, p.etag)
            publ_notify(st, pkg, user, domain, sender=sender_uri)
            return 1
        old = st.pres.find(user, domain, pkg.name, etag)
        if old is None:
            ctx.rt.log.info(f"presence: PUBLISH for {_uri(user, domain)} with an unknown "
                            f"entity tag '{etag}'", "presence")
            _reply(ctx, 412, "Conditional request failed")
            return -1
        if expires == 0:
            st.pres.delete(old)
            _publ_ok(ctx, 0, offset, etag)
            publ_notify(st, pkg, user, domain, sender=sender_uri, removed=old)
            return 1
        new = Presentity(user, domain, pkg.name,
                         etag if pkg.etag_not_new else _next_etag(st, etag), now + expires, now,
                         body if body else old.body, sender_uri, old.extra_hdrs)
        st.pres.update(new, etag)
        _publ_ok(ctx, expires, offset, new.etag)
        if body:
            publ_notify(st, pkg, user, domain, sender=sender_uri)
        return 1
    except DBError as e:
        return _db_failed(ctx, e)


def _db_failed(ctx, err) -> int:
    ctx.rt.log.error(f"presence: {err}", "presence")
    _reply(ctx, 500, "Server Internal Error")
    return -1


def _publ_ok(ctx, expires, offset, etag):
    _reply(ctx, 200, "OK", [f"Expires: {max(0, expires - offset)}", f"SIP-ETag: {etag}"])


# --- SUBSCRIBE (RFC 6665) ------------------------------------------------------------------

class _Refuse(Exception):
    def __init__(self, code, reason, headers=()):
        super().__init__(f"{code} {reason}")
        self.code, self.reason, self.headers = code, reason, list(headers)


def handle_subscribe(ctx, force_active=None, sharing_tag=None):
    st = state(ctx.rt)
    msg = ctx.msg
    ev = parse_event(msg.get("event"))
    pkg = st.events.search(ev) if ev is not None else None
    if pkg is None:
        return _bad_event(ctx, st, ev.text if ev else None)
    try:
        subs, initial = _dialog_info(ctx, st, pkg, ev)
        if pkg.subs_handl is not None:
            err = pkg.subs_handl(ctx)
            if err:
                raise _Refuse(*err)
        if initial:
            _authorize(st, pkg, subs, force_active)
        if sharing_tag:
            subs.sharing_tag = str(sharing_tag)
        _update_subscription(ctx, st, pkg, subs, initial)
    except _Refuse as r:
        ctx.rt.log.info(f"presence: SUBSCRIBE refused: {r}", "presence")
        _reply(ctx, r.code, r.reason, r.headers)
        return -1
    except DBError as e:
        return _db_failed(ctx, e)
    return 1


def _dialog_info(ctx, st, pkg, ev):
    """A Subscription filled from the SUBSCRIBE (and, in a dialog, from the stored one)."""
    msg = ctx.msg
    now = int(time.time())
    expires = _expires(msg, pkg.default_expires, st.param("max_expires_subscribe"))
    if expires is None:
        raise _Refuse(400, "Bad request")
    try:
        to, frm = msg.to, msg.from_
        callid = msg.call_id
        cseq = msg.cseq[0]
        contacts = msg.contacts
    except SIPError:
        raise _Refuse(400, "Bad request") from None
    tu, fu = parse_uri(to.uri), parse_uri(frm.uri)
    if tu is None or fu is None or not callid:
        raise _Refuse(400, "Bad request")
    if not frm.tag:
        raise _Refuse(400, "Bad request")
    contact = contacts[0].uri if contacts and contacts[0].uri != "*" else None
    initial = not to.tag
    if initial:
        if contact is None:
            raise _Refuse(400, "Bad request")
        if pkg.params and "sla" in pkg.params:
            cu = parse_uri(contact)
            pres_uri = _uri(cu.user if cu else "", fu.host)
        else:
            ru = parse_uri(ctx.ruri)
            if ru is None or not ru.host:
                raise _Refuse(400, "Bad request")
            pres_uri = _uri(ru.user, ru.host)
        rr = ", ".join(msg.get_all("record-route"))
        return Subscription(
            pres_uri=pres_uri, event=pkg.name, event_id=ev.id, to_user=tu.user or "",
            to_domain=tu.host, from_user=fu.user or "", from_domain=fu.host, callid=callid,
            to_tag=make_to_tag(msg), from_tag=frm.tag, contact=contact, remote_cseq=cseq,
            expires=now + expires, local_contact=_local_contact(ctx, st),
            socket_info=str(ctx.socket) if ctx.socket is not None else "",
            record_route=rr), True
    stored = st.subs.find(callid, to.tag, frm.tag)
    if stored is None or stored.event != pkg.name:
        raise _Refuse(481, "Subscription does not exist")
    if cseq <= stored.remote_cseq:
        ctx.rt.log.info(f"presence: SUBSCRIBE with an old CSeq ({cseq}, "
                        f"stored {stored.remote_cseq})", "presence")
        raise _Refuse(400, "Bad request")
    stored.remote_cseq = cseq
    if contact is not None:
        stored.contact = contact
    stored.expires = now + expires
    return stored, False


def _local_contact(ctx, st) -> str:
    server = st.param("server_address")
    if server:
        return server
    sock = ctx.socket
    if sock is None:
        host, port, proto = "127.0.0.1", 5060, "udp"
    else:
        host, port, proto = sock.via_host, sock.via_port, sock.proto
    user = st.param("contact_user")
    uri = f"sip:{user}@{host}:{port}" if user else f"sip:{host}:{port}"
    if proto != "udp":
        uri += f";transport={proto}"
    return uri


def _authorize(st, pkg, subs, force_active):
    """The state of a new subscription: active unless the package needs the presentity's
    consent (presence_xml without force_active), then what its rules say."""
    if not pkg.req_auth or force_active == 1:
        subs.status, subs.reason = ACTIVE, ""
        return
    w = st.watchers.get(subs.pres_uri, subs.from_user, subs.from_domain, pkg.name)
    if w is not None:
        subs.status, subs.reason = w.status, w.reason
        return
    subs.status, subs.reason = _auth_status(pkg, subs)
    st.watchers.put(WatcherAuth(subs.pres_uri, subs.from_user, subs.from_domain, pkg.name,
                                subs.status, subs.reason, int(time.time())))


def _auth_status(pkg, subs):
    rules = None
    if pkg.get_rules_doc is not None:
        user, domain = _user_domain(subs.pres_uri)
        rules = pkg.get_rules_doc(user, domain)
    if pkg.get_auth_status is None:
        return ACTIVE, ""
    return pkg.get_auth_status(subs, rules)


def _update_subscription(ctx, st, pkg, subs, initial):
    now = int(time.time())
    offset = st.param("expires_offset")
    lexpire = max(0, subs.expires - now)
    code = (202 if subs.status == PENDING else 200) if pkg.type & PUBL_TYPE else 200
    headers = [f"Expires: {lexpire}", f"Contact: <{subs.local_contact}>"]
    terminated = None
    if not initial:
        if lexpire == 0:
            st.subs.delete(subs)
            terminated = "timeout"
        else:
            subs.expires += offset
            st.subs.changed(subs)
        if not _reply(ctx, code, "OK", headers):
            raise _Refuse(500, "Server Internal Error")
    else:
        # the To tag of our reply is the one the dialog was given (make_to_tag)
        if not _reply(ctx, code, "OK", headers):
            raise _Refuse(500, "Server Internal Error")
        if subs.status == TERMINATED:
            terminated = subs.reason or "rejected"
        elif lexpire == 0:
            terminated = "timeout"           # a fetch (RFC 6665 4.4.3): one NOTIFY
        else:
            subs.expires += offset
            st.subs.insert(subs)
    if pkg.type & PUBL_TYPE and pkg.wipeer is not None:
        notify_winfo(st, pkg, subs.pres_uri)
    send_notify(st, pkg, subs, terminated=terminated)


# --- NOTIFY --------------------------------------------------------------------------------

def resource_body(st, pkg, user, domain, removed=None):
    """The state notified for a resource: its published states (aggregated when the
    package does), an offline body for a state just removed, or a dummy body."""
    states = st.pres.states(user, domain, pkg.name)
    bodies = [p.body for p in states if p.body]
    if pkg.extra_bodies is not None:
        bodies = [b for b in pkg.extra_bodies(user, domain) if b] + bodies
    if not bodies:
        if removed is not None and removed.body and pkg.offline_body is not None:
            return pkg.offline_body(removed.body)
        if st.param("notify_offline_body") and pkg.dummy_body is not None:
            return pkg.dummy_body(user, domain)
        return None
    if pkg.agg_nbody is not None:
        body = pkg.agg_nbody(user, domain, bodies)
        if body is not None:
            return body
    return bodies[-1]


def winfo_body(st, winfo_pkg, subs):
    """A watcherinfo document (RFC 3857/3858, full state) of the resource's watchers."""
    from xml.sax.saxutils import escape, quoteattr
    base = winfo_pkg.wipeer
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             f'<watcherinfo xmlns="urn:ietf:params:xml:ns:watcherinfo" '
             f'version="{subs.version}" state="full">']
    if base is not None:
        lines.append(f'  <watcher-list resource={quoteattr(subs.pres_uri)} '
                     f'package={quoteattr(base.name)}>')
        seen = set()
        for s in st.subs.watchers_of(subs.pres_uri, base.name):
            who = (s.from_user, s.from_domain)
            if who in seen:
                continue
            seen.add(who)
            status = STATUS_NAMES.get(s.status, "pending")
            event = "subscribe" if s.status in (ACTIVE, PENDING, WAITING) else \
                (s.reason or "rejected")
            wid = _watcher_id(s.callid, s.from_tag)
            lines.append(f'    <watcher id="{wid}" event="{escape(event)}" '
                         f'status="{status}">{escape(s.watcher_uri)}</watcher>')
        for w in st.watchers.of(subs.pres_uri, base.name):
            if (w.user, w.domain) in seen:
                continue
            seen.add((w.user, w.domain))
            status = STATUS_NAMES.get(w.status, "pending")
            wid = _watcher_id(w.user, w.domain)
            event = "subscribe" if w.status != TERMINATED else (w.reason or "rejected")
            lines.append(f'    <watcher id="{wid}" event="{escape(event)}" '
                         f'status="{status}">{escape(_uri(w.user, w.domain))}</watcher>')
        lines.append("  </watcher-list>")
    lines.append("</watcherinfo>")
    return "\n".join(lines) + "\n"


def _watcher_id(*parts) -> str:
    import hashlib
    return hashlib.md5("\0".join(parts).encode("utf-8", "surrogateescape")).hexdigest()[:10]


def send_notify(st, pkg, subs, *, body=False, terminated=None) -> bool:
    """Send the NOTIFY of one subscription with the current state (or `body`), ending the
    dialog when `terminated` gives a reason."""
    rt = st.rt
    now = int(time.time())
    if rt.server is None or rt.server.loop is None or st.uac is None:
        return False
    offset = st.param("expires_offset")
    left = max(0, subs.expires - now - offset)
    if terminated:
        line = f"terminated;reason={terminated}"
    elif subs.status == ACTIVE:
        line = f"active;expires={left}"
    elif subs.status in (PENDING, WAITING):
        line = f"pending;expires={left}"
    else:
        line = f"terminated;reason={subs.reason or 'rejected'}"
    content = None
    if body is False:
        body = None
        if pkg.type & WINFO_TYPE:
            body = winfo_body(st, pkg, subs)
        elif subs.status == ACTIVE:
            user, domain = _user_domain(subs.pres_uri)
            body = resource_body(st, pkg, user, domain)
    if body and subs.status == ACTIVE and pkg.apply_auth_nbody is not None and pkg.req_auth:
        body = pkg.apply_auth_nbody(body, subs, None)
    if body and pkg.aux_body_processing is not None:
        body = pkg.aux_body_processing(subs, body)
    if body:
        content = pkg.content_type
    _, _, hop = dialog_route(subs)
    target = destination(hop)
    if target is None:
        rt.log.error(f"presence: cannot resolve '{hop}' to NOTIFY {subs.watcher_uri}",
                     "presence")
        return False
    proto, ip, port = target
    sock = st.uac.socket_for(subs.socket_info, proto, ip)
    if sock is None:
        rt.log.error(f"presence: no {proto} socket to NOTIFY {subs.watcher_uri}", "presence")
        return False
    branch = st.uac.new_branch()
    data = build_notify(subs, sock, branch, state_line=line, body=body or "",
                        content_type=content)
    subs.local_cseq += 1
    subs.version += 1
    if not terminated:
        st.subs.changed(subs)
    st.stats["notifies_sent"] += 1
    return st.uac.send(data, sock, (ip, port), branch,
                       lambda reply: _notify_reply(st, pkg, subs, reply, terminated))


def _notify_reply(st, pkg, subs, reply, terminated):
    code = reply.status if reply is not None else 408
    if code < 300:
        return
    st.stats["notify_failures"] += 1
    st.rt.log.info(f"presence: NOTIFY to {subs.watcher_uri} ({subs.event}) answered {code}",
                   "presence")
    if terminated:
        return
    if code == 481 or (code == 408 and st.param("end_sub_on_timeout")):
        if st.subs.by_key.get(subs.key) is subs:
            st.subs.delete(subs)
            if pkg.type & PUBL_TYPE and pkg.wipeer is not None:
                notify_winfo(st, pkg, subs.pres_uri)


def publ_notify(st, pkg, user, domain, *, sender="", removed=None):
    """The state of a resource changed: NOTIFY its active watchers (not `sender`)."""
    pres_uri = _uri(user, domain)
    subs = [s for s in st.subs.watchers_of(pres_uri, pkg.name) if s.status == ACTIVE]
    if not subs:
        return 0
    body = resource_body(st, pkg, user, domain, removed=removed)
    n = 0
    for s in subs:
        if sender and _same_uri(s.contact, sender):
            continue
        if send_notify(st, pkg, s, body=body):
            n += 1
    return n


def _same_uri(a, b):
    ua, ub = parse_uri(a), parse_uri(b)
    if ua is None or ub is None:
        return a == b
    return (ua.user, ua.host.lower(), ua.port or 5060) == (ub.user, ub.host.lower(),
                                                            ub.port or 5060)


def notify_winfo(st, pkg, pres_uri):
    """The watchers of a resource changed: NOTIFY its watcher-information subscribers."""
    winfo = pkg.wipeer
    if winfo is None:
        return
    for s in st.subs.watchers_of(pres_uri, winfo.name):
        if s.status == ACTIVE:
            send_notify(st, winfo, s)


def update_watchers_status(st, pres_uri, pkg) -> int:
    """Re-evaluate the authorization of every watcher of a resource (its rules changed),
    store it, and NOTIFY the dialogs whose state changed."""
    if not pkg.req_auth:
        return 1
    changed = 0
    for w in st.watchers.of(pres_uri, pkg.name):
        probe = Subscription(pres_uri, pkg.name, None, "", "", w.user, w.domain, "", "", "",
                             "", 0, 0, "", "")
        status, reason = _auth_status(pkg, probe)
        if (status, reason) != (w.status, w.reason):
            w.status, w.reason = status, reason
            st.watchers.put(w)
    for s in list(st.subs.watchers_of(pres_uri, pkg.name)):
        status, reason = _auth_status(pkg, s)
        if (status, reason) == (s.status, s.reason):
            continue
        changed += 1
        s.status, s.reason = status, reason
        if status == TERMINATED:
            st.subs.delete(s)
            send_notify(st, pkg, s, terminated=reason or "rejected")
        else:
            st.subs.changed(s)
            send_notify(st, pkg, s)
    if changed and pkg.wipeer is not None:
        notify_winfo(st, pkg, pres_uri)
    return 1


# --- timers --------------------------------------------------------------------------------

def clean(st):
    """Expired published states (their watchers are told) and subscriptions (ended with a
    NOTIFY terminated;reason=timeout), old pending authorizations."""
    now = int(time.time())
    try:
        for p in st.pres.expired(now):
            st.pres.delete(p)
            pkg = st.events.find(p.event)
            if pkg is not None:
                publ_notify(st, pkg, p.user, p.domain, removed=p)
        for s in st.subs.expired(now):
            st.subs.delete(s)
            pkg = st.events.find(s.event)
            if pkg is None:
                continue
            if pkg.mandatory_timeout_notification:
                s.expires = now
                send_notify(st, pkg, s, terminated="timeout")
            if pkg.type & PUBL_TYPE and pkg.wipeer is not None:
                notify_winfo(st, pkg, s.pres_uri)
        days = st.param("waiting_subs_daysno")
        st.watchers.clean_pending(now - days * 86400)
    except DBError as e:
        st.rt.log.error(f"presence: clean-up: {e}", "presence")


# --- Kamailio script functions -------------------------------------------------------------

def pres_update_watchers(ctx, uri, event):
    """The presentity's authorization rules changed: re-evaluate its watchers."""
    st = state(ctx.rt)
    pkg = st.events.find(event)
    if pkg is None:
        return -1
    return update_watchers_status(st, uri, pkg)


def pres_refresh_watchers(ctx, uri, event, kind, file_uri=None, filename=None):
    """Notify the watchers: after a rules change (type 0) or a state change (others)."""
    st = state(ctx.rt)
    pkg = st.events.find(event)
    if pkg is None:
        return -1
    if kind == 0:
        return update_watchers_status(st, uri, pkg)
    user, domain = _user_domain(uri)
    publ_notify(st, pkg, user, domain)
    return 1


# --- MI ------------------------------------------------------------------------------------

def mi_refresh_watchers(rt, pres_uri: str, event: str, refresh_type: int):
    """Notify the watchers of a presentity: after its authorization rules changed
    (refresh_type 0) or its published state was changed directly (any other)."""
    from runtime.mi import MIError
    st = state(rt)
    pkg = st.events.find(event)
    if pkg is None:
        raise MIError(400, f"unknown event '{event}'")
    if refresh_type == 0:
        update_watchers_status(st, pres_uri, pkg)
    else:
        user, domain = _user_domain(pres_uri)
        publ_notify(st, pkg, user, domain)
    return "OK"


def mi_cleanup(rt):
    """Run the clean-up of expired states and subscriptions now."""
    st = state(rt)
    clean(st)
    _sync(st)
    return "OK"


def mi_phtable_list(rt):
    """The published states."""
    st = state(rt)
    return {"Presentities": [{"pres_uri": p.uri, "event": p.event, "etag": p.etag,
                              "expires": p.expires, "sender": p.sender}
                             for p in st.pres.all()]}


def mi_subs_list(rt):
    """The subscription dialogs."""
    st = state(rt)
    return {"Subscriptions": [{
        "pres_uri": s.pres_uri, "event": s.event, "event_id": s.event_id or "",
        "from_user": s.from_user, "from_domain": s.from_domain, "to_user": s.to_user,
        "to_domain": s.to_domain, "callid": s.callid, "to_tag": s.to_tag,
        "from_tag": s.from_tag, "contact": s.contact, "local_contact": s.local_contact,
        "record_route": s.record_route, "expires": s.expires,
        "status": STATUS_NAMES.get(s.status, str(s.status)), "reason": s.reason,
        "version": s.version, "local_cseq": s.local_cseq, "remote_cseq": s.remote_cseq,
        "socket_info": s.socket_info, "sharing_tag": s.sharing_tag or ""}
        for s in st.subs.all()]}


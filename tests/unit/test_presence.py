"""presence + presence_xml: PUBLISH (RFC 3903) and SUBSCRIBE (RFC 6665) through a script's
main route, the replies and the NOTIFYs the proxy would have sent, watcher authorization
(pres-rules in an xcap table), expiry, watcher information, storage in SQLite.

Nothing goes on the network: a stand-in server keeps what would have been sent, and its
loop keeps the timers (NOTIFY retransmissions) without running them.
"""
import sqlite3
import time

import pytest
from cfgscript import parse_text

from runtime import db
from runtime.context import Context, ScriptExit
from runtime.engine import Socket
from runtime.loader import load_script
from runtime.sip.message import Message

BASE = """
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "db_sqlite.so"
{modules}
loadmodule "presence.so"
loadmodule "presence_xml.so"
{params}
route {{
    if (!t_newtran()) {{ sl_reply_error(); exit; }}
    if ($rm == "PUBLISH") {{
        $var(rc) = handle_publish({pub_args});
    }} else if ($rm == "SUBSCRIBE") {{
        $var(rc) = handle_subscribe({sub_args});
    }}
    exit;
}}
"""

PIDF = """<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@example.com">
  <tuple id="{tid}"><status><basic>{basic}</basic></status><note>{note}</note></tuple>
</presence>"""


class Handle:
    def __init__(self):
        self.cancelled = False

    def cancel(self):
        self.cancelled = True


class Loop:
    def __init__(self):
        self.later = []

    def call_later(self, delay, fn, *args):
        h = Handle()
        self.later.append((delay, fn, args, h))
        return h

    def call_at(self, when, fn, *args):
        return self.call_later(when - self.time(), fn, *args)

    def call_soon(self, fn, *args):
        fn(*args)

    @staticmethod
    def time():
        return time.monotonic()


class Wire:
    """Stands in for the server: keeps what would have been sent."""

    def __init__(self):
        self.sent = []
        self.loop = Loop()
        self.reply_hook = None

    def send(self, sock, addr, data):
        self.sent.append((addr, Message.parse(data)))
        return True


class Proxy:
    def __init__(self, params="", modules="", pub_args="", sub_args=""):
        text = BASE.format(params=params, modules=modules, pub_args=pub_args,
                           sub_args=sub_args)
        loaded = load_script(parse_text(text, "t.cfg"))
        errors = [str(d) for d in loaded.diagnostics if d.severity == "error"]
        assert not errors, errors
        self.rt = loaded.rt
        self.wire = Wire()
        self.rt.server = self.wire
        for mod in self.rt.modules.values():
            if mod.init:
                mod.init(self.rt)
        for mod in self.rt.modules.values():
            if mod.child_init:
                mod.child_init(self.rt)
        self.n = 0

    @property
    def st(self):
        from modules.presence import state
        return state(self.rt)

    def run(self, text, src=("10.0.0.9", 5062)):
        """Run the main route; returns (the reply, the NOTIFYs sent) for this request."""
        self.n += 1
        head, _, data = text.partition("\n\n")
        head = head.replace("BRANCH", f"z9hG4bK-t{self.n}").replace("\n", "\r\n")
        ctx = Context(self.rt, Message.parse((head + "\r\n\r\n" + data).encode()), src=src,
                      socket=self.rt.sockets[0])
        before = len(self.wire.sent)
        try:
            self.rt.routes[("route", None)](ctx)
        except ScriptExit:
            pass
        sent = [m for _, m in self.wire.sent[before:]]
        replies = [m for m in sent if not m.is_request]
        notifies = [m for m in sent if m.is_request]
        return (replies[-1] if replies else None), notifies

    def publish(self, body=None, etag=None, expires=None, event="presence", user="alice",
                extra=""):
        lines = [f"PUBLISH sip:{user}@example.com SIP/2.0",
                 "Via: SIP/2.0/UDP 10.0.0.9:5062;branch=BRANCH",
                 f"From: <sip:{user}@example.com>;tag=p1", f"To: <sip:{user}@example.com>",
                 "Call-ID: pub-1", f"CSeq: {self.n + 1} PUBLISH", "Max-Forwards: 70"]
        if event:
            lines.append(f"Event: {event}")
        if expires is not None:
            lines.append(f"Expires: {expires}")
        if etag:
            lines.append(f"SIP-If-Match: {etag}")
        if extra:
            lines.append(extra)
        data = body or ""
        if data:
            lines.append("Content-Type: application/pidf+xml")
        lines.append(f"Content-Length: {len(data.encode())}")
        return self.run("\n".join(lines) + "\n\n" + data)

    def subscribe(self, watcher="bob", to_tag=None, cseq=1, expires=None, event="presence",
                  callid="sub-1", ftag="w1", extra="", user="alice", contact=None):
        to = f"<sip:{user}@example.com>" + (f";tag={to_tag}" if to_tag else "")
        lines = [f"SUBSCRIBE sip:{user}@example.com SIP/2.0",
                 "Via: SIP/2.0/UDP 10.0.0.9:5062;branch=BRANCH",
                 f"From: <sip:{watcher}@example.com>;tag={ftag}", f"To: {to}",
                 f"Call-ID: {callid}", f"CSeq: {cseq} SUBSCRIBE",
                 f"Contact: <{contact or f'sip:{watcher}@10.0.0.9:5062'}>", "Max-Forwards: 70"]
        if event:
            lines.append(f"Event: {event}")
        if expires is not None:
            lines.append(f"Expires: {expires}")
        if extra:
            lines.append(extra)
        lines.append("Content-Length: 0")
        return self.run("\n".join(lines) + "\n\n")


def body(msg):
    return msg.body.decode()


@pytest.fixture(autouse=True)
def _close_dbs():
    yield
    db.close_all()


@pytest.fixture
def proxy():
    return Proxy('modparam("presence_xml", "force_active", 1)')


# --- PUBLISH -----------------------------------------------------------------------------------

def test_publish_new_refresh_modify_remove(proxy):
    reply, _ = proxy.publish(PIDF.format(tid="t1", basic="open", note="x"), expires=600)
    assert reply.status == 200 and reply.get("expires") == "600"
    etag1 = reply.get("sip-etag")
    assert etag1
    assert proxy.rt.routes  # the state is there
    [p] = proxy.st.pres.all()
    assert (p.user, p.domain, p.event, p.etag) == ("alice", "example.com", "presence", etag1)
    # refresh: no body, a new entity tag, the body kept
    reply, _ = proxy.publish(etag=etag1, expires=300)
    etag2 = reply.get("sip-etag")
    assert reply.status == 200 and etag2 != etag1 and reply.get("expires") == "300"
    [p] = proxy.st.pres.all()
    assert p.etag == etag2 and "<note>x</note>" in p.body
    # the old tag is gone
    reply, _ = proxy.publish(etag=etag1)
    assert (reply.status, reply.reason) == (412, "Conditional request failed")
    # modify
    reply, _ = proxy.publish(PIDF.format(tid="t1", basic="closed", note="y"), etag=etag2)
    etag3 = reply.get("sip-etag")
    assert reply.status == 200 and "<note>y</note>" in proxy.st.pres.all()[0].body
    # remove
    reply, _ = proxy.publish(etag=etag3, expires=0)
    assert reply.status == 200 and reply.get("expires") == "0"
    assert proxy.st.pres.all() == []


def test_publish_errors(proxy):
    reply, _ = proxy.publish()                                  # no tag, no body
    assert (reply.status, reply.reason) == (400, "Invalid request")
    reply, _ = proxy.publish("<x>", event="presence")           # not XML
    assert reply.status == 415
    reply, _ = proxy.publish(PIDF, event="message-summary")     # nobody registered it
    assert reply.status == 489
    assert reply.get("allow-events") == "presence, presence.winfo"
    reply, _ = proxy.publish(PIDF, event=None)
    assert reply.status == 489
    reply, _ = proxy.publish(PIDF, event="presence.winfo")      # not published
    assert reply.status == 489
    reply, _ = proxy.publish(PIDF.format(tid="t", basic="open", note=""), expires="soon")
    assert reply.status == 400


def test_publish_expires_capped_and_offset():
    p = Proxy('modparam("presence_xml", "force_active", 1)\n'
              'modparam("presence", "max_expires_publish", 100)\n'
              'modparam("presence", "expires_offset", 10)')
    reply, _ = p.publish(PIDF.format(tid="t", basic="open", note=""), expires=7200)
    assert reply.get("expires") == "90"
    [st] = p.st.pres.all()
    assert 99 <= st.expires - time.time() <= 100
    reply, _ = p.publish(PIDF.format(tid="t", basic="open", note=""))   # the default 3600
    assert reply.get("expires") == "90"


# --- SUBSCRIBE ---------------------------------------------------------------------------------

def test_subscribe_gets_200_and_a_notify_with_the_state(proxy):
    proxy.publish(PIDF.format(tid="t1", basic="open", note="here"), expires=600)
    reply, [notify] = proxy.subscribe(expires=300, extra="Record-Route: <sip:10.0.0.5;lr>")
    assert reply.status == 200 and reply.get("expires") == "300"
    assert reply.get("contact") == "<sip:presence@127.0.0.1:5060>"
    to_tag = reply.to.tag
    assert to_tag
    assert notify.method == "NOTIFY" and notify.ruri == "sip:bob@10.0.0.9:5062"
    assert notify.get("route") == "<sip:10.0.0.5;lr>"
    addr = proxy.wire.sent[-1][0]
    assert addr == ("10.0.0.5", 5060)                         # the first route
    assert notify.from_.tag == to_tag and notify.to.tag == "w1"
    assert notify.from_.uri == "sip:alice@example.com"
    assert notify.to.uri == "sip:bob@example.com"
    assert notify.call_id == "sub-1" and notify.cseq == (1, "NOTIFY")
    assert notify.get("event") == "presence"
    assert notify.get("subscription-state").startswith("active;expires=")
    assert notify.get("content-type") == "application/pidf+xml"
    assert "<note>here</note>" in body(notify)
    # a new state reaches the watcher
    etag = proxy.st.pres.all()[0].etag
    _, [n2] = proxy.publish(PIDF.format(tid="t1", basic="closed", note="gone"), etag=etag)
    assert "<note>gone</note>" in body(n2) and n2.cseq == (2, "NOTIFY")
    # a refresh in the dialog
    reply, [n3] = proxy.subscribe(to_tag=to_tag, cseq=2, expires=600)
    assert reply.status == 200 and reply.get("expires") == "600" and reply.to.tag == to_tag
    assert n3.get("subscription-state") in ("active;expires=600", "active;expires=599")
    # the same CSeq again: 400
    reply, notifies = proxy.subscribe(to_tag=to_tag, cseq=2, expires=600)
    assert reply.status == 400 and not notifies
    # unsubscribe: a last NOTIFY, terminated
    reply, [n4] = proxy.subscribe(to_tag=to_tag, cseq=3, expires=0)
    assert reply.status == 200 and reply.get("expires") == "0"
    assert n4.get("subscription-state") == "terminated;reason=timeout"
    assert "<note>gone</note>" in body(n4)
    assert len(proxy.st.subs) == 0
    # gone: 481
    reply, _ = proxy.subscribe(to_tag=to_tag, cseq=4, expires=600)
    assert (reply.status, reply.reason) == (481, "Subscription does not exist")


def test_subscribe_errors(proxy):
    reply, _ = proxy.subscribe(event=None)
    assert reply.status == 489 and "presence" in reply.get("allow-events")
    reply, _ = proxy.subscribe(event="message-summary")
    assert reply.status == 489
    reply, _ = proxy.subscribe(ftag="")
    assert reply.status == 400
    reply, _ = proxy.subscribe(expires="x")
    assert reply.status == 400


def test_fetch_and_no_state(proxy):
    reply, [n] = proxy.subscribe(expires=0)             # a fetch: one NOTIFY, no dialog
    assert reply.status == 200
    assert n.get("subscription-state") == "terminated;reason=timeout"
    assert not n.body and len(proxy.st.subs) == 0


def test_expires_capped_and_event_id(proxy):
    reply, [n] = proxy.subscribe(expires=100000, event="presence;id=17")
    assert reply.get("expires") == "3600"
    assert n.get("event") == "presence;id=17"


def test_sender_is_not_notified(proxy):
    proxy.subscribe(expires=300, contact="sip:alice-phone@10.0.0.7")
    proxy.subscribe(expires=300, watcher="carol", callid="sub-2", ftag="w2")
    _, notifies = proxy.publish(PIDF.format(tid="t", basic="open", note=""),
                                extra="Sender: sip:alice-phone@10.0.0.7")
    # the script passes no sender: both are notified
    assert len(notifies) == 2
    p = Proxy('modparam("presence_xml", "force_active", 1)', pub_args='"$hdr(Sender)"')
    p.subscribe(expires=300, contact="sip:alice-phone@10.0.0.7")
    p.subscribe(expires=300, watcher="carol", callid="sub-2", ftag="w2")
    _, notifies = p.publish(PIDF.format(tid="t", basic="open", note=""),
                            extra="Sender: sip:alice-phone@10.0.0.7")
    assert [n.to.uri for n in notifies] == ["sip:carol@example.com"]


def test_aggregation_of_two_devices(proxy):
    proxy.publish(PIDF.format(tid="phone", basic="open", note="p"))
    proxy.publish(PIDF.format(tid="laptop", basic="closed", note="l"))
    _, [n] = proxy.subscribe(expires=60)
    text = body(n)
    assert 'id="phone"' in text and 'id="laptop"' in text
    assert text.index('id="laptop"') < text.index('id="phone"')        # newest first
    assert 'entity="sip:alice@example.com"' in text


def test_notify_reply_481_ends_the_subscription(proxy):
    reply, [n] = proxy.subscribe(expires=60)
    assert len(proxy.st.subs) == 1
    resp = Message.parse((f"SIP/2.0 481 Gone\r\nVia: {n.get('via')}\r\nFrom: {n.get('from')}\r\n"
                          f"To: {n.get('to')}\r\nCall-ID: {n.call_id}\r\n"
                          f"CSeq: {n.get('cseq')}\r\nContent-Length: 0\r\n\r\n").encode())
    assert proxy.wire.reply_hook(Context(proxy.rt, resp))
    assert len(proxy.st.subs) == 0


def test_expiry(proxy):
    from modules.presence import clean
    proxy.publish(PIDF.format(tid="t9", basic="open", note="soon gone"), expires=600)
    reply, _ = proxy.subscribe(expires=600)
    [s] = proxy.st.subs.all()
    [p] = proxy.st.pres.all()
    # the published state expires: the watcher gets it closed
    p.expires = int(time.time()) - 1
    before = len(proxy.wire.sent)
    clean(proxy.st)
    [(_, n)] = proxy.wire.sent[before:]
    assert "<basic>closed</basic>" in body(n) and 'id="t9"' in body(n)
    assert "soon gone" not in body(n)
    # the subscription expires: terminated;reason=timeout
    s.expires = int(time.time()) - 1
    before = len(proxy.wire.sent)
    clean(proxy.st)
    [(_, n)] = proxy.wire.sent[before:]
    assert n.get("subscription-state") == "terminated;reason=timeout"
    assert len(proxy.st.subs) == 0


def test_watcher_info(proxy):
    reply, [n] = proxy.subscribe(watcher="alice", event="presence.winfo", callid="wi",
                                 ftag="a1", expires=600)
    assert reply.status == 200
    assert n.get("content-type") == "application/watcherinfo+xml"
    assert "<watcher-list" in body(n) and "bob" not in body(n)
    reply, notifies = proxy.subscribe(expires=600)
    winfo = [m for m in notifies if m.get("event") == "presence.winfo"]
    assert len(winfo) == 1
    text = body(winfo[0])
    assert 'resource="sip:alice@example.com"' in text and 'package="presence"' in text
    assert 'status="active"' in text and "sip:bob@example.com</watcher>" in text
    assert 'version="1"' in text


# --- authorization (force_active 0, pres-rules) --------------------------------------------------

RULES = """<?xml version="1.0" encoding="UTF-8"?>
<cr:ruleset xmlns="urn:ietf:params:xml:ns:pres-rules"
    xmlns:cr="urn:ietf:params:xml:ns:common-policy">
  <cr:rule id="a"><cr:conditions><cr:identity><cr:one id="sip:bob@example.com"/></cr:identity>
    </cr:conditions><cr:actions><sub-handling>allow</sub-handling></cr:actions></cr:rule>
  <cr:rule id="b"><cr:conditions><cr:identity><cr:one id="sip:mallory@example.com"/>
    </cr:identity></cr:conditions><cr:actions><sub-handling>block</sub-handling></cr:actions>
  </cr:rule>
  <cr:rule id="c"><cr:conditions><cr:identity><cr:many domain="polite.example"/>
    </cr:identity></cr:conditions><cr:actions><sub-handling>polite-block</sub-handling>
  </cr:actions></cr:rule>
</cr:ruleset>"""


@pytest.fixture
def auth_proxy(tmp_path):
    path = tmp_path / "p.db"
    p = Proxy(f'modparam("xcap|presence", "db_url", "sqlite://{path}")\n'
              'modparam("xcap", "integrated_xcap_server", 1)',
              modules='loadmodule "xcap.so"')
    p.path = path
    return p


def _rules(path, doc=RULES):
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO xcap (username, domain, doc, doc_type, etag, source, doc_uri, "
                 "port) VALUES ('alice', 'example.com', ?, 2, 'e', 1, 'index', 0)", (doc,))
    conn.commit()
    conn.close()


def test_pending_without_rules_then_allowed(auth_proxy):
    p = auth_proxy
    p.publish(PIDF.format(tid="t", basic="open", note="secret"))
    reply, [n] = p.subscribe(expires=600)
    assert reply.status == 202
    assert n.get("subscription-state").startswith("pending;expires=") and not n.body
    assert sqlite3.connect(p.path).execute(
        "SELECT watcher_username, status FROM watchers").fetchall() == [("bob", 2)]
    _rules(p.path)
    from modules.presence import mi_refresh_watchers
    before = len(p.wire.sent)
    assert mi_refresh_watchers(p.rt, "sip:alice@example.com", "presence", 0) == "OK"
    [(_, n2)] = p.wire.sent[before:]
    assert n2.get("subscription-state").startswith("active") and "secret" in body(n2)
    assert sqlite3.connect(p.path).execute(
        "SELECT watcher_username, status FROM watchers").fetchall() == [("bob", 1)]


def test_rules_allow_block_polite_block(auth_proxy):
    p = auth_proxy
    _rules(p.path)
    p.publish(PIDF.format(tid="t", basic="open", note="secret"))
    reply, [n] = p.subscribe(expires=600)
    assert reply.status == 200 and "secret" in body(n)
    reply, [n] = p.subscribe(watcher="mallory", callid="m", ftag="m1", expires=600)
    assert reply.status == 200
    assert n.get("subscription-state") == "terminated;reason=rejected" and not n.body
    assert len(p.st.subs) == 1
    # polite-block: active, but alice looks offline
    lines = ["SUBSCRIBE sip:alice@example.com SIP/2.0",
             "Via: SIP/2.0/UDP 10.0.0.9:5062;branch=BRANCH",
             "From: <sip:eve@polite.example>;tag=e1", "To: <sip:alice@example.com>",
             "Call-ID: e", "CSeq: 1 SUBSCRIBE", "Contact: <sip:eve@10.0.0.9>",
             "Event: presence", "Expires: 600", "Content-Length: 0"]
    reply, [n] = p.run("\n".join(lines) + "\n\n")
    assert reply.status == 200 and n.get("subscription-state").startswith("active")
    assert "secret" not in body(n) and "<basic>closed</basic>" in body(n)


def test_force_active_argument(auth_proxy):
    p = Proxy(f'modparam("xcap|presence", "db_url", "sqlite://{auth_proxy.path}")',
              modules='loadmodule "xcap.so"', sub_args="1")
    reply, [n] = p.subscribe(expires=600)
    assert reply.status == 200 and n.get("subscription-state").startswith("active")


# --- storage ------------------------------------------------------------------------------------

def test_sqlite_tables_and_restart(tmp_path):
    path = tmp_path / "p.db"
    params = (f'modparam("presence", "db_url", "sqlite://{path}")\n'
              'modparam("presence_xml", "force_active", 1)')
    p = Proxy(params)
    reply, _ = p.publish(PIDF.format(tid="t", basic="open", note="stored"), expires=600)
    etag = reply.get("sip-etag")
    reply, _ = p.subscribe(expires=600)
    to_tag = reply.to.tag
    conn = sqlite3.connect(path)
    row = conn.execute("SELECT username, domain, event, etag, body FROM presentity").fetchone()
    assert row[:4] == ("alice", "example.com", "presence", etag) and "stored" in row[4]
    # subscriptions reach the table at the next update period (or at shutdown)
    assert conn.execute("SELECT COUNT(*) FROM active_watchers").fetchone()[0] == 0
    p.rt.modules["presence"].destroy(p.rt)
    row = conn.execute("SELECT presentity_uri, watcher_username, watcher_domain, event, "
                       "to_tag, from_tag, callid, status, local_cseq, contact, local_contact "
                       "FROM active_watchers").fetchone()
    assert row == ("sip:alice@example.com", "bob", "example.com", "presence", to_tag, "w1",
                   "sub-1", 1, 2, "sip:bob@10.0.0.9:5062", "sip:presence@127.0.0.1:5060")
    db.close_all()
    # a new process reads the dialog back: a refresh in it works
    p2 = Proxy(params)
    reply, [n] = p2.subscribe(to_tag=to_tag, cseq=2, expires=600)
    assert reply.status == 200 and "stored" in body(n) and n.cseq == (2, "NOTIFY")


def test_fallback2db_shares_dialogs_through_the_table(tmp_path):
    path = tmp_path / "p.db"
    params = (f'modparam("presence", "db_url", "sqlite://{path}")\n'
              'modparam("presence", "fallback2db", 1)\n'
              'modparam("presence_xml", "force_active", 1)')
    a = Proxy(params)
    reply, _ = a.subscribe(expires=600)
    b = Proxy(params)       # another process on the same database (tm's API is global: after)
    reply2, [n] = b.subscribe(to_tag=reply.to.tag, cseq=2, expires=600)
    assert reply2.status == 200 and n.cseq == (2, "NOTIFY")


# --- MI ----------------------------------------------------------------------------------------

def test_mi_lists(proxy):
    from modules.presence import mi_phtable_list, mi_subs_list
    proxy.publish(PIDF.format(tid="t", basic="open", note=""))
    proxy.subscribe(expires=60)
    [pres] = mi_phtable_list(proxy.rt)["Presentities"]
    assert pres["pres_uri"] == "sip:alice@example.com" and pres["event"] == "presence"
    [s] = mi_subs_list(proxy.rt)["Subscriptions"]
    assert (s["pres_uri"], s["status"], s["from_user"]) == ("sip:alice@example.com", "active",
                                                             "bob")


def test_check_only_needs_nothing():
    """-C loads the modules without a database (no init)."""
    loaded = load_script(parse_text(
        'loadmodule "presence.so"\nloadmodule "presence_xml.so"\n'
        'modparam("presence|presence_xml", "db_url", "mysql://u:p@db/opensips")\n'
        'modparam("presence", "server_address", "sip:10.0.0.1:5060")\n'
        'modparam("presence", "fallback2db", 1)\n'
        'route { handle_publish(); handle_subscribe(); handle_subscribe("1"); '
        'handle_publish("$hdr(Sender)"); }', "t.cfg"), check_only=True)
    assert loaded.ok, [str(d) for d in loaded.diagnostics]
    loaded = load_script(parse_text('loadmodule "presence_xml.so"\nroute { exit; }', "t.cfg"),
                         check_only=True)
    assert not loaded.ok
    assert any("needs module 'presence'" in str(d) for d in loaded.diagnostics)


def test_socket_contact():
    p = Proxy('modparam("presence_xml", "force_active", 1)\n'
              'modparam("presence", "contact_user", "")')
    p.rt.sockets[0] = Socket("tcp", "127.0.0.1", 5080)
    reply, _ = p.subscribe(expires=60)
    assert reply.get("contact") == "<sip:127.0.0.1:5080;transport=tcp>"
    p = Proxy('modparam("presence_xml", "force_active", 1)\n'
              'modparam("presence", "server_address", "sip:ps@10.1.1.1")')
    reply, [n] = p.subscribe(expires=60)
    assert reply.get("contact") == "<sip:ps@10.1.1.1>" == n.get("contact")

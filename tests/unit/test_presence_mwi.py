"""presence_mwi (message-summary bodies, RFC 3842), presence_dialoginfo (dialog-info merge and
versions, RFC 4235) and pua (PUBLISH on behalf of a resource: entity tags, refresh, 412)."""
import time

from cfgscript import parse_text

from modules import presence_dialoginfo as dlginfo
from modules.presence_mwi import check_summary
from runtime import db
from runtime.context import Context
from runtime.engine import Socket
from runtime.loader import load_script
from runtime.sip.message import Message


def test_message_summary_bodies():
    assert check_summary("Messages-Waiting: yes\r\nMessage-Account: sip:alice@vm\r\n"
                         "Voice-Message: 2/8 (0/2)\r\n")
    assert check_summary("messages-waiting: no\r\n")
    assert check_summary("Messages-Waiting: no")
    assert not check_summary("Voice-Message: 2/8\r\n")
    assert not check_summary("Messages-Waiting: maybe\r\n")
    assert not check_summary("Messages-Waiting: yes\r\nbad\x01line\r\n")
    assert not check_summary("")


D1 = """<?xml version="1.0"?>
<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="3" state="full"
  entity="sip:alice@example.com"><dialog id="a" direction="initiator"><state>early</state>
  </dialog></dialog-info>"""
D2 = """<?xml version="1.0"?>
<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="9" state="full"
  entity="sip:alice@example.com"><dialog id="b"><state>confirmed</state></dialog>
  </dialog-info>"""


def test_dialog_info_merge_and_version():
    out = dlginfo.aggregate("sip:alice@example.com", [D1, D2])
    assert out.count("<dialog ") == 2 and 'state="full"' in out
    single = dlginfo.aggregate("sip:alice@example.com", [D1, D2], single=True)
    assert single.count("<dialog ") == 1 and 'id="b"' in single       # confirmed wins
    assert 'version="7"' in dlginfo.set_version(out, 7)
    assert dlginfo.aggregate("sip:a@b", ["<broken"]) is None
    assert "<dialog-info" in dlginfo.empty("sip:a@b")


# --- the packages registered with presence --------------------------------------------------

def load(text):
    loaded = load_script(parse_text(text, "t.cfg"))
    assert loaded.ok, [str(d) for d in loaded.diagnostics]
    return loaded.rt


def test_packages_registered():
    rt = load('loadmodule "presence.so"\nloadmodule "presence_xml.so"\n'
              'loadmodule "presence_mwi.so"\nloadmodule "presence_dialoginfo.so"\n'
              'modparam("presence_xml", "disable_bla", 0)\nroute { exit; }')
    for mod in rt.modules.values():
        if mod.init:
            mod.init(rt)
    names = rt.apis["presence"].get_event_list(rt)
    assert names == "presence, presence.winfo, dialog;sla, message-summary, dialog"
    api = rt.apis["presence"]
    assert api.search_event(rt, "dialog;sla").content_type == "application/dialog-info+xml"
    assert api.search_event(rt, "dialog").agg_nbody is not None
    mwi = api.search_event(rt, "message-summary")
    assert mwi.publ_handl(None, "Messages-Waiting: yes\r\n") is None
    assert mwi.publ_handl(None, "nope") == (400, "Bad request")


# --- pua ------------------------------------------------------------------------------------

class Loop:
    def __init__(self):
        self.later = []

    def call_later(self, delay, fn, *args):
        h = _H()
        self.later.append((delay, fn, args, h))
        return h

    def call_soon(self, fn, *args):
        fn(*args)


class _H:
    def cancel(self):
        self.cancelled = True


class Wire:
    def __init__(self):
        self.sent = []
        self.loop = Loop()
        self.reply_hook = None

    def send(self, sock, addr, data):
        self.sent.append((addr, Message.parse(data)))
        return True


def reply_to(rt, req, code, headers=""):
    text = (f"SIP/2.0 {code} X\r\nVia: {req.get('via')}\r\nFrom: {req.get('from')}\r\n"
            f"To: {req.get('to')};tag=s\r\nCall-ID: {req.call_id}\r\nCSeq: {req.get('cseq')}\r\n"
            f"{headers}Content-Length: 0\r\n\r\n")
    return rt.server.reply_hook(Context(rt, Message.parse(text.encode())))


def test_pua_publishes_refreshes_and_starts_again_after_412(tmp_path):
    path = tmp_path / "pua.db"
    rt = load(f'loadmodule "pua.so"\nmodparam("pua", "db_url", "sqlite://{path}")\n'
              'modparam("pua", "update_period", 30)\nroute { exit; }')
    rt.sockets.append(Socket("udp", "127.0.0.1", 5060))
    rt.server = Wire()
    rt.modules["pua"].init(rt)
    api = rt.apis["pua"]
    codes = []
    assert api.send_publish(rt, "sip:alice@127.0.0.2:5070", "presence", "<presence/>",
                            expires=600, callback=lambda pub, code: codes.append(code))
    (addr, req), = rt.server.sent
    assert addr == ("127.0.0.2", 5070) and req.method == "PUBLISH"
    assert (req.get("event"), req.get("expires"), req.get("content-type")) == \
        ("presence", "600", "application/pidf+xml")
    assert req.get("sip-if-match") is None and req.body == b"<presence/>"
    assert reply_to(rt, req, 200, "SIP-ETag: e1\r\nExpires: 20\r\n")
    assert codes == [200]
    [pub] = api.publications(rt)
    assert pub.etag == "e1" and 19 <= pub.expires - time.time() <= 20
    # the timer refreshes it (it expires before the next pass): no body, the tag
    from modules.pua import _STATES, refresh
    refresh(_STATES[rt])
    _, req2 = rt.server.sent[-1]
    assert req2.get("sip-if-match") == "e1" and not req2.body
    assert int(req2.get("expires")) > 500
    # the server forgot it: 412, and an initial PUBLISH again with the body
    reply_to(rt, req2, 412)
    _, req3 = rt.server.sent[-1]
    assert req3.get("sip-if-match") is None and req3.body == b"<presence/>"
    reply_to(rt, req3, 200, "SIP-ETag: e2\r\n")
    # written to the pua table at shutdown
    rt.modules["pua"].destroy(rt)
    rows = db.connect(f"sqlite://{path}").query("pua")
    assert [(r["pres_uri"], r["etag"], r["event"]) for r in rows] == \
        [("sip:alice@127.0.0.2:5070", "e2", 1)]
    # remove it
    api.send_publish(rt, "sip:alice@127.0.0.2:5070", "presence", expires=0)
    _, req4 = rt.server.sent[-1]
    assert req4.get("expires") == "0" and req4.get("sip-if-match") == "e2"
    reply_to(rt, req4, 200)
    assert api.publications(rt) == []
    db.close_all()

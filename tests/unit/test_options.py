"""options: options_reply() answers an OPTIONS for the proxy with 200 OK and OpenSIPS's
Accept/Accept-Encoding/Accept-Language/Supported headers (empty ones left out), stops the
script, and refuses other methods and R-URIs with a user part. The wire here is a stand-in
for the sockets; tests/modules3 sends real OPTIONS with SIPp."""
import pytest

from cfgscript import parse_text
from runtime.context import Context, ScriptExit
from runtime.loader import load_script
from runtime.sip.message import Message


class Wire:
    def __init__(self):
        self.sent = []

    def send(self, sock, addr, data):
        self.sent.append(Message.parse(data))
        return True


def proxy(params="", modules='loadmodule "sl.so"\nloadmodule "signaling.so"\n'):
    src = (modules + 'loadmodule "options.so"\n' + params +
           'route {\n  options_reply();\n  $var(rc) = $rc;\n  $var(after) = 1;\n}\n')
    loaded = load_script(parse_text(src, "t.cfg"))
    assert loaded.ok, [str(d) for d in loaded.diagnostics]
    rt = loaded.rt
    for mod in rt.modules.values():
        if mod.init:
            mod.init(rt)
    rt.server = Wire()
    return rt


def send(rt, ruri="sip:127.0.0.1", method="OPTIONS"):
    text = (f"{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.7:5060;branch=z9hG4bKo1\r\n"
            f"From: <sip:ping@example.com>;tag=p1\r\nTo: <{ruri}>\r\nCall-ID: o-1\r\n"
            f"CSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n")
    ctx = Context(rt, Message.parse(text.encode()), src=("10.0.0.7", 5060),
                  socket=rt.sockets[0])
    rt.vars.clear()
    try:
        rt.routes[("route", None)](ctx)
    except ScriptExit:
        pass
    return rt.server.sent[-1] if rt.server.sent else None


def test_default_headers():
    rt = proxy()
    reply = send(rt)
    assert reply.status == 200 and reply.reason == "OK"
    assert reply.get("Accept") == "*/*" and reply.get("Accept-Language") == "en"
    assert reply.get("Accept-Encoding") is None and reply.get("Supported") is None
    assert "after" not in rt.vars            # the script stopped (options_reply returned 0)
    names = [h.name for h in reply.headers]
    assert names.index("Accept") < names.index("Accept-Language")


def test_configured_headers_in_order_with_sl_only():
    rt = proxy('modparam("options", "accept", "application/sdp, text/plain")\n'
               'modparam("options", "accept_encoding", "gzip")\n'
               'modparam("options", "accept_language", "")\n'
               'modparam("options", "support", "path, timer")\n',
               modules='loadmodule "sl.so"\n')
    reply = send(rt)
    assert reply.status == 200
    assert reply.get("Accept") == "application/sdp, text/plain"
    assert reply.get("Accept-Encoding") == "gzip" and reply.get("Supported") == "path, timer"
    assert reply.get("Accept-Language") is None
    names = [h.name for h in reply.headers if h.name in ("Accept", "Accept-Encoding",
                                                        "Supported")]
    assert names == ["Accept", "Accept-Encoding", "Supported"]


@pytest.mark.parametrize("ruri, method", [("sip:bob@127.0.0.1", "OPTIONS"),
                                          ("sip:127.0.0.1", "INFO")])
def test_refusals(ruri, method):
    rt = proxy()
    assert send(rt, ruri, method) is None
    assert rt.vars["rc"] == -1 and rt.vars["after"] == 1


def test_needs_a_reply_module():
    loaded = load_script(parse_text('loadmodule "options.so"\nroute { options_reply(); }',
                                    "t.cfg"))
    assert loaded.ok
    with pytest.raises(ValueError, match="signaling"):
        loaded.rt.modules["options"].init(loaded.rt)


def test_only_in_request_routes():
    loaded = load_script(parse_text('loadmodule "sl.so"\nloadmodule "options.so"\n'
                                    'route { exit; }\nonreply_route { options_reply(); }',
                                    "t.cfg"))
    assert any("cannot be used in onreply_route" in d.message for d in loaded.diagnostics)

"""uac_registrant: records from a real SQLite registrant table, the REGISTER it builds, the
expiry the registrar grants, when a record is due, the MI listing, start-up checks. (The
whole exchange with a registrar: tests/modules2/test_uac_registrant_live.py.)"""
import time

import pytest

from cfgscript import parse_text
from runtime import db
from runtime.engine import Socket
from runtime.loader import load_script
from runtime.sip.message import Message


@pytest.fixture
def rt(tmp_path):
    path = tmp_path / "r.db"
    loaded = load_script(parse_text(
        f'loadmodule "db_sqlite.so"\nloadmodule "uac_auth.so"\nloadmodule "uac_registrant.so"\n'
        f'modparam("uac_registrant", "db_url", "sqlite://{path}")\n'
        f'modparam("uac_registrant", "timer_interval", 8)\n'
        f'modparam("uac_registrant", "hash_size", 2)\nroute {{ exit; }}', "t.cfg"))
    assert loaded.ok, [str(d) for d in loaded.diagnostics]
    r = loaded.rt
    r.sockets.append(Socket("udp", "127.0.0.1", 5060))
    r.modules["uac_auth"].init(r)
    r.modules["uac_registrant"].init(r)
    r.modules["uac_registrant"].child_init(r)           # creates the table
    conn = db.connect(f"sqlite://{path}")
    conn.insert("registrant", {"registrar": "sip:reg.example:5070", "aor": "sip:pbx@example.com",
                               "username": "pbx", "password": "pw",
                               "binding_URI": "sip:pbx@127.0.0.1:5060",
                               "binding_params": ";reg-id=1", "expiry": 600})
    conn.insert("registrant", {"registrar": "sip:other.example",
                               "proxy": "sip:outbound.example",
                               "aor": "sip:trunk@other.example",
                               "third_party_registrant": "sip:admin@other.example",
                               "binding_URI": "sip:trunk@127.0.0.1", "state": 1})
    conn.insert("registrant", {"registrar": "", "aor": "sip:broken@x", "binding_URI": "sip:x"})
    from modules import uac_registrant
    assert uac_registrant.load()
    yield r
    db.close_all()


def test_records_and_the_register(rt):
    from modules import uac_registrant as m
    recs = m._state["records"]
    assert [r.aor for r in recs] == ["sip:pbx@example.com", "sip:trunk@other.example"]
    assert rt.timers[-1][0] == 2                         # 8 s over 4 buckets
    assert sum(len(b) for b in m._state["buckets"]) == 2
    a, b = recs
    assert (b.from_uri, b.proxy, b.enabled, b.expiry) == ("sip:admin@other.example",
                                                          "sip:outbound.example", False, 3600)
    a.cseq = 1
    data = m.build_register(a, rt.sockets[0], "z9hG4bK-x", 600, 'Authorization: Digest x="y"')
    req = Message.parse(data)
    assert req.method == "REGISTER" and req.ruri == "sip:reg.example:5070"
    assert req.get("to") == "<sip:pbx@example.com>"
    assert req.get("from").startswith("<sip:pbx@example.com>;tag=")
    assert req.get("contact") == "<sip:pbx@127.0.0.1:5060>;reg-id=1"
    assert (req.get("expires"), req.get("cseq")) == ("600", "1 REGISTER")
    assert req.get("authorization") == 'Digest x="y"'
    assert req.via1.branch == "z9hG4bK-x" and req.call_id == a.call_id


def test_granted_expiry_and_states(rt):
    from modules import uac_registrant as m
    a = m._state["records"][0]

    def ok(contact_line, expires_hdr=""):
        return Message.parse((
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK-x\r\n"
            f"From: <sip:pbx@example.com>;tag=1\r\nTo: <sip:pbx@example.com>;tag=2\r\n"
            f"Call-ID: {a.call_id}\r\nCSeq: 2 REGISTER\r\n{contact_line}{expires_hdr}"
            "Content-Length: 0\r\n\r\n").encode())
    reply = ok("Contact: <sip:someone@else>;expires=10, <sip:pbx@127.0.0.1:5060>;expires=120"
               "\r\n")
    assert m._granted_expiry(a, reply, 600) == 120
    assert m._granted_expiry(a, ok("", "Expires: 300\r\n"), 600) == 300
    a.state = m.REGISTERING
    m._on_reply(a, reply, 600)
    assert a.state == m.REGISTERED and 119 < a.expires_at - time.monotonic() <= 120
    now = time.monotonic()
    assert not m._due(a, now)                            # 120 s left, a pass takes 8
    assert m._due(a, a.expires_at - 5)
    a.state = m.AUTHENTICATING
    m._on_reply(a, Message.parse(bytes(reply.raw).replace(b"200 OK", b"401 Unauthorized")),
                600)
    assert a.state == m.WRONG_CREDENTIALS
    m._on_reply(a, None, 600)
    assert a.state == m.REGISTER_TIMEOUT and m._due(a, time.monotonic())
    m._on_reply(a, Message.parse(bytes(reply.raw).replace(b"200 OK", b"403 Forbidden")), 600)
    assert a.state == m.REGISTRAR_ERROR


def test_mi(rt):
    from modules import uac_registrant as m
    from runtime.mi import MIError
    listed = m.mi_reg_list(rt)["Records"]
    assert [(r["AOR"], r["state"], r["enabled"]) for r in listed] == [
        ("sip:pbx@example.com", "NOT_REGISTERED_STATE", "yes"),
        ("sip:trunk@other.example", "NOT_REGISTERED_STATE", "no")]
    assert m.mi_reg_enable(rt, "sip:trunk@other.example") == "OK"
    assert m._state["records"][1].enabled
    with pytest.raises(MIError):
        m.mi_reg_disable(rt, "sip:nobody@x")
    m._state["records"][0].state = m.REGISTERED
    assert m.mi_reg_reload(rt) == "OK"
    assert m._state["records"][0].state == m.REGISTERED   # kept across a reload


def test_start_up_checks(tmp_path):
    loaded = load_script(parse_text(
        'loadmodule "uac_registrant.so"\nmodparam("uac_registrant", "hash_size", 3)\n'
        'modparam("uac_registrant", "timer_interval", 4)\n'
        f'modparam("uac_registrant", "db_url", "sqlite://{tmp_path}/x.db")\nroute {{ exit; }}',
        "t.cfg"))
    assert any("needs module 'uac_auth'" in d.message for d in loaded.diagnostics)
    with pytest.raises(ValueError, match="lower than the number of hash buckets"):
        loaded.rt.modules["uac_registrant"].init(loaded.rt)

"""nat_traversal: the NAT tests, fix_contact, $source_uri and the keepalive message."""
import time
from types import SimpleNamespace

import pytest

import modules.nat_traversal as nt
from runtime.context import Context
from runtime.engine import Socket
from runtime.sip.edits import build_request
from runtime.sip.message import Message

REQ = ("REGISTER sip:example.com SIP/2.0\r\n"
       "Via: SIP/2.0/UDP {via};branch=z9hG4bK1\r\n"
       "From: <sip:alice@example.com>;tag=1\r\n"
       "To: <sip:alice@example.com>\r\n"
       "Call-ID: c1\r\nCSeq: 1 REGISTER\r\n"
       "Contact: \"Alice\" <sip:alice@{contact}>;expires=60, <sip:alice@192.168.1.9>\r\n"
       "Content-Length: 0\r\n\r\n")


def ctx(via="192.168.1.2:5060", contact="192.168.1.2:5060", src=("203.0.113.5", 40000),
        proto="udp"):
    msg = Message.parse(REQ.format(via=via, contact=contact).encode())
    return Context(SimpleNamespace(), msg, src=src, proto=proto)


@pytest.mark.parametrize("kw, tests, expected", [
    (dict(), 1, 1), (dict(contact="203.0.113.5:40000"), 1, -1),
    (dict(), 2, 1), (dict(via="203.0.113.5:40000"), 2, -1),
    (dict(via="203.0.113.5:40001"), 2, 1), (dict(via="203.0.113.5:40000"), 4, -1),
    (dict(), 4, 1), (dict(contact="203.0.113.5"), 8, -1), (dict(), 8, 1),
    (dict(via="203.0.113.5:40000", contact="203.0.113.5:40000"), 15, -1),
])
def test_client_nat_test(kw, tests, expected):
    assert nt.client_nat_test(ctx(**kw), tests) == expected


def test_test_mask_fixup():
    assert nt._tests("3", None) == 3
    with pytest.raises(ValueError):
        nt._tests("16", None)


def test_fix_contact_rewrites_the_first_contact():
    c = ctx()
    assert nt.fix_contact(c) == 1
    assert c.msg.contacts[0].uri == "sip:alice@203.0.113.5:40000"
    out = build_request(c.msg, c.edits).decode()
    assert ('Contact: "Alice" <sip:alice@203.0.113.5:40000>;expires=60, '
            '<sip:alice@192.168.1.9>') in out
    same = ctx(contact="203.0.113.5:40000")
    assert nt.fix_contact(same) == 1 and same.edits is None


def test_source_uri():
    assert nt.source_uri(ctx()) == "sip:203.0.113.5:40000"
    assert nt.source_uri(ctx(proto="tcp")) == "sip:203.0.113.5:40000;transport=tcp"
    assert nt.source_uri(ctx(src=("2001:db8::1", 5))) == "sip:[2001:db8::1]:5"


def test_keepalive_message_and_expiry():
    params = {"keepalive_interval": 10, "keepalive_method": "NOTIFY",
              "keepalive_from": None, "keepalive_extra_headers": "X-A: 1",
              "keepalive_state_file": None}
    ka = nt.Keepalive(SimpleNamespace(), params)
    sock = Socket("udp", "192.0.2.1", 5060)
    ep = ka.endpoint("sip:203.0.113.5:40000", sock)
    msg = Message.parse(ka.message(ep))
    assert msg.method == "NOTIFY" and msg.ruri == "sip:203.0.113.5:40000"
    assert msg.get("event") == "keep-alive" and msg.get("x-a") == "1"
    assert msg.from_.uri == "sip:keepalive@192.0.2.1" and msg.from_.tag
    assert msg.via1.branch == "0" and msg.cseq == (1, "NOTIFY")
    now = time.time()
    ep.registration = now + 5
    ep.dialogs[7] = now + 100
    assert ep.purge(now + 10) and ep.registration == 0 and ep.dialogs
    ep.dialogs.clear()
    assert not ep.purge(now)


def test_expires_granted_by_a_register_reply():
    req = Message.parse(REQ.format(via="a:1", contact="10.0.0.1:5060").encode())
    reply = Message.parse(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a:1;branch=z9hG4bK1\r\n"
                          b"From: <sip:alice@example.com>;tag=1\r\n"
                          b"To: <sip:alice@example.com>;tag=2\r\nCall-ID: c1\r\n"
                          b"CSeq: 1 REGISTER\r\n"
                          b"Contact: <sip:alice@10.0.0.1:5060>;expires=120, "
                          b"<sip:alice@other>;expires=900\r\nContent-Length: 0\r\n\r\n")
    assert nt._expires_of(reply, req) == 120

"""runtime.sip.reply: local replies (RFC 3261 8.2.6), To tags, Via received/rport
(RFC 3261 18.2.1, RFC 3581) and reply routing (RFC 3261 18.2.2)."""
import pytest

from runtime.sip import (Message, SIPError, Via, make_reply, make_to_tag, reply_destination,
                         via_received_params)

REQ = (b"INVITE sip:bob@example.com SIP/2.0\r\n"
       b"Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp1, SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa1\r\n"
       b"Max-Forwards: 69\r\n"
       b"v: SIP/2.0/TCP 192.0.2.9;branch=z9hG4bKa0\r\n"
       b"From: \"Alice\" <sip:alice@example.com>;tag=f1\r\n"
       b"To: <sip:bob@example.com>\r\n"
       b"Call-ID: abc@192.0.2.1\r\n"
       b"CSeq: 1 INVITE\r\n"
       b"Timestamp: 54\r\n"
       b"Record-Route: <sip:proxy.example.com;lr>\r\n"
       b"Contact: <sip:alice@192.0.2.1>\r\n"
       b"Content-Length: 0\r\n\r\n")


def test_reply_copies_per_8_2_6():
    req = Message.parse(REQ)
    raw = make_reply(req, 486, "Busy Here")
    r = Message.parse(raw)
    assert (r.status, r.reason) == (486, "Busy Here")
    # all Via values, in order; From, Call-ID, CSeq equal; To gets a tag
    assert r.get_all("via") == req.get_all("via")
    assert [v.branch for v in r.vias] == ["z9hG4bKp1", "z9hG4bKa1", "z9hG4bKa0"]
    assert r.get("from") == req.get("from")
    assert r.call_id == req.call_id and r.cseq == req.cseq
    assert r.to.uri == "sip:bob@example.com" and r.to.tag == make_to_tag(req)
    # no Record-Route, Contact or Timestamp copied on a non-100 reply
    assert "record-route" not in r and "contact" not in r and "timestamp" not in r
    assert r.content_length == 0 and r.body == b""
    r.check_mandatory()


def test_100_trying_keeps_to_and_copies_timestamp():
    r = Message.parse(make_reply(Message.parse(REQ), 100, "Trying"))
    assert r.to.tag is None and r.get("timestamp") == "54"


def test_existing_to_tag_kept_and_given_tag_used():
    req = Message.parse(REQ.replace(b"To: <sip:bob@example.com>", b"To: <sip:bob@example.com>;tag=abc"))
    r = Message.parse(make_reply(req, 200, "OK", to_tag="zzz"))
    assert r.to.tag == "abc" and r.count("to") == 1 and r.get("to").count("tag=") == 1
    r = Message.parse(make_reply(Message.parse(REQ), 180, "Ringing", to_tag="t-1"))
    assert r.to.tag == "t-1"


def test_extra_headers_body_server_via1():
    req = Message.parse(REQ)
    via1 = via_received_params(req.via1, "203.0.113.7", 5070, force_rport=True)
    raw = make_reply(req, 200, "OK", to_tag="x", headers=["Contact: <sip:bob@192.0.2.2>",
                                                          "Content-Type: text/plain\r\n",
                                                          "Content-Length: 99", "l: 7"],
                     body=b"hello", server="cfgscript", via1=via1)
    r = Message.parse(raw)
    assert r.vias[0].received == "203.0.113.7" and r.vias[0].rport == "5070"
    assert [v.branch for v in r.vias] == ["z9hG4bKp1", "z9hG4bKa1", "z9hG4bKa0"]
    assert r.get("server") == "cfgscript" and r.get("contact") == "<sip:bob@192.0.2.2>"
    assert r.body == b"hello" and r.content_length == 5 and r.content_type == "text/plain"
    assert r.count("content-length") == 1
    with pytest.raises(ValueError):
        make_reply(req, 99, "x")
    with pytest.raises(ValueError):
        make_reply(Message.parse(raw), 200, "OK")


def test_reply_to_a_broken_request():
    # a 400 must still be sendable when the request's headers are unparsable
    raw = (b"INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n"
           b"From: broken <\r\nTo: also \"broken\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n")
    req = Message.parse(raw)
    r = Message.parse(make_reply(req, 400, "Bad Request"))
    assert r.get("from") == "broken <" and r.get("to").startswith('also "broken;tag=')
    req = Message.parse(b"INVITE sip:b@x SIP/2.0\r\nVia: garbage\r\nCSeq: 1 INVITE\r\n\r\n")
    r = Message.parse(make_reply(req, 400, "Bad Request"))
    assert r.get("via") == "garbage" and "from" not in r and "to" not in r
    assert make_to_tag(req)


def test_to_tag_stable_per_transaction():
    a = Message.parse(REQ)
    b = Message.parse(REQ)  # a retransmission
    assert make_to_tag(a) == make_to_tag(b)
    assert make_to_tag(a).isalnum() and len(make_to_tag(a)) == 32
    other_branch = Message.parse(REQ.replace(b"z9hG4bKp1", b"z9hG4bKp2"))
    other_call = Message.parse(REQ.replace(b"abc@192.0.2.1", b"abd@192.0.2.1"))
    other_from = Message.parse(REQ.replace(b"tag=f1", b"tag=f2"))
    tags = {make_to_tag(m) for m in (a, other_branch, other_call, other_from)}
    assert len(tags) == 4


# ------------------------------------------------------------- received / rport (18.2.1)

@pytest.mark.parametrize("via, src, force, expect", [
    # sent-by equals the source, no rport: unchanged
    ("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1", ("192.0.2.1", 5060), False,
     "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1"),
    # different address: received (RFC 3261 18.2.1)
    ("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1", ("203.0.113.9", 5060), False,
     "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;received=203.0.113.9"),
    # a host name always gets received
    ("SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK1", ("192.0.2.1", 5060), False,
     "SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK1;received=192.0.2.1"),
    # rport without value: filled, and received added even when the address is the same
    # (RFC 3581 4)
    ("SIP/2.0/UDP 192.0.2.1:5060;rport;branch=z9hG4bK1", ("192.0.2.1", 61000), False,
     "SIP/2.0/UDP 192.0.2.1:5060;rport=61000;branch=z9hG4bK1;received=192.0.2.1"),
    # force_rport acts as if rport were there
    ("SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1", ("203.0.113.9", 1024), True,
     "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1;received=203.0.113.9;rport=1024"),
    # an existing received value is overwritten
    ("SIP/2.0/UDP h;received=1.1.1.1;branch=z9hG4bK1", ("203.0.113.9", 5060), False,
     "SIP/2.0/UDP h;received=203.0.113.9;branch=z9hG4bK1"),
    # IPv6: compared as addresses; received without brackets (RFC 5118 4.5)
    ("SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK1", ("2001:db8:0::1", 5060), False,
     "SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK1"),
    ("SIP/2.0/UDP [2001:db8::1];branch=z9hG4bK1", ("2001:db8::2", 5060), False,
     "SIP/2.0/UDP [2001:db8::1];branch=z9hG4bK1;received=2001:db8::2"),
])
def test_via_received_params(via, src, force, expect):
    assert via_received_params(Via.parse(via), src[0], src[1], force) == expect


# ------------------------------------------------------------------ destinations (18.2.2)

@pytest.mark.parametrize("via, src, transport, expect", [
    # local reply to a UDP request: received (or the source) + sent-by port or 5060
    ("SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1", ("192.0.2.1", 5060), None, ("192.0.2.1", 5060)),
    ("SIP/2.0/UDP pc33.example.com:5070;branch=z9hG4bK1", ("192.0.2.1", 40000), None,
     ("192.0.2.1", 5070)),
    # rport: back to the source port (RFC 3581)
    ("SIP/2.0/UDP pc33.example.com:5070;rport;branch=z9hG4bK1", ("192.0.2.1", 40000), None,
     ("192.0.2.1", 40000)),
    # maddr wins
    ("SIP/2.0/UDP pc33.example.com;maddr=239.255.255.1;ttl=15;branch=z9hG4bK1",
     ("192.0.2.1", 40000), None, ("239.255.255.1", 5060)),
    # reliable transport: the connection it came on
    ("SIP/2.0/TCP pc33.example.com:5070;branch=z9hG4bK1", ("192.0.2.1", 40001), None,
     ("192.0.2.1", 40001)),
    ("SIP/2.0/TLS pc33.example.com;branch=z9hG4bK1", ("192.0.2.1", 40001), "TLS", ("192.0.2.1", 40001)),
    # forwarding a reply upstream: the next Via as we stamped it
    ("SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1;received=203.0.113.9;rport=1024", None, None,
     ("203.0.113.9", 1024)),
    ("SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bK1;received=203.0.113.9", None, None,
     ("203.0.113.9", 5062)),
    ("SIP/2.0/UDP pc33.example.com;branch=z9hG4bK1", None, None, ("pc33.example.com", 5060)),
    ("SIP/2.0/TLS pc33.example.com;branch=z9hG4bK1", None, None, ("pc33.example.com", 5061)),
    ("SIP/2.0/UDP [2001:db8::1];branch=z9hG4bK1", None, None, ("[2001:db8::1]", 5060)),
])
def test_reply_destination(via, src, transport, expect):
    assert reply_destination(Via.parse(via), src, transport) == expect


@pytest.mark.parametrize("via", [
    "SIP/2.0/UDP 255.255.255.255;branch=z9hG4bK1",
    "SIP/2.0/UDP 0.0.0.0;branch=z9hG4bK1",
    "SIP/2.0/UDP h;received=0.0.0.0;branch=z9hG4bK1",
    "SIP/2.0/UDP h;received=1.2.3.4;rport=0;branch=z9hG4bK1",
    "SIP/2.0/UDP h;received=1.2.3.4;rport=99999;branch=z9hG4bK1",
    "SIP/2.0/UDP [::];branch=z9hG4bK1",
])
def test_unusable_destinations(via):
    with pytest.raises(SIPError) as ei:
        reply_destination(Via.parse(via))
    assert ei.value.status is None

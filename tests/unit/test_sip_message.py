"""runtime.sip.message: framing, header lines, raw and typed accessors, checks."""
import pytest

from runtime.sip import MAX_MESSAGE_SIZE, Message, SIPError, stream_frame_length

SDP = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"


def msg(*lines, body=b"", cl=True, start="INVITE sip:bob@example.com SIP/2.0"):
    head = [start, *lines]
    if cl:
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


BASIC = (
    "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa1;rport",
    "Max-Forwards: 70",
    'From: "Alice" <sip:alice@example.com>;tag=f1',
    "To: <sip:bob@example.com>",
    "Call-ID: abc@192.0.2.1",
    "CSeq: 10 INVITE",
    "Contact: <sip:alice@192.0.2.1:5060>;expires=60",
    "Content-Type: application/sdp",
)


def test_request_basics():
    m = Message.parse(msg(*BASIC, body=SDP))
    assert m.is_request and m.method == "INVITE" and m.ruri == "sip:bob@example.com"
    assert (m.status, m.reason, m.version) == (0, "", "SIP/2.0")
    assert m.body == SDP and m.content_length == len(SDP)
    assert m.content_type == "application/sdp"
    assert m.via1.host == "192.0.2.1" and m.via1.port == 5060
    assert m.via1.branch == "z9hG4bKa1" and m.via1.rport == "" and m.via1.received is None
    assert m.from_.display == "Alice" and m.from_.tag == "f1" and m.from_tag == "f1"
    assert m.to.uri == "sip:bob@example.com" and m.to.tag is None and m.to_tag is None
    assert m.call_id == "abc@192.0.2.1"
    assert m.cseq == (10, "INVITE")
    assert m.max_forwards == 70
    assert m.contacts[0].param("expires") == "60"
    assert m.routes == [] and m.record_routes == []
    m.check_mandatory()
    assert "via" in m and "v" in m and "route" not in m
    assert repr(m).startswith("<Message INVITE")


def test_reply_basics():
    raw = msg("Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKa1", "From: <sip:a@x>;tag=1",
              "To: <sip:b@x>;tag=2", "Call-ID: c", "CSeq: 7 BYE", start="SIP/2.0 486 Busy Here")
    m = Message.parse(raw)
    assert not m.is_request
    assert (m.status, m.reason, m.method, m.ruri) == (486, "Busy Here", "BYE", "")
    m.check_mandatory()
    assert m.parsed_ruri is None


def test_get_get_all_count_compact_forms():
    m = Message.parse(msg("v: SIP/2.0/UDP h1;branch=z9hG4bK1", "Via: SIP/2.0/TCP h2, SIP/2.0/UDP h3",
                          "f: <sip:a@x>;tag=1", "t: sip:b@x", "i: cid", "CSeq: 1 INVITE",
                          "m: <sip:a@h1>", "X-Foo: one", "x-foo: two", "k: timer",
                          "c: text/plain", "s: hi", "o: presence", "r: <sip:c@x>",
                          "b: <sip:d@x>", "u: talk", "x: 1800", "y: abc", "a: *;audio",
                          "j: *;video", "d: proxy", "e: gzip", cl=False))
    assert m.get("VIA") == "SIP/2.0/UDP h1;branch=z9hG4bK1"
    assert m.get("v") == m.get("via")
    assert m.get_all("via") == ["SIP/2.0/UDP h1;branch=z9hG4bK1", "SIP/2.0/TCP h2, SIP/2.0/UDP h3"]
    assert m.count("Via") == 2 and m.count("V") == 2
    assert [v.host for v in m.vias] == ["h1", "h2", "h3"]
    assert m.get_all("X-FOO") == ["one", "two"] and m.count("x-foo") == 2
    assert m.get("nothing") is None and m.get_all("nothing") == [] and m.count("nothing") == 0
    expect = {"from": "<sip:a@x>;tag=1", "to": "sip:b@x", "call-id": "cid",
              "contact": "<sip:a@h1>", "supported": "timer", "content-type": "text/plain",
              "subject": "hi", "event": "presence", "refer-to": "<sip:c@x>",
              "referred-by": "<sip:d@x>", "allow-events": "talk", "session-expires": "1800",
              "identity": "abc", "accept-contact": "*;audio", "reject-contact": "*;video",
              "request-disposition": "proxy", "content-encoding": "gzip"}
    for k, v in expect.items():
        assert m.get(k) == v, k
    assert [h.key for h in m.headers][:4] == ["via", "via", "from", "to"]
    assert m.headers[0].name == "v"
    assert m.content_length is None


def test_header_offsets_and_folding():
    raw = (b"OPTIONS sip:x SIP/2.0\r\n"
           b"Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
           b"Subject  :  first\r\n"
           b"   second\r\n"
           b"\tthird  \r\n"
           b"Empty:\r\n"
           b"Call-ID: c\r\n\r\n")
    m = Message.parse(raw)
    subj = m.get_header("subject")
    assert subj.name == "Subject" and subj.value == "first second third"
    assert raw[subj.start:subj.end] == b"Subject  :  first\r\n   second\r\n\tthird  \r\n"
    assert m.get("empty") == ""
    for h in m.headers:
        assert raw[h.start:h.end].endswith(b"\r\n")
        assert raw[h.start:h.end].decode().lower().startswith(h.name.lower())
    assert m.headers[-1].end == raw.index(b"\r\n\r\n") + 2


def test_offsets_with_non_ascii():
    raw = msg('From: "Jörg" <sip:j@x>;tag=1', "X-Bin: \xff", "Call-ID: c", cl=False)
    raw = raw.replace("\xff".encode(), b"\xff")  # an invalid UTF-8 byte
    m = Message.parse(raw)
    assert m.from_.display == "Jörg"
    for h in m.headers:
        assert raw[h.start:h.end].split(b":")[0].decode().strip() == h.name
    x = m.get_header("x-bin")
    assert raw[x.start:x.end] == b"X-Bin: \xff\r\n"
    assert x.value.encode("utf-8", "surrogateescape") == b"\xff"


def test_bare_lf_and_leading_crlf():
    raw = b"\r\n\r\nOPTIONS sip:x SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\nCall-ID: c\nContent-Length: 2\n\nab"
    m = Message.parse(raw)
    assert m.method == "OPTIONS" and m.call_id == "c" and m.body == b"ab"
    assert m.raw.startswith(b"OPTIONS")
    for h in m.headers:
        assert m.raw[h.start:h.end].endswith(b"\n")
    # mixed line ends, CRLF blank line
    m = Message.parse(b"OPTIONS sip:x SIP/2.0\r\nA: 1\nB: 2\r\n\r\n")
    assert m.get("a") == "1" and m.get("b") == "2"


def test_body_framing():
    # datagram without Content-Length: the rest of the datagram
    m = Message.parse(msg("Call-ID: c", body=b"hello", cl=False))
    assert m.content_length is None and m.body == b"hello"
    # Content-Length shorter than the datagram: the extra octets are ignored
    m = Message.parse(msg("Call-ID: c", body=b"abc") + b"TRAILING")
    assert m.body == b"abc" and not m.raw.endswith(b"TRAILING")
    # equal duplicates are accepted, different ones are not
    Message.parse(msg("Content-Length: 0", "Call-ID: c"))
    with pytest.raises(SIPError, match="Conflicting"):
        Message.parse(msg("Content-Length: 5", "Call-ID: c"))


@pytest.mark.parametrize("cl", ["-1", "five", "1.0", "99999999999", "１"])
def test_bad_content_length(cl):
    with pytest.raises(SIPError) as ei:
        Message.parse(msg("Call-ID: c", f"Content-Length: {cl}", cl=False))
    assert ei.value.status == 400


def test_content_length_beyond_datagram():
    with pytest.raises(SIPError) as ei:
        Message.parse(msg("Call-ID: c", "Content-Length: 10", cl=False) + b"short")
    assert ei.value.status == 400
    with pytest.raises(SIPError) as ei:
        Message.parse(msg("Call-ID: c", "Content-Length: 10", cl=False, start="SIP/2.0 200 OK"))
    assert ei.value.status is None


@pytest.mark.parametrize("raw, status", [
    (b"", None),
    (b"INVITE sip:x SIP/2.0", None),                        # no line end at all
    (b"INVITE sip:x SIP/2.0\r\nVia: x\r\n", 400),          # no end of headers
    (b"INVITE sip:x SIP/2.0\r\nVia x\r\n\r\n", 400),       # no colon
    (b"INVITE sip:x SIP/2.0\r\n: x\r\n\r\n", 400),         # empty name
    (b"INVITE sip:x SIP/2.0\r\nBad Name: x\r\n\r\n", 400),
    (b"INVITE sip:x SIP/2.0\r\n folded: x\r\n\r\n", 400),  # continuation first
    (b"INVITE sip:x SIP/2.0\r\nA: x\ry\r\n\r\n", 400),     # bare CR
    (b"INVITE sip:x SIP/3.0\r\n\r\n", 505),
    (b"INVITE sip:x HTTP/1.1\r\n\r\n", 400),
    (b"INVITE  sip:x SIP/2.0\r\n\r\n", 400),
    (b"IN VITE sip:x SIP/2.0\r\n\r\n", 400),
    (b"INV<ITE sip:x SIP/2.0\r\n\r\n", None),              # not even a method: drop
    (b"INVITE x SIP/2.0\r\n\r\n", 400),                    # not a URI
    (b"\x00\x01\x02\r\n\r\n", None),
    (b"hello\r\n\r\n", None),
    (b"SIP/2.0 99 Low\r\n\r\n", None),
    (b"SIP/2.0 700 High\r\n\r\n", None),
    (b"SIP/2.0 4294967301 better not break the receiver\r\n\r\n", None),  # RFC 4475 bigcode
    (b"SIP/2.0 2OO OK\r\n\r\n", None),
    (b"SIP/1.0 200 OK\r\n\r\n", None),
    (b"SIP/2.0\r\n\r\n", None),
])
def test_unparsable(raw, status):
    with pytest.raises(SIPError) as ei:
        Message.parse(raw)
    assert ei.value.status == status


def test_liberal_start_lines():
    m = Message.parse(b"SIP/2.0 100\r\nCall-ID: c\r\n\r\n")      # no SP before CRLF
    assert (m.status, m.reason) == (100, "")
    m = Message.parse(b"OPTIONS sip:x sip/2.0\r\nCall-ID: c\r\n\r\n")
    assert m.version == "SIP/2.0"


def test_too_large():
    big = msg("Call-ID: c", "X-Big: " + "a" * MAX_MESSAGE_SIZE)
    with pytest.raises(SIPError) as ei:
        Message.parse(big)
    assert ei.value.status == 513
    with pytest.raises(SIPError) as ei:
        Message.parse(big.replace(b"INVITE sip:bob@example.com SIP/2.0", b"SIP/2.0 200 OK"))
    assert ei.value.status is None


def test_typed_accessor_errors():
    m = Message.parse(msg("Call-ID: c"))
    for attr in ("from_", "to", "cseq"):
        with pytest.raises(SIPError) as ei:
            getattr(m, attr)
        assert ei.value.status == 400 and ei.value.reason.startswith("Missing")
    assert m.via1 is None and m.vias == []
    assert m.max_forwards is None and m.date is None and m.content_type is None
    m = Message.parse(msg("From: garbage <", "To: <sip:b@x", "CSeq: x INVITE",
                          "Max-Forwards: 256", "Call-ID: has space", "Via: SIP/2.0 h"))
    for attr in ("from_", "to", "cseq", "max_forwards", "call_id", "via1", "vias"):
        with pytest.raises(SIPError) as ei:
            getattr(m, attr)
        assert ei.value.status == 400, attr
    with pytest.raises(SIPError):
        Message.parse(msg("Call-ID:")).call_id


@pytest.mark.parametrize("cseq, ok", [
    ("1 INVITE", True), ("0 INVITE", True), ("4294967295 ACK", True), ("00009  BYE", True),
    ("4294967296 INVITE", False), ("-1 INVITE", False), ("1", False), ("1 INVITE x", False),
    ("1 IN<VITE", False), ("x INVITE", False), ("99999999999999999999999 INVITE", False),
])
def test_cseq(cseq, ok):
    m = Message.parse(msg(f"CSeq: {cseq}"))
    if ok:
        n, method = m.cseq
        assert n == int(cseq.split()[0])
    else:
        with pytest.raises(SIPError):
            m.cseq


def test_max_forwards_values():
    assert Message.parse(msg("Max-Forwards: 0")).max_forwards == 0
    assert Message.parse(msg("Max-Forwards: 255")).max_forwards == 255
    for bad in ("256", "-1", "abc", ""):
        with pytest.raises(SIPError):
            Message.parse(msg(f"Max-Forwards: {bad}")).max_forwards


def test_contacts_routes_lists():
    m = Message.parse(msg("Contact: <sip:a@h1>;q=0.5, \"B, b\" <sip:b@h2>",
                          "Contact: sip:c@h3;expires=10",
                          "Route: <sip:p1;lr>, <sip:p2;lr>", "Route: <sip:p3;lr>",
                          "Record-Route: <sip:rr1;lr>,<sip:rr2;lr>"))
    assert [c.uri for c in m.contacts] == ["sip:a@h1", "sip:b@h2", "sip:c@h3"]
    assert m.contacts[1].display == "B, b"
    assert m.contacts[2].param("expires") == "10"
    assert [r.uri for r in m.routes] == ["sip:p1;lr", "sip:p2;lr", "sip:p3;lr"]
    assert [r.uri for r in m.record_routes] == ["sip:rr1;lr", "sip:rr2;lr"]
    star = Message.parse(msg("Contact: *")).contacts
    assert len(star) == 1 and star[0].uri == "*" and str(star[0]) == "*"


def test_check_mandatory():
    full = list(BASIC)
    Message.parse(msg(*full)).check_mandatory()
    for i, name in [(0, "Via"), (2, "From"), (3, "To"), (4, "Call-ID"), (5, "CSeq")]:
        lines = full[:i] + full[i + 1:]
        with pytest.raises(SIPError) as ei:
            Message.parse(msg(*lines)).check_mandatory()
        assert (ei.value.status, ei.value.reason) == (400, f"Missing {name}")
    # Max-Forwards is optional
    Message.parse(msg(*[x for x in full if not x.startswith("Max")])).check_mandatory()
    with pytest.raises(SIPError, match="Duplicate To"):
        Message.parse(msg(*full, "To: <sip:other@x>")).check_mandatory()
    Message.parse(msg(*full, start="INVITE tel:+1-234 SIP/2.0")).check_mandatory()
    with pytest.raises(SIPError) as ei:  # RFC 4475 unkscm / novelsc: 416
        Message.parse(msg(*full, start="INVITE soap.beep://192.0.2.103:3002 SIP/2.0")).check_mandatory()
    assert ei.value.status == 416
    with pytest.raises(SIPError) as ei:
        Message.parse(msg(*full[:5], "CSeq: 10 ACK")).check_mandatory()
    assert ei.value.reason == "CSeq method does not match request method"


def test_date():
    m = Message.parse(msg("Date: Sat, 13 Nov 2010 23:29:00 GMT"))
    assert m.date.isoformat() == "2010-11-13T23:29:00+00:00"
    for bad in ("Sat, 13 Nov 2010 23:29:00 UTC", "13 Nov 2010", "Sat, 31 Feb 2010 23:29:00 GMT"):
        with pytest.raises(SIPError):
            Message.parse(msg(f"Date: {bad}")).date


def test_check_proxy_require():
    m = Message.parse(msg("Proxy-Require: sec-agree, Foo", "Require: bar"))
    with pytest.raises(SIPError) as ei:
        m.check_proxy_require(["sec-agree"])
    assert ei.value.status == 420 and ei.value.headers == ["Unsupported: Foo"]
    m.check_proxy_require(["SEC-AGREE", "foo"])
    Message.parse(msg("Require: bar")).check_proxy_require()


def test_bytearray_and_memoryview_input():
    raw = msg(*BASIC)
    assert Message.parse(bytearray(raw)).call_id == "abc@192.0.2.1"
    assert Message.parse(memoryview(raw)).call_id == "abc@192.0.2.1"
    with pytest.raises(TypeError):
        Message.parse(raw.decode())


def test_stream_frame_length():
    one = msg(*BASIC, body=SDP)
    assert stream_frame_length(one) == len(one)
    assert stream_frame_length(one + one[:30]) == len(one)
    assert stream_frame_length(one[:-1]) is None
    assert stream_frame_length(one[:40]) is None
    assert stream_frame_length(b"\r\n\r\n" + one) == len(one) + 4  # keep-alives before
    assert stream_frame_length(b"\r\n\r\n") is None
    no_cl = msg("Call-ID: c", cl=False)
    assert stream_frame_length(no_cl + b"next") == len(no_cl)  # missing = 0
    short = msg("Call-ID: c", "l: 3", cl=False)
    assert stream_frame_length(short + b"abcdef") == len(short) + 3
    with pytest.raises(SIPError):
        stream_frame_length(msg("Call-ID: c", "Content-Length: -4", cl=False))
    with pytest.raises(SIPError):
        stream_frame_length(b"INVITE sip:x SIP/2.0\r\nX: " + b"a" * (MAX_MESSAGE_SIZE + 1))
    with pytest.raises(SIPError):
        stream_frame_length(msg("Call-ID: c", f"Content-Length: {MAX_MESSAGE_SIZE + 1}", cl=False))


def test_check_present():
    # Message.check_present(): the cheap per-request check (presence only)
    Message.parse(msg(*BASIC)).check_present()
    Message.parse(msg(*BASIC[:5], "CSeq: garbage")).check_present()  # values not parsed
    with pytest.raises(SIPError) as ei:
        Message.parse(msg(*BASIC[1:])).check_present()
    assert (ei.value.status, ei.value.reason) == (400, "Missing Via")

"""runtime.sip.edits: lumps recorded against a received message, applied on build."""
import pytest

from runtime.sip import Edits, Message, SIPError, apply, build_reply, build_request

SDP = (b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
       b"m=audio 4000 RTP/AVP 0\r\n")
REQ = (b"INVITE sip:bob@example.com SIP/2.0\r\n"
       b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa1;rport\r\n"
       b"Max-Forwards: 70\r\n"
       b"Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n"
       b"Route: <sip:p3.example.com;lr>\r\n"
       b"From: <sip:alice@example.com>;tag=f1\r\n"
       b"To: <sip:bob@example.com>\r\n"
       b"Call-ID: abc\r\n"
       b"CSeq: 1 INVITE\r\n"
       b"Content-Type: application/sdp\r\n"
       b"Content-Length: " + str(len(SDP)).encode() + b"\r\n\r\n" + SDP)
REPLY = (b"SIP/2.0 200 OK\r\n"
         b"Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKours, SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKa1\r\n"
         b"Via: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKa0\r\n"
         b"From: <sip:alice@example.com>;tag=f1\r\n"
         b"To: <sip:bob@example.com>;tag=t1\r\n"
         b"Call-ID: abc\r\n"
         b"CSeq: 1 INVITE\r\n"
         b"Content-Length: 0\r\n\r\n")


def lines(data: bytes):
    head, _, body = data.partition(b"\r\n\r\n")
    return head.decode().split("\r\n"), body


def test_no_edits_round_trip():
    m = Message.parse(REQ)
    assert build_request(m) == REQ
    assert build_request(m, Edits(m)) == REQ
    r = Message.parse(REPLY)
    assert build_reply(r, drop_top_via=False) == REPLY
    assert apply(m, Edits(m)).raw == REQ


def test_header_edits_in_order():
    m = Message.parse(REQ)
    e = Edits(m)
    cid = m.get_header("call-id")
    e.add_header("X-End-1: 1")
    e.add_header("X-Top-1: 1", "top")
    e.add_header("X-End-2: 2\r\n")
    e.add_header("X-Top-2: 2", where="top")
    e.add_header("X-Before: b", "before", cid)
    e.add_header("X-After: a", "after", cid)
    e.add_header("X-After-2: a2", "after", cid)
    e.replace_header(m.get_header("max-forwards"), "Max-Forwards: 69")
    e.remove_header(m.get_header("to"))
    e.add_header("To: <sip:carol@example.com>", "after", m.get_header("to"))
    hs, body = lines(build_request(m, e))
    assert hs == [
        "INVITE sip:bob@example.com SIP/2.0",
        "X-Top-1: 1", "X-Top-2: 2",
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa1;rport",
        "Max-Forwards: 69",
        "Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>",
        "Route: <sip:p3.example.com;lr>",
        "From: <sip:alice@example.com>;tag=f1",
        "To: <sip:carol@example.com>",
        "X-Before: b", "Call-ID: abc", "X-After: a", "X-After-2: a2",
        "CSeq: 1 INVITE", "Content-Type: application/sdp", f"Content-Length: {len(SDP)}",
        "X-End-1: 1", "X-End-2: 2",
    ]
    assert body == SDP
    # not visible through the received message (OpenSIPS semantics) ...
    assert m.get("x-top-1") is None and m.get("max-forwards") == "70"
    # ... until applied
    m2 = apply(m, e)
    assert m2.get("x-top-1") == "1" and m2.max_forwards == 69 and m2.to.uri == "sip:carol@example.com"
    assert m2.body == SDP


def test_replace_then_insert_before_and_last_wins():
    m = Message.parse(REQ)
    e = Edits(m)
    mf = m.get_header("max-forwards")
    e.replace_header(mf, "Max-Forwards: 1")
    e.add_header("X-B: 1", "before", mf)
    e.replace_header(mf, "Max-Forwards: 2")  # the last replace/remove of a header wins
    hs, _ = lines(build_request(m, e))
    i = hs.index("X-B: 1")
    assert hs[i + 1] == "Max-Forwards: 2" and "Max-Forwards: 1" not in hs
    e.remove_header(mf)
    hs, _ = lines(build_request(m, e))
    assert not any(h.startswith("Max-Forwards") for h in hs) and "X-B: 1" in hs


def test_multiline_and_bad_lines():
    m = Message.parse(REQ)
    e = Edits(m)
    e.add_header("X-A: 1\nX-B: 2")
    hs, _ = lines(build_request(m, e))
    assert hs[-2:] == ["X-A: 1", "X-B: 2"]
    with pytest.raises(ValueError):
        e.add_header("no colon here")
    with pytest.raises(ValueError):
        e.add_header("X: 1", "sideways")
    with pytest.raises(ValueError):
        e.add_header("X: 1", "before")
    other = Message.parse(REQ)
    with pytest.raises(ValueError):
        e.remove_header(other.get_header("to"))
    with pytest.raises(ValueError):
        build_request(other, e)


def test_ruri_top_via_and_routes():
    m = Message.parse(REQ)
    e = Edits(m)
    e.set_ruri("sip:bob@192.0.2.7:5062")
    e.add_header("Record-Route: <sip:10.0.0.1;lr>", "top")
    out = build_request(m, e, top_via="SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx", drop_route_count=1)
    hs, _ = lines(out)
    assert hs[:5] == [
        "INVITE sip:bob@192.0.2.7:5062 SIP/2.0",
        "Record-Route: <sip:10.0.0.1;lr>",
        "Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx",
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa1;rport",
        "Max-Forwards: 70",
    ]
    assert hs[5:7] == ["Route: <sip:p2.example.com;lr>", "Route: <sip:p3.example.com;lr>"]
    # the ruri argument wins over the recorded one
    assert build_request(m, e, ruri="sip:x@y").startswith(b"INVITE sip:x@y SIP/2.0\r\n")
    hs, _ = lines(build_request(m, None, drop_route_count=2))
    assert [h for h in hs if h.startswith("Route")] == ["Route: <sip:p3.example.com;lr>"]
    hs, _ = lines(build_request(m, None, drop_route_count=3))
    assert not [h for h in hs if h.startswith("Route")]
    with pytest.raises(ValueError):
        build_request(m, None, drop_route_count=4)


def test_replace_via1():
    m = Message.parse(REQ)
    e = Edits(m)
    e.replace_via1("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa1;rport=5060;received=192.0.2.1")
    hs, _ = lines(build_request(m, e))
    assert hs[1] == "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa1;rport=5060;received=192.0.2.1"
    r = Message.parse(REPLY)
    e = Edits(r)
    e.replace_via1("SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKours;x")
    hs, _ = lines(build_reply(r, e, drop_top_via=False))
    assert hs[1] == "Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKours;x, SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKa1"


def test_build_reply_drops_our_via():
    r = Message.parse(REPLY)
    hs, _ = lines(build_reply(r))
    assert hs[:3] == ["SIP/2.0 200 OK", "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKa1",
                      "Via: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKa0"]
    # a Via header line holding only our value disappears
    r2 = Message.parse(build_reply(r))
    hs, _ = lines(build_reply(r2))
    assert hs[1] == "Via: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKa0" and hs[2].startswith("From")
    with pytest.raises(ValueError):
        build_reply(Message.parse(REQ))
    with pytest.raises(ValueError):
        build_request(r)


def test_body_edits_and_content_length():
    m = Message.parse(REQ)
    e = Edits(m)
    c = SDP.index(b"192.0.2.1\r\nt=")
    e.replace_range(c, c + 9, "203.0.113.50")
    p = SDP.index(b"4000")
    e.replace_range(p, p + 4, b"30000")
    e.insert_text(len(SDP), "a=sendrecv\r\n")
    e.insert_text(len(SDP), "a=ptime:20\r\n")  # same place: recording order
    e.insert_text(0, "")
    new = e.new_body()
    assert new == (SDP.replace(b"c=IN IP4 192.0.2.1", b"c=IN IP4 203.0.113.50")
                   .replace(b"4000", b"30000") + b"a=sendrecv\r\na=ptime:20\r\n")
    out = build_request(m, e)
    m2 = Message.parse(out)
    assert m2.body == new and m2.content_length == len(new)
    assert out.count(b"Content-Length") == 1
    with pytest.raises(ValueError):
        e.insert_text(len(SDP) + 1, "x")
    with pytest.raises(ValueError):
        e.replace_range(5, 4, "x")
    e.replace_range(c + 2, c + 4, "zz")  # overlaps an earlier range
    with pytest.raises(ValueError):
        build_request(m, e)


def test_set_body_and_content_type():
    m = Message.parse(REQ)
    e = Edits(m)
    e.replace_range(0, 3, "v=9")     # discarded by set_body
    e.set_body(b"hello", "text/plain")
    e.insert_text(5, " world")       # against the new body
    m2 = apply(m, e)
    assert m2.body == b"hello world" and m2.content_length == 11
    assert m2.content_type == "text/plain" and m2.count("content-type") == 1
    e = Edits(m)
    e.set_body(b"")
    m3 = apply(m, e)
    assert m3.body == b"" and m3.content_length == 0 and m3.content_type is None
    # no Content-Type before: one is added
    bare = Message.parse(b"MESSAGE sip:a@b SIP/2.0\r\nCall-ID: c\r\n\r\n")
    e = Edits(bare)
    e.set_body("hi", content_type="text/plain")
    assert apply(bare, e).get_all("content-type") == ["text/plain"]
    assert apply(bare, e).content_length == 2


def test_content_length_on_stream_and_duplicates():
    bare = Message.parse(b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: c\r\n\r\n")
    assert build_request(bare) == bare.raw
    assert build_request(bare, stream=True).endswith(b"Content-Length: 0\r\n\r\n")
    dup = Message.parse(b"OPTIONS sip:a@b SIP/2.0\r\nl: 0\r\nCall-ID: c\r\nContent-Length: 0\r\n\r\n")
    e = Edits(dup)
    e.set_body(b"abc")
    out = build_request(dup, e)
    assert out == b"OPTIONS sip:a@b SIP/2.0\r\nl: 3\r\nCall-ID: c\r\n\r\nabc"


def test_apply_reports_unparsable_result():
    m = Message.parse(REQ)
    e = Edits(m)
    e.replace_header(m.get_header("cseq"), "Bad Header: x")
    with pytest.raises(SIPError) as ei:
        apply(m, e)
    assert "does not parse" in ei.value.reason


def test_edits_on_lf_and_folded_messages():
    raw = (b"OPTIONS sip:a@b SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\nSubject: a\n b\n"
           b"Call-ID: c\n\n")
    m = Message.parse(raw)
    e = Edits(m)
    e.remove_header(m.get_header("subject"))
    e.add_header("X: 1")
    m2 = apply(m, e)
    assert m2.get("subject") is None and m2.get("x") == "1" and m2.call_id == "c"
    assert e.changed and not Edits(m).changed and not Edits(m).body_changed


def test_copy_is_independent():
    # Edits.copy() (per-branch changes on top of the request's, added for tm)
    m = Message.parse(REQ)
    base = Edits(m)
    base.add_header("X-Base: 1")
    branch = base.copy()
    branch.add_header("X-Branch: 1")
    branch.replace_header(m.get_header("max-forwards"), "Max-Forwards: 5")
    branch.replace_range(0, 3, "v=7")
    branch.set_ruri("sip:elsewhere@x")
    assert apply(m, base).get("x-branch") is None and apply(m, base).max_forwards == 70
    assert apply(m, base).ruri == "sip:bob@example.com" and apply(m, base).body == SDP
    b = apply(m, branch)
    assert (b.get("x-base"), b.get("x-branch"), b.max_forwards) == ("1", "1", 5)
    assert b.ruri == "sip:elsewhere@x" and b.body.startswith(b"v=7")

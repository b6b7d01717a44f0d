"""Robustness: malformed input never raises anything but SIPError, and never takes long.

Thousands of random truncations and mutations of valid messages (the RFC 4475 corpus plus a
typical INVITE and 200 OK) go through Message.parse and, when that succeeds, through every
accessor, check, builder and reply helper. The seed is fixed; set SIP_FUZZ_N to run more
(e.g. SIP_FUZZ_N=200000 for a long soak) and SIP_FUZZ_SEED to explore other inputs.
"""
import os
import pathlib
import random
import time

import pytest

from runtime.sip import (Edits, Message, SIPError, apply, build_reply, build_request,
                         make_reply, make_to_tag, reply_destination, stream_frame_length,
                         via_received_params)

DATA = pathlib.Path(__file__).parent / "data" / "sip" / "rfc4475"
N = int(os.environ.get("SIP_FUZZ_N", "6000"))
SEED = int(os.environ.get("SIP_FUZZ_SEED", "4475"))

SDP = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
INVITE = (b"INVITE sip:bob@biloxi.example.com;transport=udp SIP/2.0\r\n"
          b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK74bf9;rport, SIP/2.0/TCP [2001:db8::1]:5061;branch=z9hG4bKx\r\n"
          b"Max-Forwards: 70\r\n"
          b"Route: <sip:p1.example.com;lr>, \"P 2\" <sip:p2.example.com;lr>\r\n"
          b"From: \"Alice\" <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n"
          b"To: Bob <sip:bob@biloxi.example.com>\r\n"
          b"Call-ID: 3848276298220188511@atlanta.example.com\r\n"
          b"CSeq: 1 INVITE\r\n"
          b"Contact: <sip:alice@192.0.2.1;transport=udp>;expires=60;q=0.5\r\n"
          b"Date: Sat, 13 Nov 2010 23:29:00 GMT\r\n"
          b"Content-Type: application/sdp\r\n"
          b"Content-Length: " + str(len(SDP)).encode() + b"\r\n\r\n" + SDP)
OK = (b"SIP/2.0 200 OK\r\n"
      b"Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKours;rport=5060;received=10.0.0.1\r\n"
      b"v: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK74bf9;received=192.0.2.1;rport=5062\r\n"
      b"Record-Route: <sip:10.0.0.1;lr>\r\n"
      b"f: \"Alice\" <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n"
      b"t: <sip:bob@biloxi.example.com>;tag=8321234356\r\n"
      b"i: 3848276298220188511@atlanta.example.com\r\n"
      b"CSeq: 1 INVITE\r\n"
      b"m: <sip:bob@192.0.2.4>\r\n"
      b"l: 0\r\n\r\n")

SEEDS = [INVITE, OK] + [p.read_bytes() for p in sorted(DATA.glob("*.sip"))]
INTERESTING = [b"\r\n", b"\n", b"\r", b" ", b"\t", b":", b";", b",", b'"', b"<", b">", b"\\",
               b"\x00", b"\xff", b"\xc3", b"%", b"=", b"@", b"[", b"]", b"?", b"/", b"0",
               b"9" * 12, b"-1", b"\r\n ", b"\r\n\r\n", b"SIP/2.0", b"sip:", b"tel:", b"*",
               b"\xe2\x80\xa8", b"\x85"]


def mutate(rng: random.Random, data: bytes) -> bytes:
    n = len(data)
    op = rng.randrange(8)
    i = rng.randrange(n + 1)
    j = min(n, i + rng.randrange(1, 40))
    if op == 0:                      # truncation
        return data[:i]
    if op == 1:                      # delete a range
        return data[:i] + data[j:]
    if op == 2:                      # insert something interesting
        return data[:i] + rng.choice(INTERESTING) + data[i:]
    if op == 3:                      # overwrite one byte
        return data[:i] + bytes([rng.randrange(256)]) + data[i + 1:]
    if op == 4:                      # duplicate a range
        return data[:j] + data[i:j] + data[j:]
    if op == 5:                      # swap two lines
        lines = data.split(b"\r\n")
        if len(lines) > 2:
            a, b = rng.randrange(len(lines)), rng.randrange(len(lines))
            lines[a], lines[b] = lines[b], lines[a]
        return b"\r\n".join(lines)
    if op == 6:                      # replace a range by an interesting token
        return data[:i] + rng.choice(INTERESTING) + data[j:]
    return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))  # noise


def check_structure(m: Message):
    """The header lines tile the header section exactly, each starting with its name."""
    pos = m._hdr_start
    for h in m.headers:
        assert h.start == pos and h.end > h.start
        line = m.raw[h.start:h.end]
        assert line.endswith(b"\n")
        assert line.decode("utf-8", "surrogateescape").startswith(h.name)
        pos = h.end
    assert pos == m._hdr_end <= m._body_start <= len(m.raw)
    # differential: the careful scanner sees exactly what the fast path saw
    fl_end = m._hdr_start - 1
    hdr_end, body_start, slow = Message._slow_headers(m.raw, fl_end, m.raw.find(b"\n\r\n", fl_end), 400)
    assert (hdr_end, body_start) == (m._hdr_end, m._body_start)
    assert [(h.name, h.key, h.value, h.start, h.end) for h in slow] == \
        [(h.name, h.key, h.value, h.start, h.end) for h in m.headers]
    assert m.raw[m._body_start:] == m.body
    assert len(m.get_all("via")) == m.count("via")


def exercise(m: Message):
    """Every public reader and writer; each may raise SIPError only."""
    check_structure(m)
    steps = [
        lambda: m.check_mandatory(), lambda: m.vias, lambda: m.via1, lambda: m.from_,
        lambda: m.to, lambda: m.call_id, lambda: m.cseq, lambda: m.contacts,
        lambda: m.routes, lambda: m.record_routes, lambda: m.max_forwards,
        lambda: m.content_type, lambda: m.date, lambda: m.parsed_ruri,
        lambda: m.check_proxy_require(["timer"]), lambda: m.from_tag, lambda: m.to_tag,
        lambda: [c.parsed_uri for c in m.contacts], lambda: [str(c) for c in m.contacts],
        lambda: [r.parsed_uri for r in m.routes], lambda: [str(v) for v in m.vias],
        lambda: m.get("via"), lambda: m.get_all("contact"), lambda: m.count("route"),
        lambda: [m.raw[h.start:h.end] for h in m.headers], lambda: make_to_tag(m),
        lambda: stream_frame_length(m.raw),
    ]
    for step in steps:
        try:
            step()
        except SIPError:
            pass
    try:
        v = m.via1
        if v is not None:
            via_received_params(v, "192.0.2.77", 5099, True)
            reply_destination(v, ("192.0.2.77", 5099))
            reply_destination(v)
    except SIPError:
        pass
    e = Edits(m)
    e.add_header("X-Fuzz: 1", "top")
    if m.headers:
        e.replace_header(m.headers[-1], "X-Last: 2")
        e.add_header("X-After: 3", "after", m.headers[0])
    if m.body:
        e.replace_range(0, min(3, len(m.body)), "xyz")
    try:
        if m.is_request:
            make_reply(m, 400, "Bad Request")
            make_reply(m, 200, "OK", headers=["Contact: <sip:x@y>"], body=b"b")
            build_request(m, e, top_via="SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKf", stream=True)
            if m.routes:
                build_request(m, None, drop_route_count=1)
        else:
            build_reply(m, e, stream=True)
        apply(m, e)
    except SIPError:
        pass


def test_seeds_exercise_cleanly():
    for data in SEEDS:
        try:
            m = Message.parse(data)
        except SIPError:
            continue
        exercise(m)


def test_fuzz_only_sip_errors():
    rng = random.Random(SEED)
    parsed = 0
    for _ in range(N):
        data = rng.choice(SEEDS)
        for _ in range(rng.randrange(1, 4)):
            data = mutate(rng, data)
        try:
            stream_frame_length(data)
        except SIPError:
            pass
        try:
            m = Message.parse(data)
        except SIPError as e:
            assert e.status in (None, 400, 413, 505, 513)
            continue
        parsed += 1
        exercise(m)
    assert parsed > N // 10  # the mutations leave plenty of parsable messages to exercise


@pytest.mark.parametrize("data", [
    # long runs where a backtracking regex would go quadratic or worse
    b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;a" + b" " * 30000 + b"x\r\n\r\n",
    b"OPTIONS sip:a@b SIP/2.0\r\nFrom: <sip:a@b>" + b" ;x" * 10000 + b" ;;\r\n\r\n",
    b"OPTIONS sip:a@b SIP/2.0\r\nTo: " + b"tok " * 12000 + b"<sip:a@b\r\n\r\n",
    b"OPTIONS sip:a@b SIP/2.0\r\nContact: \"" + b"\\\"" * 20000 + b"\r\n\r\n",
    b"OPTIONS sip:a@b SIP/2.0\r\nContact: " + b"<sip:a@b>," * 5000 + b",\r\n\r\n",
    b"OPTIONS" + b" " * 60000 + b"x SIP/2.0\r\n\r\n",
    b"OPTIONS sip:a@b SIP/2.0\r\n" + b"X: y\r\n" * 9000 + b"\r\n",
    b"OPTIONS sip:a@b SIP/2.0\r\n" + b"X: y\r\n " * 9000 + b"\r\n",
    b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h" + b";branch=1" * 6000 + b" ,\r\n\r\n",
    b"OPTIONS sip:a@b SIP/2.0\r\nl:" + b" " * 60000 + b"x\r\n\r\n",
    b"OPTIONS sip:a@b SIP/2.0\r\nl: 1" + b" " * 60000 + b"\r\n\r\n",
])
def test_pathological_inputs_are_fast(data):
    t0 = time.perf_counter()
    try:
        stream_frame_length(data)
    except SIPError:
        pass
    try:
        m = Message.parse(data)
        exercise(m)
    except SIPError:
        pass
    assert time.perf_counter() - t0 < 1.0

"""Core pseudo-variables: read each on a real message, write the writable ones."""
import pytest

from cfgscript import ast as A
from cfgscript.pvspec import parse_pv
from runtime.context import Branch, Context
from runtime.engine import Runtime, Socket
from runtime.pv import PVError, bind
from runtime.sip.message import Message
from runtime.values import StrInt

INVITE = (
    b"INVITE sip:alice@example.com:5070;transport=tcp SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKabc\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bKdef\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: \"Bob B\" <sip:bob@biloxi.com>;tag=ftag1\r\n"
    b"To: Alice <sip:alice@example.com>\r\n"
    b"Call-ID: cid-42\r\n"
    b"CSeq: 7 INVITE\r\n"
    b"Contact: <sip:bob@10.0.0.1:5060>;expires=60;q=0.5, <sip:bob@10.0.0.2>\r\n"
    b"User-Agent: softphone 1.0\r\n"
    b"P-Asserted-Identity: <sip:+15551234@biloxi.com>\r\n"
    b"Refer-To: <sip:carol@chicago.com>\r\n"
    b"X-Multi: one\r\nX-Multi: two\r\n"
    b"Proxy-Authorization: Digest username=\"bob\", realm=\"biloxi.com\", nonce=\"n1\","
    b" uri=\"sip:alice@example.com\", response=\"r1\", qop=auth, nc=00000001, cnonce=\"c1\"\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 4\r\n\r\nv=0\n")

REPLY = (b"SIP/2.0 486 Busy Here\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKabc\r\n"
         b"From: <sip:bob@biloxi.com>;tag=ftag1\r\nTo: <sip:alice@example.com>;tag=ttag\r\n"
         b"Call-ID: cid-42\r\nCSeq: 7 INVITE\r\nContent-Length: 0\r\n\r\n")


@pytest.fixture
def ctx():
    rt = Runtime()
    sock = Socket("udp", "192.0.2.10", 5060, adv_ip="203.0.113.5", tag="public")
    rt.sockets.append(sock)
    return Context(rt, Message.parse(INVITE), src=("10.0.0.1", 5062), socket=sock)


def get(ctx, text):
    return bind(parse_pv(text)).get(ctx)


def put(ctx, text, value, op="="):
    bind(parse_pv(text)).set(ctx, value, op)


@pytest.mark.parametrize("pv,value", [
    ("$ru", "sip:alice@example.com:5070;transport=tcp"),
    ("$ruri", "sip:alice@example.com:5070;transport=tcp"),
    ("$rU", "alice"), ("$rd", "example.com"), ("$rp", "5070"), ("$rP", "tcp"),
    ("$ou", "sip:alice@example.com:5070;transport=tcp"), ("$oU", "alice"),
    ("$od", "example.com"), ("$op", "5070"), ("$oP", "tcp"),
    ("$du", None), ("$fu", "sip:bob@biloxi.com"), ("$fU", "bob"), ("$fd", "biloxi.com"),
    ("$fn", "\"Bob B\""), ("$ft", "ftag1"), ("$tu", "sip:alice@example.com"), ("$tU", "alice"),
    ("$td", "example.com"), ("$tn", "Alice"), ("$tt", None), ("$ci", "cid-42"), ("$cs", "7"),
    ("$cl", "4"), ("$cT", "application/sdp"), ("$rm", "INVITE"), ("$rs", None), ("$rr", None),
    ("$ua", "softphone 1.0"), ("$ai", "sip:+15551234@biloxi.com"),
    ("$rt", "sip:carol@chicago.com"), ("$hdr(X-Multi)", "one"), ("$(hdr(X-Multi)[1])", "two"),
    ("$(hdr(X-Multi)[-1])", "two"), ("$(hdr(X-Multi)[*])", "one, two"),
    ("$hdr(x-multi)", "one"), ("$hdrcnt(X-Multi)", 2), ("$hdrcnt(Via)", 2),
    ("$hdr(f)", "\"Bob B\" <sip:bob@biloxi.com>;tag=ftag1"), ("$rb", "v=0\n"),
    ("$ml", len(INVITE)), ("$si", "10.0.0.1"), ("$sp", 5062), ("$Ri", "192.0.2.10"),
    ("$Rp", 5060), ("$pr", "udp"), ("$proto", "udp"), ("$af", "INET"),
    ("$socket_in", "udp:192.0.2.10:5060"), ("$socket_in(ip)", "192.0.2.10"),
    ("$socket_in(port)", 5060), ("$socket_in(proto)", "udp"),
    ("$socket_in(advertised_ip)", "203.0.113.5"), ("$socket_in(tag)", "public"),
    ("$ct", "<sip:bob@10.0.0.1:5060>;expires=60;q=0.5"),
    ("$(ct[1])", "<sip:bob@10.0.0.2>"), ("$ct.fields(uri)", "sip:bob@10.0.0.1:5060"),
    ("$ct.fields(expires)", "60"), ("$ct.fields(q)", "0.5"),
    ("$au", "bob"), ("$ar", "biloxi.com"), ("$adu", "sip:alice@example.com"),
    ("$auth.nonce", "n1"), ("$auth.resp", "r1"), ("$auth.qop", "auth"), ("$auth.nc", "00000001"),
    ("$auth.cnonce", "c1"), ("$msg.is_request", 1), ("$msg.type", "request"),
    ("$(ru{uri.user})", "alice"), ("$(fu{uri.host}{s.toupper})", "BILOXI.COM"),
    ("$(ci{s.len})", 6),
])
def test_read(ctx, pv, value):
    got = get(ctx, pv)
    assert got == value
    if pv in ("$rp", "$op"):  # "strint": a string with an integer reading
        assert isinstance(got, StrInt) and got.ival == 5070


def test_reply_pvs():
    rt = Runtime()
    c = Context(rt, Message.parse(REPLY))
    assert (get(c, "$rs"), get(c, "$rr"), get(c, "$rm"), get(c, "$tt")) == \
        (486, "Busy Here", "INVITE", "ttag")
    assert get(c, "$ru") is None and get(c, "$msg.type") == "reply"


def test_write_request_uri_parts(ctx):
    put(ctx, "$rU", "carol")
    put(ctx, "$rd", "atlanta.com")
    put(ctx, "$rp", 5080)
    assert ctx.ruri == "sip:carol@atlanta.com:5080;transport=tcp"
    assert get(ctx, "$ou") == "sip:alice@example.com:5070;transport=tcp"  # original kept
    put(ctx, "$ru", "sip:dave@10.1.1.1")
    assert get(ctx, "$rU") == "dave" and get(ctx, "$rp") == StrInt("", 0)
    with pytest.raises(PVError):
        put(ctx, "$ru", "not a uri")


def test_write_destination(ctx):
    put(ctx, "$du", "sip:10.9.9.9:5090;transport=tcp")
    assert (get(ctx, "$dd"), get(ctx, "$dp"), get(ctx, "$dP")) == ("10.9.9.9", "5090", "tcp")
    assert get(ctx, "$dp").ival == 5090
    put(ctx, "$du", None)
    assert get(ctx, "$du") is None


def test_read_only_pvs_refuse_writes(ctx):
    for pv in ("$ci", "$fu", "$si", "$rm"):
        b = bind(parse_pv(pv))
        assert not b.writable
        with pytest.raises(PVError):
            b.set(ctx, "x")


def test_flags_pvs(ctx):
    rt = ctx.rt
    ctx.flags = 1 << rt.flag_names.bit("NAT") | 1 << rt.flag_names.bit(3)
    assert get(ctx, "$mf") == "3 NAT"
    assert get(ctx, "$msg.flag(NAT)") == 1
    put(ctx, "$msg.flag(NAT)", 0)
    assert get(ctx, "$msg.flag(NAT)") == 0
    ctx.bflags = 1 << rt.bflag_names.bit("B1")
    assert get(ctx, "$bf") == "B1"


def test_rc_params_route_time(ctx):
    ctx.rc = -3
    ctx.params = ("a", 2)
    ctx.route_stack.append(("relay", 1))
    assert (get(ctx, "$rc"), get(ctx, "$retcode")) == (-3, -3)
    assert (get(ctx, "$param(1)"), get(ctx, "$param(2)"), get(ctx, "$param(3)")) == ("a", 2, None)
    assert get(ctx, "$route") == "relay"
    assert len(get(ctx, "$time(%Y)")) == 4 and get(ctx, "$Ts") > 1_700_000_000


def test_var_avp_semantics(ctx):
    put(ctx, "$var(x)", 5)
    assert get(ctx, "$var(x)") == 5
    put(ctx, "$avp(a)", "one")
    put(ctx, "$avp(a)", "two")
    assert get(ctx, "$(avp(a)[*])") == "two, one"
    put(ctx, "$(avp(a)[append])", "zero")
    assert get(ctx, "$(avp(a)[-1])") == "zero"
    put(ctx, "$avp(a)", "only", ":=")
    assert get(ctx, "$(avp(a)[*])") == "only"


def test_dynamic_names_and_indexes(ctx):
    put(ctx, "$var(h)", "User-Agent")
    assert get(ctx, "$hdr($var(h))") == "softphone 1.0"
    put(ctx, "$var(i)", 1)
    assert get(ctx, "$(hdr(X-Multi)[$var(i)])") == "two"


def test_unknown_pv_and_bad_use():
    with pytest.raises(PVError, match="unknown pseudo-variable"):
        bind(A.PV("nosuch"))
    with pytest.raises(PVError, match="needs a name"):
        bind(parse_pv("$hdr"))
    with pytest.raises(PVError, match="cannot be indexed"):
        bind(parse_pv("$(ci[1])"))


def test_branch_flags_follow_branches(ctx):
    ctx.branches.append(Branch("sip:x@y", flags=1 << ctx.rt.bflag_names.bit("NAT")))
    assert ctx.branches[0].flags

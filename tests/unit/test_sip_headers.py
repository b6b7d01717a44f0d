"""runtime.sip.headers: Via, NameAddr, parameters, comma splitting, names."""
import pytest

from runtime.sip import NameAddr, SIPError, Via, canonical_name
from runtime.sip.headers import find_param, format_params, parse_params, split_commas


def test_via_basic():
    v = Via.parse("SIP/2.0/UDP pc33.atlanta.com:5066;branch=z9hG4bK776asdhds;rport;received=10.0.0.1")
    assert (v.protocol, v.transport, v.host, v.port) == ("SIP/2.0/UDP", "UDP", "pc33.atlanta.com", 5066)
    assert v.branch == "z9hG4bK776asdhds" and v.rport == "" and v.received == "10.0.0.1"
    assert v.maddr is None and v.ttl is None and v.param("BRANCH") == "z9hG4bK776asdhds"
    assert v.params == [("branch", "z9hG4bK776asdhds"), ("rport", None), ("received", "10.0.0.1")]
    assert v.sent_by == "pc33.atlanta.com:5066"
    assert str(v) == "SIP/2.0/UDP pc33.atlanta.com:5066;branch=z9hG4bK776asdhds;rport;received=10.0.0.1"


@pytest.mark.parametrize("text, host, port, transport", [
    ("SIP/2.0/TCP [2001:db8::9:1]:5061;branch=z9hG4bKas", "[2001:db8::9:1]", 5061, "TCP"),
    ("SIP/2.0/UDP [::1];branch=z9hG4bKas", "[::1]", None, "UDP"),
    ("SIP / 2.0 / tls   host.example.com  :  5061 ; branch = z9hG4bK1 ; rport", "host.example.com", 5061, "TLS"),
    ("SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bKx", "df7jal23ls0d.invalid", None, "WSS"),
    ("SIP/2.0/UDP 192.0.2.1", "192.0.2.1", None, "UDP"),
    ("SIP/2.0/UDP host_with_underscore.example.com;branch=1", "host_with_underscore.example.com", None, "UDP"),
])
def test_via_forms(text, host, port, transport):
    v = Via.parse(text)
    assert (v.host, v.port, v.transport) == (host, port, transport)


def test_via_quoted_param_and_list():
    v = Via.parse('SIP/2.0/UDP h;branch=z9hG4bK1;x="a b;c"')
    assert v.param("x") == "a b;c" and v.params[-1] == ("x", '"a b;c"')
    vs = Via.parse_list("SIP/2.0/UDP a;branch=1 , SIP/2.0/TCP b:5070;branch=2")
    assert [(x.host, x.port) for x in vs] == [("a", None), ("b", 5070)]


@pytest.mark.parametrize("text", [
    "", "SIP/2.0 host", "SIP/2.0/UDP", "SIP/2.0/UDP host:70000", "SIP/2.0/UDP host;;branch=1",
    "SIP/2.0/UDP host;branch=1;", "SIP/2.0/UDP host junk", "SIP/2.0/UDP [::1;branch=1",
    "SIP/2.0/UDP host;=x", "SIP/2.0/UDP host;branch=a=b", "SIP/2.0/UDP 192.0.2.15;;,;,,",
])
def test_via_errors(text):
    with pytest.raises(SIPError) as ei:
        Via.parse_list(text) if "," in text else Via.parse(text)
    assert ei.value.status == 400
    with pytest.raises(SIPError) as ei:
        Via.parse(text or "x", err=None)
    assert ei.value.status is None


def test_via_replace_params():
    v = Via.parse("SIP/2.0/UDP h:5060;branch=z9hG4bK1;rport")
    w = v.replace_params(rport="5070", received="1.2.3.4")
    assert str(w) == "SIP/2.0/UDP h:5060;branch=z9hG4bK1;rport=5070;received=1.2.3.4"
    assert str(v.replace_params(rport=False)) == "SIP/2.0/UDP h:5060;branch=z9hG4bK1"
    assert str(v.replace_params(alias=None)) == "SIP/2.0/UDP h:5060;branch=z9hG4bK1;rport;alias"
    assert str(Via("SIP/2.0/TCP", "h", 5060, [("branch", "b")])) == "SIP/2.0/TCP h:5060;branch=b"


@pytest.mark.parametrize("text, display, uri, params, quoted", [
    ('"Alice" <sip:alice@atlanta.com>;tag=1928301774', "Alice", "sip:alice@atlanta.com",
     [("tag", "1928301774")], True),
    ("<sip:bob@biloxi.com>", None, "sip:bob@biloxi.com", [], False),
    ("Bob <sip:bob@biloxi.com>;tag=a6c85cf", "Bob", "sip:bob@biloxi.com", [("tag", "a6c85cf")], False),
    ("Anonymous Caller <sip:c8oqz84zk7z@privacy.org>", "Anonymous Caller", "sip:c8oqz84zk7z@privacy.org", [], False),
    ("sip:+12125551212@server.phone2net.com;tag=887s", None, "sip:+12125551212@server.phone2net.com",
     [("tag", "887s")], False),
    ("sip:user@host ; tag = x", None, "sip:user@host", [("tag", "x")], False),
    ('"" <sip:a@b>', "", "sip:a@b", [], True),
    ('"A \\"quoted\\" name" <sip:a@b>', 'A \\"quoted\\" name', "sip:a@b", [], True),
    ('"Jörg" <sip:j@x>', "Jörg", "sip:j@x", [], True),
    ("Jörg <sip:j@x>", "Jörg", "sip:j@x", [], False),
    ("<sip:a@b;lr;transport=udp>;expires=60;+sip.instance=\"<urn:uuid:1>\"", None,
     "sip:a@b;lr;transport=udp", [("expires", "60"), ("+sip.instance", '"<urn:uuid:1>"')], False),
    ("<sip:user@example.com?Route=%3Csip:sip.example.com%3E>", None,
     "sip:user@example.com?Route=%3Csip:sip.example.com%3E", [], False),
    ("<tel:+1234>", None, "tel:+1234", [], False),
    ("<urn:service:sos>", None, "urn:service:sos", [], False),
    ("isbn:2983792873", None, "isbn:2983792873", [], False),
    ("  <sip:a@b>  ", None, "sip:a@b", [], False),
])
def test_name_addr(text, display, uri, params, quoted):
    na = NameAddr.parse(text)
    assert (na.display, na.uri, na.params, na.quoted) == (display, uri, params, quoted)


def test_name_addr_str_and_tag():
    na = NameAddr.parse('"Alice" <sip:alice@atlanta.com>;tag=1928301774')
    assert na.tag == "1928301774" and na.param("TAG") == "1928301774"
    assert str(na) == '"Alice" <sip:alice@atlanta.com>;tag=1928301774'
    assert str(NameAddr.parse("sip:a@b;tag=1")) == "sip:a@b;tag=1"
    assert str(NameAddr.parse("Bob <sip:b@x>")) == "Bob <sip:b@x>"
    assert str(NameAddr("sip:a@b", "Al B", [("tag", "t")])) == "Al B <sip:a@b>;tag=t"
    assert str(NameAddr("sip:a@b", "Al, B")) == '"Al, B" <sip:a@b>'
    assert str(NameAddr("sip:a@b")) == "<sip:a@b>"
    assert NameAddr.parse("<sip:a@b:5070;lr>").parsed_uri.port == 5070
    with pytest.raises(SIPError):
        NameAddr.parse("<urn:x>").parsed_uri


@pytest.mark.parametrize("text", [
    "", '"unterminated <sip:a@b>', "<sip:a@b", "Bell, Alexander <sip:a@b>", "< sip:a@b >",
    "<>", "<notauri>", "sip:a@b?x=y", '"a" sip:a@b', "sip:a@b;;", "<sip:a@b>;;;;",
    "<sip:a@b> junk", "a<b <sip:x@y>", "<sip:a b@c>", "sip:a@b;=x",
])
def test_name_addr_errors(text):
    with pytest.raises(SIPError) as ei:
        NameAddr.parse(text)
    assert ei.value.status == 400


def test_name_addr_list():
    nas = NameAddr.parse_list('"x, y" <sip:a@b>;q=0.1, <sip:c@d;lr>,sip:e@f;expires=5')
    assert [n.uri for n in nas] == ["sip:a@b", "sip:c@d;lr", "sip:e@f"]
    assert nas[0].display == "x, y" and nas[2].param("expires") == "5"


def test_split_commas():
    assert split_commas("a, b ,c") == ["a", "b", "c"]
    assert split_commas('"a,b" <sip:x,y@z>, c') == ['"a,b" <sip:x,y@z>', "c"]
    assert split_commas('"a\\",b" <sip:x>') == ['"a\\",b" <sip:x>']
    for bad in ("a,,b", "a,", ",a", '"open, b'):
        with pytest.raises(SIPError):
            split_commas(bad)


def test_params_helpers():
    p = parse_params(' ; a = 1 ;b; c="x y" ')
    assert p == [("a", "1"), ("b", None), ("c", '"x y"')]
    assert format_params(p) == ';a=1;b;c="x y"'
    assert find_param(p, "A") == "1" and find_param(p, "b") == "" and find_param(p, "c") == "x y"
    assert find_param(p, "z") is None
    with pytest.raises(SIPError):
        parse_params(";a;;b")


def test_canonical_name():
    assert canonical_name("V") == "via" and canonical_name(" Call-ID ") == "call-id"
    assert canonical_name("X-Custom") == "x-custom" and canonical_name("l") == "content-length"

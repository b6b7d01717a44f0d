"""runtime.sip.uri: sip/sips/tel URIs, round trip, replace, errors."""
import pytest

from runtime.sip import URI, SIPError, unescape


@pytest.mark.parametrize("text, fields", [
    ("sip:alice@atlanta.com", dict(scheme="sip", user="alice", password=None,
                                   host="atlanta.com", port=None, params=[], headers="")),
    ("sip:alice:secretword@atlanta.com;transport=tcp",
     dict(user="alice", password="secretword", params=[("transport", "tcp")])),
    ("sips:alice@atlanta.com?subject=project%20x&priority=urgent",
     dict(scheme="sips", headers="subject=project%20x&priority=urgent")),
    ("sip:+1-212-555-1212:1234@gateway.com;user=phone",
     dict(user="+1-212-555-1212", password="1234", params=[("user", "phone")])),
    ("sips:1212@gateway.com", dict(user="1212", host="gateway.com")),
    ("sip:alice@192.0.2.4", dict(host="192.0.2.4")),
    ("sip:atlanta.com;method=REGISTER?to=alice%40atlanta.com",
     dict(user="", host="atlanta.com", params=[("method", "REGISTER")], headers="to=alice%40atlanta.com")),
    ("sip:alice;day=tuesday@atlanta.com", dict(user="alice;day=tuesday", host="atlanta.com")),
    ("sip:proxy.example.com:5070;lr", dict(host="proxy.example.com", port=5070, params=[("lr", None)])),
    ("sip:[2001:db8::10]", dict(host="[2001:db8::10]", port=None)),
    ("sip:user@[2001:db8::10]:5061;transport=tls",
     dict(user="user", host="[2001:db8::10]", port=5061, params=[("transport", "tls")])),
    ("sip:[::1]:5060;lr;maddr=[::2]", dict(host="[::1]", port=5060, params=[("lr", None), ("maddr", "[::2]")])),
    ("SIP:Bob@Biloxi.COM", dict(scheme="SIP", user="Bob", host="Biloxi.COM")),
    ("sip:host;lr=", dict(params=[("lr", "")])),
    ("tel:+1-201-555-0123", dict(scheme="tel", user="+1-201-555-0123", host="", params=[])),
    ("tel:7042;phone-context=example.com",
     dict(scheme="tel", user="7042", params=[("phone-context", "example.com")])),
    ("tel:863-1234;phone-context=+1-914-555;isub=abc",
     dict(user="863-1234", params=[("phone-context", "+1-914-555"), ("isub", "abc")])),
])
def test_parse_and_round_trip(text, fields):
    u = URI.parse(text)
    for k, v in fields.items():
        assert getattr(u, k) == v, k
    assert str(u) == text
    # rebuilding from the components gives the same text for all these
    assert str(u.replace()) == text


def test_param_lookup():
    u = URI.parse("sip:p.example.com;LR;Transport=TCP;maddr=10.0.0.1")
    assert u.param("lr") == ""          # present without value
    assert u.param("transport") == "TCP"
    assert u.param("TRANSPORT") == "TCP"
    assert u.param("ttl") is None       # absent
    assert u.hostport == "p.example.com"
    assert URI.parse("sip:h:5060").hostport == "h:5060"
    assert URI.parse("tel:+1234").is_tel


def test_replace():
    u = URI.parse("sip:alice@atlanta.com;transport=udp")
    v = u.replace(host="10.0.0.1", port=5080)
    assert str(v) == "sip:alice@10.0.0.1:5080;transport=udp"
    assert str(u) == "sip:alice@atlanta.com;transport=udp"  # unchanged
    assert str(u.replace(user="")) == "sip:atlanta.com;transport=udp"
    assert str(u.replace(params=[], headers="X=1")) == "sip:alice@atlanta.com?X=1"
    assert str(u.replace(password="pw", scheme="sips")) == "sips:alice:pw@atlanta.com;transport=udp"
    assert str(URI.parse("tel:+1234;x=y").replace(params=[])) == "tel:+1234"
    with pytest.raises(TypeError):
        u.replace(nonsense=1)
    assert URI.parse("sip:a@b") == URI.parse("sip:a@b") and hash(URI.parse("sip:a@b"))


def test_constructor():
    u = URI("sip", "bob", None, "biloxi.com", 5060, [("lr", None)])
    assert str(u) == "sip:bob@biloxi.com:5060;lr"


@pytest.mark.parametrize("text, status", [
    ("", 400), ("alice@atlanta.com", 400), (":x", 400), ("1sip:x", 400),
    ("sip:", 400), ("sip:@host", 400), ("sip:user@", 400), ("sip:host:", 400),
    ("sip:host:99999", 400), ("sip:host:12ab", 400), ("sip:host:1234567", 400),
    ("sip:ho st", 400), ("sip:<host>", 400), ('sip:"x"@h', 400), ("sip:host;;lr", 400),
    ("sip:host;=x", 400), ("sip:host junk", 400), ("sip:host/path", 400), ("tel:", 400),
    ("http://www.example.com", 416), ("mailto:a@b", 416), ("urn:service:sos", 416),
    ("sip:\x00@h", 400),
])
def test_errors(text, status):
    with pytest.raises(SIPError) as ei:
        URI.parse(text)
    assert ei.value.status == status


def test_unescape():
    assert unescape("sips%3Auser%40example.com") == "sips:user@example.com"
    assert unescape("null-%00-null") == "null-\x00-null"
    assert unescape("value%25%34%31") == "value%41"   # once, not recursively
    assert unescape("%Z%45") == "%ZE"
    assert unescape("plain") == "plain"

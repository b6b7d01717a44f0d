"""uac_auth: the credential store (static, per-call AVPs), the digest answer to a challenge
(checked against the digest arithmetic), and uac's uac_auth() using it whatever the order
the modules are loaded in (1.x/2.x uac credentials included)."""
from cfgscript import parse_text
from modules.auth import digest
from runtime.context import Context
from runtime.loader import load_script
from runtime.sip.auth import parse_digest
from runtime.sip.message import Message

INVITE = (b"INVITE sip:bob@gw.example SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n"
          b"From: <sip:alice@example.com>;tag=f1\r\nTo: <sip:bob@gw.example>\r\n"
          b"Call-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")


def challenge(code=407, realm="gw.example", extra=""):
    hdr = "Proxy-Authenticate" if code == 407 else "WWW-Authenticate"
    return Message.parse((
        f"SIP/2.0 {code} Auth\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n"
        f"From: <sip:alice@example.com>;tag=f1\r\nTo: <sip:bob@gw.example>;tag=t\r\n"
        f"Call-ID: c1\r\nCSeq: 1 INVITE\r\n"
        f'{hdr}: Digest realm="{realm}", nonce="abc123", qop="auth,auth-int", '
        f'opaque="op"{extra}\r\nContent-Length: 0\r\n\r\n').encode())


def load(text):
    loaded = load_script(parse_text(text + "\nroute { exit; }\nfailure_route[f] { uac_auth(); }"
                                    if "uac.so" in text else text + "\nroute { exit; }", "t.cfg"))
    assert loaded.ok, [str(d) for d in loaded.diagnostics]
    rt = loaded.rt
    for m in rt.modules.values():
        if m.init and m.name in ("uac_auth", "uac", "tm", "rr"):
            m.init(rt)
    return rt


def check(line, user, realm, password, method="INVITE", uri="sip:bob@gw.example"):
    name, _, value = line.partition(": ")
    d = parse_digest(value)
    assert d["username"] == user and d["realm"] == realm and d["opaque"] == "op"
    want = digest.response("MD5", digest.ha1("MD5", user, realm, password), d["nonce"], method,
                           uri, qop=d.get("qop"), nc=d.get("nc"), cnonce=d.get("cnonce"))
    assert d["response"] == want and d["qop"] == "auth" and d["nc"] == "00000001"
    return name


def test_static_credentials_answer_the_realm():
    rt = load('loadmodule "uac_auth.so"\n'
              'modparam("uac_auth", "credential", "gwuser:gw.example:gwpass")\n'
              'modparam("uac_auth", "credential", "other:other.realm:x:y")')
    api = rt.apis["uac_auth"]
    line = api.authorize(challenge(), "INVITE", "sip:bob@gw.example")
    assert check(line, "gwuser", "gw.example", "gwpass") == "Proxy-Authorization"
    assert api.credential(None, "other.realm") == ("other", "x:y")
    assert api.authorize(challenge(realm="nobody"), "INVITE", "sip:x") is None
    line = api.authorize(challenge(401, realm="r"), "REGISTER", "sip:reg", credential=("u", "p"))
    assert check(line, "u", "r", "p", "REGISTER", "sip:reg") == "Authorization"


def test_per_call_credentials_from_avps():
    rt = load('loadmodule "uac_auth.so"\n'
              'modparam("uac_auth", "auth_username_avp", "$avp(user)")\n'
              'modparam("uac_auth", "auth_password_avp", "$avp(pass)")\n'
              'modparam("uac_auth", "auth_realm_avp", "$avp(realm)")')
    ctx = Context(rt, Message.parse(INVITE))
    ctx.avps.update(user=["carol"], **{"pass": ["c-pw"]}, realm=["gw.example"])
    line = rt.apis["uac_auth"].authorize(challenge(), "INVITE", "sip:bob@gw.example", ctx)
    check(line, "carol", "gw.example", "c-pw")
    ctx.avps["realm"] = ["elsewhere"]
    assert rt.apis["uac_auth"].authorize(challenge(), "INVITE", "sip:x", ctx) is None


def test_uac_uses_uac_auth_whatever_the_load_order():
    for order in ('loadmodule "uac_auth.so"\nloadmodule "uac.so"',
                  'loadmodule "uac.so"\nloadmodule "uac_auth.so"'):
        rt = load('loadmodule "tm.so"\nloadmodule "rr.so"\n' + order + '\n'
                  'modparam("uac_auth", "credential", "a:gw.example:apw")\n'
                  'modparam("uac", "credential", "b:b.realm:bpw")')
        api = rt.apis["uac_auth"]
        assert api.credential(None, "gw.example") == ("a", "apw")
        assert api.credential(None, "b.realm") == ("b", "bpw")


def test_bad_credential_is_a_load_error():
    loaded = load_script(parse_text('loadmodule "uac_auth.so"\n'
                                    'modparam("uac_auth", "credential", "nouser")\n'
                                    'route { exit; }', "t.cfg"))
    assert any("user:realm:password" in d.message for d in loaded.diagnostics)

"""auth: digest arithmetic (RFC 2617/7616 vectors), nonces, and the authorize return codes
on messages run through a loaded script (no network)."""
import pytest

from cfgscript import parse_text
from modules.auth import digest
from runtime.context import Context, ScriptExit
from runtime.loader import load_script
from runtime.sip.message import Message


def test_rfc2617_and_rfc7616_vectors():
    ha1 = digest.ha1("MD5", "Mufasa", "testrealm@host.com", "Circle Of Life")
    assert digest.response("MD5", ha1, "dcd98b7102dd2f0e8b11d0f600bfb0c093", "GET",
                           "/dir/index.html", qop="auth", nc="00000001",
                           cnonce="0a4f113b") == "6629fae49393a05397450978507c4ef1"
    nonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
    cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
    for alg, want in (("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
                      ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1")):
        ha1 = digest.ha1(alg, "Mufasa", "http-auth@example.org", "Circle of Life")
        assert digest.response(alg, ha1, nonce, "GET", "/dir/index.html", qop="auth",
                               nc="00000001", cnonce=cnonce) == want


def test_algorithm_names():
    assert digest.algorithm(None) == "MD5"
    assert digest.algorithm("sha-256") == "SHA-256"
    assert digest.algorithm("AKAv1-MD5") is None
    assert digest.base("SHA-256-sess") == "SHA-256"


def test_nonces_expire_are_signed_and_single_use():
    n = digest.Nonces("s3cret", 30)
    nonce = n.new(now=1000)
    assert len(nonce) == 48
    assert n.check(nonce, now=1010) == "ok"
    assert n.check(nonce, now=1031) == "stale"
    assert n.check(nonce[:-1] + ("0" if nonce[-1] != "0" else "1"), now=1010) == "stale"
    assert digest.Nonces("other", 30).check(nonce, now=1010) == "stale"
    assert n.consume(nonce, None, now=1010) and not n.consume(nonce, None, now=1011)
    q = n.new(now=1000)
    assert n.consume(q, "00000001", now=1001) and n.consume(q, "00000002", now=1002)
    assert not n.consume(q, "00000002", now=1003)
    assert digest.Nonces("s3cret", 30, check_replay=False).consume(nonce, None)


SCRIPT = """
loadmodule "sl.so"
loadmodule "auth.so"
modparam("auth", "username_spec", "$var(user)")
modparam("auth", "password_spec", "$var(pass)")
modparam("auth", "calculate_ha1", 1)
route {
    $var(user) = "alice";
    $var(pass) = "secret";
    pv_www_authorize("example.com");
    $var(rc) = $rc;
    pv_proxy_authorize("");
    $var(prc) = $rc;
}
"""


@pytest.fixture(scope="module")
def rt():
    loaded = load_script(parse_text(SCRIPT, "t.cfg"))
    assert loaded.ok, [str(d) for d in loaded.diagnostics]
    loaded.rt.modules["auth"].init(loaded.rt)
    return loaded.rt


def nonce(rt):
    from modules.auth import _state
    return _state["nonces"].new()


def register(header=None):
    text = ("REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n"
            "From: <sip:alice@example.com>;tag=1\r\nTo: <sip:alice@example.com>\r\n"
            "Call-ID: c1\r\nCSeq: 2 REGISTER\r\n" + (header + "\r\n" if header else "")
            + "Content-Length: 0\r\n\r\n")
    return Message.parse(text.encode())


def creds(nonce_value, *, user="alice", password="secret", realm="example.com", alg="MD5",
          qop="auth", nc="00000001", kind="Authorization"):
    ha1 = digest.ha1(digest.base(alg), user, realm, password)
    resp = digest.response(alg, ha1, nonce_value, "REGISTER", "sip:example.com",
                           qop=qop, nc=nc, cnonce="abc")
    q = f", qop={qop}, nc={nc}, cnonce=\"abc\"" if qop else ""
    return (f'{kind}: Digest username="{user}", realm="{realm}", nonce="{nonce_value}", '
            f'uri="sip:example.com", response="{resp}", algorithm={alg}{q}')


def run(rt, msg):
    ctx = Context(rt, msg, src=("10.0.0.1", 5060))
    try:
        rt.routes[("route", None)](ctx)
    except ScriptExit:
        pass
    return rt.vars["rc"], rt.vars["prc"], ctx


def test_authorize_codes(rt):
    assert run(rt, register())[:2] == (-4, -4)
    rc, prc, ctx = run(rt, register(creds(nonce(rt))))
    assert (rc, prc) == (1, -4) and ctx.local_data["auth_cred"].name == "Authorization"
    assert run(rt, register(creds(nonce(rt), password="wrong")))[0] == -2
    assert run(rt, register(creds(nonce(rt), user="bob")))[0] == -1
    assert run(rt, register(creds(nonce(rt), realm="other.org")))[0] == -4
    assert run(rt, register(creds("0" * 48)))[0] == -3


def test_replayed_credentials_are_stale(rt):
    header = creds(nonce(rt))
    assert run(rt, register(header))[0] == 1
    rc, _, ctx = run(rt, register(header))
    assert rc == -3 and ctx.local_data["auth_stale_www"]


def test_sha256_sess_and_no_qop_and_proxy_header(rt):
    assert run(rt, register(creds(nonce(rt), alg="SHA-256-sess")))[0] == 1
    assert run(rt, register(creds(nonce(rt), qop=None)))[0] == 1
    # proxy_authorize with realm "" takes the From domain
    assert run(rt, register(creds(nonce(rt), kind="Proxy-Authorization")))[:2] == (-4, 1)


def _errors(text):
    loaded = load_script(parse_text(text, "t.cfg"))
    return [d.message for d in loaded.diagnostics if d.severity == "error"]


def test_challenge_arguments_are_checked_at_load():
    base = 'loadmodule "sl.so"\nloadmodule "auth.so"\nroute { '
    assert _errors(base + 'www_challenge("", "auth,auth-int", "SHA-256,MD5"); '
                   'proxy_challenge("$fd", "1"); www_challenge("x", "0"); }') == []
    assert "bad qop" in _errors(base + 'www_challenge("", "yes"); }')[0]
    assert "unsupported algorithm 'AKAv1-MD5'" in _errors(
        base + 'www_challenge("", "auth", "AKAv1-MD5"); }')[0]

"""auth_db against a real SQLite file: authorize with SHA-256 HA1 columns, load_credentials,
the URI checks (db_does_uri_exist, db_is_*_authorized, db_get_auth_id, old uri names)."""
import pytest

from cfgscript import parse_text
from modules.auth import digest
from runtime import db
from runtime.context import Context, ScriptExit
from runtime.loader import load_script
from runtime.sip.message import Message

SCRIPT = """
loadmodule "sl.so"
loadmodule "db_sqlite.so"
loadmodule "auth.so"
loadmodule "auth_db.so"
modparam("auth_db", "db_url", "sqlite://{path}")
modparam("auth_db", "load_credentials", "$avp(caller_id)=rpid;email_address")
route {{
    www_authorize("example.com", "subscriber");
    $var(auth) = $rc;
    db_does_uri_exist("$ru", "subscriber");
    $var(exists) = $rc;
    db_does_uri_exist("sip:nobody@example.com", "subscriber");
    $var(nobody) = $rc;
    db_is_to_authorized("uri");
    $var(to_auth) = $rc;
    check_from();
    $var(from_same) = $rc;
    db_get_auth_id("uri", "sip:+4930@example.com", $var(au), $var(ar));
    $var(get_id) = $rc;
    db_does_uri_exist();
    $var(ruri_exists) = $rc;
    auth_check("example.com", "subscriber", 1);
    $var(kam) = $rc;
    is_subscriber("sip:alice@example.com", "subscriber", 1);
    $var(sub) = $rc;
}}
"""


@pytest.fixture
def rt(tmp_path):
    path = tmp_path / "o.db"
    conn = db.connect(f"sqlite://{path}", shared=False)
    conn.insert("subscriber", {"username": "alice", "domain": "example.com",
                               "ha1": digest.ha1("MD5", "alice", "example.com", "pw"),
                               "ha1_sha256": digest.ha1("SHA-256", "alice", "example.com", "pw"),
                               "rpid": "sip:+4930@example.com", "email_address": "a@x.org"})
    conn.insert("uri", {"username": "alice", "domain": "example.com", "uri_user": "+4930"})
    conn.close()
    loaded = load_script(parse_text(SCRIPT.format(path=path), "t.cfg"))
    assert loaded.ok, [str(d) for d in loaded.diagnostics]
    r = loaded.rt
    for name in ("db_sqlite", "auth", "auth_db"):
        r.modules[name].init(r)
    r.modules["auth_db"].child_init(r)
    yield r
    db.close_all()


def run(rt, to_user, alg="MD5", password="pw"):
    from modules.auth import _state
    nonce = _state["nonces"].new()
    resp = digest.response(alg, digest.ha1(alg, "alice", "example.com", password), nonce,
                           "REGISTER", "sip:example.com")
    msg = Message.parse((
        f"REGISTER sip:alice@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n"
        f"From: <sip:alice@example.com>;tag=1\r\nTo: <sip:{to_user}@example.com>\r\n"
        f"Call-ID: c1\r\nCSeq: 2 REGISTER\r\n"
        f'Authorization: Digest username="alice", realm="example.com", nonce="{nonce}", '
        f'uri="sip:example.com", response="{resp}", algorithm={alg}\r\n'
        f"Content-Length: 0\r\n\r\n").encode())
    ctx = Context(rt, msg, src=("10.0.0.1", 5060))
    try:
        rt.routes[("route", None)](ctx)
    except ScriptExit:
        pass
    return rt.vars, ctx


def test_authorize_loads_credentials_and_checks_uris(rt):
    v, ctx = run(rt, "+4930")
    assert v["auth"] == 1
    assert ctx.avps["caller_id"] == ["sip:+4930@example.com"]
    assert ctx.avps["email_address"] == ["a@x.org"]
    assert (v["exists"], v["nobody"]) == (1, -5)
    assert (v["to_auth"], v["from_same"]) == (1, 1)
    assert (v["get_id"], v["au"], v["ar"]) == (1, "alice", "example.com")
    assert (v["ruri_exists"], v["sub"]) == (1, 1)
    assert v["kam"] == -4                 # Kamailio's 'nonce expired': already used above


def test_sha256_column_and_failures(rt):
    v, _ = run(rt, "+4930", alg="SHA-256")
    assert v["auth"] == 1
    v, ctx = run(rt, "someone", password="bad")
    assert v["auth"] == -2 and not ctx.avps
    assert v["to_auth"] == -2  # no authorized credentials
    assert v["kam"] == -2      # Kamailio codes: invalid password


def test_load_errors():
    text = 'loadmodule "auth.so"\nloadmodule "auth_db.so"\n'
    loaded = load_script(parse_text(text + 'modparam("auth_db", "db_url", "nonsense")\n'
                                    'route { www_authorize("", "subscriber"); }', "t.cfg"))
    assert any("not a database URL" in d.message for d in loaded.diagnostics)
    loaded = load_script(parse_text('loadmodule "auth_db.so"\nroute { exit; }', "t.cfg"))
    assert any("needs module 'auth'" in d.message for d in loaded.diagnostics)

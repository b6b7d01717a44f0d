"""uri_db (OpenSIPS 1.x): check_to/check_from/does_uri_exist/get_auth_id run through
auth_db's functions, with use_uri_table choosing the uri or the subscriber table."""
import pytest

from cfgscript import parse_text
from modules.auth import digest
from runtime import db
from runtime.context import Context, ScriptExit
from runtime.loader import load_script
from runtime.sip.message import Message

SCRIPT = """
loadmodule "sl.so"
loadmodule "mysql.so"
loadmodule "db_sqlite.so"
loadmodule "auth.so"
loadmodule "auth_db.so"
modparam("auth_db", "db_url", "sqlite://{path}")
modparam("auth_db", "calculate_ha1", 1)
modparam("auth_db", "password_column", "password")
loadmodule "uri_db.so"
modparam("uri_db", "db_url", "sqlite://{path}")
modparam("uri_db", "use_uri_table", {uri_table})
modparam("uri_db", "use_domain", 0)
route {{
    www_authorize("example.com", "subscriber");
    $var(auth) = $rc;
    if (check_to()) $var(to) = "yes"; else $var(to) = "no";
    if (check_from()) $var(from) = "yes"; else $var(from) = "no";
    if (does_uri_exist()) $var(exists) = "yes"; else $var(exists) = "no";
    if (get_auth_id("sip:+4930@example.com", $var(au), $var(ar))) $var(id) = "yes";
    else $var(id) = "no";
}}
"""


def make(tmp_path, uri_table):
    path = tmp_path / "o.db"
    conn = db.connect(f"sqlite://{path}", shared=False)
    conn.insert("subscriber", {"username": "alice", "domain": "example.com",
                               "password": "pw"})
    conn.insert("uri", {"username": "alice", "domain": "example.com", "uri_user": "+4930"})
    conn.close()
    loaded = load_script(parse_text(SCRIPT.format(path=path, uri_table=uri_table), "t.cfg"))
    assert loaded.ok, [str(d) for d in loaded.diagnostics]
    r = loaded.rt
    for name in ("db_sqlite", "auth", "auth_db", "uri_db"):
        r.modules[name].init(r)
    r.modules["auth_db"].child_init(r)
    return r


@pytest.fixture
def rts(tmp_path):
    yield lambda uri_table: make(tmp_path, uri_table)
    db.close_all()


def run(rt, ruri_user, to_user, from_user="alice"):
    from modules.auth import _state
    nonce = _state["nonces"].new()
    resp = digest.response("MD5", digest.ha1("MD5", "alice", "example.com", "pw"), nonce,
                           "INVITE", "sip:example.com")
    msg = Message.parse((
        f"INVITE sip:{ruri_user}@example.com SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n"
        f"From: <sip:{from_user}@example.com>;tag=1\r\nTo: <sip:{to_user}@example.com>\r\n"
        f"Call-ID: c1\r\nCSeq: 2 INVITE\r\n"
        f'Authorization: Digest username="alice", realm="example.com", nonce="{nonce}", '
        f'uri="sip:example.com", response="{resp}", algorithm=MD5\r\n'
        f"Content-Length: 0\r\n\r\n").encode())
    ctx = Context(rt, msg, src=("10.0.0.1", 5060))
    try:
        rt.routes[("route", None)](ctx)
    except ScriptExit:
        pass
    return rt.vars


def test_subscriber_table_mode(rts):
    rt = rts(0)
    v = run(rt, "alice", "alice")
    assert v["auth"] == 1
    assert (v["to"], v["from"], v["exists"]) == ("yes", "yes", "yes")
    v = run(rt, "bob", "+4930", from_user="mallory")
    assert (v["to"], v["from"], v["exists"]) == ("no", "no", "no")
    assert v["id"] == "yes" and (v["au"], v["ar"]) == ("alice", "example.com")


def test_uri_table_mode(rts):
    rt = rts(1)
    v = run(rt, "+4930", "+4930")
    assert (v["to"], v["exists"]) == ("yes", "yes")      # alice may use +4930
    v = run(rt, "alice", "alice")
    assert (v["to"], v["exists"]) == ("no", "no")         # not a uri_user of the uri table


def test_needs_auth_db_and_warns_about_other_settings(tmp_path):
    loaded = load_script(parse_text('loadmodule "uri_db.so"\nroute { check_to(); }', "t.cfg"))
    assert any("needs module 'auth_db'" in d.message for d in loaded.diagnostics)
    rt = make(tmp_path, 0)
    import io
    from runtime.log import Logger
    buf = io.StringIO()
    rt.log = Logger(stream=buf)
    rt.modparams["uri_db"]["user_column"] = "login"
    rt.modules["uri_db"].init(rt)
    assert "'user_column' is 'login' but auth_db's is 'username'" in buf.getvalue()
    db.close_all()


def test_mysql_is_the_old_name_of_db_mysql():
    loaded = load_script(parse_text('loadmodule "mysql.so"\nmodparam("mysql", "ping_interval", '
                                    '300)\nmodparam("mysql", "auto_reconnect", 1)\n'
                                    'route { exit; }', "t.cfg"))
    assert loaded.ok, [str(d) for d in loaded.diagnostics]
    assert loaded.rt.modparams["mysql"]["ping_interval"] == 300
    assert "mysql" in db._DRIVERS

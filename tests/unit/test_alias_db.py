"""alias_db against a real SQLite `dbaliases` table."""
import pytest

from cfgscript import parse_text
from runtime import db
from runtime.context import Context, ScriptExit
from runtime.loader import load_script
from runtime.sip.message import Message

SCRIPT = """
loadmodule "db_sqlite.so"
loadmodule "alias_db.so"
modparam("alias_db", "db_url", "sqlite://{path}")
modparam("alias_db", "append_branches", 1)
route {{
    if (alias_db_lookup("dbaliases")) $var(lookup) = $ru; else $var(lookup) = "none";
    if (alias_db_lookup("dbaliases", "d")) $var(nodomain) = $ru; else $var(nodomain) = "none";
    alias_db_find("dbaliases", "sip:alice@example.com", $var(back), "r");
}}
"""


@pytest.fixture
def rt(tmp_path):
    path = tmp_path / "a.db"
    conn = db.connect(f"sqlite://{path}", shared=False)
    conn.insert("dbaliases", {"alias_username": "sales", "alias_domain": "example.com",
                              "username": "alice", "domain": "example.com"})
    conn.insert("dbaliases", {"alias_username": "boss", "alias_domain": "other.org",
                              "username": "carol", "domain": "example.com"})
    conn.close()
    loaded = load_script(parse_text(SCRIPT.format(path=path), "t.cfg"))
    assert loaded.ok, [str(d) for d in loaded.diagnostics]
    r = loaded.rt
    for name in ("db_sqlite", "alias_db"):
        r.modules[name].init(r)
    r.modules["alias_db"].child_init(r)
    yield r
    db.close_all()


def run(rt, ruri):
    msg = Message.parse((
        f"INVITE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n"
        f"From: <sip:x@y.org>;tag=1\r\nTo: <{ruri}>\r\n"
        f"Call-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n").encode())
    ctx = Context(rt, msg)
    try:
        rt.routes[("route", None)](ctx)
    except ScriptExit:
        pass
    return rt.vars


def test_lookup_with_and_without_domain_and_reverse(rt):
    v = run(rt, "sip:sales@example.com")
    assert v["lookup"] == "sip:alice@example.com" and v["back"] == "sip:sales@example.com"
    v = run(rt, "sip:boss@example.com")
    assert (v["lookup"], v["nodomain"]) == ("none", "sip:carol@example.com")


def test_bad_flag_is_a_load_error():
    loaded = load_script(parse_text('loadmodule "alias_db.so"\n'
                                    'route { alias_db_lookup("dbaliases", "x"); }', "t.cfg"))
    assert any("unsupported flag 'x'" in d.message for d in loaded.diagnostics)

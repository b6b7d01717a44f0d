"""domain against a real SQLite `domain` table (no cache and db_mode 1)."""
import pytest

from cfgscript import parse_text
from runtime import db
from runtime.context import Context, ScriptExit
from runtime.loader import load_script
from runtime.sip.message import Message

SCRIPT = """
loadmodule "db_sqlite.so"
loadmodule "domain.so"
modparam("domain", "db_url", "sqlite://{path}")
modparam("domain", "db_mode", {mode})
route {{
    if (is_from_local($var(fattrs))) $var(from) = 1; else $var(from) = -1;
    if (is_uri_host_local()) $var(ruri) = 1; else $var(ruri) = -1;
    if (is_domain_local("sub.corp.org", $avp(a))) $var(sub) = 1; else $var(sub) = -1;
    if (is_domain_local("sub.example.com")) $var(nosub) = 1; else $var(nosub) = -1;
}}
"""


@pytest.fixture(params=[0, 1])
def rt(tmp_path, request):
    path = tmp_path / "d.db"
    conn = db.connect(f"sqlite://{path}", shared=False)
    conn.insert("domain", {"domain": "Example.COM", "attrs": "tier=gold"})
    conn.insert("domain", {"domain": "corp.org", "accept_subdomain": 1, "attrs": "x=1"})
    conn.close()
    loaded = load_script(parse_text(SCRIPT.format(path=path, mode=request.param), "t.cfg"))
    assert loaded.ok, [str(d) for d in loaded.diagnostics]
    r = loaded.rt
    for name in ("db_sqlite", "domain"):
        r.modules[name].init(r)
    r.modules["domain"].child_init(r)
    yield r
    db.close_all()


def run(rt, from_host, ruri_host):
    msg = Message.parse((
        f"INVITE sip:bob@{ruri_host} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n"
        f"From: <sip:alice@{from_host}>;tag=1\r\nTo: <sip:bob@{ruri_host}>\r\n"
        f"Call-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n").encode())
    ctx = Context(rt, msg)
    try:
        rt.routes[("route", None)](ctx)
    except ScriptExit:
        pass
    return rt.vars, ctx


def test_local_domains(rt):
    v, ctx = run(rt, "example.com", "elsewhere.net")
    assert (v["from"], v["ruri"], v["sub"], v["nosub"]) == (1, -1, 1, -1)
    assert v["fattrs"] == "tier=gold" and ctx.avps["a"] == ["x=1"]
    v, _ = run(rt, "other.net", "a.b.corp.org")
    assert (v["from"], v["ruri"]) == (-1, 1)

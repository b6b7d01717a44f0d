"""permissions: the address table (SQLite) and allow/deny rule files."""
import pytest

from cfgscript import parse_text
from runtime import db
from runtime.context import Branch, Context, ScriptExit
from runtime.loader import load_script
from runtime.sip.message import Message


def msg(frm="sip:alice@example.com", ruri="sip:bob@example.com"):
    return Message.parse((
        f"INVITE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n"
        f"From: <{frm}>;tag=1\r\nTo: <{ruri}>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n"
        f"Contact: <sip:alice@10.1.1.1>\r\nContent-Length: 0\r\n\r\n").encode())


def load(body, extra=""):
    loaded = load_script(parse_text('loadmodule "permissions.so"\n' + extra
                                    + f"route {{\n{body}\n}}\n", "t.cfg"))
    assert loaded.ok, [str(d) for d in loaded.diagnostics]
    return loaded.rt


def run(rt, m, src=("10.0.0.1", 5060), branches=()):
    ctx = Context(rt, m, src=src)
    ctx.branches = [Branch(u) for u in branches]
    try:
        rt.routes[("route", None)](ctx)
    except ScriptExit:
        pass
    return rt.vars


@pytest.fixture
def addr_rt(tmp_path):
    path = tmp_path / "a.db"
    conn = db.connect(f"sqlite://{path}", shared=False)
    conn.insert("address", {"grp": 1, "ip": "10.0.0.0", "mask": 24, "port": 0, "proto": "any",
                            "context_info": "lan"})
    conn.insert("address", {"grp": 2, "ip": "192.0.2.5", "mask": 32, "port": 5080,
                            "proto": "udp", "pattern": "gw-*"})
    conn.raw_query("CREATE TABLE trusted (id INTEGER PRIMARY KEY, src_ip CHAR(50), "
                   "proto CHAR(4), from_pattern CHAR(64), tag CHAR(32))")
    conn.insert("trusted", {"src_ip": "10.0.0.1", "proto": "any",
                            "from_pattern": "^sip:alice@", "tag": "peer1"})
    conn.close()
    flag = "if ({c}) $var({n}) = 1; else $var({n}) = -1;"
    body = "\n".join(flag.format(n=n, c=c) for n, c in (
        ("src1", "check_source_address(1, $avp(ctx))"),
        ("src2", "check_source_address(2)"),
        ("any", 'check_address(0, "192.0.2.5", 5080, "UDP", , "gw-east")'),
        ("pat", 'check_address(2, "192.0.2.5", 5080, "udp", , "pbx")'),
        ("port", 'check_address(2, "192.0.2.5", 5090, "udp")'),
        ("grp", "get_source_group($var(g))"), ("trusted", "allow_trusted()"),
        ("trusted2", 'allow_trusted("10.0.0.2", "udp")')))
    rt = load(body, f'loadmodule "db_sqlite.so"\n'
                    f'modparam("permissions", "db_url", "sqlite://{path}")\n'
                    f'modparam("permissions", "peer_tag_avp", "$avp(peer)")\n')
    for name in ("db_sqlite", "permissions"):
        rt.modules[name].init(rt)
    rt.modules["permissions"].child_init(rt)
    yield rt
    db.close_all()


def test_address_checks(addr_rt):
    v = run(addr_rt, msg())
    assert (v["src1"], v["src2"], v["any"], v["pat"], v["port"], v["grp"], v["g"]) == (
        1, -1, 1, -1, -1, 1, 1)
    assert (v["trusted"], v["trusted2"]) == (1, -1)
    assert run(addr_rt, msg(frm="sip:mallory@example.com"))["trusted"] == -1
    v = run(addr_rt, msg(), src=("172.16.0.1", 5060))
    assert (v["src1"], v["grp"]) == (-1, -1)


def test_rule_files(tmp_path):
    (tmp_path / "calls.allow").write_text(
        '# local users may call anyone local\n'
        '"^sip:[a-z]+@example\\.com$" : "^sip:[^@]+@example\\.com$" EXCEPT "^sip:boss@"\n')
    (tmp_path / "calls.deny").write_text('ALL : "^sip:900[0-9]*@"  # premium numbers\n'
                                         '"@evil\\.org" : ALL\n')
    (tmp_path / "reg.deny").write_text('ALL : "@10\\.1\\.1\\.1"\n')
    base = tmp_path / "calls"
    rt = load(f'if (allow_routing("{base}")) $var(r) = 1; else $var(r) = -1;\n'
              f'if (allow_register("{tmp_path / "reg"}")) $var(g) = 1; else $var(g) = -1;\n'
              f'if (allow_uri("{base}", "sip:9001@pstn.net")) $var(u) = 1; else $var(u) = -1;')
    rt.modules["permissions"].init(rt)
    v = run(rt, msg())
    assert (v["r"], v["g"], v["u"]) == (1, -1, -1)
    assert run(rt, msg(ruri="sip:boss@example.com"))["r"] == 1       # not allowed, not denied
    assert run(rt, msg(ruri="sip:9001@pstn.net"))["r"] == -1
    assert run(rt, msg(frm="sip:x@evil.org"))["r"] == -1
    assert run(rt, msg(), branches=["sip:9002@pstn.net"])["r"] == -1  # every branch counts


def test_bad_rule_file_is_a_load_error(tmp_path):
    (tmp_path / "bad.allow").write_text('"^sip:(" : ALL\n')
    loaded = load_script(parse_text('loadmodule "permissions.so"\n'
                                    f'route {{ allow_routing("{tmp_path / "bad"}"); }}', "t.cfg"))
    assert any("bad.allow:1: bad regular expression" in d.message for d in loaded.diagnostics)

"""lcr (OpenSIPS 1.x) against real SQLite gw/lcr tables: gateway order (longest prefix,
priority), strip/tag/scheme/transport rewriting, failover from a failure route, from_gw/to_gw,
serial forking by q (load_contacts/next_contacts), lcr_dump/lcr_reload."""
import pytest

from cfgscript import parse_text
from runtime import db
from runtime.context import Branch, Context, ScriptExit
from runtime.loader import load_script
from runtime.module import FAILURE
from runtime.sip.message import Message

SCRIPT = """
loadmodule "tm.so"
loadmodule "db_sqlite.so"
loadmodule "lcr.so"
modparam("lcr", "db_url", "sqlite://{path}")
modparam("lcr", "gw_uri_avp", "$avp(i:709)")
modparam("lcr", "ruri_user_avp", "$avp(ruri_user)")
modparam("lcr", "contact_avp", "$avp(contact)")
modparam("lcr", "fr_inv_timer_avp", "$avp(fr_inv_timer_avp)")
modparam("lcr", "rpid_avp", "$avp(rpid)")
modparam("lcr", "flags_avp", "$avp(flags)")
modparam("lcr", "fr_inv_timer", 90)
modparam("lcr", "fr_inv_timer_next", 30)
route {{
{body}
}}
failure_route[1] {{
    if (next_gw()) $var(next) = $ru; else $var(next) = "none";
}}
"""


@pytest.fixture
def path(tmp_path):
    p = tmp_path / "lcr.db"
    conn = db.connect(f"sqlite://{p}", shared=False)
    conn.raw_query("CREATE TABLE gw (id INTEGER PRIMARY KEY, gw_name TEXT, grp_id INTEGER, "
                   "ip_addr TEXT, port INTEGER, uri_scheme INTEGER, transport INTEGER, "
                   "strip INTEGER, tag TEXT, flags INTEGER)")
    conn.raw_query("CREATE TABLE lcr (id INTEGER PRIMARY KEY, prefix TEXT, from_uri TEXT, "
                   "grp_id INTEGER, priority INTEGER)")
    for row in [("de-1", 1, "192.0.2.1", 5060, 1, 1, 2, "", 7),
                ("intl", 2, "192.0.2.2", None, None, 2, 0, "00", 0),
                ("berlin", 3, "192.0.2.3", 5070, 2, 3, 0, "", 1),
                ("uk", 4, "192.0.2.4", None, 1, None, 0, "", 0)]:
        conn.insert("gw", dict(zip(("gw_name", "grp_id", "ip_addr", "port", "uri_scheme",
                                    "transport", "strip", "tag", "flags"), row)))
    for row in [("49", "", 1, 1), ("", "", 2, 5), ("4930", "", 3, 2),
                ("44", "^sip:vip@", 4, 0)]:
        conn.insert("lcr", dict(zip(("prefix", "from_uri", "grp_id", "priority"), row)))
    conn.close()
    yield p
    db.close_all()


def load(path, body):
    loaded = load_script(parse_text(SCRIPT.format(path=path, body=body), "t.cfg"))
    assert loaded.ok, [str(d) for d in loaded.diagnostics]
    rt = loaded.rt
    for name in ("db_sqlite", "lcr"):
        rt.modules[name].init(rt)
    rt.modules["lcr"].child_init(rt)
    return rt


def msg(ruri, from_uri="sip:alice@example.com", src="10.0.0.1"):
    return Message.parse((
        f"INVITE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {src};branch=z9hG4bK1\r\n"
        f"From: <{from_uri}>;tag=1\r\nTo: <{ruri}>\r\n"
        f"Call-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n").encode())


def run(rt, m, src="10.0.0.1"):
    ctx = Context(rt, m, src=(src, 5060))
    try:
        rt.routes[("route", None)](ctx)
    except ScriptExit:
        pass
    return ctx


def test_gateways_in_order_with_rewriting(path):
    from modules.lcr import Gateway
    rt = load(path, "if (load_gws()) next_gw();")
    ctx = run(rt, msg("sip:4930123@example.com"))
    # prefix 4930 (berlin) beats 49 (de-1), then the catch-all (intl): the best one used,
    # the others left on the AVP stack (the next one on top)
    assert ctx.ruri == "sips:4930123@192.0.2.3:5070;transport=tls"
    left = [Gateway.decode(v).uri("4930123") for v in reversed(ctx.avps["709"])]
    assert left == ["sip:30123@192.0.2.1:5060;transport=udp",
                    "sip:004930123@192.0.2.2;transport=tcp"]
    assert ctx.avps["ruri_user"] == ["4930123"]
    assert ctx.avps["flags"] == [1] and ctx.avps["fr_inv_timer_avp"] == [30]


def test_caller_patterns_and_groups(path):
    rt = load(path, "load_gws(); next_gw();")
    assert run(rt, msg("sip:44207@example.com")).ruri == "sip:0044207@192.0.2.2;transport=tcp"
    vip = run(rt, msg("sip:44207@example.com", "sip:vip@example.com"))
    assert vip.ruri == "sip:44207@192.0.2.4"
    rt = load(path, 'load_gws("1"); next_gw();')           # 1.2/1.3: a group id
    assert run(rt, msg("sip:4930123@example.com")).ruri == \
        "sip:30123@192.0.2.1:5060;transport=udp"
    rt = load(path, '$avp(rpid) = "sip:vip@example.com"; load_gws(); next_gw();')
    assert run(rt, msg("sip:44207@example.com")).ruri == "sip:44207@192.0.2.4"


def test_failover_from_the_failure_route(path):
    rt = load(path, 'load_gws(); next_gw(); $var(first) = $ru;')
    ctx = run(rt, msg("sip:4930123@example.com"))
    assert rt.vars["first"].startswith("sips:4930123@192.0.2.3")
    assert ctx.avps["fr_inv_timer_avp"] == [30]             # more gateways left
    ctx.route_type = FAILURE
    rt.routes[("failure_route", "1")](ctx)
    assert rt.vars["next"] == "sip:30123@192.0.2.1:5060;transport=udp"
    rt.routes[("failure_route", "1")](ctx)
    rt.routes[("failure_route", "1")](ctx)
    assert rt.vars["next"] == "none"


def test_from_gw_and_to_gw(path):
    rt = load(path, """
        if (from_gw()) $var(from) = "gw"; else $var(from) = "no";
        if (from_gw("3")) $var(grp3) = "yes"; else $var(grp3) = "no";
        if (from_gw_grp("1")) $var(grp1) = "yes"; else $var(grp1) = "no";
        if (to_gw()) $var(to) = "gw"; else $var(to) = "no";
        if (to_gw("2")) $var(to2) = "yes"; else $var(to2) = "no";
    """)
    ctx = run(rt, msg("sip:x@192.0.2.3:5070"), src="192.0.2.1")
    v = rt.vars
    assert (v["from"], v["grp3"], v["grp1"], v["to"], v["to2"]) == ("gw", "no", "yes", "gw",
                                                                    "no")
    assert ctx.avps["flags"] == [7]
    run(rt, msg("sip:x@198.51.100.1"), src="198.51.100.9")
    assert (rt.vars["from"], rt.vars["to"]) == ("no", "no")


def test_serial_forking_by_q(path):
    rt = load(path, "exit;")
    from modules import lcr
    ctx = Context(rt, msg("sip:a@example.com"))
    ctx.ruri_q = 500
    ctx.branches = [Branch("sip:b@example.com", q=1000), Branch("sip:c@example.com", q=1000),
                    Branch("sip:d@example.com", q=100)]
    assert lcr.load_contacts(ctx) == 1 and ctx.branches == []
    assert lcr.next_contacts(ctx) == 1
    assert (ctx.ruri, [b.uri for b in ctx.branches]) == ("sip:b@example.com",
                                                         ["sip:c@example.com"])
    assert ctx.avps["fr_inv_timer_avp"] == [30]
    assert lcr.next_contacts(ctx) == 1 and ctx.ruri == "sip:a@example.com"
    assert lcr.next_contacts(ctx) == 1 and ctx.ruri == "sip:d@example.com"
    assert ctx.avps["fr_inv_timer_avp"] == [90]
    assert lcr.next_contacts(ctx) == -1


def test_mi_dump_and_reload(path):
    rt = load(path, "exit;")
    from modules import lcr
    dump = lcr.mi_lcr_dump(rt)
    assert len(dump["gws"]) == 4 and len(dump["lcrs"]) == 4
    conn = db.connect(f"sqlite://{path}")
    conn.delete("gw", {"gw_name": "uk"})
    assert lcr.mi_lcr_reload(rt) == "OK"
    assert len(lcr.mi_lcr_dump(rt)["gws"]) == 3


def test_missing_avps_is_a_start_up_error(tmp_path):
    loaded = load_script(parse_text(f'loadmodule "tm.so"\nloadmodule "lcr.so"\n'
                                    f'modparam("lcr", "db_url", "sqlite://{tmp_path}/x.db")\n'
                                    'route { load_gws(); }', "t.cfg"))
    assert loaded.ok
    with pytest.raises(ValueError, match="gw_uri_avp"):
        loaded.rt.modules["lcr"].init(loaded.rt)

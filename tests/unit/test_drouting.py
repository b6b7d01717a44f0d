"""drouting: rules, gateways, carriers and groups from a real SQLite database."""
import pytest

from cfgscript import parse_text
from runtime import db
from runtime.context import Context, ScriptExit
from runtime.loader import load_script
from runtime.sip.message import Message


def msg(ruri="sip:0049301234@example.com", frm="sip:alice@example.com"):
    return Message.parse((
        f"INVITE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n"
        f"From: <{frm}>;tag=1\r\nTo: <{ruri}>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n"
        f"Content-Length: 0\r\n\r\n").encode())


def load(body, params="", routes=""):
    text = ('loadmodule "db_sqlite.so"\nloadmodule "drouting.so"\n' + params
            + f"route {{\n{body}\n}}\n" + routes)
    loaded = load_script(parse_text(text, "t.cfg"))
    assert loaded.ok, [str(d) for d in loaded.diagnostics]
    rt = loaded.rt
    for name in ("db_sqlite", "drouting"):
        rt.modules[name].init(rt)
    return rt


def run(rt, m=None, src=("10.0.0.1", 5060)):
    ctx = Context(rt, m or msg(), src=src)
    try:
        rt.routes[("route", None)](ctx)
    except ScriptExit:
        pass
    return ctx


@pytest.fixture
def dbpath(tmp_path):
    path = tmp_path / "dr.db"
    conn = db.connect(f"sqlite://{path}", shared=False)
    from modules import drouting as dr
    for table, cols, v in (("dr_gateways", dr._GW_SCHEMA, 6), ("dr_rules", dr._RULE_SCHEMA, 4),
                           ("dr_carriers", dr._CR_SCHEMA, 3), ("dr_groups", dr._GRP_SCHEMA, 2)):
        conn.create_table(table, cols, v)
    for gwid, typ, addr, strip, pri, attrs in (
            ("de1", 1, "10.1.0.1:5060", 4, "+49", "germany-1"),
            ("de2", 1, "10.1.0.2", 4, "+49", None),
            ("intl", 2, "sip:10.2.0.1:5070;transport=tcp", 0, "", "intl"),
            ("off", 1, "10.3.0.1", 0, "", None),
            ("cr1a", 3, "10.4.0.1", 0, "99", None),
            ("cr1b", 3, "10.4.0.2", 0, "98", None)):
        conn.insert("dr_gateways", {"gwid": gwid, "type": typ, "address": addr, "strip": strip,
                                    "pri_prefix": pri, "attrs": attrs,
                                    "state": 1 if gwid == "off" else 0})
    conn.insert("dr_carriers", {"carrierid": "cr1", "gwlist": "cr1a,cr1b", "flags": 0,
                                "attrs": "carrier-one"})
    for grp, prefix, prio, gwlist, attrs, timerec in (
            ("1", "0049", 10, "off,de1,de2", "de-rule", None),
            ("1", "0049", 5, "intl", "de-low", None),
            ("1", "00", 0, "#cr1", "intl-rule", None),
            ("1,2", "", 0, "intl", "default", None),
            ("2", "0049", 0, "de2", "grp2", "20000101T000000|PT1S"),   # expired
            ("3", "112", 0, "de1", "strict", None)):
        conn.insert("dr_rules", {"groupid": grp, "prefix": prefix, "priority": prio,
                                 "gwlist": gwlist, "attrs": attrs, "timerec": timerec})
    conn.insert("dr_groups", {"username": "bob", "domain": "example.com", "groupid": 2})
    conn.close()
    yield path
    db.close_all()


def P(path, extra=""):
    return (f'modparam("drouting", "db_url", "sqlite://{path}")\n'
            'modparam("drouting", "gw_id_avp", "$avp(gw_id)")\n'
            'modparam("drouting", "rule_id_avp", "$avp(rule_id)")\n'
            'modparam("drouting", "rule_prefix_avp", "$avp(prefix)")\n'
            'modparam("drouting", "carrier_id_avp", "$avp(cr)")\n' + extra)


def test_prefix_routing_and_failover(dbpath):
    rt = load('if (!do_routing(1, , , $var(rattrs), $var(gwattrs))) { $var(r) = -1; exit; }\n'
              '$var(r1) = $ru; $var(g1) = $avp(gw_id);\n'
              'if (use_next_gw()) $var(r2) = $ru; else $var(r2) = "none";\n'
              'if (use_next_gw()) $var(r3) = $ru; else $var(r3) = "none";', P(dbpath))
    ctx = run(rt)
    v = rt.vars
    assert v["r1"] == "sip:+49301234@10.1.0.1:5060" and v["g1"] == "de1"
    assert v["rattrs"] == "de-rule" and v["gwattrs"] == "germany-1"
    assert v["r2"] == "sip:+49301234@10.1.0.2" and v["r3"] == "none"   # "off" is skipped
    assert ctx.avps["prefix"] == ["0049"] and ctx.avps["gw_id"] == ["de2"]


def test_rule_fallback_carriers_and_default(dbpath):
    rt = load('do_routing(1, "F"); $var(a) = $ru;\n'
              'use_next_gw(); $var(b) = $ru;\n'
              'use_next_gw(); $var(c) = $ru;\n'
              'use_next_gw(); $var(d) = $ru; $var(dcr) = $avp(cr);\n'
              'use_next_gw(); $var(e) = $ru;\n'
              'use_next_gw(); $var(f) = $ru;\n'
              'if (use_next_gw()) $var(g) = 1; else $var(g) = -1;', P(dbpath))
    run(rt)
    v = rt.vars
    assert (v["a"], v["b"]) == ("sip:+49301234@10.1.0.1:5060", "sip:+49301234@10.1.0.2")
    assert v["c"] == "sip:0049301234@10.2.0.1:5070;transport=tcp"     # lower priority
    assert (v["d"], v["dcr"]) == ("sip:990049301234@10.4.0.1", "cr1")  # shorter prefix
    assert v["e"] == "sip:980049301234@10.4.0.2"
    assert v["f"] == "sip:0049301234@10.2.0.1:5070;transport=tcp"     # default rule
    assert v["g"] == -1


def test_groups_time_and_strict(dbpath):
    rt = load('if (do_routing()) $var(r) = $ru; else $var(r) = "none";', P(dbpath))
    run(rt, msg(frm="sip:bob@example.com"))      # group 2: its 0049 rule has expired
    assert rt.vars["r"] == "sip:0049301234@10.2.0.1:5070;transport=tcp"
    run(rt, msg(frm="sip:carol@example.com"))     # no group, no default_group
    assert rt.vars["r"] == "none"
    rt = load('if (do_routing(3, "L")) $var(r) = $ru; else $var(r) = "none";\n'
              'if (do_routing(1, "C")) $var(c) = $avp(rule_id); else $var(c) = 0;', P(dbpath))
    run(rt, msg("sip:1123@example.com"))
    assert rt.vars["r"] == "none"
    ctx = run(rt, msg("sip:112@example.com"))
    assert rt.vars["r"] == "sip:+49@10.1.0.1:5060"        # strip 4 of "112", prefix +49
    # "C" only checks: the default rule (id 4) matches "+49", the R-URI stays
    assert rt.vars["c"] == 4 and ctx.ruri == "sip:+49@10.1.0.1:5060"


def test_gateway_checks(dbpath):
    rt = load('if (is_from_gw()) $var(any) = 1; else $var(any) = -1;\n'
              'if (is_from_gw(2)) $var(t2) = 1; else $var(t2) = -1;\n'
              'if (is_from_gw(1, "ni", $var(attrs))) $var(t1) = $avp(gw_id); else $var(t1) = 0;\n'
              'if (goes_to_gw(2)) $var(goes) = 1; else $var(goes) = -1;\n'
              'if (dr_is_gw("sip:10.2.0.1:5070")) $var(isgw) = 1; else $var(isgw) = -1;',
              P(dbpath))
    run(rt, msg("sip:123@10.2.0.1:5070"), src=("10.1.0.1", 5999))
    v = rt.vars
    assert (v["any"], v["t2"], v["t1"], v["attrs"], v["goes"], v["isgw"]) == (
        -1, -1, "de1", "germany-1", 1, 1)
    run(rt, msg("sip:123@10.9.9.9"), src=("10.1.0.1", 5060))
    assert (v["any"], v["goes"]) == (1, -1)


def test_route_to_gw_carrier_and_disable(dbpath):
    rt = load('route_to_gw("intl,de2"); $var(a) = $ru; use_next_gw(); $var(b) = $ru;\n'
              'route_to_carrier("cr1"); $var(c) = $ru; $var(cr) = $avp(cr);\n'
              'route_to_gw("de1"); dr_disable();\n'
              'if (route_to_gw("de1")) $var(d) = 1; else $var(d) = -1;', P(dbpath))
    run(rt)
    v = rt.vars
    assert v["a"] == "sip:0049301234@10.2.0.1:5070;transport=tcp"
    assert v["b"] == "sip:+49301234@10.1.0.2"
    # the carrier's prefix goes in front of the R-URI user as use_next_gw() left it
    assert (v["c"], v["cr"]) == ("sip:99+49301234@10.4.0.1", "cr1")
    assert v["d"] == -1
    conn = db.connect(f"sqlite://{dbpath}", shared=False)
    assert conn.query("dr_gateways", {"gwid": "de1"})[0]["state"] == 1
    conn.close()


def test_1x_names_and_errors(dbpath):
    rt = load('do_routing("1"); if (next_routing()) $var(n) = 1;\n'
              'if (is_from_gw("-1", "n")) $var(f) = 1; else $var(f) = -1;', P(dbpath))
    run(rt, src=("10.4.0.2", 1234))
    assert rt.vars["n"] == 1 and rt.vars["f"] == 1
    for body in ('do_routing("x");', 'do_routing(1, "Z");', 'is_from_gw(1, "q");'):
        loaded = load_script(parse_text('loadmodule "drouting.so"\n'
                                        f"route {{\n{body}\n}}\n", "t.cfg"))
        assert not loaded.ok, body


def test_mi_commands(dbpath):
    from modules import drouting as dr
    rt = load('if (route_to_gw("de1")) $var(r) = 1; else $var(r) = -1;', P(dbpath))
    assert dr.mi_dr_gw_status(rt, "off") == {"State": "Inactive"}
    assert dr.mi_dr_gw_status(rt, "de1", 0) == "OK"
    assert dr.mi_dr_gw_status(rt, "de1") == {"State": "Disabled MI"}
    run(rt)
    assert rt.vars["r"] == -1
    assert dr.mi_dr_carrier_status(rt, "cr1") == {"Enabled": "yes"}
    assert dr.mi_dr_reload(rt) == "OK"

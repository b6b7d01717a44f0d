"""load_balancer: destinations from SQLite, selection by free capacity, failover, counting
calls on dialogs."""
import pytest

from cfgscript import parse_text
from runtime import db
from runtime.context import Context, ScriptExit
from runtime.loader import load_script
from runtime.sip.message import Message


def msg(callid="c1", method="INVITE"):
    return Message.parse((
        f"{method} sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n"
        f"From: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\n"
        f"Call-ID: {callid}\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n").encode())


def load(body, path):
    text = ('loadmodule "db_sqlite.so"\nloadmodule "tm.so"\nloadmodule "dialog.so"\n'
            'loadmodule "load_balancer.so"\n'
            f'modparam("load_balancer", "db_url", "sqlite://{path}")\n'
            'modparam("load_balancer", "probing_reply_codes", "404")\n'
            f"route {{\n{body}\n}}\n")
    loaded = load_script(parse_text(text, "t.cfg"))
    assert loaded.ok, [str(d) for d in loaded.diagnostics]
    rt = loaded.rt
    for name in ("db_sqlite", "dialog", "load_balancer"):
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
    path = tmp_path / "lb.db"
    conn = db.connect(f"sqlite://{path}", shared=False)
    from modules.load_balancer import _SCHEMA
    conn.create_table("load_balancer", _SCHEMA, 3)
    for grp, uri, res in ((1, "sip:10.0.0.1:5100", "pstn=2;vm=5"),
                          (1, "sip:10.0.0.2:5200", "pstn=3;conf=1"),
                          (2, "sip:10.0.0.3", "conf=1")):
        conn.insert("load_balancer", {"group_id": grp, "dst_uri": uri, "resources": res,
                                      "probe_mode": 1})
    conn.close()
    yield path
    db.close_all()


BODY = '$var(rc) = lb_start(1, "pstn"); $var(du) = $du;'


def test_spreads_by_free_capacity_and_runs_out(dbpath):
    rt = load(BODY, dbpath)
    chosen = []
    for i in range(5):
        run(rt, msg(callid=f"c{i}"))
        assert rt.vars["rc"] == 1
        chosen.append(rt.vars["du"][-4:])
    # 10.0.0.2 has 3 slots, 10.0.0.1 has 2: the largest free slot first
    assert chosen == ["5200", "5100", "5200", "5100", "5200"]
    run(rt, msg(callid="c6"))
    assert rt.vars["rc"] == -2
    st = rt.apis["load_balancer"]
    assert [d.load["pstn"] for d in st.dests[:2]] == [2, 3]


def test_codes_next_reset_and_disable(dbpath):
    rt = load('$var(a) = lb_start(1, "pstn;vm"); $var(d1) = $du;\n'
              'if (lb_is_started()) $var(s) = 1;\n'
              '$var(n) = lb_next();\n'
              '$var(b) = lb_start(1, "nope"); $var(c) = lb_start(3, "pstn");\n'
              '$var(e) = lb_start(1, "conf"); lb_disable_dst();\n'
              '$var(f) = lb_start(1, "conf");', dbpath)
    run(rt)
    v = rt.vars
    assert (v["a"], v["d1"], v["s"], v["n"]) == (1, "sip:10.0.0.1:5100", 1, -3)
    assert (v["b"], v["c"], v["e"], v["f"]) == (-4, -3, 1, -3)
    st = rt.apis["load_balancer"]
    assert [d.enabled for d in st.dests] == [True, False, True]
    assert all(not any(d.load.values()) for d in st.dests)   # every session let go


def test_failover_moves_the_load(dbpath):
    rt = load('lb_start(1, "pstn"); $var(d1) = $du; $var(n) = lb_next(); $var(d2) = $du;'
              '$var(n2) = lb_next();', dbpath)
    run(rt)
    v = rt.vars
    assert (v["d1"], v["d2"], v["n"], v["n2"]) == ("sip:10.0.0.2:5200", "sip:10.0.0.1:5100",
                                                   1, -3)
    st = rt.apis["load_balancer"]
    assert [d.load.get("pstn", 0) for d in st.dests[:2]] == [0, 0]


def test_load_is_released_with_the_dialog(dbpath):
    rt = load(BODY + ' lb_count_call("10.0.0.3", 0, 2, "conf");', dbpath)
    ctx = run(rt)
    st = rt.apis["load_balancer"]
    assert st.dests[1].load["pstn"] == 1 and st.dests[2].load["conf"] == 1
    dlg = ctx.local_data["dialog"]
    from modules import dialog as dialog_mod
    dialog_mod.api_state["dialogs"].fire(dlg, "terminated", None)
    assert st.dests[1].load["pstn"] == 0 and st.dests[2].load["conf"] == 0


def test_is_destination_and_count_call(dbpath):
    rt = load('if (lb_is_destination($si, $sp)) $var(any) = 1; else $var(any) = -1;\n'
              'if (lb_is_destination("$si", "$sp", 2)) $var(g2) = 1; else $var(g2) = -1;\n'
              'if (lb_is_destination($si, 0, 1, 1)) $var(act) = 1; else $var(act) = -1;\n'
              '$var(cc) = lb_count_call($si, $sp, -1, "pstn");', dbpath)
    run(rt, src=("10.0.0.2", 5200))
    v = rt.vars
    assert (v["any"], v["g2"], v["act"], v["cc"]) == (1, -1, 1, 1)
    assert rt.apis["load_balancer"].dests[1].load["pstn"] == 1
    run(rt, src=("10.0.0.9", 5200))
    assert (v["any"], v["cc"]) == (-1, -1)


def test_load_time_errors(tmp_path):
    for body in ('lb_start(1, "pstn", "q");', 'lb_start("x", "pstn");'):
        loaded = load_script(parse_text('loadmodule "tm.so"\nloadmodule "dialog.so"\n'
                                        'loadmodule "load_balancer.so"\n'
                                        f"route {{\n{body}\n}}\n", "t.cfg"))
        assert not loaded.ok, body
    loaded = load_script(parse_text('loadmodule "load_balancer.so"\nroute {\n'
                                    'lb_start(1, "pstn");\n}\n', "t.cfg"))
    assert not loaded.ok           # needs dialog


def test_mi_commands(dbpath):
    from modules import load_balancer as lb
    rt = load(BODY, dbpath)
    run(rt)
    dests = lb.mi_lb_list(rt)["Destinations"]
    assert dests[1]["Resources"][0] == {"name": "pstn", "max": 3, "load": 1}
    assert lb.mi_lb_status(rt, 2, 0) == "OK" and lb.mi_lb_status(rt, 2) == {"enable": "no"}
    assert lb.mi_lb_resize(rt, 1, "pstn", 7) == "OK"
    run(rt)
    assert rt.vars["du"] == "sip:10.0.0.1:5100"

"""dispatcher: sets from SQLite and list files, algorithms, failover AVPs, states."""
import pytest

from cfgscript import parse_text
from runtime import db
from runtime.context import Context, ScriptExit
from runtime.loader import load_script
from runtime.sip.message import Message


def msg(callid="c1", frm="sip:alice@example.com", ruri="sip:bob@example.com", extra=""):
    return Message.parse((
        f"INVITE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n"
        f"From: <{frm}>;tag=1\r\nTo: <{ruri}>\r\nCall-ID: {callid}\r\nCSeq: 1 INVITE\r\n"
        f"{extra}Contact: <sip:alice@10.1.1.1>\r\nContent-Length: 0\r\n\r\n").encode())


def load(body, params="", routes=""):
    text = ('loadmodule "db_sqlite.so"\nloadmodule "dispatcher.so"\n' + params
            + f"route {{\n{body}\n}}\n" + routes)
    loaded = load_script(parse_text(text, "t.cfg"))
    assert loaded.ok, [str(d) for d in loaded.diagnostics]
    rt = loaded.rt
    for name in ("db_sqlite", "dispatcher"):
        rt.modules[name].init(rt)
    return rt


def run(rt, m=None, src=("10.0.0.1", 5060), route=("route", None), ctx=None):
    ctx = ctx or Context(rt, m or msg(), src=src)
    try:
        rt.routes[route](ctx)
    except ScriptExit:
        pass
    return ctx


@pytest.fixture
def dbpath(tmp_path):
    path = tmp_path / "ds.db"
    conn = db.connect(f"sqlite://{path}", shared=False)
    from modules.dispatcher import _SCHEMA
    conn.create_table("dispatcher", _SCHEMA, 9)
    rows = [(1, "sip:10.0.0.11:5060", 0, "1", 0, "a=1"),
            (1, "sip:10.0.0.12:5060", 0, "1", 0, "a=2"),
            (1, "sip:10.0.0.13:5060", 0, "1", 0, "a=3"),
            (2, "sip:10.0.0.21:5070", 0, "3", 0, None),
            (2, "sip:10.0.0.22", 0, "1", 0, None),
            (3, "sip:10.0.0.31", 1, "1", 0, None),
            (3, "sip:10.0.0.32", 0, "1", 5, None)]
    for setid, dest, state, weight, prio, attrs in rows:
        conn.insert("dispatcher", {"setid": setid, "destination": dest, "state": state,
                                   "weight": weight, "priority": prio, "attrs": attrs})
    conn.close()
    yield path
    db.close_all()


def params(path, extra=""):
    return (f'modparam("dispatcher", "db_url", "sqlite://{path}")\n'
            'modparam("dispatcher", "attrs_avp", "$avp(dsattrs)")\n' + extra)


def test_round_robin_and_failover_avps(dbpath):
    rt = load('if (ds_select_dst(1, 4, "f")) $var(r) = 1; else $var(r) = -1;',
              params(dbpath))
    seen = []
    for i in range(6):
        ctx = run(rt, msg(callid=f"c{i}"))
        assert rt.vars["r"] == 1
        seen.append(ctx.dst_uri)
    assert seen == ["sip:10.0.0.11:5060", "sip:10.0.0.12:5060", "sip:10.0.0.13:5060"] * 2
    # the failover list: selected first, then the next ones in set order
    ctx = run(rt)
    assert ctx.dst_uri == "sip:10.0.0.11:5060"
    assert ctx.avps["ds_dst_failover"][::-1] == [
        "sip:10.0.0.11:5060", "sip:10.0.0.12:5060", "sip:10.0.0.13:5060"]
    assert ctx.avps["ds_grp_failover"] == [1] and ctx.avps["ds_cnt_failover"] == [3]
    assert ctx.avps["dsattrs"][-1] == "a=1"


def test_next_dst_and_mark(dbpath):
    rt = load('ds_select_dst(1, 8, "f");\n'
              'if (ds_next_dst()) $var(n1) = $du; else $var(n1) = "none";\n'
              'ds_mark_dst("i");\n'
              'if (ds_next_dst()) $var(n2) = $du; else $var(n2) = "none";\n'
              'if (ds_next_dst()) $var(n3) = $du; else $var(n3) = "none";\n'
              'ds_count(1, "a", $var(active)); ds_count(1, "i", $var(inactive));',
              params(dbpath))
    ctx = run(rt)
    v = rt.vars
    assert (v["n1"], v["n2"], v["n3"]) == ("sip:10.0.0.12:5060", "sip:10.0.0.13:5060", "none")
    assert (v["active"], v["inactive"]) == (2, 1)
    assert ctx.avps.get("dsattrs") is None
    # the marked destination is skipped from now on, and the state is in the DB
    rt2 = load('ds_select_dst(1, 8);', params(dbpath))
    assert run(rt2).dst_uri == "sip:10.0.0.11:5060"
    conn = db.connect(f"sqlite://{dbpath}", shared=False)
    assert conn.query("dispatcher", {"destination": "sip:10.0.0.12:5060"})[0]["state"] == 1
    conn.close()


def test_hash_algorithms_are_stable_and_use_active_ones(dbpath):
    rt = load('ds_select_dst(1, 0); $var(a) = $du; ds_select_dst(1, 1); $var(b) = $du;'
              'ds_select_dst(1, 3, "u"); $var(c) = $du;', params(dbpath))
    first = run(rt, msg(callid="abc"))
    a = rt.vars["a"]
    for _ in range(3):
        run(rt, msg(callid="abc"))
        assert rt.vars["a"] == a
    spread = set()
    for i in range(60):
        run(rt, msg(callid=f"call-{i}"))
        spread.add(rt.vars["a"])
    assert len(spread) == 3
    assert first is not None


def test_weights_priorities_and_inactive(dbpath):
    rt = load('ds_select_dst(2, 0);', params(dbpath))
    counts = {}
    for i in range(400):
        d = run(rt, msg(callid=f"w{i}")).dst_uri
        counts[d] = counts.get(d, 0) + 1
    assert counts["sip:10.0.0.21:5070"] > 2 * counts["sip:10.0.0.22"]
    rt = load('ds_select_dst(3, 8);', params(dbpath))
    # priority 5 first; the inactive one is never used
    assert {run(rt, msg(callid=f"p{i}")).dst_uri for i in range(5)} == {"sip:10.0.0.32"}


def test_domain_mode_and_default(dbpath):
    rt = load('ds_select_domain(2, 8, "fd");', params(dbpath))
    ctx = run(rt)
    assert ctx.ruri == "sip:bob@10.0.0.21:5070" and ctx.dst_uri is None
    assert ctx.avps["ds_dst_failover"][::-1] == ["sip:10.0.0.21:5070", "sip:10.0.0.22"]


def test_is_in_list(dbpath):
    rt = load('if (ds_is_in_list($si, $sp)) $var(any) = $var(setid); else $var(any) = 0;\n'
              'if (ds_is_in_list("$si", "", "2")) $var(s2) = 1; else $var(s2) = -1;\n'
              'if (ds_is_in_list($si, 5061, 2)) $var(port) = 1; else $var(port) = -1;\n'
              'if (ds_is_in_list("10.0.0.31", 0, 3, , 1)) $var(act) = 1; else $var(act) = -1;\n'
              'if (ds_is_from_list()) $var(from) = 1; else $var(from) = -1;',
              params(dbpath, 'modparam("dispatcher", "setid_pvar", "$var(setid)")\n'))
    run(rt, src=("10.0.0.21", 5070))
    v = rt.vars
    assert (v["any"], v["s2"], v["port"], v["act"], v["from"]) == (2, 1, -1, -1, 1)
    run(rt, src=("10.9.9.9", 5060))
    assert (v["any"], v["s2"], v["from"]) == (0, -1, -1)


def test_list_file_and_1x_params(tmp_path):
    lst = tmp_path / "dispatcher.list"
    lst.write_text("# set 1\n1 sip:127.0.0.1:5080\n1 sip:127.0.0.1:5081 0 0 weight=1\n"
                   "2 sip:127.0.0.1:5090 2\n")
    rt = load('if (ds_select_dst("1", "4")) $var(r) = $du;\n'
              'if (ds_select_dst("2", "0")) $var(p) = 1; else $var(p) = -1;',
              f'modparam("dispatcher", "list_file", "{lst}")\n'
              'modparam("dispatcher", "flags", 2)\n'
              'modparam("dispatcher", "force_dst", 1)\n'
              'modparam("dispatcher", "dst_avp", "$avp(i:271)")\n'
              'modparam("dispatcher", "grp_avp", "$avp(i:272)")\n'
              'modparam("dispatcher", "cnt_avp", "$avp(i:273)")\n'
              'modparam("dispatcher", "ds_probing_threshhold", 2)\n')
    ctx = run(rt)
    assert rt.vars["r"] == "sip:127.0.0.1:5080" and rt.vars["p"] == -1
    assert ctx.avps["i:271"][::-1] == ["sip:127.0.0.1:5080", "sip:127.0.0.1:5081"]
    assert ctx.avps["i:273"] == [2]


def test_load_time_errors():
    for body in ('ds_select_dst("x", 0);', 'ds_select_dst(1, 0, "fz");',
                 'ds_count(1, "q", $var(x));'):
        loaded = load_script(parse_text('loadmodule "dispatcher.so"\n'
                                        f"route {{\n{body}\n}}\n", "t.cfg"))
        assert not loaded.ok, body


def test_script_attrs(dbpath):
    rt = load('ds_push_script_attrs("load=5", "10.0.0.12", 5060, 1);\n'
              'if (ds_get_script_attrs("sip:10.0.0.12:5060", 1, , $var(sa))) $var(r) = 1;\n'
              'ds_select_dst(1, 8, "f"); ds_next_dst(); $var(cur) = $avp(dsscript);',
              params(dbpath, 'modparam("dispatcher", "script_attrs_avp", "$avp(dsscript)")\n'))
    run(rt)
    assert rt.vars["sa"] == "load=5" and rt.vars["r"] == 1 and rt.vars["cur"] == "load=5"


def test_mi_commands(dbpath):
    import asyncio
    from runtime import mi
    rt = load('ds_select_dst(1, 8);', params(dbpath))

    def call(method, params=None):
        req = {"jsonrpc": "2.0", "id": 1, "method": method}
        if params is not None:
            req["params"] = params
        import json
        return json.loads(asyncio.run(mi.handle_text(rt, json.dumps(req))))
    r = call("ds_set_state", {"state": "i", "group": "1", "address": "sip:10.0.0.11:5060"})
    assert r["result"] == "OK"
    assert run(rt).dst_uri == "sip:10.0.0.12:5060"
    listing = call("ds_list", {"full": 1})["result"]["PARTITIONS"][0]["SETS"]
    set1 = next(s for s in listing if s["id"] == 1)
    assert [d["state"] for d in set1["Destinations"]] == ["Inactive", "Active", "Active"]
    assert call("ds_set_state", ["x", "1", "sip:nowhere"])["error"]["code"] == 400
    assert call("ds_reload")["result"] == "OK"


def test_partitions(dbpath, tmp_path):
    other = tmp_path / "other.db"
    conn = db.connect(f"sqlite://{other}", shared=False)
    from modules.dispatcher import _SCHEMA
    conn.create_table("ds_pstn", _SCHEMA, 9)
    conn.insert("ds_pstn", {"setid": 1, "destination": "sip:192.0.2.1", "weight": "1"})
    conn.close()
    rt = load('ds_select_dst(1, 8, "f", "pstn"); $var(p) = $du; $var(cnt) = $avp(pstn_cnt);\n'
              'ds_select_dst("pstn:1", 8); $var(q) = $du;\n'
              'ds_select_dst(1, 8); $var(d) = $du;\n'
              'if (ds_is_in_list("192.0.2.1", 0, 1, "pstn")) $var(in) = 1;',
              params(dbpath, f'modparam("dispatcher", "partition", "pstn: db_url = '
                             f'sqlite://{other}; table_name = ds_pstn; '
                             f'cnt_avp = $avp(pstn_cnt)")\n'))
    run(rt)
    v = rt.vars
    assert (v["p"], v["q"], v["d"], v["cnt"], v["in"]) == (
        "sip:192.0.2.1", "sip:192.0.2.1", "sip:10.0.0.11:5060", 1, 1)


def test_reply_codes():
    from modules.dispatcher.probe import parse_reply_codes, probe_ok
    codes, classes = parse_reply_codes("501, 403")
    assert probe_ok(200, codes, classes) and probe_ok(403, codes, classes)
    assert not probe_ok(404, codes, classes)
    codes, classes = parse_reply_codes("class=2;code=403;code=488;class=3")
    assert probe_ok(302, codes, classes) and probe_ok(488, codes, classes)
    assert not probe_ok(500, codes, classes)
    with pytest.raises(ValueError):
        parse_reply_codes("abc")

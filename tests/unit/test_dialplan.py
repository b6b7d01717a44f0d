"""dialplan: dp_translate over a real SQLite dialplan table (3.x and 1.x forms)."""
from datetime import datetime

import pytest

from cfgscript import parse_text
from runtime import db
from runtime.context import Context, ScriptExit
from runtime.loader import load_script
from runtime.sip.message import Message


def msg(ruri="sip:0212345678@example.com"):
    return Message.parse((
        f"INVITE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n"
        f"From: <sip:alice@example.com>;tag=1\r\nTo: <{ruri}>\r\nCall-ID: c1\r\n"
        f"CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n").encode())


def load(body, params=""):
    text = ('loadmodule "db_sqlite.so"\nloadmodule "dialplan.so"\n' + params
            + f"route {{\n{body}\n}}\n")
    loaded = load_script(parse_text(text, "t.cfg"))
    assert loaded.ok, [str(d) for d in loaded.diagnostics]
    rt = loaded.rt
    for name in ("db_sqlite", "dialplan"):
        rt.modules[name].init(rt)
    return rt


def run(rt, m=None):
    ctx = Context(rt, m or msg(), src=("10.0.0.1", 5060))
    try:
        rt.routes[("route", None)](ctx)
    except ScriptExit:
        pass
    return ctx


RULES = [
    # dpid, pr, op, match, flags, subst, repl, attrs, disabled, timerec
    (0, 1, 1, r"^(0040|\+40|0|40)21[0-9]+", 0, r"^(0040|\+40|0|40)(.+)", r"40\2", "ro", 0, None),
    (0, 2, 1, r"^0[0-9]+$", 0, r"^0(.*)$", r"+33\1", "fr", 0, None),
    (0, 0, 0, "911", 0, None, "112", "emergency", 0, None),
    (0, 0, 0, "off", 0, None, "x", "disabled", 1, None),
    (1, 5, 1, "^(germany|germania|deutschland|de)$", 1, None, "DE", None, 0, None),
    (1, 1, 0, "UK", 1, None, "GB", "eq", 0, None),
    (2, 0, 1, "^021456[0-9]{5}$", 0, None, None, "serviceX", 0, None),
    (3, 0, 2, "55*", 0, None, "five", "glob", 0, None),
    (4, 0, 1, "^1", 0, None, "night", "", 0, "20200101T220000|PT8H|daily"),
]


@pytest.fixture
def dbpath(tmp_path):
    path = tmp_path / "dp.db"
    conn = db.connect(f"sqlite://{path}", shared=False)
    from modules.dialplan import _SCHEMA
    conn.create_table("dialplan", _SCHEMA, 5)
    for dpid, pr, op, exp, fl, subst, repl, attrs, dis, tr in RULES:
        conn.insert("dialplan", {"dpid": dpid, "pr": pr, "match_op": op, "match_exp": exp,
                                 "match_flags": fl, "subst_exp": subst, "repl_exp": repl,
                                 "attrs": attrs, "disabled": dis, "timerec": tr})
    conn.close()
    yield path
    db.close_all()


def url(path):
    return f'modparam("dialplan", "db_url", "sqlite://{path}")\n'


def test_subst_with_backrefs_and_priorities(dbpath):
    rt = load('if (dp_translate(0, $rU, $rU, $var(attrs))) $var(r) = 1; else $var(r) = -1;',
              url(dbpath))
    ctx = run(rt)
    assert ctx.ruri == "sip:40212345678@example.com"
    assert rt.vars["attrs"] == "ro" and rt.vars["r"] == 1
    ctx = run(rt, msg("sip:0612345678@example.com"))
    assert ctx.ruri == "sip:+33612345678@example.com" and rt.vars["attrs"] == "fr"
    ctx = run(rt, msg("sip:911@example.com"))
    assert ctx.ruri == "sip:112@example.com" and rt.vars["attrs"] == "emergency"
    ctx = run(rt, msg("sip:off@example.com"))
    assert rt.vars["r"] == -1 and ctx.ruri == "sip:off@example.com"


def test_string_regex_glob_and_detection(dbpath):
    rt = load('dp_translate(1, "Deutschland", $var(c1));\n'
              'dp_translate(1, "uk", $var(c2), $var(a2));\n'
              'if (dp_translate(2, "02145612345", $var(out), $var(a3))) $var(r3) = 1;\n'
              'dp_translate(3, "5555", $var(c4));\n'
              'if (dp_translate(1, "France", $var(c5))) $var(r5) = 1; else $var(r5) = -1;',
              url(dbpath))
    run(rt)
    v = rt.vars
    assert (v["c1"], v["c2"], v["a2"], v["a3"], v["r3"], v["c4"], v["r5"]) == (
        "DE", "GB", "eq", "serviceX", 1, "five", -1)
    assert "out" not in v           # a detection rule has no output


def test_1x_form_and_attrs_pvar(dbpath):
    rt = load('if (dp_translate("0", "$rU/$rU")) $var(r) = 1;\n'
              'dp_translate("0", "$ruri/$var(u)");',
              url(dbpath) + 'modparam("dialplan", "attrs_pvar", "$avp(dp_attrs)")\n')
    ctx = run(rt)
    assert ctx.ruri == "sip:40212345678@example.com" and rt.vars["r"] == 1
    assert ctx.avps["dp_attrs"] == ["ro"]


def test_partitions(dbpath, tmp_path):
    other = tmp_path / "other.db"
    conn = db.connect(f"sqlite://{other}", shared=False)
    conn.raw_query("CREATE TABLE pstn_rules (id INTEGER PRIMARY KEY, dpid INTEGER, pr INTEGER,"
                   " match_op INTEGER, match_exp TEXT, match_flags INTEGER, subst_exp TEXT,"
                   " repl_exp TEXT, timerec TEXT, disabled INTEGER, attrs TEXT)")
    conn.insert("pstn_rules", {"dpid": 7, "pr": 0, "match_op": 0, "match_exp": "a",
                               "match_flags": 0, "repl_exp": "b", "disabled": 0})
    conn.close()
    rt = load('dp_translate(7, "a", $var(x), , "pstn"); dp_translate("pstn:7", "a", $var(y));',
              url(dbpath) + f'modparam("dialplan", "partition", "pstn: db_url = '
                            f'sqlite://{other}; table_name = pstn_rules")\n')
    run(rt)
    assert rt.vars["x"] == "b" and rt.vars["y"] == "b"


def test_timerec():
    from modules.drouting.timerec import TimeRec
    night = TimeRec.parse("20200101T220000|PT8H|daily")
    assert night.matches(datetime(2024, 5, 3, 23, 0))
    assert night.matches(datetime(2024, 5, 4, 5, 59))
    assert not night.matches(datetime(2024, 5, 4, 12, 0))
    office = TimeRec.parse("20240101T080000|PT10H|weekly|||MO,TU,WE,TH,FR")
    assert office.matches(datetime(2024, 5, 3, 9, 0))        # a Friday
    assert not office.matches(datetime(2024, 5, 4, 9, 0))    # Saturday
    assert not office.matches(datetime(2024, 5, 3, 19, 0))
    last_fri = TimeRec.parse("20240101T000000|P1D|monthly|||-1FR")
    assert last_fri.matches(datetime(2024, 5, 31, 10, 0))
    assert not last_fri.matches(datetime(2024, 5, 24, 10, 0))
    # the 3.x form (dtend / duration, "8H"), timezones, expressions
    weekdays = TimeRec.parse("20210104T080000||8H|WEEKLY|||MO,TU,WE,TH,FR")
    assert weekdays.matches(datetime(2024, 5, 3, 9, 0))
    assert not weekdays.matches(datetime(2024, 5, 3, 7, 30))
    overnight = TimeRec.parse("20200610T230000|20200611T070000||DAILY")
    assert overnight.matches(datetime(2024, 5, 4, 6, 59))
    assert not overnight.matches(datetime(2024, 5, 4, 7, 0))
    assert TimeRec.parse("Europe/Bucharest|20200101T000000|20200101T120000||DAILY").tz
    not_new_year = TimeRec.parse("20210104T080000||8H|WEEKLY|||MO,TU,WE,TH,FR & "
                                 "!20240101T000000||P1D|YEARLY")
    assert not not_new_year.matches(datetime(2024, 1, 1, 9, 0))
    assert not_new_year.matches(datetime(2024, 1, 2, 9, 0))
    holidays = TimeRec.parse("(20240101T000000||P1D|YEARLY / 20240501T000000||P1D|YEARLY)")
    assert holidays.matches(datetime(2025, 5, 1, 3, 0))
    assert not holidays.matches(datetime(2025, 5, 2, 3, 0))
    for bad in ("2024|PX|daily", "20240101T000000|XX|daily", "(20240101T000000", "a & "):
        with pytest.raises(ValueError):
            TimeRec.parse(bad)


def test_load_time_errors():
    loaded = load_script(parse_text('loadmodule "dialplan.so"\nroute {\n'
                                    'dp_translate("abc", "$rU", $rU);\n}\n', "t.cfg"))
    assert not loaded.ok


def test_mi_translate(dbpath):
    from modules import dialplan as dp
    rt = load('exit;', url(dbpath))
    assert dp.mi_dp_translate(rt, 0, "0212345678") == {"Output": "40212345678",
                                                       "ATTRIBUTES": "ro"}
    assert dp.mi_dp_reload(rt) == "OK"

"""acc: record formats and load-time checks (the live behaviour is in tests/auth)."""
from cfgscript import parse_text
from modules.acc import records as R
from runtime.context import Context
from runtime.loader import load_script
from runtime.sip.message import Message

INVITE = Message.parse(
    b"INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n"
    b"From: <sip:alice@example.com>;tag=ft1\r\nTo: <sip:bob@example.com>\r\n"
    b"Call-ID: cid-1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")


def test_log_line_is_opensips_format():
    fields = R.core_fields(INVITE, "tt9", 200, "OK")
    assert R.log_line(R.ANSWERED, fields, 1700000000) == (
        "ACC: transaction answered: timestamp=1700000000;method=INVITE;from_tag=ft1;"
        "to_tag=tt9;call_id=cid-1;code=200;reason=OK")
    assert R.log_line(R.ENDED, fields[:1], prefix=[("created", 1), ("duration", 5)]) == (
        "ACC: call ended: created=1;duration=5;method=INVITE")


def test_upstream_swaps_tags_and_missing_to_tag_is_empty():
    assert dict(R.core_fields(INVITE, None, 404, "Not Found"))["to_tag"] == ""
    swapped = dict(R.core_fields(INVITE, "tt9", 200, "OK", upstream=True))
    assert (swapped["from_tag"], swapped["to_tag"]) == ("tt9", "ft1")


def test_comment_with_and_without_code():
    assert R.parse_comment("404 Not here") == ("404", "Not here")
    assert R.parse_comment("486") == ("486", "Busy Here")
    assert R.parse_comment("just a note") == ("", "just a note")


def test_db_row_uses_configured_columns():
    cols = {c: c for c in ("method", "from_tag", "to_tag", "callid", "sip_code",
                           "sip_reason", "time", "duration", "setuptime", "created")}
    cols["callid"] = "call_ident"
    row = R.db_row(R.core_fields(INVITE, "t", 200, "OK"), cols, 0, [("x", "1")],
                   cdr={"duration": 7, "setuptime": 2, "created": 0})
    assert row["call_ident"] == "cid-1" and row["sip_code"] == "200" and row["x"] == "1"
    assert (row["duration"], row["setuptime"]) == (7, 2)
    assert len(row["time"]) == 19 and row["created"] == row["time"]


def test_extras_read_pvs_of_the_request():
    ex = R.Extras("src=$si; user=$fU;ua=$hdr(User-Agent)")
    ctx = Context(None, INVITE, src=("10.9.8.7", 5060))
    assert ex.values(ctx) == [("src", "10.9.8.7"), ("user", "alice"), ("ua", "")]


def _errors(text):
    loaded = load_script(parse_text(text, "t.cfg"))
    return [d.message for d in loaded.diagnostics if d.severity == "error"]


BASE = 'loadmodule "tm.so"\nloadmodule "acc.so"\n'


def test_load_time_checks():
    assert _errors(BASE + 'route { do_accounting("log|db", "missed|failed", "t"); }') == []
    assert "invalid accounting backend 'syslog'" in _errors(
        BASE + 'route { do_accounting("syslog"); }')[0]
    assert "invalid accounting flag 'lost'" in _errors(
        BASE + 'route { do_accounting("log", "lost"); }')[0]
    assert "needs the dialog module" in _errors(
        BASE + 'route { do_accounting("log", "cdr"); }')[0]
    assert _errors(BASE + 'loadmodule "dialog.so"\nroute { do_accounting("log", "cdr"); }') == []
    assert "not supported" in _errors(BASE + 'route { do_accounting("aaa"); }')[0]
    assert _errors(BASE + 'modparam("acc", "log_flag", 1)\nmodparam("acc", "db_missed_flag", '
                   '"MISSED")\nroute { acc_log_request("200 ok"); drop_accounting(); }') == []


def test_extra_fields():
    assert R.parse_extra_fields(["log: a; b->bee", "db: c->col_c; d"]) == {
        "log": [("a", "a"), ("b", "bee")], "db": [("c", "col_c"), ("d", "d")]}
    assert R.parse_extra_fields(["log: x; db: y"]) == {"log": [("x", "x")], "db": [("y", "y")]}
    assert "comes before any" in _errors(BASE + 'modparam("acc", "extra_fields", "x")\n'
                                         'route { exit; }')[0]
    text = (BASE + 'modparam("acc", "extra_fields", "log: src")\n'
            'route { $acc_extra(src) = $si; $var(x) = $acc_extra(src); }')
    loaded = load_script(parse_text(text, "t.cfg"))
    assert loaded.ok
    ctx = Context(loaded.rt, INVITE, src=("10.1.1.1", 5060))
    loaded.rt.routes[("route", None)](ctx)
    assert loaded.rt.vars["x"] == "10.1.1.1" and ctx.local_data["acc_extra"] == {"src": "10.1.1.1"}

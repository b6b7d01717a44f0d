"""avpops: AVP operations, and usr_preferences / raw queries on a real SQLite file."""
import pytest

from cfgscript import parse_text
from runtime import db
from runtime.context import Context, ScriptExit
from runtime.loader import load_script
from runtime.sip.edits import apply
from runtime.sip.message import Message

MSG = (b"INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n"
       b"From: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\n"
       b"Call-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")


def run(body, extra="", init=None):
    loaded = load_script(parse_text('loadmodule "avpops.so"\n' + extra
                                    + f"route {{\n{body}\n}}\n", "t.cfg"))
    assert loaded.ok, [str(d) for d in loaded.diagnostics]
    rt = loaded.rt
    if init:
        init(rt)
    ctx = Context(rt, Message.parse(MSG))
    try:
        rt.routes[("route", None)](ctx)
    except ScriptExit:
        pass
    return rt.vars, ctx


def flag(name, call):
    return f"if ({call}) $var({name}) = 1; else $var({name}) = -1;"


def test_check_copy_op_subst_delete():
    v, ctx = run("\n".join([
        '$avp(a) = 5; $avp(a) = 7; $avp(s) = "Hello World";',
        flag("eq", 'avp_check("$avp(a)", "eq/i:7")'),
        flag("any", 'avp_check("$avp(a)", "eq/5/g")'),
        flag("top", 'avp_check("$avp(a)", "eq/5")'),
        flag("re", 'avp_check("$avp(s)", "re/^hello/i")'),
        flag("fm", 'avp_check("$avp(s)", "fm/*World")'),
        flag("ru", 'avp_check("$ru", "eq/$avp(s)")'),
        'avp_copy("$avp(a)", "$avp(b)/g");',
        'avp_op("$avp(a)", "add/i:10");',
        'avp_op("$avp(b)", "mul/$avp(a)/g");',
        'avp_subst("$avp(s)", "/world/there/i");',
        'avp_subst("$avp(s)/$avp(t)", "/(\\w+) (\\w+)/\\2 \\1/");',
        flag("set", 'is_avp_set("$avp(b)")'), flag("num", 'is_avp_set("$avp(s)/n")'),
        'avp_delete("$avp(a)");',
        'avp_printf("$avp(i:901)", "$avp(s)|$rU");',
        '$var(b) = $(avp(b)[*]);',
    ]))
    assert (v["eq"], v["any"], v["top"], v["re"], v["fm"], v["ru"]) == (1, 1, -1, 1, 1, -1)
    assert ctx.avps["a"] == [5]                      # the top (17) was deleted
    assert v["b"] == "119, 85"                       # [7, 5] * 17, newest first
    assert ctx.avps["s"] == ["Hello there"] and ctx.avps["t"] == ["there Hello"]
    assert (v["set"], v["num"]) == (1, -1)
    assert ctx.avps["i:901"] == ["Hello there|bob"]


def test_pushto():
    _, ctx = run('$avp(u) = "carol"; $avp(d) = "sip:10.0.0.9:5070"; $avp(h) = "x"; '
                 '$avp(h) = "y"; avp_pushto("$ru/username", "$avp(u)"); '
                 'avp_pushto("$du", "$avp(d)"); avp_pushto("$hdr(X-Tag)", "$avp(h)/g"); '
                 'avp_pushto("$br", "$avp(d)");')
    assert ctx.ruri == "sip:carol@example.com" and ctx.dst_uri == "sip:10.0.0.9:5070"
    assert apply(ctx.msg, ctx.edits).get_all("x-tag") == ["y", "x"]
    assert [b.uri for b in ctx.branches] == ["sip:10.0.0.9:5070"]


@pytest.fixture
def dbpath(tmp_path):
    path = tmp_path / "p.db"
    conn = db.connect(f"sqlite://{path}", shared=False)
    conn.raw_query("CREATE TABLE usr_preferences (id INTEGER PRIMARY KEY, uuid CHAR(64) "
                   "DEFAULT '', username CHAR(128) DEFAULT '', domain CHAR(64) DEFAULT '', "
                   "attribute CHAR(32) DEFAULT '', type INTEGER DEFAULT 0, "
                   "value CHAR(128) DEFAULT '')")
    conn.insert("usr_preferences", {"username": "alice", "attribute": "fwd",
                                    "value": "sip:voicemail@example.com"})
    conn.insert("usr_preferences", {"username": "alice", "attribute": "limit", "type": 1,
                                    "value": "3"})
    conn.insert("usr_preferences", {"uuid": "42", "attribute": "fwd", "value": "sip:x@y"})
    conn.close()
    yield path
    db.close_all()


def _init(rt):
    for name in ("db_sqlite", "avpops"):
        rt.modules[name].init(rt)
    rt.modules["avpops"].child_init(rt)


def test_db_load_store_delete_query(dbpath):
    extra = f'loadmodule "db_sqlite.so"\nmodparam("avpops", "db_url", "sqlite://{dbpath}")\n'
    v, ctx = run("\n".join([
        flag("load", 'avp_db_load("$fu", "*")'),
        '$avp(id) = "42";',
        flag("uuid", 'avp_db_load("$avp(id)", "$avp(fwd)")'),
        '$avp(tag) = "blue"; $avp(tag) = "red";',
        flag("store", 'avp_db_store("$tu/username", "$avp(tag)")'),
        flag("query", 'avp_db_query("select attribute, value from usr_preferences where '
                      'username=\'$tU\' order by value", "$avp(attr);$avp(val)")'),
        flag("none", 'avp_db_query("select value from usr_preferences where 0", "$avp(x)")'),
        flag("del", 'avp_db_delete("$tu/username", "$avp(tag)")'),
        flag("upd", 'avp_db_query("update usr_preferences set value=\'x\' where 0")'),
        flag("gone", 'avp_db_load("$tu/username", "$avp(tag)")'),
    ]), extra=extra, init=_init)
    assert (v["load"], v["uuid"], v["store"], v["query"], v["none"], v["del"], v["gone"],
            v["upd"]) == (1, 1, 1, 1, -1, 1, -1, 1)
    assert ctx.avps["fwd"] == ["sip:voicemail@example.com", "sip:x@y"]
    assert ctx.avps["limit"] == [3]
    assert ctx.avps["val"] == ["blue", "red"]        # rows in order: the last on top


def test_load_errors():
    def errors(body):
        loaded = load_script(parse_text(f'loadmodule "avpops.so"\nroute {{ {body} }}', "t.cfg"))
        return [d.message for d in loaded.diagnostics if d.severity == "error"]
    assert "unknown operation 'pow'" in errors('avp_op("$avp(a)", "pow/2");')[0]
    assert "is not an AVP" in errors('avp_copy("$ru", "$avp(b)");')[0]
    assert "cannot push to" in errors('avp_pushto("$fu", "$avp(b)");')[0]
    assert errors('avp_print(); avp_delete("$avp(s:old)/g"); is_avp_set("$avp(i:3)");') == []

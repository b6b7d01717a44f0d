"""json: json-c's reader and writer, ids with keys/indexes/variables, $json reads and
writes (= and :=, append, delete), $json_compact/$json_pretty, for-each over keys, values and
elements, json_link references, and the corpus scripts' uses."""
import pytest

from cfgscript import parse_text
from modules.json import jsonc, parse_id
from runtime.context import Context, ScriptExit
from runtime.loader import load_script
from runtime.sip.message import Message

MSG = (b"INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n"
       b"From: <sip:alice@example.com>;tag=ft1\r\nTo: <sip:bob@example.com>\r\n"
       b"Call-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")


# --- json-c reading and writing ---------------------------------------------------------

@pytest.mark.parametrize("text, value", [
    ('{"a": 1, "b": [true, false, null], "c": "x"}',
     {"a": 1, "b": [True, False, None], "c": "x"}),
    ("{'from_tag' : '',\n 'callid' : ''}", {"from_tag": "", "callid": ""}),
    ("[1, 2, 3,]", [1, 2, 3]),
    ('{"a": 1,}', {"a": 1}),
    ("/* c */ [1, // two\n 2]", [1, 2]),
    ("TRUE", True),
    ('"\\u00e9\\ud83d\\ude00\\/"', "é😀/"),
    ("123 trailing", 123),
    ("-7", -7),
    ("99999999999999999999", 2 ** 63 - 1),
])
def test_reader(text, value):
    assert jsonc.loads(text) == value


def test_doubles_keep_their_text():
    v = jsonc.loads('{"x": 1.50, "y": 2e3}')
    assert jsonc.dumps(v, jsonc.PLAIN) == '{"x":1.50,"y":2e3}'


@pytest.mark.parametrize("text", ["{nope", "[1 2]", '{"a" 1}', "", "'open", "[" * 40 + "]" * 40])
def test_reader_errors(text):
    with pytest.raises(jsonc.JSONError):
        jsonc.loads(text)


def test_writer_forms():
    v = {"a": 1, "b": [1, "x/y"], "e": {}, "f": [], "s": "q\"\n\x01é"}
    assert jsonc.dumps(v, jsonc.SPACED) == (
        '{ "a": 1, "b": [ 1, "x\\/y" ], "e": { }, "f": [ ], "s": "q\\"\\n\\u0001é" }')
    assert jsonc.dumps(v, jsonc.PLAIN) == (
        '{"a":1,"b":[1,"x\\/y"],"e":{},"f":[],"s":"q\\"\\n\\u0001é"}')
    assert jsonc.dumps(v, jsonc.PRETTY) == (
        '{\n  "a":1,\n  "b":[\n    1,\n    "x\\/y"\n  ],\n  "e":{\n  },\n  "f":[\n  ],\n'
        '  "s":"q\\"\\n\\u0001é"\n}')
    assert jsonc.dumps("a/b", jsonc.SPACED | jsonc.NOSLASHESCAPE) == '"a/b"'


def test_ids():
    p = parse_id("name/key1[0][-1]/key 2")
    assert p.name == "name" and p.tags == (("key", "key1"), ("idx", 0), ("idx", -1),
                                           ("key", "key 2"))
    assert parse_id("a[]").tags == (("end", None),)
    assert parse_id("foo.keys").iterate == "keys" and parse_id("foo.keys").name == "foo"
    p = parse_id("o/$var(k)[$var(i)]")
    assert [k for k, _ in p.tags] == ["key", "idx"] and p.dynamic
    for bad in ("/x", "a[x]", "a[1"):
        with pytest.raises(ValueError):
            parse_id(bad)


# --- in scripts ------------------------------------------------------------------------------

def run(body, head='loadmodule "json.so"\n'):
    loaded = load_script(parse_text(head + f"route {{\n{body}\n}}\n", "t.cfg"))
    assert loaded.ok, [str(d) for d in loaded.diagnostics]
    rt = loaded.rt
    ctx = Context(rt, Message.parse(MSG))
    try:
        rt.routes[("route", None)](ctx)
    except ScriptExit:
        pass
    return rt.vars, rt


def test_reads_and_writes():
    v, _ = run("""
        $json(o) := "{}";
        $json(o/s) = "text";
        $json(o/n) = 5;
        $json(o/neg) = -3;
        $json(o/arr) := "[1,2,3]";
        $json(o/arr[]) = 4;
        $json(o/arr[0]) = "one";
        $json(o/arr[-1]) = NULL;
        $json(o/t) := "true";
        $json(o/nul) := "null";
        $var(s) = $json(o/s);
        $var(n) = $json(o/n) + 1;
        $var(arr) = $json(o/arr);
        $var(t) = $json(o/t);
        $var(whole) = $json(o);
        $var(compact) = $json_compact(o);
        if ($json(o/nul) == NULL) { $var(nul_is_null) = 1; }
        if ($json(o/missing) == NULL) { $var(missing_is_null) = 1; }
        if ($json(nothing/at/all) == NULL) { $var(novar_is_null) = 1; }
        $json(o/s) = NULL;
        $var(after_delete) = $json_compact(o);
    """)
    assert v["s"] == "text" and v["n"] == 6 and v["t"] == "true"
    assert v["arr"] == '[ "one", 2, 3 ]'
    assert v["whole"] == ('{ "s": "text", "n": 5, "neg": -3, "arr": [ "one", 2, 3 ], "t": true,'
                          ' "nul": null }')
    assert v["compact"] == '{"s":"text","n":5,"neg":-3,"arr":["one",2,3],"t":true,"nul":null}'
    assert v["nul_is_null"] == v["missing_is_null"] == v["novar_is_null"] == 1
    assert v["after_delete"] == '{"n":5,"neg":-3,"arr":["one",2,3],"t":true,"nul":null}'


def test_errors_fail_the_assignment():
    v, rt = run("""
        $json(o) := "{\\"a\\": 1}";
        $json(o) := "{broken";
        $var(parse_rc) = $rc;
        if ($json(o) == NULL) { $var(deleted) = 1; }
        $json(x/y) = 1;
        $var(uninit_rc) = $rc;
        $json(arr) := "[1]";
        $json(arr[5]) = 2;
        $var(range_rc) = $rc;
        $json(arr[]) = NULL;
        $var(del_end_rc) = $rc;
        $json(arr/key) = 1;
        $var(type_rc) = $rc;
        $var(i) = "notanint";
        $var(bad_idx) = $json(arr[$var(i)]);
    """)
    assert v["parse_rc"] == -1 and v["deleted"] == 1
    assert v["uninit_rc"] == v["range_rc"] == v["del_end_rc"] == v["type_rc"] == -1
    assert v["bad_idx"] is None


def test_variables_in_paths_and_loops():
    v, _ = run("""
        $json(ar1) := "[1,2,3,4]";
        $var(i) = 0;
        while ($json(ar1[$var(i)])) {
            $json(ar1[$var(i)]) = $json(ar1[$var(i)]) + 1;
            $var(i) = $var(i) + 1;
        }
        $var(ar1) = $json_compact(ar1);
        $json(foo) := "{\\"a\\": 1, \\"b\\": {\\"c\\": 2}, \\"d\\": \\"x\\"}";
        $var(keys) = "";
        for ($var(k) in $(json(foo.keys)[*])) { $var(keys) = $var(keys) + $var(k) + " "; }
        $var(vals) = "";
        for ($var(x) in $(json(foo.values)[*])) { $var(vals) = $var(vals) + $var(x) + "|"; }
        $var(elems) = 0;
        for ($var(e) in $(json(ar1)[*])) { $var(elems) = $var(elems) + $var(e); }
        $var(key) = "b";
        $var(c) = $json(foo/$var(key)/c);
    """)
    assert v["ar1"] == "[2,3,4,5]"
    assert v["keys"] == "a b d "
    assert v["vals"] == '1|{ "c": 2 }|x|'
    assert v["elems"] == 14 and v["c"] == 2


def test_json_link_is_a_reference():
    v, _ = run("""
        $json(b) := "[{},{},{}]";
        json_link($json(stub), $json(b[0]));
        $json(stub/ana) = "are";
        $json(stub/ar) := "[]";
        $json(stub/ar[]) = 1;
        $json(stub/ar[]) = 2;
        $json(b[0]/ar[0]) = NULL;
        $var(stub) = $json(stub);
        $var(b) = $json(b);
        $json(stub) = NULL;
        $var(b_after) = $json(b);
        json_link($json(x), $json(b[9]));
        $var(link_rc) = $rc;
    """)
    assert v["stub"] == '{ "ana": "are", "ar": [ 2 ] }'
    assert v["b"] == '[ { "ana": "are", "ar": [ 2 ] }, { }, { } ]'
    assert v["b_after"] == v["b"] and v["link_rc"] == -1


def test_pretty_and_slash_param():
    v, _ = run('$json(o) := "{\\"u\\": \\"sip:a@b/c\\", \\"l\\": [1]}";'
               '$var(p) = $json_pretty(o); $var(s) = $json(o);',
               'loadmodule "json.so"\nmodparam("json", "disable_escape_forward_slash", 1)\n')
    assert v["p"] == '{\n  "u":"sip:a@b\\/c",\n  "l":[\n    1\n  ]\n}'
    assert v["s"] == '{ "u": "sip:a@b/c", "l": [ 1 ] }'


def test_variables_live_across_messages():
    loaded = load_script(parse_text('loadmodule "json.so"\nroute {\n'
                                    'if ($json(seen) == NULL) { $json(seen) := "[]"; }\n'
                                    '$json(seen[]) = $ci; $var(all) = $json_compact(seen); }',
                                    "t.cfg"))
    rt = loaded.rt
    for _ in range(2):
        ctx = Context(rt, Message.parse(MSG))
        rt.routes[("route", None)](ctx)
    assert rt.vars["all"] == '["c1","c1"]'


def test_load_errors():
    loaded = load_script(parse_text('loadmodule "json.so"\nroute { $var(x) = $json(/a); '
                                    'json_link($var(a), $json(b)); }', "t.cfg"))
    msgs = " ".join(d.message for d in loaded.diagnostics)
    assert "no variable name" in msgs and "json_link takes $json variables" in msgs


def test_corpus_lb_script_json_usage():
    """mach1el's load-balancer script builds a request body and reads a REST answer."""
    v, _ = run("""
        $json(db_data) := "{'from_tag' : '',
                            'callid' : '',
                            'src_ip' : ''}";
        $json(db_data/from_tag) = $ft;
        $json(db_data/callid) = $ci;
        $json(db_data/src_ip) = "10.0.0.1";
        $var(body) = $json(db_data);
        $var(data) = "[{\\"max\\": 30, \\"load\\": 12}]";
        $json(data) := $var(data);
        $var(max) = $json(data[0]/max);
        $var(load) = $json(data[0]/load);
    """)
    assert v["body"] == '{ "from_tag": "ft1", "callid": "c1", "src_ip": "10.0.0.1" }'
    assert (v["max"], v["load"]) == (30, 12)

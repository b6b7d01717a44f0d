"""cachedb_local and the cache_* functions: store/fetch/remove, counters, expiry,
collections by URL group, cache_remove_chunk, load-time checks."""
import time

import pytest

from cfgscript import parse_text
from runtime.context import Context, ScriptExit
from runtime.loader import load_script
from runtime.sip.message import Message

MSG = (b"OPTIONS sip:x@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n"
       b"From: <sip:a@example.com>;tag=1\r\nTo: <sip:x@example.com>\r\n"
       b"Call-ID: c1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")

HEAD = """
loadmodule "cachedb_local.so"
modparam("cachedb_local", "cache_collections", "default; users")
modparam("cachedb_local", "cachedb_url", "local://")
modparam("cachedb_local", "cachedb_url", "local:u:///users")
"""


def load(body, head=HEAD):
    loaded = load_script(parse_text(head + f"route {{\n{body}\n}}\n", "t.cfg"))
    assert loaded.ok, [str(d) for d in loaded.diagnostics]
    rt = loaded.rt
    rt.modules["cachedb_local"].init(rt)
    return rt


def run(rt):
    ctx = Context(rt, Message.parse(MSG))
    try:
        rt.routes[("route", None)](ctx)
    except ScriptExit:
        pass
    return rt.vars


def test_store_fetch_remove_and_collections():
    rt = load("""
        cache_store("local", "APIID", "secret");
        cache_fetch("local", "APIID", $var(v));
        cache_fetch("local:u", "APIID", $var(other));
        $var(other_rc) = $rc;
        cache_store("local:u", "k", "in users");
        cache_fetch("local:u", "k", $var(u));
        cache_remove("local", "APIID");
        cache_fetch("local", "APIID", $var(gone));
        $var(gone_rc) = $rc;
    """)
    v = run(rt)
    assert v["v"] == "secret" and v["u"] == "in users"
    assert v["other_rc"] == -2 and "other" not in v      # another collection
    assert v["gone_rc"] == -2


def test_counters_add_sub_and_fetch():
    rt = load("""
        cache_add("local", "calls", 5, 0, $var(n1));
        cache_add("local", "calls", 2, 0);
        cache_sub("local", "calls", 3, 0, $var(n2));
        cache_counter_fetch("local", "calls", $var(n));
        cache_store("local", "word", "abc");
        cache_add("local", "word", 1, 0);
        $var(bad) = $rc;
    """)
    v = run(rt)
    assert (v["n1"], v["n2"], v["n"], v["bad"]) == (5, 4, 4, -1)


def test_expiry_and_clean():
    from modules.cachedb_local import api
    rt = load('cache_store("local", "short", "x", 1); cache_store("local", "long", "y");')
    run(rt)
    coll = api.collections["default"]
    assert set(coll.data) == {"short", "long"}
    k, (val, exp) = "short", coll.data["short"]
    coll.data[k] = (val, time.monotonic() - 1)          # as if a second went by
    assert api.engine(None).fetch("short") is None
    coll.data["short"] = (val, time.monotonic() - 1)
    coll.clean()
    assert set(coll.data) == {"long"}
    assert rt.timers and rt.timers[0][0] == 600          # cache_clean_period


def test_remove_chunk_and_mi():
    from modules import cachedb_local as m
    rt = load('cache_store("local", "acct_1", "a"); cache_store("local", "acct_2", "b");'
              'cache_store("local", "other", "c"); cache_store("local:u", "acct_9", "d");'
              'cache_remove_chunk("default", "acct_*");')
    run(rt)
    assert set(m.api.collections["default"].data) == {"other"}
    assert set(m.api.collections["users"].data) == {"acct_9"}
    assert m.mi_cache_fetch_chunk(rt, "acct*")["keys"] == [{"name": "acct_9", "value": "d"}]
    assert m.mi_cache_remove_chunk(rt, "*") == "OK"
    assert not any(c.data for c in m.api.collections.values())


@pytest.mark.parametrize("text, message", [
    ('cache_store("redis", "k", "v");', "no cachedb engine 'redis'"),
    ('cache_store("local:nogroup", "k", "v");', "no cachedb_url for 'local:nogroup'"),
])
def test_load_errors(text, message):
    loaded = load_script(parse_text(HEAD + f"route {{ {text} }}", "t.cfg"))
    assert any(message in d.message for d in loaded.diagnostics), \
        [d.message for d in loaded.diagnostics]


def test_bad_urls():
    loaded = load_script(parse_text('loadmodule "cachedb_local.so"\n'
                                    'modparam("cachedb_local", "cachedb_url", "local:x:///nocoll")'
                                    '\nroute { exit; }', "t.cfg"))
    assert loaded.ok
    with pytest.raises(ValueError, match="collection 'nocoll'"):
        loaded.rt.modules["cachedb_local"].init(loaded.rt)
    loaded = load_script(parse_text('loadmodule "cachedb_local.so"\n'
                                    'modparam("cachedb_local", "cachedb_url", "redis://x")'
                                    '\nroute { exit; }', "t.cfg"))
    assert any("bad cachedb_url" in d.message for d in loaded.diagnostics)

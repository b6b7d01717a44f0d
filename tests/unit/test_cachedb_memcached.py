"""cachedb_memcached and the 1.x `memcached` module against real memcached servers on
loopback (skipped when memcached is not installed): the cache_* functions, key
distribution over two servers as libmemcached does it, counters, bad keys, a dead server."""
import time

import pytest

from cfgscript import parse_text
from modules.cachedb_memcached.client import Client, MemcachedError, check_key, one_at_a_time
from modules.memcached import parse_server
from runtime.context import Context, ScriptExit
from runtime.loader import load_script
from runtime.sip.message import Message
from tests.modules3.servers import free_port, memcached_server

MSG = (b"INVITE sip:+15551234@example.com SIP/2.0\r\n"
       b"Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n"
       b"From: <sip:a@example.com>;tag=1\r\nTo: <sip:+15551234@example.com>\r\n"
       b"Call-ID: call-1@h\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")


def test_one_at_a_time_hash():
    # reference values of libmemcached's hashkit_one_at_a_time
    assert one_at_a_time(b"") == 0
    assert one_at_a_time(b"a") == 0xCA2E9442
    assert one_at_a_time(b"The quick brown fox jumps over the lazy dog") == 0x519E91F5
    # bytes above 0x7f are read as (signed) C chars
    assert one_at_a_time("é".encode()) != one_at_a_time(b"\x43\x29")


@pytest.mark.parametrize("key", ["a b", "tab\tkey", "", "x" * 251, "new\nline"])
def test_bad_keys(key):
    with pytest.raises(MemcachedError):
        check_key(key)


def test_server_param():
    assert parse_server("callid_hash = 127.0.0.1:11211") == ("callid_hash",
                                                             [("127.0.0.1", 11211)])
    assert parse_server("group1 = localhost:9999,127.0.0.1") == (
        "group1", [("localhost", 9999), ("127.0.0.1", 11211)])
    with pytest.raises(ValueError):
        parse_server("nogroup")


def load(head, body):
    loaded = load_script(parse_text(head + f"route {{\n{body}\n}}\n", "t.cfg"))
    assert loaded.ok, [str(d) for d in loaded.diagnostics]
    rt = loaded.rt
    for name in ("cachedb_memcached", "memcached"):
        if name in rt.modules:
            rt.modules[name].init(rt)
    return rt


def run(rt):
    ctx = Context(rt, Message.parse(MSG))
    try:
        rt.routes[("route", None)](ctx)
    except ScriptExit:
        pass
    return rt.vars


@pytest.fixture
def two_servers(tmp_path):
    with memcached_server(tmp_path) as a, memcached_server(tmp_path) as b:
        yield a, b
    from modules import cachedb_memcached, memcached
    cachedb_memcached.destroy(None)
    memcached.destroy(None)


def test_cachedb_memcached_functions(two_servers):
    a, b = two_servers
    url = f"memcached:local://127.0.0.1:{a.port},127.0.0.1:{b.port}/"
    rt = load(f'loadmodule "cachedb_memcached.so"\n'
              f'modparam("cachedb_memcached", "cachedb_url", "{url}")\n', """
        $avp(fixed_number) = "15551234";
        if (cache_fetch("memcached:local", "prefix_$avp(fixed_number)", $avp(100))) {
            $var(found_first) = 1;
        }
        $var(miss_rc) = $rc;
        cache_store("memcached:local", "prefix_$avp(fixed_number)", "1555", 3600);
        cache_fetch("memcached:local", "prefix_$avp(fixed_number)", $avp(100));
        $var(v) = $avp(100);
        $var(i) = 0;
        while ($var(i) < 20) {
            cache_store("memcached:local", "k$var(i)", "v$var(i)");
            $var(i) = $var(i) + 1;
        }
        cache_fetch("memcached:local", "k7", $var(k7));
        cache_add("memcached:local", "cnt", 3, 0, $var(c1));
        cache_add("memcached:local", "cnt", 4, 0, $var(c2));
        cache_sub("memcached:local", "cnt", 2, 0, $var(c3));
        cache_sub("memcached:local", "cnt", 100, 0, $var(c4));
        cache_sub("memcached:local", "fresh", 9, 0, $var(c5));
        cache_counter_fetch("memcached:local", "cnt", $var(c));
        cache_remove("memcached:local", "k7");
        cache_fetch("memcached:local", "k7", $var(gone));
        $var(gone_rc) = $rc;
        cache_remove("memcached:local", "never-there");
        $var(remove_missing) = $rc;
        cache_store("memcached:local", "has space", "x");
        $var(badkey) = $rc;
        cache_raw_query("memcached:local", "stats");
        $var(raw) = $rc;
    """)
    v = run(rt)
    assert "found_first" not in v and v["miss_rc"] == -2
    assert v["v"] == "1555" and v["k7"] == "v7"
    assert (v["c1"], v["c2"], v["c3"], v["c4"], v["c5"], v["c"]) == (3, 7, 5, 0, 9, 0)
    assert v["gone_rc"] == -2 and v["remove_missing"] == 1
    assert v["badkey"] == -1 and v["raw"] == -1
    # each key went to the server libmemcached would pick, and only there
    ca, cb = Client([("127.0.0.1", a.port)]), Client([("127.0.0.1", b.port)])
    on_a = {f"k{i}" for i in range(20) if i != 7 and ca.get(f"k{i}") is not None}
    on_b = {f"k{i}" for i in range(20) if i != 7 and cb.get(f"k{i}") is not None}
    assert on_a and on_b and not on_a & on_b and len(on_a | on_b) == 19
    for k in on_a:
        assert one_at_a_time(k.encode()) % 2 == 0
    for k in on_b:
        assert one_at_a_time(k.encode()) % 2 == 1


def test_memcached_1x_module(two_servers):
    a, _ = two_servers
    rt = load(f'loadmodule "memcached.so"\n'
              f'modparam("memcached", "server", "callid_hash = 127.0.0.1:{a.port}")\n', """
        cache_store("memcached_callid_hash", "$ci", "10.0.0.9", 60);
        $var(stored) = $rc;
        if (cache_fetch("memcached_callid_hash", "$ci", $avp(i:55))) { $var(si) = $avp(i:55); }
        cache_store("memcached_callid_hash", "$tU ", "$fd", 3600);
        $var(space) = $rc;
        cache_fetch("memcached_nogroup", "$ci", $var(x));
        $var(nogroup) = $rc;
    """)
    v = run(rt)
    assert (v["stored"], v["si"], v["space"], v["nogroup"]) == (1, "10.0.0.9", -1, -1)
    assert Client([("127.0.0.1", a.port)]).get("call-1@h") == b"10.0.0.9"


def test_expiry(two_servers):
    a, _ = two_servers
    rt = load(f'loadmodule "cachedb_memcached.so"\n'
              f'modparam("cachedb_memcached", "cachedb_url", "memcached://127.0.0.1:{a.port}/")\n',
              'cache_store("memcached", "short", "x", 1);')
    run(rt)
    c = Client([("127.0.0.1", a.port)])
    assert c.get("short") == b"x"
    time.sleep(2.1)
    assert c.get("short") is None


def test_dead_server_is_skipped_for_a_while():
    port = free_port()
    rt = load(f'loadmodule "cachedb_memcached.so"\n'
              f'modparam("cachedb_memcached", "cachedb_url", "memcached://127.0.0.1:{port}/")\n',
              'cache_store("memcached", "k", "v"); $var(rc) = $rc;')
    t0 = time.monotonic()
    for _ in range(3):
        v = run(rt)
        assert v["rc"] == -1
    assert time.monotonic() - t0 < 3
    from modules import cachedb_memcached
    cachedb_memcached.destroy(None)


def test_both_cachedb_modules_in_one_script(tmp_path):
    """vtzan's script: memcached for the cache, redis for raw queries, in one proxy."""
    from tests.modules3.servers import redis_server
    with memcached_server(tmp_path) as mc, redis_server(tmp_path) as rd:
        rt = load(f'loadmodule "cachedb_memcached.so"\n'
                  f'modparam("cachedb_memcached", "cachedb_url", '
                  f'"memcached:local://127.0.0.1:{mc.port}/")\n'
                  f'loadmodule "cachedb_redis.so"\n'
                  f'modparam("cachedb_redis", "cachedb_url", "redis:0://127.0.0.1:{rd.port}/")\n',
                  """
            cache_raw_query("redis:0", "HSET NUMBER 15551234 30");
            cache_raw_query("redis:0", "HGET NUMBER 15551234", "$avp(prefix_from_db)");
            cache_store("memcached:local", "prefix_15551234", "$avp(prefix_from_db)", 3600);
            cache_fetch("memcached:local", "prefix_15551234", $var(p));
        """)
        rt.modules["cachedb_redis"].init(rt)
        v = run(rt)
        assert v["p"] == "30"
    from modules import cachedb_memcached, cachedb_redis
    cachedb_memcached.destroy(None)
    cachedb_redis.destroy(None)

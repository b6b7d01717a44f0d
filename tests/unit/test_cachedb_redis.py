"""cachedb_redis: the RESP codec, cachedb_url parsing, and the cache_* functions against a
real redis-server on loopback (skipped when redis-server is not installed): values, expiry,
counters, raw queries into AVPs, groups, AUTH/SELECT, failover and a dead server."""
import socket
import time

import pytest

from cfgscript import parse_text
from modules.cachedb_redis import resp
from runtime.cachedb import parse_url
from runtime.context import Context, ScriptExit
from runtime.loader import load_script
from runtime.sip.message import Message
from tests.modules3.servers import free_port, redis_server

MSG = (b"OPTIONS sip:x@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n"
       b"From: <sip:a@example.com>;tag=1\r\nTo: <sip:x@example.com>\r\n"
       b"Call-ID: call-1@h\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")


# --- the protocol --------------------------------------------------------------------------

def test_encode_commands():
    assert resp.encode("SET", "k", "v") == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"
    assert resp.encode("INCRBY", "n", -2) == b"*3\r\n$6\r\nINCRBY\r\n$1\r\nn\r\n$2\r\n-2\r\n"
    assert resp.encode("SET", "k", "é") == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n\xc3\xa9\r\n"


def test_parser_replies_fed_in_pieces():
    p = resp.Parser()
    data = (b"+OK\r\n-ERR bad\r\n:42\r\n$3\r\nabc\r\n$-1\r\n*3\r\n$1\r\na\r\n:1\r\n*1\r\n"
            b"$0\r\n\r\n*-1\r\n*0\r\n")
    got = []
    for i in range(len(data)):               # one byte at a time
        p.feed(data[i:i + 1])
        while (r := p.get()) is not resp.Parser.NEED_MORE:
            got.append(r)
    assert got == ["OK", "ERR bad", 42, b"abc", None, [b"a", 1, [b""]], None, []]
    assert isinstance(got[0], resp.Status) and isinstance(got[1], resp.Error)
    with pytest.raises(resp.ProtocolError):
        bad = resp.Parser()
        bad.feed(b"?what\r\n")
        bad.get()


@pytest.mark.parametrize("text, want", [
    ("redis://localhost:6379/", ("redis", None, [("localhost", 6379)], None, None, None)),
    ("redis:group1://10.0.0.1/", ("redis", "group1", [("10.0.0.1", 6379)], None, None, None)),
    ("redis:1://192.168.3.200:6379/", ("redis", "1", [("192.168.3.200", 6379)], None, None,
                                        None)),
    ("redis:x://:pw@h1:7000,h2/3", ("redis", "x", [("h1", 7000), ("h2", 6379)], None, "pw",
                                    "3")),
    ("redis://user:pw@h", ("redis", None, [("h", 6379)], "user", "pw", None)),
    ("memcached:local://127.0.0.1:11211,127.0.0.1:11212/",
     ("memcached", "local", [("127.0.0.1", 11211), ("127.0.0.1", 11212)], None, None, None)),
])
def test_urls(text, want):
    u = parse_url(text, 6379)
    assert (u.scheme, u.group, u.hosts, u.user, u.password, u.database) == want


@pytest.mark.parametrize("text", ["redis:/x", "nothing", "redis://host:port/", "redis:///"])
def test_bad_urls_are_load_errors(text):
    loaded = load_script(parse_text(f'loadmodule "cachedb_redis.so"\nmodparam("cachedb_redis",'
                                    f' "cachedb_url", "{text}")\nroute {{ exit; }}', "t.cfg"))
    assert not loaded.ok


def test_unknown_engine_is_a_load_error():
    loaded = load_script(parse_text('loadmodule "cachedb_redis.so"\n'
                                    'route { cache_store("mongo", "k", "v"); }', "t.cfg"))
    assert any("no cachedb engine 'mongo'" in d.message for d in loaded.diagnostics)


# --- against a real server -----------------------------------------------------------------

def load(body, urls, extra=""):
    head = 'loadmodule "cachedb_redis.so"\n' + "".join(
        f'modparam("cachedb_redis", "cachedb_url", "{u}")\n' for u in urls) + extra
    loaded = load_script(parse_text(head + f"route {{\n{body}\n}}\n", "t.cfg"))
    assert loaded.ok, [str(d) for d in loaded.diagnostics]
    rt = loaded.rt
    rt.modules["cachedb_redis"].init(rt)
    return rt


def run(rt):
    ctx = Context(rt, Message.parse(MSG))
    try:
        rt.routes[("route", None)](ctx)
    except ScriptExit:
        pass
    return rt.vars, ctx


@pytest.fixture
def redis(tmp_path):
    with redis_server(tmp_path) as srv:
        yield srv
    from modules.cachedb_redis import destroy
    destroy(None)


def test_store_fetch_remove_and_groups(redis):
    rt = load("""
        cache_store("redis", "user:$ci", "alice");
        cache_fetch("redis", "user:$ci", $var(v));
        cache_fetch("redis:g2", "user:$ci", $var(other));
        $var(other_rc) = $rc;
        cache_remove("redis", "user:$ci");
        cache_fetch("redis", "user:$ci", $var(gone));
        $var(gone_rc) = $rc;
        cache_fetch("redis:nogroup", "k", $var(x));
        $var(nogroup_rc) = $rc;
    """, [f"redis://127.0.0.1:{redis.port}/", f"redis:g2://127.0.0.1:{redis.port}/5"])
    v, _ = run(rt)
    assert v["v"] == "alice"
    assert v["other_rc"] == -2 and "other" not in v        # database 5: another keyspace
    assert v["gone_rc"] == -2 and v["nogroup_rc"] == -1
    c = resp.Connection("127.0.0.1", redis.port)
    assert c.command("EXISTS", "user:call-1@h") == 0


def test_expiry_and_counters(redis):
    rt = load("""
        cache_store("redis:1", "short", "x", 100);
        cache_add("redis:1", "calls", 5, 0, $var(n1));
        cache_add("redis:1", "calls", 2, 60);
        cache_sub("redis:1", "calls", 3, 0, $var(n2));
        cache_counter_fetch("redis:1", "calls", $var(n));
        cache_counter_fetch("redis:1", "nothing", $var(none));
        $var(none_rc) = $rc;
        cache_store("redis:1", "word", "abc");
        cache_add("redis:1", "word", 1, 0);
        $var(bad) = $rc;
        cache_counter_fetch("redis:1", "word", $var(w));
        $var(bad2) = $rc;
    """, [f"redis:1://127.0.0.1:{redis.port}/"])
    v, _ = run(rt)
    assert (v["n1"], v["n2"], v["n"], v["none_rc"], v["bad"], v["bad2"]) == (5, 4, 4, -2, -1,
                                                                              -1)
    c = resp.Connection("127.0.0.1", redis.port)
    assert 90 <= c.command("TTL", "short") <= 100
    assert 50 <= c.command("TTL", "calls") <= 60


def test_raw_queries_into_avps(redis):
    rt = load("""
        $var(h) = "REGONLINE";
        cache_raw_query("redis:group1", "HSET $var(h) alice 10.0.0.1");
        $var(hset) = $rc;
        cache_raw_query("redis:group1", "HSET $var(h)   bob   10.0.0.2");
        cache_raw_query("redis:group1", "HGET $var(h) alice", "$avp(proxy)");
        $var(p) = $avp(proxy);
        cache_raw_query("redis:group1", "HGET $var(h) carol", "$avp(none)");
        $var(none_rc) = $rc;
        cache_raw_query("redis:group1", "HGETALL $var(h)", "$avp(all)");
        $var(n) = 0;
        while ($(avp(all)[$var(n)]) != NULL) { $var(n) = $var(n) + 1; }
        $var(first) = $(avp(all)[0]);
        $var(second) = $(avp(all)[1]);
        cache_raw_query("redis:group1", "HLEN $var(h)", "$avp(len)");
        $var(len) = $avp(len);
        cache_raw_query("redis:group1", "SET x y");
        $var(status) = $rc;
        cache_raw_query("redis:group1", "HGET x y", "$avp(e)");
        $var(wrongtype) = $rc;
        cache_raw_query("redis:group1", "PING");
        $var(malformed) = $rc;
        cache_raw_query("redis:group1", "HDEL $var(h) alice");
    """, [f"redis:group1://127.0.0.1:{redis.port}/"])
    v, ctx = run(rt)
    assert v["hset"] == 1 and v["p"] == "10.0.0.1" and v["none_rc"] == -2
    assert "none" not in ctx.avps
    assert v["n"] == 4 and (v["first"], v["second"]) == ("alice", "10.0.0.1")
    assert v["len"] == 2 and isinstance(v["len"], int)
    assert (v["status"], v["wrongtype"], v["malformed"]) == (1, -1, -1)
    c = resp.Connection("127.0.0.1", redis.port)
    assert c.command("HGETALL", "REGONLINE") == [b"bob", b"10.0.0.2"]


def test_raw_query_quoting(redis):
    rt = load('cache_raw_query("redis", "SET \\"a key\\" \\"a value\\"");'
              'cache_raw_query("redis", "GET \\"a key\\"", "$avp(v)"); $var(v) = $avp(v);',
              [f"redis://127.0.0.1:{redis.port}/"],
              'modparam("cachedb_redis", "enable_raw_query_quoting", 1)\n')
    v, _ = run(rt)
    assert v["v"] == "a value"


def test_auth_and_failover(tmp_path):
    dead = free_port()
    with redis_server(tmp_path, password="s3cret") as srv:
        rt = load('cache_store("redis", "k", "v"); $var(rc) = $rc;'
                  'cache_fetch("redis", "k", $var(v));'
                  'cache_store("redis:bad", "k", "v"); $var(bad) = $rc;',
                  [f"redis://:s3cret@127.0.0.1:{dead},127.0.0.1:{srv.port}/",
                   f"redis:bad://:wrong@127.0.0.1:{srv.port}/"],
                  'modparam("cachedb_redis", "connect_timeout", 500)\n')
        v, _ = run(rt)
        assert (v["rc"], v["v"], v["bad"]) == (1, "v", -1)
        from modules.cachedb_redis import api
        assert api.engine(None).current == 1          # stays on the server that works
    from modules.cachedb_redis import destroy
    destroy(None)


def test_dead_server_fails_fast_and_reconnects(tmp_path):
    port = free_port()
    rt = load('cache_store("redis", "k", "v"); $var(rc) = $rc;',
              [f"redis://127.0.0.1:{port}/"], 'modparam("cachedb_redis", "connect_timeout", 300)\n')
    t0 = time.monotonic()
    v, _ = run(rt)
    assert v["rc"] == -1 and time.monotonic() - t0 < 3
    # a server that comes up later is used without a restart
    with redis_server(tmp_path) as srv:
        from modules.cachedb_redis import api
        eng = api.engine(None)
        eng.nodes[0].port = srv.port
        v, _ = run(rt)
        assert v["rc"] == 1
        srv.stop()
        v, _ = run(rt)                                     # it went away again
        assert v["rc"] == -1
    from modules.cachedb_redis import destroy
    destroy(None)


def test_query_timeout(tmp_path):
    """A server that accepts and never answers: the query gives up after query_timeout."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    try:
        rt = load('cache_fetch("redis", "k", $var(v)); $var(rc) = $rc;',
                  [f"redis://127.0.0.1:{lsock.getsockname()[1]}/"],
                  'modparam("cachedb_redis", "query_timeout", 200)\n')
        t0 = time.monotonic()
        v, _ = run(rt)
        assert v["rc"] == -1 and time.monotonic() - t0 < 2
    finally:
        lsock.close()


def test_shutdown_on_error(tmp_path):
    port = free_port()
    loaded = load_script(parse_text(
        'loadmodule "cachedb_redis.so"\n'
        f'modparam("cachedb_redis", "cachedb_url", "redis://127.0.0.1:{port}/")\n'
        'modparam("cachedb_redis", "shutdown_on_error", 1)\n'
        'modparam("cachedb_redis", "connect_timeout", 300)\nroute { exit; }', "t.cfg"))
    assert loaded.ok
    with pytest.raises(ValueError, match="cannot connect"):
        loaded.rt.modules["cachedb_redis"].init(loaded.rt)

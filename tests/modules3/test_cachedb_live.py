"""cachedb engines on a live proxy: SIPp OPTIONS through a script that counts in Redis (a
raw INCR into an AVP), remembers the last Call-ID per user in Redis, counts in memcached
through cachedb_memcached, and keeps a 1.x `memcached_<group>` cache - all against real
redis-server and memcached processes on loopback. The replies carry what the script read;
the servers are then read directly."""
import re
from pathlib import Path

from modules.cachedb_memcached.client import Client
from modules.cachedb_redis.resp import Connection
from tests.modules3.servers import memcached_server, redis_server

XML = Path(__file__).parent / "xml"

SCRIPT = """
log_level=3
loadmodule "proto_udp.so"
loadmodule "sl.so"
loadmodule "sipmsgops.so"
loadmodule "cachedb_redis.so"
modparam("cachedb_redis", "cachedb_url", "redis:grp://127.0.0.1:@REDIS@/")
modparam("cachedb_redis", "connect_timeout", 1000)
loadmodule "cachedb_memcached.so"
modparam("cachedb_memcached", "cachedb_url", "memcached:local://127.0.0.1:@MC@/")
loadmodule "memcached.so"
modparam("memcached", "server", "callid_hash = 127.0.0.1:@MC@")

route {
    if (!cache_raw_query("redis:grp", "INCR hits:$fU", "$avp(hits)")) {
        sl_send_reply(500, "redis failed");
        exit;
    }
    cache_store("redis:grp", "last:$fU", "$ci", 60);
    cache_add("memcached:local", "calls", 1, 0, $var(calls));
    cache_store("memcached_callid_hash", "$ci", "$si", 60);
    cache_fetch("memcached_callid_hash", "$ci", $avp(i:55));
    append_to_reply("X-Hits: $avp(hits)\\r\\n");
    append_to_reply("X-Calls: $var(calls)\\r\\n");
    append_to_reply("X-Source: $avp(i:55)\\r\\n");
    sl_send_reply(200, "OK");
}
"""


def script(redis_port, mc_port):
    return SCRIPT.replace("@REDIS@", str(redis_port)).replace("@MC@", str(mc_port))


def _replies(result):
    text = result.agents[0].read("messages")
    return re.findall(r"^SIP/2\.0 (\d{3})", text, re.M), text


def test_redis_and_memcached_from_a_live_script(cfgscript_proxy, sipp_scenario, tmp_path):
    with redis_server(tmp_path) as redis, memcached_server(tmp_path) as mc:
        proxy = cfgscript_proxy(script(redis.port, mc.port))
        result = sipp_scenario(proxy, uac=XML / "uac-options-user.xml", uas=False, calls=3,
                               service="bob")
        codes, text = _replies(result)
        assert codes == ["200"] * 3, text[-2000:]
        assert re.findall(r"^X-Hits: (\d+)", text, re.M) == ["1", "2", "3"]
        assert re.findall(r"^X-Calls: (\d+)", text, re.M) == ["1", "2", "3"]
        sources = set(re.findall(r"^X-Source: (\S+)", text, re.M))
        assert len(sources) == 1 and sources.pop().startswith("127.")
        r = Connection("127.0.0.1", redis.port)
        assert r.command("GET", "hits:sipp") == b"3"
        last = r.command("GET", "last:sipp").decode()
        assert last in text and 0 < r.command("TTL", "last:sipp") <= 60
        m = Client([("127.0.0.1", mc.port)])
        assert m.get("calls") == b"3"
        assert m.get(last).startswith(b"127.")


def test_a_dead_redis_fails_the_call_not_the_proxy(cfgscript_proxy, sipp_scenario, tmp_path):
    with memcached_server(tmp_path) as mc:
        from tests.modules3.servers import free_port
        proxy = cfgscript_proxy(script(free_port(), mc.port))
        result = sipp_scenario(proxy, uac=XML / "uac-options-user.xml", uas=False, calls=2,
                               service="bob")
        codes, text = _replies(result)
        assert codes == ["500", "500"], text[-2000:]
        assert "cannot connect to redis" in proxy.log

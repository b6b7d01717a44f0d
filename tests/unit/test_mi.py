"""The MI core: JSON-RPC as OpenSIPS reads it, recipes, parameter types, statistics, the
Prometheus page, and reload_routes on a loaded (not running) script."""
import asyncio
import json

import pytest

from cfgscript.parser import parse_file
from runtime import mi, stats
from runtime.loader import load_script


def load(tmp_path, body, modules=()):
    lines = [f'loadmodule "{m}.so"' for m in modules]
    path = tmp_path / "opensips.cfg"
    path.write_text("\n".join(lines) + "\n" + body)
    loaded = load_script(parse_file(str(path)))
    assert loaded.ok, [str(d) for d in loaded.diagnostics]
    return loaded.rt


def call(rt, text):
    out = asyncio.run(mi.handle_text(rt, text))
    return None if out is None else json.loads(out)


@pytest.fixture
def rt(tmp_path):
    return load(tmp_path, 'route { sl_send_reply(404, "x"); }', ["sl"])


# --- JSON-RPC framing ---------------------------------------------------------------------

def test_reply_shape_and_id_echo(rt):
    out = asyncio.run(mi.handle_text(rt, '{"jsonrpc":"2.0","method":"pwd","id":"7"}'))
    assert out.startswith('{"jsonrpc":"2.0","result":{"WD":') and out.endswith(',"id":"7"}')
    assert call(rt, '{"jsonrpc":"2.0","method":"pwd","id":12}')["id"] == 12
    assert call(rt, '{"jsonrpc":"2.0","method":"pwd","id":null}')["id"] is None


@pytest.mark.parametrize("text,code,rid", [
    ("{", -32700, None),
    ('{"jsonrpc":"2.0","method":"ps","id":NaN}', -32700, None),       # not JSON
    ("", -32700, None),
    ('"ps"', -32600, None),
    ('[{"jsonrpc":"2.0","method":"ps","id":1}]', -32600, None),
    ('{"method":"ps","id":1}', -32600, 1),
    ('{"jsonrpc":2.0,"method":"ps","id":1}', -32600, 1),
    ('{"jsonrpc":"2.0","id":1}', -32600, 1),
    ('{"jsonrpc":"2.0","method":"ps","id":{"a":1}}', -32600, None),
    ('{"jsonrpc":"2.0","method":"ps","id":true}', -32600, None),
    ('{"jsonrpc":"2.0","method":"ps","params":5,"id":1}', -32600, 1),
    ('{"jsonrpc":"2.0","method":"nope","id":1}', -32601, 1),
])
def test_request_errors(rt, text, code, rid):
    out = call(rt, text)
    assert out["error"]["code"] == code and out["id"] == rid
    assert out["error"]["message"] == {-32700: "Parse error", -32600: "Invalid Request",
                                       -32601: "Method not found"}[code]


def test_notifications_get_no_reply_unless_unreadable(rt):
    assert call(rt, '{"jsonrpc":"2.0","method":"ps"}') is None
    assert call(rt, '{"jsonrpc":"2.0","method":"nope"}') is None       # not found: silent
    assert call(rt, '{"jsonrpc":"2.0","method":"ps","params":[1]}') is None
    assert call(rt, '{"jsonrpc":"2.0"}')["error"]["code"] == -32600  # invalid: answered


def test_empty_params_are_no_params(rt):
    for params in ("[]", "{}"):
        out = call(rt, '{"jsonrpc":"2.0","method":"uptime","params":%s,"id":1}' % params)
        assert "Up time" in out["result"]


# --- recipes ------------------------------------------------------------------------------

def _cmd(*handlers, named_only=False):
    return mi.make_command("t", "test", mi.Cmd(handlers, named_only=named_only))


def run(cmd, params, rt=None):
    try:
        return asyncio.run(mi.run_command(rt, cmd, params))
    except mi.MIError as e:
        return (e.code, e.message, e.data)


def test_recipes_from_signatures():
    def a(rt, x: int, y: str = None, z=None):
        return (x, y, z)

    def b(rt, index: int, counter: int):
        return ("b", index, counter)
    cmd = _cmd(a, b)
    assert cmd.param_sets() == [["x"], ["x", "y"], ["x", "y", "z"], ["index", "counter"]]
    assert run(cmd, [1]) == (1, None, None)
    assert run(cmd, {"x": "-4", "y": 5}) == (-4, "5", None)
    assert run(cmd, {"index": 1, "counter": 2}) == ("b", 1, 2)
    assert run(cmd, None) == (-32602, "Invalid params", "Too few or too many parameters")
    # two recipes of two parameters: positional is ambiguous, named picks one
    assert run(cmd, [1, 2]) == (-32602, "Invalid params",
                                "Ambiguous call, use named parameters instead")
    assert run(cmd, {"x": 1, "y": "a"}) == (1, "a", None)
    assert run(cmd, {"x": 1, "q": 2}) == (-32602, "Invalid params",
                                          "Named parameters do not match")
    assert run(cmd, {"x": 1, "y": 2, "z": 3, "w": 4}) == (
        -32602, "Invalid params", "Too few or too many parameters")
    assert run(cmd, {"x": "1x"}) == (-32602, "Invalid params", "Bad type for parameter 'x'")
    assert run(cmd, {"x": [1]}) == (-32602, "Invalid params", "Bad type for parameter 'x'")
    assert run(cmd, {"x": 2.9}) == (2, None, None)


def test_named_only_and_server_error():
    def boom(rt, a):
        raise RuntimeError("bug")

    class Log:
        def error(self, *a):
            self.last = a

    class RT:
        log = Log()
    cmd = _cmd(boom, named_only=True)
    assert run(cmd, [1], RT) == (-32602, "Invalid params",
                                 "Command only supports named parameters")
    assert run(cmd, {"a": 1}, RT) == (-32000, "Server error", "Command handler returned null")


def test_async_handlers():
    async def later(rt, n: int):
        await asyncio.sleep(0)
        return n * 2
    assert run(_cmd(later), [21]) == 42


def test_param_conversions():
    assert mi.get_int("+12", "p") == 12 and mi.get_int(7.5, "p") == 7
    assert mi.get_int(1e400, "p") == 2**31 - 1                # cJSON's valueint saturates
    assert mi.get_str(12, "p") == "12"
    for bad in ("", "1.5", "0x10", None, True, {}):
        with pytest.raises(mi.MIError, match="Bad type for parameter 'p'"):
            mi.get_int(bad, "p")
    with pytest.raises(mi.MIError, match="Empty array in parameter 'p'"):
        mi.get_array([], "p")
    with pytest.raises(mi.MIError, match="Bad type for array item in parameter 'p'"):
        mi.get_arr_str([{}], 0, "p")


# --- core commands -----------------------------------------------------------------------

def test_which_and_help(rt):
    names = call(rt, '{"jsonrpc":"2.0","method":"which","id":1}')["result"]
    assert names[:4] == ["uptime", "version", "pwd", "arg"] and "get_statistics" in names
    out = call(rt, '{"jsonrpc":"2.0","method":"which","params":{"command":"nope"},"id":1}')
    assert out["error"] == {"code": 404, "message": "unknown MI command"}
    out = call(rt, '{"jsonrpc":"2.0","method":"help","params":["get_statistics"],"id":1}')
    assert out["result"]["Exported by"] == "core"
    # OpenSIPS 3.5+ names
    out = call(rt, '{"jsonrpc":"2.0","method":"statistics:get","params":[["all"]],"id":1}')
    assert "core:rcv_requests" in out["result"]
    assert call(rt, '{"jsonrpc":"2.0","method":"core:uptime","id":1}')["result"]


def test_log_level(rt):
    out = call(rt, '{"jsonrpc":"2.0","method":"log_level","params":[4],"id":1}')
    assert out["result"] == {"New global log level": 4} and rt.log.level == 4
    out = call(rt, '{"jsonrpc":"2.0","method":"log_level","params":[2, 1],"id":1}')
    assert out["error"] == {"code": -32602, "message": "Invalid params", "data": "Bad PID"}


# --- statistics ---------------------------------------------------------------------------

def test_statistics_names_and_resets(rt):
    rt.stats_groups = {"sl": {"1xx_replies": 3, "sent_replies": 5},
                       "usrloc": {"location": {"users": 2, "contacts": 3, "expires": 1}},
                       "tm": {"inuse_transactions": 4}}
    got = stats.values(rt, ["sl:", "usrloc:"])
    assert got == {"sl:1xx_replies": 3, "sl:sent_replies": 5, "usrloc:registered_users": 2,
                   "usrloc:location-users": 2, "usrloc:location-contacts": 3,
                   "usrloc:location-expires": 1}
    assert stats.values(rt, ["SENT_REPLIES", "tm:inuse_transactions"]) == {
        "sl:sent_replies": 5, "tm:inuse_transactions": 4}
    out = call(rt, '{"jsonrpc":"2.0","method":"reset_statistics","params":'
                   '[["sent_replies","inuse_transactions","location-contacts",'
                   '"location-expires"]],"id":1}')
    assert out["result"] == "OK"
    assert rt.stats_groups["sl"]["sent_replies"] == 0
    assert rt.stats_groups["tm"]["inuse_transactions"] == 4          # a gauge: kept
    assert rt.stats_groups["usrloc"]["location"] == {"users": 2, "contacts": 3, "expires": 0}
    kinds = stats.mi_list_statistics(rt)
    assert kinds["usrloc:registered_users"] == "non-incremental"
    assert kinds["usrloc:location-expires"] == "incremental"
    assert stats.mi_list_statistics(rt, ["sent_replies"]) == {"sent_replies": "incremental"}
    with pytest.raises(mi.MIError, match="Statistics Not Found"):
        stats.mi_get_statistics(rt, ["nothing", "nothing:"])


def test_prometheus_page(rt):
    from modules.prometheus import Exporter
    rt.stats_groups = {"sl": {"1xx_replies": 3}, "tm": {"inuse_transactions": 4}}
    base = {"prefix": "opensips", "delimiter": "_", "group_prefix": "", "group_label": "group",
            "group_mode": 0, "statistics": ["sl: inuse_transactions"]}
    page = Exporter(rt, base).page()
    assert page == ("# TYPE opensips_1xx_replies counter\nopensips_1xx_replies 3\n"
                    "# TYPE opensips_inuse_transactions gauge\n"
                    "opensips_inuse_transactions 4\n\n")
    page = Exporter(rt, {**base, "group_mode": 1, "group_prefix": "g_"}).page()
    assert "opensips_g_sl_1xx_replies 3\n" in page
    page = Exporter(rt, {**base, "group_mode": 2}).page()
    assert 'opensips_1xx_replies{group="sl"} 3\n' in page
    page = Exporter(rt, {**base, "prefix": "", "delimiter": ""}).page()
    assert "\n_1xx_replies 3\n" in page
    assert "core_rcv_requests" not in Exporter(rt, {**base, "statistics": []}).page()
    assert "opensips_rcv_requests 0" in Exporter(rt, {**base, "statistics": ["all"]}).page()


# --- reload_routes ------------------------------------------------------------------------

def test_reload_routes_swaps_routes(tmp_path):
    rt = load(tmp_path, 'route { xlog("one\\n"); sl_send_reply(404, "x"); }', ["sl"])
    old = rt.routes[("route", None)]
    path = tmp_path / "opensips.cfg"
    path.write_text(path.read_text().replace('"one', '"two').replace(
        "}", "}\nroute[extra] { exit; }"))
    assert asyncio.run(mi.reload_routes(rt)) == "OK"
    assert rt.routes[("route", None)] is not old
    assert ("route", "extra") in rt.routes and rt.compiled.functions is rt.routes
    assert "two\n" in rt.compiled.ns.values() and "one\n" not in rt.compiled.ns.values()


@pytest.mark.parametrize("broken,message", [
    ('route { sl_send_reply(404, "x") ', "error"),                     # does not parse
    ('route { no_such_function(); }', "unknown function 'no_such_function'"),
    ('route { t_relay(); }', "loadmodule \\\"tm.so\\\""),              # a module not loaded
])
def test_reload_routes_refuses_a_script_that_does_not_check(tmp_path, broken, message):
    rt = load(tmp_path, 'route { sl_send_reply(404, "x"); }', ["sl"])
    old = rt.routes
    (tmp_path / "opensips.cfg").write_text('loadmodule "sl.so"\n' + broken)
    with pytest.raises(mi.MIError) as err:
        asyncio.run(mi.reload_routes(rt))
    assert (err.value.code, err.value.message) == (500, "reload failed")
    assert message.replace("\\", "") in err.value.data
    assert rt.routes is old


def test_reload_routes_with_a_module_added_needs_a_restart(tmp_path):
    rt = load(tmp_path, 'route { sl_send_reply(404, "x"); }', ["sl"])
    (tmp_path / "opensips.cfg").write_text(
        'loadmodule "sl.so"\nloadmodule "maxfwd.so"\n'
        'route { mf_process_maxfwd_header(10); sl_send_reply(404, "x"); }')
    with pytest.raises(mi.MIError) as err:
        asyncio.run(mi.reload_routes(rt))
    assert "module maxfwd need a restart" in err.value.data

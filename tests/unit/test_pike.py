"""pike: the address tree (how many hits turn an IP red, neighbours, samples, latency),
pike_check_req's return codes from a script, the MI commands, the automatic mode's route."""
import pytest

from cfgscript import parse_text
from modules.pike import Tree
from runtime.context import Context, ScriptExit
from runtime.loader import load_script
from runtime.sip.message import Message

MSG = (b"OPTIONS sip:x@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n"
       b"From: <sip:a@example.com>;tag=1\r\nTo: <sip:x@example.com>\r\n"
       b"Call-ID: c1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_a_flooding_address_turns_red_between_x_and_3x_hits():
    x = 10
    t = Tree(x, 120, Clock())
    codes = [t.hit("192.0.2.7") for _ in range(4 * x)]
    first = codes.index(-2) + 1
    assert x <= first <= 3 * x
    assert set(codes[:first - 1]) == {1} and set(codes[first:]) == {-1}
    # a neighbour shares the learnt bytes: it needs fewer hits than a stranger
    n = [t.hit("192.0.2.8") for _ in range(x)].index(-2) + 1
    assert n < first


def test_ipv6_and_garbage():
    t = Tree(4, 120, Clock())
    codes = [t.hit("2001:db8::1") for _ in range(200)]
    assert -2 in codes
    assert t.hit("not an ip") == 1


def test_samples_unblock_and_latency_forgets():
    clock = Clock()
    t = Tree(5, 10, clock)
    while t.hit("198.51.100.1") != -2:
        pass
    unblocked = []
    t.tick(unblocked.append)          # the sample ends: still hot from the previous one
    assert t.hit("198.51.100.1") == -1
    t.tick(unblocked.append)
    t.tick(unblocked.append)          # two quiet samples: cool again
    assert unblocked == ["198.51.100.1"]
    assert t.leaves() and not t.leaves()[0][1].red
    clock.t += 11                     # remove_latency
    t.tick()
    assert t.leaves() == [] and t.root == {}


def load(params="", body="if (!pike_check_req()) { $var(r) = $rc; exit; } $var(r) = 1;"):
    loaded = load_script(parse_text(
        f'loadmodule "pike.so"\nmodparam("pike", "sampling_time_unit", 2)\n'
        f'modparam("pike", "reqs_density_per_unit", 5)\n{params}\nroute {{ {body} }}\n'
        f'route[pike] {{ if ($si == "10.9.9.9") drop; }}\n', "t.cfg"))
    assert loaded.ok, [str(d) for d in loaded.diagnostics]
    rt = loaded.rt
    rt.modules["pike"].init(rt)
    return rt


def run(rt, ip):
    ctx = Context(rt, Message.parse(MSG), src=(ip, 5060))
    try:
        rt.routes[("route", None)](ctx)
    except ScriptExit:
        pass
    return rt.vars["r"]


def test_script_return_codes_and_mi():
    from modules import pike
    rt = load()
    codes = [run(rt, "203.0.113.5") for _ in range(20)]
    assert codes[0] == 1 and -2 in codes and codes[-1] == -1
    assert codes.count(-2) == 1
    assert rt.timers[0][0] == 2
    listed = pike.mi_pike_list(rt)["IPs"]
    assert [(i["ip"], i["blocked"]) for i in listed] == [("203.0.113.5", True)]
    assert pike.mi_pike_rm(rt, "203.0.113.5") == "OK"
    assert run(rt, "203.0.113.5") == 1
    from runtime.mi import MIError
    with pytest.raises(MIError):
        pike.mi_pike_rm(rt, "203.0.113.77")


def test_automatic_mode_route_exempts_and_drops():
    from modules import pike
    rt = load('modparam("pike", "check_route", "pike")', body="$var(r) = 1;")
    from runtime.server import Server
    Server(rt)                        # not started: its script runner and hooks only
    rt.modules["pike"].child_init(rt)
    hook = rt.server.request_hook

    def ctx(ip):
        return Context(rt, Message.parse(MSG), src=(ip, 5060))
    handled = [hook(ctx("203.0.113.9")) for _ in range(30)]
    assert handled[0] is False and handled[-1] is True     # flooding source: dropped
    assert not any(hook(ctx("10.9.9.9")) for _ in range(30))   # exempt by the route
    assert pike.mi_pike_list(rt)["IPs"][0]["ip"] == "203.0.113.9"


def test_check_route_must_exist():
    with pytest.raises(ValueError, match="nosuch"):
        load('modparam("pike", "check_route", "nosuch")')

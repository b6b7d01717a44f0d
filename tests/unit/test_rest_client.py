"""rest_client against a real HTTP server on loopback (a thread of this process): GET, POST
and PUT with the body, content type and status stored, headers added by rest_append_hf for
one request only, the return codes for a refused connection, a connect timeout and a
transfer timeout, max_transfer_size, and {rest.escape}/{rest.unescape}."""
import socket
import time

import pytest

from cfgscript import parse_text
from modules.rest_client import transfer
from runtime.context import Context, ScriptExit
from runtime.loader import load_script
from runtime.sip.message import Message
from tests.modules3.servers import free_port, http_server

MSG = (b"INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n"
       b"From: <sip:alice@example.com>;tag=ft1\r\nTo: <sip:bob@example.com>\r\n"
       b"Call-ID: c1@host\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")

HEAD = """loadmodule "rest_client.so"
loadmodule "json.so"
modparam("rest_client", "connection_timeout", 2)
modparam("rest_client", "curl_timeout", 2)
modparam("rest_client", "ssl_verifypeer", 0)
"""


def run(body, head=HEAD):
    loaded = load_script(parse_text(head + f"route {{\n{body}\n}}\nroute[resume] {{ "
                                    f"$var(resumed_rc) = $rc; }}\n", "t.cfg"))
    assert loaded.ok, [str(d) for d in loaded.diagnostics]
    rt = loaded.rt
    ctx = Context(rt, Message.parse(MSG))
    try:
        rt.routes[("route", None)](ctx)
    except ScriptExit:
        pass
    return rt.vars


def credit(req):
    return 200, "application/json; charset=utf-8", {"credit": 12, "path": req["path"]}, 0


def echo(req):
    return 201, req["headers"].get("Content-Type"), b"  got " + req["body"] + b"\n\n", 0


ROUTES = {
    "/credit": credit,
    "/echo": echo,
    "/forbidden": lambda req: (403, "text/plain", "no", 0),
    "/slow": lambda req: (200, "text/plain", "late", 3),
    "/stall": lambda req: (200, "text/plain", "first half|second half", -3),
    "/big": lambda req: (200, "text/plain", "x" * 5000, 0),
    "/empty": lambda req: (204, None, b"", 0),
}


def test_get_post_put():
    with http_server(ROUTES) as (base, seen):
        v = run(f"""
            $var(rc) = rest_get("{base}/credit?account=$fU", $var(body), $var(ct), $var(code));
            $json(r) := $var(body);
            $var(credit) = $json(r/credit);
            $var(prc) = rest_post("{base}/echo", "$fU calls", "text/plain", $var(pbody),
                                  $var(pct), $var(pcode));
            rest_post("{base}/echo", "a=1&b=2", , $var(fbody), $var(fct));
            $var(putrc) = rest_put("{base}/echo", "{{\\"x\\": 1}}", "application/json",
                                   $var(ubody), , $var(ucode));
            $var(frc) = rest_get("{base}/forbidden", $var(fb), , $var(fcode));
            rest_get("{base}/empty", $var(eb), $var(ect), $var(ecode));
        """)
        reqs = seen.requests
    assert (v["rc"], v["code"], v["ct"]) == (1, 200, "application/json; charset=utf-8")
    assert v["credit"] == 12 and isinstance(v["code"], int)
    assert (v["prc"], v["pcode"], v["pbody"], v["pct"]) == (1, 201, "got alice calls",
                                                            "text/plain")
    assert v["fct"] == "application/x-www-form-urlencoded" and v["fbody"] == "got a=1&b=2"
    assert (v["putrc"], v["ucode"], v["ubody"]) == (1, 201, 'got {"x": 1}')
    assert (v["frc"], v["fcode"], v["fb"]) == (1, 403, "no")
    assert (v["eb"], v["ect"], v["ecode"]) == ("", "", 204)
    assert [r["method"] for r in reqs] == ["GET", "POST", "POST", "PUT", "GET", "GET"]
    assert reqs[0]["path"] == "/credit?account=alice"
    assert reqs[0]["headers"]["Accept"] == "*/*" and "Content-Type" not in reqs[0]["headers"]


def test_appended_headers_are_for_the_next_request_only():
    with http_server(ROUTES) as (base, seen):
        v = run(f"""
            $var(token) = "mF_9.B5f-4.1JqM";
            rest_append_hf("Authorization: Bearer $var(token)");
            rest_append_hf("x-api-key: k1");
            rest_append_hf("Accept: application/json");
            rest_get("{base}/credit", $var(b1));
            rest_get("{base}/credit", $var(b2));
            rest_append_hf("Content-Type: application/json");
            rest_post("{base}/echo", "{{}}", , $var(b3), $var(ct3));
            rest_append_hf("not a header");
            $var(bad) = $rc;
        """)
        first, second, third = (r["headers"] for r in seen.requests)
    assert first["Authorization"] == "Bearer mF_9.B5f-4.1JqM" and first["x-api-key"] == "k1"
    assert first["Accept"] == "application/json"
    assert "Authorization" not in second and second["Accept"] == "*/*"
    assert third["Content-Type"] == "application/json" and v["ct3"] == "application/json"
    assert v["bad"] == -1


def test_refused_and_timeouts():
    refused = free_port()
    silent = socket.socket()                    # accepts, never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        with http_server(ROUTES) as (base, _):
            t0 = time.monotonic()
            v = run(f"""
                $var(r1) = rest_get("http://127.0.0.1:{refused}/", $var(b1), , $var(c1));
                $var(r2) = rest_get("http://127.0.0.1:{silent.getsockname()[1]}/", $var(b2), ,
                                    $var(c2));
                $var(r3) = rest_get("{base}/slow", $var(b3), , $var(c3));
                $var(r6) = rest_get("{base}/stall", $var(b6), , $var(c6));
                $var(r4) = rest_get("nothing://x/", $var(b4));
                $var(r5) = rest_get("http://no-such-host.invalid/", $var(b5));
            """)
            took = time.monotonic() - t0
    finally:
        silent.close()
    assert (v["r1"], v["c1"]) == (-1, 0) and "b1" not in v
    assert (v["r2"], v["c2"]) == (-3, 0)
    assert (v["r3"], v["c3"], v["b3"]) == (-3, 0, "")
    assert (v["r6"], v["c6"], v["b6"]) == (-3, 200, "first half|")
    assert v["r4"] == -10 and v["r5"] == -10
    assert took < 10


def test_connect_timeout():
    """A SYN nobody answers: an address of TEST-NET-1 (RFC 5737) if the host routes it;
    otherwise the refusal is also a valid outcome of the same code path."""
    res = transfer("GET", "http://192.0.2.1:9/", params={"connection_timeout": 1,
                                                         "curl_timeout": 2})
    assert res.rc in (-2, -1, -10) and res.status == 0


def test_max_transfer_size():
    with http_server(ROUTES) as (base, _):
        v = run(f'$var(rc) = rest_get("{base}/big", $var(b), , $var(code));',
                HEAD + 'modparam("rest_client", "max_transfer_size", 4)\n')
    assert v["rc"] == -10 and "b" not in v


def test_async_runs_as_a_call_then_the_resume_route():
    with http_server(ROUTES) as (base, _):
        v = run(f'async(rest_get("{base}/credit", $var(body), , $var(rcode)), resume);')
    assert v["resumed_rc"] == 1 and v["rcode"] == 200


def test_escape_transformations():
    v = run("""
        $var(tmp) = "call@example.com&safe=false";
        $var(e) = $(var(tmp){rest.escape});
        $var(u) = "1%2B1%3D2%21";
        $var(d) = $(var(u){rest.unescape});
        $var(x) = "é ~_.-";
        $var(ex) = $(var(x){rest.escape});
    """)
    assert v["e"] == "call%40example.com%26safe%3Dfalse"
    assert v["d"] == "1+1=2!"
    assert v["ex"] == "%C3%A9%20~_.-"


@pytest.mark.parametrize("line", ['rest_get("http://x/")', 'rest_post("http://x/", "b")'])
def test_missing_output_variable_is_a_load_error(line):
    loaded = load_script(parse_text(HEAD + f"route {{ {line}; }}", "t.cfg"))
    assert not loaded.ok

"""The live stateless proxy against real SIPp agents (issue: a live proxy)."""
import os
import random
import socket
import time
from pathlib import Path

XML = Path(__file__).parent / "xml"

STATELESS = """
log_level=3
loadmodule "sl.so"
loadmodule "maxfwd.so"
loadmodule "sipmsgops.so"
route {
    if (!mf_process_maxfwd_header(10)) {
        sl_send_reply(483, "Too Many Hops");
        exit;
    }
    if ($rU == "unknown") {
        sl_send_reply(404, "Not Found");
        exit;
    }
    forward();
}
"""


def test_forward_100_calls(cfgscript_proxy, sipp_scenario):
    proxy = cfgscript_proxy(STATELESS)
    result = sipp_scenario(proxy, calls=100, timeout=60)
    assert result.passed


def test_max_forwards_zero_gets_483(cfgscript_proxy, sipp_scenario):
    proxy = cfgscript_proxy(STATELESS)
    assert sipp_scenario(proxy, uac=XML / "uac-maxfwd0.xml", uas=False).passed


def test_unknown_user_gets_404_with_to_tag(cfgscript_proxy, sipp_scenario):
    proxy = cfgscript_proxy(STATELESS)
    assert sipp_scenario(proxy, uac=XML / "uac-404.xml", uas=False, calls=3).passed


def _garbage(rng, valid):
    kind = rng.randrange(5)
    if kind == 0:
        return valid[:rng.randrange(len(valid))]                      # truncated
    if kind == 1:
        b = bytearray(valid)
        for _ in range(rng.randrange(1, 20)):
            b[rng.randrange(len(b))] = rng.randrange(256)              # flipped bytes
        return bytes(b)
    if kind == 2:
        return os.urandom(rng.randrange(1, 1400))                      # noise
    if kind == 3:
        lines = valid.split(b"\r\n")
        rng.shuffle(lines)
        return b"\r\n".join(lines)                                     # shuffled lines
    return valid.replace(b"Content-Length: 0", b"Content-Length: 99999")  # lying length


INVITE = (b"INVITE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKx\r\n"
          b"From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: fuzz\r\n"
          b"CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")


def test_bad_input_never_stops_the_proxy(cfgscript_proxy, sipp_scenario):
    proxy = cfgscript_proxy(STATELESS)
    rng = random.Random(4475)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    for i in range(10_000):
        s.sendto(_garbage(rng, INVITE), (proxy.address, proxy.port))
        if i % 200 == 0:
            time.sleep(0.01)  # let the proxy keep up instead of filling the socket buffer
            try:
                while s.recv(65535):
                    pass
            except BlockingIOError:
                pass
    s.close()
    time.sleep(0.5)
    assert sipp_scenario(proxy, calls=5).passed
    assert "Traceback" not in proxy.log
    assert "dropping unparsable message" in proxy.log


ERRORING = """
loadmodule "sl.so"
route {
    $var(n) = 0;
    $var(x) = 10 / $var(n);
    sl_send_reply(500, "Server Error");
}
"""


def test_script_runtime_error_is_logged_with_its_line(cfgscript_proxy, sipp_scenario, tmp_path):
    proxy = cfgscript_proxy(ERRORING)
    uac = tmp_path / "uac-500.xml"
    uac.write_text((XML / "uac-404.xml").read_text().replace('response="404"', 'response="500"'))
    assert sipp_scenario(proxy, uac=uac, uas=False).passed
    assert f"{proxy.cfg}:5:" in proxy.log and "division by zero" in proxy.log

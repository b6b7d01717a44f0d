"""Calls through the mediaproxy module with real RTP (issue: the mediaproxy module and a
MediaProxy-compatible dispatcher and relay). SIPp plays sip-tester's G.711 pcap on both
sides; the embedded relay carries it."""
import json
import re
import socket
import struct
import threading
import time
from pathlib import Path


XML = Path(__file__).parent / "xml"
PCAP = Path("/usr/share/sip-tester/g711a.pcap")

ENGAGE = """
log_level=3
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "rr.so"
loadmodule "maxfwd.so"
loadmodule "sipmsgops.so"
loadmodule "dialog.so"
loadmodule "mediaproxy.so"
modparam("mediaproxy", "mediaproxy_socket", "{sock}")
route {{
    if (!mf_process_maxfwd_header(10)) {{ sl_send_reply(483, "Too Many Hops"); exit; }}
    if (has_totag()) {{
        if (loose_route()) {{ t_relay(); exit; }}
        if (is_method("ACK")) {{ if (t_check_trans()) t_relay(); exit; }}
        sl_send_reply(404, "Not here");
        exit;
    }}
    if (is_method("CANCEL")) {{ if (t_check_trans()) t_relay(); exit; }}
    t_check_trans();
    record_route();
    if (is_method("INVITE"))
        engage_media_proxy();
    t_relay();
}}
"""

BY_HAND = """
log_level=3
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "rr.so"
loadmodule "sipmsgops.so"
loadmodule "mediaproxy.so"
modparam("mediaproxy", "mediaproxy_socket", "{sock}")
route {{
    if (has_totag()) {{
        if (loose_route()) {{
            if (is_method("BYE"))
                end_media_session();
            t_relay();
            exit;
        }}
        if (is_method("ACK")) {{ if (t_check_trans()) t_relay(); exit; }}
        sl_send_reply(404, "Not here");
        exit;
    }}
    t_check_trans();
    record_route();
    if (is_method("INVITE")) {{
        $var(mp) = use_media_proxy();
        xlog("L_INFO", "use_media_proxy on the INVITE: $var(mp)\\n");
        t_on_reply("media");
    }}
    t_relay();
}}
onreply_route[media] {{
    if ($rs =~ "^(18[03]|2[0-9][0-9])" && has_body("application/sdp"))
        use_media_proxy();
}}
"""


def pcap_packets(path=PCAP) -> int:
    data = path.read_bytes()
    n, pos = 0, 24
    while pos + 16 <= len(data):
        caplen = struct.unpack_from("<I", data, pos + 8)[0]
        pos += 16 + caplen
        n += 1
    return n


class SessionWatch(threading.Thread):
    """Polls the dispatcher's `sessions` and keeps the highest counters per call."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.path = path
        self.seen = {}
        self.stop = threading.Event()

    def sessions(self):
        """The `sessions` answer (a JSON line, longer than the module client reads)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect(self.path)
            s.sendall(b"sessions\r\n")
            data = b""
            while not data.endswith(b"\r\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        return json.loads(data)

    def run(self):
        while not self.stop.wait(0.25):
            for s in self.sessions() or []:
                for stream in s.get("streams", []):
                    key = s["call_id"]
                    old = self.seen.get(key, {"caller_packets": 0, "callee_packets": 0})
                    self.seen[key] = {k: max(old[k], stream.get(k, 0)) for k in old}


def run_calls(cfgscript_proxy, sipp_scenario, tmp_path, cfg, calls):
    sock = str(tmp_path / "dispatcher.sock")
    proxy = cfgscript_proxy(cfg.format(sock=sock), args=["--relay-routable-private"])
    assert "started the embedded MediaProxy dispatcher and relay" in proxy.log
    watch = SessionWatch(sock)
    watch.start()
    result = sipp_scenario(proxy, uac=XML / "uac-media.xml", uas=XML / "uas-media.xml",
                           calls=calls, duration=8000, timeout=120)
    watch.stop.set()
    watch.join()
    return proxy, result, watch


def sdp_addresses(log_text, start_line):
    """(c= address, m= port) of each message in a SIPp log that starts with start_line."""
    out = []
    for block in re.split(r"^-{10,}.*$", log_text, flags=re.M):
        body = block.split("\n\n", 1)[-1]  # after "UDP message received/sent ...:"
        if body.lstrip().startswith(start_line):
            c = re.search(r"^c=IN IP4 (\S+)", block, re.M)
            m = re.search(r"^m=audio (\d+)", block, re.M)
            if c and m:
                out.append((c.group(1), int(m.group(1))))
    return out


def check_calls(proxy, result, watch, calls):
    assert result.passed
    relay_ip = proxy.address
    uas_log = (result.logdir / "uas.messages.log").read_text()
    uac_log = (result.logdir / "uac.messages.log").read_text()
    offers = sdp_addresses(uas_log, "INVITE")        # what the callee was offered
    answers = sdp_addresses(uac_log, "SIP/2.0 200")  # what the caller got back
    assert len(offers) == calls and len(answers) >= calls
    for ip, port in offers + answers:
        assert ip == relay_ip and 40000 <= port <= 60000
    sent = pcap_packets()
    assert len(watch.seen) == calls
    for call_id, counters in watch.seen.items():
        # every packet each side played was relayed to the other
        assert counters["caller_packets"] >= sent, (call_id, counters)
        assert counters["callee_packets"] >= sent, (call_id, counters)
    time.sleep(0.5)
    assert watch.sessions() == []  # every session ended with its dialog


def test_engage_media_proxy_20_calls(cfgscript_proxy, sipp_scenario, tmp_path):
    proxy, result, watch = run_calls(cfgscript_proxy, sipp_scenario, tmp_path, ENGAGE, 20)
    check_calls(proxy, result, watch, 20)


def test_use_media_proxy_by_hand(cfgscript_proxy, sipp_scenario, tmp_path):
    proxy, result, watch = run_calls(cfgscript_proxy, sipp_scenario, tmp_path, BY_HAND, 5)
    check_calls(proxy, result, watch, 5)
    assert "use_media_proxy on the INVITE: 1" in proxy.log


def test_no_dispatcher_leaves_the_sdp_alone(cfgscript_proxy, sipp_scenario, tmp_path):
    sock = str(tmp_path / "nobody.sock")
    proxy = cfgscript_proxy(BY_HAND.format(sock=sock), args=["--no-embedded-mediaproxy"])
    result = sipp_scenario(proxy, uac=XML / "uac-media.xml", uas=XML / "uas-media.xml",
                           calls=1, duration=500, timeout=60)
    assert result.passed
    assert "use_media_proxy on the INVITE: -1" in proxy.log
    assert f"failed to connect to {sock}" in proxy.log
    uas_log = (result.logdir / "uas.messages.log").read_text()
    (offer,) = sdp_addresses(uas_log, "INVITE")
    assert offer[0] != proxy.address  # untouched: the caller's own address

"""Calls through the rtpengine module and a real rtpengine daemon: SIPp plays G.711 RTP on
both sides, the SDP each side gets points at the daemon, the daemon relays the packets."""
import re
import struct
from pathlib import Path

XML = Path(__file__).resolve().parent.parent / "media" / "xml"
PCAP = Path("/usr/share/sip-tester/g711a.pcap")

SCRIPT = """
log_level=3
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "rr.so"
loadmodule "sipmsgops.so"
loadmodule "rtpengine.so"
modparam("rtpengine", "rtpengine_sock", "{socks}")
modparam("rtpengine", "rtpengine_tout", 1)
modparam("rtpengine", "rtpengine_retr", 2)
route {{
    if (has_totag()) {{
        if (loose_route()) {{
            if (is_method("BYE")) {{
                xlog("L_NOTICE", "rtpstat $ci: $rtpstat\\n");
                rtpengine_delete();
            }}
            t_relay();
            exit;
        }}
        if (is_method("ACK")) {{ if (t_check_trans()) t_relay(); exit; }}
        sl_send_reply(404, "Not here");
        exit;
    }}
    t_check_trans();
    record_route();
    if (is_method("INVITE") && has_body("application/sdp")) {{
        $var(flags) = "{flags}";
        if (rtpengine_offer("$var(flags)", $var(used)))
            xlog("L_NOTICE", "offer through $var(used)\\n");
        t_on_reply("answer");
    }}
    t_relay();
}}
onreply_route[answer] {{
    if (has_body("application/sdp"))
        rtpengine_answer("{flags}");
}}
"""


def pcap_packets(path=PCAP) -> int:
    data = path.read_bytes()
    n, pos = 0, 24
    while pos + 16 <= len(data):
        pos += 16 + struct.unpack_from("<I", data, pos + 8)[0]
        n += 1
    return n


def sdp_addresses(log_text, start_line):
    out = []
    for block in re.split(r"^-{10,}.*$", log_text, flags=re.M):
        body = block.split("\n\n", 1)[-1]
        if body.lstrip().startswith(start_line):
            c = re.search(r"^c=IN IP4 (\S+)", block, re.M)
            o = re.search(r"^o=\S+ \S+ \S+ IN IP4 (\S+)", block, re.M)
            m = re.search(r"^m=audio (\d+)", block, re.M)
            if c and m:
                out.append((c.group(1), int(m.group(1)), o.group(1) if o else None))
    return out


def run(cfgscript_proxy, sipp_scenario, daemon, *, socks=None, flags="", calls=3):
    cfg = SCRIPT.format(socks=socks or f"udp:{daemon.ip}:{daemon.port}", flags=flags)
    proxy = cfgscript_proxy(cfg)
    result = sipp_scenario(proxy, uac=XML / "uac-media.xml", uas=XML / "uas-media.xml",
                           calls=calls, duration=8000, timeout=120)
    assert result.passed
    uas_log = (result.logdir / "uas.messages.log").read_text()
    uac_log = (result.logdir / "uac.messages.log").read_text()
    offers = sdp_addresses(uas_log, "INVITE")
    answers = sdp_addresses(uac_log, "SIP/2.0 200")
    assert len(offers) == calls and len(answers) >= calls
    lo, hi = daemon.ports
    for ip, port, _ in offers + answers:
        assert ip == daemon.ip and lo <= port <= hi, (ip, port)
    return proxy, offers, answers


def test_offer_answer_delete_with_media(cfgscript_proxy, sipp_scenario, rtpengine_daemon):
    proxy, offers, _ = run(cfgscript_proxy, sipp_scenario, rtpengine_daemon, calls=3)
    log = proxy.log
    assert log.count(f"offer through udp:{rtpengine_daemon.ip}:{rtpengine_daemon.port}") == 3
    stats = re.findall(r"rtpstat \S+: RTP: (\d+) bytes, (\d+) packets, (\d+) errors", log)
    assert len(stats) == 3, log[-3000:]
    sent = pcap_packets()
    for _bytes, packets, _errors in stats:
        # both sides played the whole pcap through the daemon ("errors" counts the
        # packets SIPp's pcap player, which listens on no media port, refused)
        assert int(packets) >= 2 * sent, stats
    daemon_log = rtpengine_daemon.log
    assert daemon_log.count("Received command 'offer'") == 3
    assert daemon_log.count("Received command 'answer'") >= 3
    assert daemon_log.count("Received command 'delete'") == 3


def test_flags_reach_the_daemon(cfgscript_proxy, sipp_scenario, rtpengine_daemon):
    _, offers, answers = run(cfgscript_proxy, sipp_scenario, rtpengine_daemon,
                             flags="replace-origin replace-session-connection ICE=remove "
                                   "RTP/AVP", calls=1)
    for ip, _port, origin in offers + answers:
        assert origin == rtpengine_daemon.ip       # replace-origin rewrote o=


def test_a_dead_daemon_in_the_set_is_skipped(cfgscript_proxy, sipp_scenario,
                                             rtpengine_daemon):
    dead = f"udp:{rtpengine_daemon.ip}:{rtpengine_daemon.port + 1}"
    live = f"udp:{rtpengine_daemon.ip}:{rtpengine_daemon.port}"
    proxy, _, _ = run(cfgscript_proxy, sipp_scenario, rtpengine_daemon,
                      socks=f"{dead}=5 {live}=1", calls=3)
    assert proxy.log.count(f"offer through {live}") == 3
    assert f"proxy <{dead}> does not respond" in proxy.log

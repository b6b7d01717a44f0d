"""Calls through the rtpproxy module and a real RTPProxy (Sippy's, run by the rtp.io
package): SIPp plays G.711 RTP on both sides, the SDP points at the relay, the relay's
own counters show the packets went through it."""
import re

from tests.rtp.test_rtpengine_calls import XML, pcap_packets, sdp_addresses

BY_HAND = """
log_level=3
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "rr.so"
loadmodule "sipmsgops.so"
loadmodule "rtpproxy.so"
modparam("rtpproxy", "rtpproxy_sock", "{socks}")
modparam("rtpproxy", "rtpproxy_timeout", "0.5")
modparam("rtpproxy", "rtpproxy_retr", 2)
route {{
    if (has_totag()) {{
        if (loose_route()) {{
            if (is_method("BYE")) {{
                if (rtpproxy_stats($var(up), $var(down), $var(sent), $var(fail)))
                    xlog("L_NOTICE", "stats $ci: up=$var(up) down=$var(down) relayed=$var(sent) dropped=$var(fail)\\n");
                {unforce}
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
        if ({offer})
            xlog("L_NOTICE", "offer through $var(used): $var(addr)\\n");
        t_on_reply("answer");
    }}
    t_relay();
}}
onreply_route[answer] {{
    if (has_body("application/sdp"))
        {answer};
}}
"""

ENGAGE = """
log_level=3
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "rr.so"
loadmodule "sipmsgops.so"
loadmodule "dialog.so"
loadmodule "rtpproxy.so"
modparam("rtpproxy", "rtpproxy_sock", "{socks}")
route {{
    if (has_totag()) {{
        if (loose_route()) {{ t_relay(); exit; }}
        if (is_method("ACK")) {{ if (t_check_trans()) t_relay(); exit; }}
        sl_send_reply(404, "Not here");
        exit;
    }}
    t_check_trans();
    record_route();
    if (is_method("INVITE"))
        rtpproxy_engage("co");
    t_relay();
}}
"""


def run(cfgscript_proxy, sipp_scenario, daemon, cfg, calls):
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
    assert "a=nortpproxy:yes" in uas_log
    return proxy, offers, answers


def relayed(daemon):
    """(packets in from the caller, from the callee, relayed) of each session RTPProxy
    closed, from its log."""
    return [tuple(int(x) for x in m) for m in re.findall(
        r"RTP stats: (\d+) in from callee, (\d+) in from caller, (\d+) relayed", daemon.log)]


def test_offer_answer_unforce_with_media(cfgscript_proxy, sipp_scenario, rtpproxy_daemon):
    d = rtpproxy_daemon
    cfg = BY_HAND.format(socks=f"udp:{d.ip}:{d.port}",
                         offer='rtpproxy_offer("co", , , $var(used), $var(addr))',
                         answer='rtpproxy_answer("co")', unforce="rtpproxy_unforce();")
    proxy, offers, _ = run(cfgscript_proxy, sipp_scenario, d, cfg, calls=3)
    assert len(re.findall(rf"offer through udp:{re.escape(d.ip)}:{d.port}: "
                          rf"{re.escape(d.ip)}:\d+", proxy.log)) == 3
    sent = pcap_packets()
    stats = re.findall(r"stats \S+: up=(\d+) down=(\d+) relayed=(\d+)", proxy.log)
    assert len(stats) == 3
    for up, down, through in stats:
        assert int(up) >= sent and int(down) >= sent and int(through) >= 2 * sent, stats
    closed = relayed(d)
    assert len(closed) == 3, d.log[-2000:]
    for from_callee, from_caller, through in closed:
        assert from_callee >= sent and from_caller >= sent and through >= 2 * sent


def test_old_names(cfgscript_proxy, sipp_scenario, rtpproxy_daemon):
    d = rtpproxy_daemon
    cfg = BY_HAND.format(socks=f"udp:{d.ip}:{d.port}", offer="force_rtp_proxy()",
                         answer="force_rtp_proxy()", unforce="unforce_rtp_proxy();")
    run(cfgscript_proxy, sipp_scenario, d, cfg, calls=1)
    assert len(relayed(d)) == 1


def test_engage(cfgscript_proxy, sipp_scenario, rtpproxy_daemon):
    d = rtpproxy_daemon
    run(cfgscript_proxy, sipp_scenario, d, ENGAGE.format(socks=f"udp:{d.ip}:{d.port}"),
        calls=3)
    closed = relayed(d)
    assert len(closed) == 3            # the BYE ended each session through the dialog
    sent = pcap_packets()
    for from_callee, from_caller, through in closed:
        assert through >= 2 * sent


def test_failover_to_the_live_proxy(cfgscript_proxy, sipp_scenario, rtpproxy_daemon):
    d = rtpproxy_daemon
    dead, live = f"udp:{d.ip}:{d.port + 1}", f"udp:{d.ip}:{d.port}"
    cfg = BY_HAND.format(socks=f"{dead}=4 {live}=1",
                         offer='rtpproxy_offer("co", , , $var(used), $var(addr))',
                         answer='rtpproxy_answer("co")', unforce="rtpproxy_unforce();")
    proxy, _, _ = run(cfgscript_proxy, sipp_scenario, d, cfg, calls=2)
    assert proxy.log.count(f"offer through {live}") == 2

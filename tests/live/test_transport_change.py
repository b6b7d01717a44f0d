"""UDP in, TCP out: the proxy record-routes twice (one entry per side), and the in-dialog
requests come back through both (issue: stateful proxying)."""
import re
from pathlib import Path

XML = Path(__file__).parents[1] / "scenarios/tm/01.record-route-relay/scripts"
LIVE_XML = Path(__file__).parent / "xml"

CFG = """
log_level=3
loadmodule "proto_udp.so"
loadmodule "proto_tcp.so"
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "rr.so"
loadmodule "sipmsgops.so"
route {
    if (has_totag()) {
        if (loose_route()) { t_relay(); exit; }
        if (is_method("ACK")) { if (t_check_trans()) t_relay(); exit; }
        sl_send_reply(404, "Not here");
        exit;
    }
    t_check_trans();
    record_route();
    $du = "sip:" + $rd + ":" + $rp + ";transport=tcp";
    if (!t_relay())
        sl_reply_error();
}
"""


def test_udp_to_tcp_double_record_route(cfgscript_proxy, sipp_scenario):
    probe = cfgscript_proxy(CFG)  # picks a fresh address; the real run adds TCP on it
    ip = probe.address
    probe.stop()
    proxy = cfgscript_proxy(CFG, sockets=[f"udp:{ip}:5060", f"tcp:{ip}:5060"])
    result = sipp_scenario(proxy, uac=XML / "uac.xml", uas=LIVE_XML / "uas-rr.xml", calls=5,
                           uas_transport="tcp", timeout=60)
    assert result.passed
    log = (result.logdir / "uas.messages.log").read_text()
    invite = log[log.index("INVITE sip:"):]
    invite = invite[:invite.index("\n\n")]
    rrs = re.findall(r"^Record-Route: (.*)$", invite, re.M)
    assert rrs == [f"<sip:{ip}:5060;transport=tcp;lr;ftag={_ftag(invite)};r2=on>",
                   f"<sip:{ip}:5060;lr;ftag={_ftag(invite)};r2=on>"]
    assert "TCP message received" in log and "BYE sip:" in log


def _ftag(msg):
    return re.search(r"^From:.*;tag=(\S+)", msg, re.M).group(1)

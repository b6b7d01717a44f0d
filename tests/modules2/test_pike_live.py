"""pike on a live proxy: a SIPp flood of OPTIONS (10 a second, twice the density of a
2-second sample) is let through at first, then answered 403 by the script as pike reports
the source; after some quiet samples the same source is let through again."""
import re
import time
from pathlib import Path

XML = Path(__file__).parent / "xml"

SCRIPT = """
log_level=3
loadmodule "proto_udp.so"
loadmodule "sl.so"
loadmodule "pike.so"
modparam("pike", "sampling_time_unit", 2)
modparam("pike", "reqs_density_per_unit", 5)
modparam("pike", "remove_latency", 4)
route {
    if (!pike_check_req()) {
        xlog("L_NOTICE", "pike: $si is flooding ($rc)\\n");
        sl_send_reply(403, "Flooding");
        exit;
    }
    sl_send_reply(200, "OK");
}
"""


def _answers(result):
    text = result.agents[0].read("messages")
    return re.findall(r"^SIP/2.0 (\d{3})", text, re.M)


def test_a_flood_is_blocked_then_forgiven(cfgscript_proxy, sipp_scenario):
    proxy = cfgscript_proxy(SCRIPT)
    flood = sipp_scenario(proxy, uac=XML / "uac-options-200-or-403.xml", uas=False, calls=40,
                          timeout=30)
    codes = _answers(flood)
    assert len(codes) == 40
    first_block = codes.index("403")
    assert 5 <= first_block <= 15, codes             # between x and 3x requests
    assert codes[first_block:].count("200") == 0, codes   # blocked while it floods
    assert "is flooding (-2)" in proxy.log and "is flooding (-1)" in proxy.log
    time.sleep(6.5)                                  # three quiet samples
    quiet = sipp_scenario(proxy, uac=XML / "uac-options-200-or-403.xml", uas=False, calls=1)
    assert _answers(quiet) == ["200"]

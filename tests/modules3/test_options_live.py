"""options on a live proxy: SIPp keepalive OPTIONS for the proxy itself are answered 200 by
options_reply() with the Accept headers (the scenario checks them), an OPTIONS for a user
goes on to the rest of the script."""
import re
from pathlib import Path

XML = Path(__file__).parent / "xml"

SCRIPT = """
log_level=3
loadmodule "proto_udp.so"
loadmodule "sl.so"
loadmodule "signaling.so"
loadmodule "sipmsgops.so"
loadmodule "options.so"
modparam("options", "accept", "application/sdp")
modparam("options", "support", "path")

route {
    if (is_method("OPTIONS") && ($rU == NULL || $rU == "")) {
        options_reply();
        xlog("L_ERR", "options_reply did not stop the script\\n");
    }
    send_reply(404, "Not Here");
}
"""


def test_options_reply_answers_keepalives(cfgscript_proxy, sipp_scenario):
    proxy = cfgscript_proxy(SCRIPT)
    res = sipp_scenario(proxy, uac=XML / "uac-options-ping.xml", uas=False, calls=3)
    text = res.agents[0].read("messages")
    assert re.findall(r"^SIP/2\.0 (\d{3})", text, re.M) == ["200"] * 3
    assert re.findall(r"^Accept: (.*)$", text, re.M) == ["application/sdp"] * 3
    assert re.findall(r"^Accept-Language: (.*)$", text, re.M) == ["en"] * 3
    assert re.findall(r"^Supported: (.*)$", text, re.M) == ["path"] * 3
    assert "Accept-Encoding" not in text
    user = sipp_scenario(proxy, uac=XML / "uac-options-user.xml", uas=False, service="bob")
    assert re.findall(r"^SIP/2\.0 (\d{3})", user.agents[0].read("messages"), re.M) == ["404"]
    assert "did not stop the script" not in proxy.log

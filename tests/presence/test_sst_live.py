"""sst on a live proxy, driven by SIPp: an INVITE whose Session-Expires is below min_se gets
422 with the proxy's Min-SE (from sstCheckMin(1), and from the dialog of a flagged INVITE);
a call that asks for no session timer gets one from the proxy, and the 200 tells the caller
to refresh it."""
from pathlib import Path

XML = Path(__file__).parent / "xml"

SCRIPT = """
log_level=3
loadmodule "sl.so"
loadmodule "sipmsgops.so"
loadmodule "tm.so"
loadmodule "rr.so"
loadmodule "signaling.so"
loadmodule "dialog.so"
loadmodule "sst.so"
modparam("sst", "sst_flag", "SST_FLAG")
modparam("sst", "min_se", 120)

route {{
    if (has_totag()) {{
        if (loose_route()) {{
            t_relay();
            exit;
        }}
        sl_send_reply(404, "Not here");
        exit;
    }}
    if (is_method("INVITE")) {{
        {check}
        setflag(SST_FLAG);
        create_dialog();
        record_route();
    }}
    if (!t_relay())
        sl_reply_error();
}}
"""


def test_sstcheckmin_replies_422(cfgscript_proxy, sipp_scenario):
    proxy = cfgscript_proxy(SCRIPT.format(check="if (sstCheckMin(1)) exit;"))
    sipp_scenario(proxy, uac=XML / "uac-sst-too-small.xml", uas=False)
    assert "trace INVITE" in proxy.log


def test_flagged_dialog_replies_422(cfgscript_proxy, sipp_scenario):
    proxy = cfgscript_proxy(SCRIPT.format(check=""))
    sipp_scenario(proxy, uac=XML / "uac-sst-too-small.xml", uas=False)


def test_proxy_asks_for_session_timers(cfgscript_proxy, sipp_scenario):
    proxy = cfgscript_proxy(SCRIPT.format(check="if (sstCheckMin(1)) exit;"))
    sipp_scenario(proxy, uac=XML / "uac-sst-call.xml", uas=XML / "uas-sst.xml")

"""uac on a live proxy: From replaced towards the callee and restored towards the caller
(replies, and the BYE through the Record-Route parameter); uac_auth answering a gateway's
401 from a failure route."""
from pathlib import Path

XML = Path(__file__).parent / "xml"

SCRIPT = """
log_level=3
loadmodule "proto_udp.so"
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "rr.so"
loadmodule "sipmsgops.so"
loadmodule "uac.so"
{params}
route {{
    if (has_totag()) {{
        if (loose_route()) {{
            t_relay();
            exit;
        }}
        if (is_method("ACK") && t_check_trans())
            t_relay();
        exit;
    }}
    if (is_method("CANCEL")) {{
        if (t_check_trans())
            t_relay();
        exit;
    }}
    t_check_trans();
    record_route();
    {initial}
    t_relay();
}}

failure_route[gw_auth] {{
    if (t_check_status("40[17]") && uac_auth()) {{
        t_on_failure("gw_auth");
        t_relay();
    }}
}}
"""


def test_replace_from_and_restore(cfgscript_proxy, sipp_scenario):
    proxy = cfgscript_proxy(SCRIPT.format(
        params='modparam("uac", "restore_passwd", "s3cr3t")',
        initial='uac_replace_from("Anonymous", "sip:anon@anonymous.invalid");'))
    sipp_scenario(proxy, uac=XML / "uac-rr-from.xml", uas=XML / "uas-anon.xml", calls=3)


def test_uac_auth_answers_a_gateway_challenge(cfgscript_proxy, sipp_scenario):
    proxy = cfgscript_proxy(SCRIPT.format(
        params='modparam("uac", "credential", "gwuser:gw.example:gwpass")',
        initial='t_on_failure("gw_auth");'))
    sipp_scenario(proxy, uac=XML / "uac-rr-from.xml", uas=XML / "uas-challenge.xml", calls=2)

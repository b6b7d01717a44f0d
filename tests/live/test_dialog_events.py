"""dialog: routes armed with dlg_on_answer()/dlg_on_hangup() run when the call is answered
and hung up; a failed call ends its dialog."""
from pathlib import Path

XML = Path(__file__).parents[1] / "scenarios/tm/01.record-route-relay/scripts"
BUSY = Path(__file__).parents[1] / "scenarios/tm/04.busy-ack-absorbed/scripts"

CFG = """
log_level=3
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "rr.so"
loadmodule "sipmsgops.so"
loadmodule "dialog.so"
route {
    if (has_totag()) {
        if (loose_route()) { t_relay(); exit; }
        if (is_method("ACK")) { if (t_check_trans()) t_relay(); exit; }
        exit;
    }
    t_check_trans();
    record_route();
    create_dialog();
    dlg_on_answer("answered");
    dlg_on_hangup("hung_up");
    t_on_failure("failed");
    t_relay();
}
route[answered] { xlog("L_NOTICE", "answered $ci with $rs, dialog $DLG_status\\n"); }
route[hung_up] { xlog("L_NOTICE", "hung up $ci by $rm\\n"); }
failure_route[failed] { xlog("L_NOTICE", "failed $ci, dialogs: $DLG_count\\n"); }
"""


def test_answer_and_hangup_routes(cfgscript_proxy, sipp_scenario):
    proxy = cfgscript_proxy(CFG)
    result = sipp_scenario(proxy, uac=XML / "uac.xml",
                           uas=Path(__file__).parent / "xml/uas-rr.xml", calls=3)
    call_ids = result.agents[-1].call_ids()
    assert len(call_ids) == 3
    for cid in call_ids:
        assert f"answered {cid} with 200, dialog 3" in proxy.log
        assert f"hung up {cid} by BYE" in proxy.log


def test_a_busy_call_ends_its_dialog(cfgscript_proxy, sipp_scenario):
    proxy = cfgscript_proxy(CFG)
    sipp_scenario(proxy, uac=BUSY / "uac.xml", uas=BUSY / "uas.xml", calls=2)
    second = proxy.log.rindex("failed ")
    assert "dialogs: 0" in proxy.log[second:].splitlines()[0]

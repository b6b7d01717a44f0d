"""UDP loss: SIPp drops packets on purpose; retransmissions make every call complete, and
the proxy absorbs the caller's INVITE retransmissions instead of forwarding them again."""
from pathlib import Path

XML = Path(__file__).parent / "xml"
CFG = Path(__file__).parents[1] / "scenarios/tm/01.record-route-relay/opensips.cfg"


def test_lossy_calls_complete_and_retransmissions_are_absorbed(cfgscript_proxy, sipp_scenario):
    proxy = cfgscript_proxy(str(CFG))
    calls = 10
    result = sipp_scenario(proxy, uac=XML / "uac-lossy.xml", uas=XML / "uas-lossy.xml",
                           calls=calls, timeout=90)
    assert result.passed
    uas_log = (result.logdir / "uas.messages.log").read_text()
    received = [block for block in uas_log.split("\n\n") if "INVITE sip:" in block
                and "CSeq: 1 INVITE" in block]
    call_ids = {line for b in received for line in b.splitlines() if line.startswith("Call-ID")}
    assert len(call_ids) == calls
    # the proxy retransmitted INVITEs the UAS dropped (timer A), but never the caller's own:
    # every INVITE the UAS saw carries one of the proxy's branches, one branch per call
    top_vias = [next(line for line in b.splitlines() if line.startswith("Via:"))
                 for b in received]
    branches = {v.split("branch=")[1] for v in top_vias}
    assert len(branches) == calls

"""MI commands of the modules, and reload_routes, while real SIPp agents use the proxy."""
import json
import threading
import time
from pathlib import Path

import pytest

XML = Path(__file__).resolve().parents[1] / "scenarios" / "registrar" / "xml"

REGISTRAR = """
log_level=3
loadmodule "signaling.so"
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "sipmsgops.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
{mi}
route {
    if (is_method("REGISTER")) {
        save("location");
        exit;
    }
    sl_send_reply(404, "Not Here");
}
"""

DIALOG = """
log_level=3
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "rr.so"
loadmodule "sipmsgops.so"
loadmodule "dialog.so"
{mi}
route {
    if (has_totag()) {
        loose_route();
        t_relay();
        exit;
    }
    if (is_method("INVITE")) {
        record_route();
        create_dialog();
        $dlg_val(caller) = $fU;
    }
    xlog("L_NOTICE", "routing $rm $ci with VERSION\\n");
    t_relay();
}
"""


def test_ul_dump_lists_the_registered_contact(mi_proxy, sipp_scenario):
    mi = mi_proxy(REGISTRAR)
    proxy = mi.proxy
    sipp_scenario(proxy, uac=XML / "register.xml", uas=False, service="alice",
                  keys={"domain": proxy.address})
    dump = json.loads(mi.cli("mi", "ul_dump").stdout)
    (domain,) = dump["Domains"]
    assert domain["name"] == "location" and domain["hash_size"] == 512
    (aor,) = domain["AORs"]
    assert aor["AOR"] == "alice"
    (contact,) = aor["Contacts"]
    assert contact["Contact"].startswith("sip:alice@")
    assert 290 <= contact["Expires"] <= 300
    assert contact["Cseq"] == 1 and contact["User-agent"] == "SIPp registrar test"
    assert contact["State"] == "CS_NEW" and contact["Q"] == ""
    assert json.loads(mi.cli("mi", "ul_dump", "brief=1").stdout) == {
        "Domains": [{"name": "location", "hash_size": 512, "AORs": [{"AOR": "alice"}]}]}

    http = mi.http_mi()
    shown = http.execute("ul_show_contact", ["location", "alice"])
    assert shown["Contacts"][0]["Contact"] == contact["Contact"]
    stats = http.execute("get_statistics", [["usrloc:", "registrar:"]])
    assert stats["usrloc:registered_users"] == 1
    assert stats["usrloc:location-contacts"] == 1
    assert stats["registrar:accepted_regs"] == 1

    # ul_add / ul_rm_contact / ul_rm change what lookup() and ul_dump see
    assert http.execute("ul_add", {"table_name": "location", "aor": "bob",
                                   "contact": "sip:bob@192.0.2.7:5060", "expires": 0,
                                   "q": "0.5", "flags": 0, "cflags": 0,
                                   "methods": 4294967295}) == "OK"
    bob = http.execute("ul_show_contact", ["location", "bob"])["Contacts"][0]
    assert bob["Expires"] == "permanent" and bob["Q"] == "0.5"
    assert http.execute("ul_rm_contact", ["location", "alice", contact["Contact"]]) == "OK"
    from opensips.mi import OpenSIPSMIException
    with pytest.raises(OpenSIPSMIException, match="404: AOR not found"):
        http.execute("ul_show_contact", ["location", "alice"])
    with pytest.raises(OpenSIPSMIException, match="404: Table not found"):
        http.execute("ul_show_contact", ["nosuchtable", "bob"])
    assert http.execute("ul_rm", ["location", "bob"]) == "OK"
    assert http.execute("get_statistics", [["registered_users"]]) == {
        "usrloc:registered_users": 0}


def test_dlg_list_shows_the_call_in_progress(mi_proxy, sipp_scenario):
    mi = mi_proxy(DIALOG)
    http = mi.http_mi()
    done = {}
    call = threading.Thread(target=lambda: done.setdefault(
        "result", sipp_scenario(mi.proxy, duration=3000, timeout=30)))
    call.start()
    seen = None
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and call.is_alive():
        dialogs = http.execute("dlg_list")["Dialogs"]
        if dialogs and dialogs[0]["state"] == 4:
            seen = dialogs
            stats = http.execute("get_statistics", [["dialog:"]])
            ctx = http.execute("dlg_list_ctx", [dialogs[0]["callid"]])["Dialog"]["context"]
            break
        time.sleep(0.1)
    call.join(60)
    assert done["result"].passed
    assert seen is not None, "no confirmed dialog seen during the call:\n" + mi.proxy.log[-2000:]
    (dlg,) = seen
    assert dlg["timestart"] > 0 and dlg["timeout"] > dlg["timestart"]
    assert dlg["caller_tag"] and dlg["CALLEES"][0]["callee_tag"]
    assert dlg["from_uri"].startswith("sip:") and dlg["callid"]
    assert stats["dialog:active_dialogs"] == 1
    assert ctx["values"] == [{"caller": "sipp"}]
    # and after the BYE
    time.sleep(0.5)
    assert http.execute("get_statistics", [["active_dialogs", "processed_dialogs"]]) == {
        "dialog:active_dialogs": 0, "dialog:processed_dialogs": 1}
    from opensips.mi import OpenSIPSMIException
    with pytest.raises(OpenSIPSMIException, match="404: No such dialog"):
        http.execute("dlg_list", {"callid": "no-such-call"})


def wait_for_log(proxy, text, thread, timeout=20.0):
    deadline = time.monotonic() + timeout
    while text not in proxy.log:
        assert thread.is_alive() and time.monotonic() < deadline, \
            f"'{text}' not in the log:\n" + proxy.log[-2000:]
        time.sleep(0.05)


def test_reload_routes_under_load(mi_proxy, sipp_scenario):
    mi = mi_proxy(DIALOG.replace("VERSION", "routes-v1"))
    cfg = mi.proxy.cfg
    text = cfg.read_text()
    http = mi.http_mi()
    done = {}
    load = threading.Thread(target=lambda: done.setdefault(
        "result", sipp_scenario(mi.proxy, calls=100, duration=500, timeout=90)))
    load.start()
    try:
        wait_for_log(mi.proxy, "with routes-v1", load)
        # a script that does not check is refused, and the running routes stay
        cfg.write_text(text.replace("t_relay();\n}", "t_relay(;\n}"))
        from opensips.mi import OpenSIPSMIException
        with pytest.raises(OpenSIPSMIException, match="500: reload failed") as err:
            http.execute("reload_routes")
        assert "opensips-0.cfg" in str(err.value)       # the diagnostic, with file:line
        cfg.write_text(text.replace("routes-v1", "routes-v2"))
        assert http.execute("reload_routes") == "OK"
        wait_for_log(mi.proxy, "with routes-v2", load)
        cfg.write_text(text.replace("routes-v1", "routes-v3"))
        assert mi.fifo_mi().execute("reload_routes") == "OK"
        wait_for_log(mi.proxy, "with routes-v3", load)
    finally:
        load.join(120)
    result = done["result"]
    assert result.passed                                # no call failed
    log = mi.proxy.log
    for version in ("routes-v1", "routes-v2", "routes-v3"):
        assert f"with {version}" in log, version
    # after the last reload, nothing runs the old routes
    tail = log[log.index("with routes-v3"):]
    assert "with routes-v1" not in tail and "with routes-v2" not in tail
    # transactions and dialogs survived: every call ended with its BYE through the proxy
    stats = http.execute("get_statistics", [["dialog:", "tm:inuse_transactions"]])
    assert stats["dialog:processed_dialogs"] == 100 and stats["dialog:active_dialogs"] == 0

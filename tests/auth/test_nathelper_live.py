"""nathelper with the registrar on a live proxy: a REGISTER from behind NAT is stored with
the address it came from (fix_nated_contact, or fix_nated_register's received)."""
from pathlib import Path

XML = Path(__file__).parent / "xml"

SCRIPT = """
log_level=3
loadmodule "proto_udp.so"
loadmodule "sl.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "nathelper.so"
modparam("nathelper", "received_avp", "$avp(rcv)")
modparam("registrar", "received_avp", "$avp(rcv)")
route {{
    if (nat_uac_test("private-contact,diff-port-src-via"))
        {fix};
    save("location");
}}
"""


def test_fix_nated_contact_before_save(cfgscript_proxy, sipp_scenario):
    proxy = cfgscript_proxy(SCRIPT.format(fix="fix_nated_contact()"))
    sipp_scenario(proxy, uac=XML / "uac-register-nated.xml", uas=False, service="alice")


def test_fix_nated_register_gives_received(cfgscript_proxy, sipp_scenario, tmp_path):
    proxy = cfgscript_proxy(SCRIPT.format(fix="fix_nated_register()"))
    uac = tmp_path / "uac-received.xml"
    uac.write_text((XML / "uac-register-nated.xml").read_text().replace(
        'regexp="@127\\.[0-9.]+:[0-9]+"',
        'regexp="@192\\.168\\.1\\.20:5062.*received=.?sip:127\\.[0-9.]+:[0-9]+"'))
    sipp_scenario(proxy, uac=uac, uas=False, service="alice")

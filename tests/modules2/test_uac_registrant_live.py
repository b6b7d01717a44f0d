"""uac_registrant on a live proxy: the registrant row of a real SQLite table makes the proxy
REGISTER with a SIPp registrar, answer its 401 with the row's credentials (SIPp checks the
digest), and register again before the short expiry it was granted runs out."""
import re
from pathlib import Path

from runtime import db
from runtime.testing import addresses
from runtime.testing.addresses import PROXY_PORT, UAS_PORT
from runtime.testing.scenario import MEDIA_PORT, Agent
from runtime.testing.sipp import run_agents

XML = Path(__file__).parent / "xml"

SCRIPT = """
log_level=3
loadmodule "proto_udp.so"
loadmodule "sl.so"
loadmodule "db_sqlite.so"
loadmodule "uac_auth.so"
loadmodule "uac_registrant.so"
modparam("uac_registrant", "db_url", "sqlite://{db}")
modparam("uac_registrant", "timer_interval", 2)
modparam("uac_registrant", "hash_size", 0)
route {{
    sl_send_reply(404, "Not Here");
}}
"""


def test_registers_answers_the_challenge_and_refreshes(cfgscript_proxy, tmp_path):
    roles = addresses.allocate()
    path = tmp_path / "reg.db"
    conn = db.connect(f"sqlite://{path}", shared=False)
    conn.raw_query("CREATE TABLE registrant (id INTEGER PRIMARY KEY, registrar TEXT, "
                   "proxy TEXT, aor TEXT, third_party_registrant TEXT, username TEXT, "
                   "password TEXT, binding_URI TEXT, binding_params TEXT, expiry INTEGER, "
                   "forced_socket TEXT, cluster_shtag TEXT, state INTEGER DEFAULT 0)")
    conn.insert("registrant", {
        "registrar": f"sip:{roles.uas_ip}:{UAS_PORT}", "aor": "sip:pbx@reg.example",
        "username": "pbx", "password": "pw",
        "binding_URI": f"sip:pbx@{roles.proxy_ip}:{PROXY_PORT}", "expiry": 600})
    conn.close()
    proxy = cfgscript_proxy(SCRIPT.format(db=path),
                            sockets=[f"udp:{roles.proxy_ip}:{PROXY_PORT}"])
    registrar = Agent("registrar", "uas", XML / "uas-registrar.xml", roles.uas_ip, UAS_PORT,
                      media_port=MEDIA_PORT, calls=1)
    logdir = tmp_path / "sipp"
    logdir.mkdir()
    results, note = run_agents([registrar], logdir, 30, XML)
    r = results[0]
    assert r.ok and not note, (r.meaning, r.errors(), note, proxy.log[-2000:])
    msgs = r.read("messages")
    registers = re.findall(r"^REGISTER sip:\S+ SIP/2.0", msgs, re.M)
    assert len(registers) == 4
    assert re.search(r"^Authorization: Digest username=\"pbx\", realm=\"reg.example\"", msgs,
                     re.M)
    assert "registered at" in proxy.log and "for 4s" in proxy.log and "for 600s" in proxy.log

"""registrar through the real proxy and real SIPp agents: registrations that survive a
restart of the proxy process (db_mode 1 and 2 on SQLite), and the official OpenSIPS
default script run unchanged."""
from pathlib import Path

import pytest

from runtime.testing import addresses
from runtime.testing.addresses import PROXY_PORT, UAC_PORT, UAS_PORT
from runtime.testing.execute import ScenarioResult, explain
from runtime.testing.scenario import MEDIA_PORT, Agent
from runtime.testing.sipp import run_agents

XML = Path(__file__).resolve().parents[1] / "scenarios" / "registrar" / "xml"
REGISTRAR_CFG = (XML.parent / "registrar.cfg").read_text()


class Agents:
    """SIPp agents on one set of loopback addresses, kept across proxy restarts."""

    def __init__(self, tmp_path, name):
        self.roles = addresses.allocate()
        self.tmp_path = tmp_path
        self.name = name
        self.runs = 0

    @property
    def socket(self):
        return f"udp:{self.roles.proxy_ip}:{PROXY_PORT}"

    def uas(self, xml, name="bob"):
        return Agent(name, "uas", XML / xml, self.roles.uas_ip, UAS_PORT,
                     media_port=MEDIA_PORT)

    def uac(self, xml, name, service, after=(), port=UAC_PORT):
        return Agent(name, "uac", XML / xml, self.roles.uac_ip, port, media_port=MEDIA_PORT,
                     remote=(self.roles.uas_ip, UAS_PORT),
                     proxy=(self.roles.proxy_ip, PROXY_PORT), service=service,
                     keys={"domain": self.roles.proxy_ip}, after=list(after))

    def run(self, proxy, *agents, timeout=20.0):
        """Run the agents; fail the test (with SIPp's and the proxy's story) unless all
        exit 0."""
        self.runs += 1
        logdir = self.tmp_path / f"sipp-{self.runs}"
        logdir.mkdir()
        results, note = run_agents(list(agents), logdir, timeout, self.tmp_path)
        result = ScenarioResult(self.name, self.tmp_path, logdir, agents=results,
                                passed=not note and all(a.ok for a in results), problem=note,
                                cfg=proxy.cfg, proxy_log=proxy.log_path)
        if not result.passed:
            pytest.fail(explain(result), pytrace=False)


@pytest.mark.parametrize("db_mode", [1, 2])
def test_registrations_survive_a_restart(db_mode, tmp_path, cfgscript_proxy):
    cfg = REGISTRAR_CFG.replace('loadmodule "registrar.so"', f'''
loadmodule "db_sqlite.so"
modparam("usrloc", "db_mode", {db_mode})
modparam("usrloc", "db_url", "sqlite://{tmp_path}/opensips.db")
loadmodule "registrar.so"''')
    agents = Agents(tmp_path, f"restart-db_mode-{db_mode}")
    first = cfgscript_proxy(cfg, sockets=[agents.socket])
    agents.run(first, agents.uac("register.xml", "register", "bob"))
    assert first.stop() == 0

    second = cfgscript_proxy(cfg, sockets=[agents.socket])
    agents.run(second, agents.uas("uas-answer.xml"),
               agents.uac("uac-call.xml", "call", "bob"))
    assert "goes to sip:bob@" in second.log


def test_official_default_script_registers_and_routes(corpus_dir, tmp_path, cfgscript_proxy):
    pytest.importorskip("modules.acc")
    cfg = corpus_dir / "official" / "etc__opensips.cfg"
    agents = Agents(tmp_path, "official-default-script")
    proxy = cfgscript_proxy(cfg, sockets=[agents.socket])
    agents.run(proxy, agents.uas("uas-answer.xml"),
               agents.uac("register.xml", "register", "bob"),
               agents.uac("uac-call.xml", "call", "bob", after=["register"], port=UAC_PORT + 1),
               agents.uac("uac-unknown.xml", "unknown", "nobody", after=["call"],
                          port=UAC_PORT + 2))

"""The pytest plugin: its fixtures here, its collection and --cfg-cov in a pytest subprocess."""
import re
import shutil
import subprocess
import sys

import pytest

from .conftest import DATA, STATELESS

pytestmark = pytest.mark.skipif(not shutil.which("sipp"), reason="needs SIPp (sip-tester)")

CFG = STATELESS / "opensips.cfg"
UAC, UAS = STATELESS / "scripts" / "uac.xml", STATELESS / "scripts" / "uas.xml"


def test_a_call_through_the_sample_script(cfgscript_proxy, sipp_scenario):
    proxy = cfgscript_proxy(CFG)
    assert re.fullmatch(r"127\.\d+\.\d+\.\d+", proxy.address) and proxy.port == 5060
    result = sipp_scenario(proxy, uac=UAC, uas=UAS)
    assert result.passed and [a.returncode for a in result.agents] == [0, 0]
    [call_id] = result.agents[1].call_ids()
    traces = proxy.traces(call_id)
    assert [t.method for t in traces] == ["INVITE", "ACK", "BYE"]
    assert traces[0].positions[-2:] == [("opensips.cfg", 28), ("opensips.cfg", 29)]


def test_cfg_text_and_sipp_builtin_uac(cfgscript_proxy, sipp_scenario):
    proxy = cfgscript_proxy('loadmodule "sl.so"\nloadmodule "sipmsgops.so"\n'
                            'route {\n    if (is_method("ACK")) exit;\n'
                            '    sl_send_reply(200, "OK");\n}\n')
    result = sipp_scenario(proxy, uas=False)
    assert result.agents[0].command.count("-sn 'uac'") == 1
    assert "listening on" in proxy.log and proxy.pid > 0


def test_a_failing_call_reports_sipp_and_the_script(cfgscript_proxy, sipp_scenario):
    proxy = cfgscript_proxy(CFG)
    result = sipp_scenario(proxy, uac=UAC, uas=False, service="unknown", check=False)
    assert not result.passed
    assert "received 'SIP/2.0 404 Not Found" in result.report
    assert '    opensips.cfg:24: sl_send_reply(404, "Not Found");' in result.report
    assert proxy.stop() == 0


OPTIONS = f"""\
tasks:
  - {{name: OpenSIPS, type: opensips, config_file: {CFG}}}
  - {{name: uac, type: uac-sipp, config_file: options.xml}}
"""
UNKNOWN_USER = f"""\
tasks:
  - {{name: OpenSIPS, type: opensips, config_file: {CFG}}}
  - {{name: uas, type: uas-sipp, config_file: {UAS}}}
  - {{name: uac, type: uac-sipp, config_file: {UAC}, service: unknown}}
"""
TEST_FILE = f"""
def test_call(cfgscript_proxy, sipp_scenario):
    proxy = cfgscript_proxy({str(CFG)!r})
    sipp_scenario(proxy, uac={str(UAC)!r}, uas=False, service="unknown")
"""


def test_scenario_folders_are_items_and_cfg_cov_reports(make_scenario, tmp_path):
    """Three runs of the sample cfg: an OPTIONS, and a call to an unknown user, twice."""
    make_scenario("scenarios/ok", {"options.xml": DATA / "uac-options.xml",
                                   "scenario.yml": OPTIONS})
    make_scenario("scenarios/bad", {"scenario.yml": UNKNOWN_USER})
    (tmp_path / "test_calls.py").write_text(TEST_FILE)
    out = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                          "--cfg-cov", "-rA", str(tmp_path)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    text = out.stdout
    assert out.returncode == 1, text + out.stderr
    assert re.search(r"^PASSED scenarios/ok/scenario.yml::ok$", text, re.M), text
    assert re.search(r"^FAILED scenarios/bad/scenario.yml::bad - SIPp failed: uac exit 1$",
                     text, re.M)
    assert re.search(r"^FAILED test_calls.py::test_call - Failed: SIPp failed: uac exit 1$",
                     text, re.M)
    bad = text.split("___ scenario bad ___")[1]
    assert "received 'SIP/2.0 404 Not Found" in bad
    assert '\n    opensips.cfg:24: sl_send_reply(404, "Not Found");\n' in bad
    assert re.search(r"^\S*/opensips.cfg +8/12 +66% +4/6 +66% +14-15, 28-29; 13:then, 23:else$",
                     text, re.M)
    assert (tmp_path / "htmlcov-cfg" / "index.html").is_file()
    assert (tmp_path / "cfgscript-test-logs" / "bad" / "uac.errors.log").is_file()

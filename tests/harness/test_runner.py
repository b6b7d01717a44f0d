"""`cfgscript test`: real proxy, real SIPp, the sample and deliberately broken scenarios."""
import json
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime

import pytest

from runtime.testing.runner import main

from .conftest import DATA, STATELESS

pytestmark = pytest.mark.skipif(not shutil.which("sipp"), reason="needs SIPp (sip-tester)")

CFG = STATELESS / "opensips.cfg"


def normalized(text, logs):
    text = text.replace(str(logs), "LOGS")
    text = re.sub(r"\d+-\d+@127\.\d+\.\d+\.\d+", "CALL-ID", text)
    return re.sub(r"\d+\.\ds\b", "T", text)


def test_the_stateless_sample_passes(tmp_path):
    out = subprocess.run([sys.executable, "-m", "runtime.cli", "test", str(STATELESS),
                          "--logs", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert re.fullmatch(r"PASS stateless \(\d+\.\ds\)", lines[0])
    assert re.fullmatch(r"1 passed, 0 failed in \d+\.\ds", lines[-1])
    logs = tmp_path / "stateless"
    assert "listening on udp:127." in (logs / "proxy.log").read_text()
    for agent in ("uas", "uac", "uac-unknown"):
        assert "SIP/2.0" in (logs / f"{agent}.messages.log").read_text()


EXPECTED_FAILURE = """\
FAIL 01.unknown-user (T)
  SIPp failed: uac exit 1
  uas (scripts/uas.xml): exit 0: all calls were successful
  uac (scripts/uac.xml): exit 1: at least one call failed (or, SIPp 3.6, a bad scenario file or option)
    SIPp: Aborting call on unexpected message for Call-Id 'CALL-ID': while expecting '100' (index 1), received 'SIP/2.0 404 Not Found
    where the calls stopped:
                                       Messages  Retrans   Timeout   Unexpected-Msg
            INVITE ---------->         1         0         0
               100 <----------         0         0         0         1
               180 <----------         0         0         0         0
               200 <----------  E-RTD1 0         0         0         0
               ACK ---------->         0         0
             Pause [      0ms]         0                             0
               BYE ---------->         0         0         0
               200 <----------         0         0         0         0
  script lines for Call-ID CALL-ID:
    INVITE in route:
      opensips.cfg:12: route {
      opensips.cfg:13: if (!mf_process_maxfwd_header(10)) {
      opensips.cfg:18: if (is_method("OPTIONS")) {
      opensips.cfg:23: if ($rU == "unknown") {
      opensips.cfg:24: sl_send_reply(404, "Not Found");
      opensips.cfg:25: exit;
    ACK in route:
      opensips.cfg:12: route {
      opensips.cfg:13: if (!mf_process_maxfwd_header(10)) {
      opensips.cfg:18: if (is_method("OPTIONS")) {
      opensips.cfg:23: if ($rU == "unknown") {
      opensips.cfg:24: sl_send_reply(404, "Not Found");
      opensips.cfg:25: exit;
  logs: LOGS/01.unknown-user
0 passed, 1 failed in T
"""


def test_a_failing_scenario_says_why_and_which_script_lines_ran(make_scenario, tmp_path,
                                                                 capsys):
    """The UAC expects a 200, the script answers 404: SIPp's reason and the path shown."""
    folder = make_scenario("01.unknown-user", {
        "opensips.cfg": CFG,
        "scripts/uas.xml": STATELESS / "scripts/uas.xml",
        "scripts/uac.xml": STATELESS / "scripts/uac.xml",
        "scenario.yml": "tasks:\n"
                        "  - {name: uas, type: uas-sipp, config_file: scripts/uas.xml}\n"
                        "  - {name: uac, type: uac-sipp, config_file: scripts/uac.xml,"
                        " service: unknown}\n"})
    logs = tmp_path / "logs"
    assert main([str(folder), "--logs", str(logs)]) == 1
    assert normalized(capsys.readouterr().out, logs) == EXPECTED_FAILURE


def test_coverage_of_the_sample_merges_scenarios_of_the_same_cfg(make_scenario, tmp_path,
                                                                  capsys):
    """The sample's calls plus an OPTIONS from another folder, on the same cfg file."""
    options = make_scenario("options", {
        "scripts/uac-options.xml": DATA / "uac-options.xml",
        "scenario.yml": f"tasks:\n  - {{name: OpenSIPS, type: opensips, config_file: {CFG}}}\n"
                        "  - {name: uac, type: uac-sipp,"
                        " config_file: scripts/uac-options.xml}\n"})
    html = tmp_path / "html"
    assert main([str(STATELESS), str(options), "--coverage", "--cov-html", str(html),
                 "--logs", str(tmp_path / "logs")]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^\S*samples/stateless/opensips.cfg +10/12 +83% +5/6 +83% +14-15; 13:then$",
                     out, re.M), out
    cov = json.loads((html / "coverage.json").read_text())["files"][str(CFG)]
    lines = cov["lines"]
    assert {n: lines[n] for n in ("12", "19", "20", "24", "29")} == dict.fromkeys(
        ("12", "19", "20", "24", "29"), "run")
    assert lines["13"] == "partial" and lines["14"] == lines["15"] == "miss"
    assert {"line": 13, "kind": "then", "hits": 0} in cov["branches"]
    # INVITE, ACK, BYE of the call + INVITE, ACK to the unknown user + the OPTIONS
    assert cov["hits"]["12"] == 6
    page = (html / "index.html").read_text()
    assert "class='miss'><td class='no'>14</td>" in page
    assert "class='partial' title='never taken: then'><td class='no'>13</td>" in page
    assert "class='run'><td class='no'>29</td>" in page


def test_a_folder_of_a_cfg_and_a_uac_script_is_enough(make_scenario, tmp_path, capsys):
    folder = make_scenario("options", {"opensips.cfg": CFG,
                                       "scripts/uac.xml": DATA / "uac-options.xml"})
    assert main([str(tmp_path), "--logs", str(tmp_path / "logs")]) == 0
    assert capsys.readouterr().out.startswith("PASS options (")
    assert "OPTIONS" in (tmp_path / "logs" / folder.name / "proxy.log").read_text()


def test_require_after_starts_a_uac_when_the_other_has_ended(make_scenario, tmp_path):
    make_scenario("sequence", {
        "opensips.cfg": CFG, "options.xml": DATA / "uac-options.xml",
        "scenario.yml": "tasks:\n"
                        "  - {name: first, type: uac-sipp, config_file: options.xml}\n"
                        "  - name: second\n    type: uac-sipp\n    config_file: options.xml\n"
                        "    require:\n      after:\n        task: first\n        wait: 0.3\n"})
    assert main([str(tmp_path), "--logs", str(tmp_path / "logs")]) == 0
    first, second = (message_times(tmp_path / "logs" / "sequence" / f"{name}.messages.log")
                     for name in ("first", "second"))
    assert len(first) == len(second) == 2                # OPTIONS sent, 200 received
    assert (second[0] - first[-1]).total_seconds() >= 0.3


def message_times(path):
    """The timestamps SIPp's -trace_msg writes above each message."""
    return [datetime.fromisoformat(t) for t in
            re.findall(r"^-+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)$", path.read_text(), re.M)]


def test_a_scenario_that_cannot_run_is_a_failure_not_a_crash(make_scenario, tmp_path, capsys):
    make_scenario("db", {"opensips.cfg": CFG,
                         "scenario.yml": "tasks:\n  - {name: MySQL, type: mysql}\n"})
    assert main([str(tmp_path), "--logs", str(tmp_path / "logs")]) == 1
    out = capsys.readouterr().out
    assert "cannot run this scenario: " in out and "unsupported task type 'mysql'" in out
    assert out.endswith("0 passed, 1 failed in " + out.rsplit(" in ", 1)[1])
    assert main([str(tmp_path / "nothing-here")]) == 2


def test_a_call_stuck_waiting_is_stopped_and_explained(make_scenario, tmp_path, capsys):
    """SIPp's -timeout does not end a call waiting for a message: the runner stops it."""
    make_scenario("stuck", {
        "opensips.cfg": CFG, "uas.xml": DATA / "uas-waits-for-ack.xml",
        "uac.xml": DATA / "uac-invite-only.xml",
        "scenario.yml": "timeout: 1\ntasks:\n"
                        "  - {name: uas, type: uas-sipp, config_file: uas.xml}\n"
                        "  - {name: uac, type: uac-sipp, config_file: uac.xml}\n"})
    started = time.monotonic()
    assert main([str(tmp_path), "--logs", str(tmp_path / "logs")]) == 1
    assert time.monotonic() - started < 8
    out = capsys.readouterr().out
    assert "  uas still running 3s after the start (a call waiting for a message" in out
    assert "  uas (uas.xml): exit 97: exit on internal command, or the global -timeout" in out
    assert re.search(r"----------> ACK +0 ", out)       # the screen SIPp dumped on SIGUSR2

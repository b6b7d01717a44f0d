"""Reading scenario folders: defaults, scenario.yml keys, addresses (no processes)."""
from pathlib import Path

import pytest

from runtime.testing.addresses import Roles
from runtime.testing.scenario import ScenarioError, is_scenario_dir, load

ROLES = Roles("127.150.0.1", "127.150.0.2", "127.150.0.3")


def make(tmp_path, files):
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_a_two_file_folder(tmp_path):
    folder = make(tmp_path, {"opensips.cfg": "route { exit; }\n", "scripts/uac.xml": "<x/>"})
    assert is_scenario_dir(folder)
    scen = load(folder, ROLES)
    assert scen.cfg == folder / "opensips.cfg"
    assert scen.proxy_socket == "udp:127.150.0.1:5060"
    [uac] = scen.agents
    assert (uac.name, uac.role, uac.scen_file) == ("uac", "uac", folder / "scripts/uac.xml")
    assert (uac.ip, uac.port) == ("127.150.0.3", 5070)
    assert uac.proxy == ("127.150.0.1", 5060)
    assert uac.remote == ("127.150.0.1", 5060)      # no UAS: the proxy is the remote


def test_servers_start_first_and_clients_address_the_first_server(tmp_path):
    folder = make(tmp_path, {"opensips.cfg": "", "scripts/uac.xml": "", "scripts/uas.xml": "",
                             "scripts/uas-b.xml": "", "scripts/uac-2.xml": ""})
    scen = load(folder, ROLES)
    assert [(a.name, a.ip, a.port) for a in scen.agents] == [
        ("uas-b", "127.150.0.2", 5080), ("uas", "127.150.0.2", 5081),
        ("uac-2", "127.150.0.3", 5070), ("uac", "127.150.0.3", 5071)]
    assert {a.remote for a in scen.agents if a.role == "uac"} == {("127.150.0.2", 5080)}
    assert len({a.media_port for a in scen.agents if a.role == "uas"}) == 2


def test_a_folder_without_a_uac_is_not_a_scenario(tmp_path):
    folder = make(tmp_path, {"opensips.cfg": "", "scripts/uas.xml": ""})
    assert not is_scenario_dir(folder)
    with pytest.raises(ScenarioError, match="no scripts/uac"):
        load(folder, ROLES)


SCENARIO = """\
timeout: 12
tasks:
  - name: OpenSIPS
    type: opensips
    config_file: proxy.cfg
  - name: SIPP UAC
    type: uac-sipp
    config_file: scripts/call.xml
    username: {{ username }}
    password: secret
    caller: bob
    keys:
      domain: {{ proxy_ip }}
    calls: 3
    duration: 250
    require:
      - started:
          task: SIPP UAS
          wait: 0.5
      - after:
          task: OpenSIPS
          wait: 0.25
  - name: SIPP UAS
    type: uas-sipp
    username: {{ username }}
    port: {{ uas_port }}/UDP
"""


def test_scenario_yml(tmp_path):
    (tmp_path / "defines.yml").write_text("username: alice\n")      # the test set's
    folder = make(tmp_path / "01.call", {"proxy.cfg": "", "scripts/call.xml": "",
                                         "scenario.yml": SCENARIO})
    scen = load(folder, ROLES)
    assert scen.timeout == 12 and scen.cfg == folder / "proxy.cfg"
    uas, uac = scen.agents
    assert (uas.name, uas.scen_file, uas.service, uas.port) == ("SIPP UAS", None, "alice", 5080)
    assert uac.scen_file == folder / "scripts/call.xml"
    assert (uac.service, uac.username, uac.password) == ("alice", "alice", "secret")
    assert uac.keys == {"domain": "127.150.0.1", "caller": "bob"}
    assert (uac.calls, uac.duration, uac.wait, uac.after) == (3, 250, 0.75, [])
    assert uac.remote == ("127.150.0.2", 5080) and uac.proxy == ("127.150.0.1", 5060)


def test_after_a_sipp_task_waits_for_its_end(tmp_path):
    folder = make(tmp_path, {"opensips.cfg": "", "scenario.yml": """\
tasks:
  - name: Register
    type: uac-sipp
  - name: Unregister
    type: uac-sipp
    remote: 127.150.0.9
    require:
      after:
        task: Register
        wait: 1
"""})
    _, unregister = load(folder, ROLES).agents
    assert (unregister.after, unregister.wait) == (["Register"], 1.0)
    assert unregister.remote == ("127.150.0.9", 5060)


@pytest.mark.parametrize("yml, message", [
    ("tasks:\n  - name: DB\n    type: mysql\n", "unsupported task type 'mysql'"),
    ("tasks:\n  - name: A\n    type: uac-sipp\n    args: [-t, tn]\n",
     "task 'A': unsupported key(s): args"),
    ("tasks:\n  - name: A\n    type: uas-sipp\n    port: 5080/TCP\n", "only UDP"),
    ("tasks:\n  - name: A\n    type: uac-sipp\n    require: B\n", "requires 'B'"),
    ("tasks:\n  - name: A\n    type: uac-sipp\n    service: {{ nobody }}\n",
     "undefined variable {{ nobody }}"),
    ("volumes: []\n", "unsupported key(s): volumes"),
    ("tasks:\n  - name: A\n    type: uac-sipp\n    calls: unlimited\n",
     "A: calls: expected a number, got 'unlimited'"),
    ("tasks:\n  - name: A\n    type: uac-sipp\n    keys: [a]\n", "A: keys: expected a mapping"),
    ("tasks:\n  - name: P\n    type: opensips\n", "no uas-sipp or uac-sipp task"),
    ("tasks:\n  - name: A\n    type: uac-sipp\n  - name: A\n    type: uas-sipp\n",
     "two tasks named 'A'"),
    ("tasks:\n  - name: A\n    type: uac-sipp\n    config_file: none.xml\n", "none.xml not found"),
])
def test_what_is_not_supported_is_an_error(tmp_path, yml, message):
    folder = make(tmp_path, {"opensips.cfg": "", "scenario.yml": yml})
    with pytest.raises(ScenarioError) as e:
        load(folder, ROLES)
    assert message in str(e.value)


def test_the_stateless_sample_reads():
    sample = Path(__file__).resolve().parents[2] / "samples" / "stateless"
    names = [a.name for a in load(sample, ROLES).agents]
    assert names[0] == "uas" and set(names[1:]) >= {"uac"}

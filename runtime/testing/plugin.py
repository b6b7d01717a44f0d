"""pytest plugin (entry point `pytest11: cfgscript`): test routing scripts with SIPp.

Fixtures
    cfgscript_proxy(cfg, sockets=None, args=()) -> Proxy
        Start the proxy on a cfg (a path, or the script's text) with --trace. Default
        socket: udp on a fresh 127.x.y.z, port 5060. The Proxy has .address .port .sockets
        .pid .log (text so far) .log_path .traces(call_id) and .stop(). At teardown it is
        stopped with SIGTERM and must exit 0.
    sipp_scenario(proxy, uac=None, uas=None, **options) -> ScenarioResult
        Run a SIPp UAC (and UAS, unless uas=False) through pysipp against `proxy`, each on
        its own loopback address; None means SIPp's built-in uac/uas. Options: service,
        username, password, keys, calls, duration, timeout, check, uac_transport and
        uas_transport ("udp" or "tcp"). With check (the
        default) the test fails unless every agent exits 0, showing SIPp's error log and
        the script lines the failing call took.

Collection
    A folder with scenario.yml, or with opensips.cfg and scripts/uac*.xml, is one test
    item that runs like `cfgscript test` (see scenario.py).

Options
    --cfg-cov               script coverage of every proxy the tests start
    --cfg-cov-html DIR      where its HTML and JSON go (default htmlcov-cfg)
    --cfgscript-logs DIR    where scenario items keep their logs (default cfgscript-test-logs)
"""
from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from . import addresses, coverage
from .addresses import PROXY_PORT, UAC_PORT, UAS_PORT
from .execute import ScenarioResult, explain, run_scenario
from .proxy import Proxy
from .scenario import MEDIA_PORT, Agent, is_scenario_dir
from .sipp import run_agents

_COV_FILES = pytest.StashKey[list]()
_LOG_NAMES = pytest.StashKey[set]()


def pytest_addoption(parser):
    group = parser.getgroup("cfgscript", "cfgscript: SIPp scenarios and script coverage")
    group.addoption("--cfg-cov", action="store_true",
                    help="report which lines and if/switch branches of the cfg scripts ran")
    group.addoption("--cfg-cov-html", default="htmlcov-cfg", metavar="DIR",
                    help="where the script coverage HTML and JSON go (default htmlcov-cfg)")
    group.addoption("--cfgscript-logs", default="cfgscript-test-logs", metavar="DIR",
                    help="where scenario folders keep their logs, in DIR/<scenario>/ "
                         "(default cfgscript-test-logs)")


def pytest_configure(config):
    config.stash[_COV_FILES] = []
    config.stash[_LOG_NAMES] = set()


# --- fixtures ----------------------------------------------------------------------------

@pytest.fixture
def cfgscript_proxy(request, tmp_path):
    """Factory: cfgscript_proxy(cfg, sockets=None, args=()) -> a started Proxy."""
    started = []

    def start(cfg, sockets=None, args=()):
        n = len(started)
        if isinstance(cfg, str) and "\n" in cfg:
            path = tmp_path / f"opensips-{n}.cfg"
            path.write_text(cfg)
            cfg = path
        sockets = sockets or [f"udp:{addresses.allocate().proxy_ip}:{PROXY_PORT}"]
        cov_data = tmp_path / f"proxy-{n}.cov.json" if request.config.getoption("cfg_cov") \
            else None
        proxy = Proxy(cfg, sockets, tmp_path / f"proxy-{n}.log", args=args, cov_data=cov_data)
        proxy.start()
        started.append(proxy)
        return proxy

    yield start
    failures = []
    for proxy in started:
        rc = proxy.stop()
        if proxy.cov_data:
            request.config.stash[_COV_FILES].append(proxy.cov_data)
        if rc != 0:
            failures.append(f"the proxy on {proxy.cfg} exited with {rc}:\n"
                            + "\n".join(proxy.log.splitlines()[-20:]))
    if failures:
        pytest.fail("\n".join(failures), pytrace=False)


@pytest.fixture
def sipp_scenario(request, tmp_path):
    """Factory: sipp_scenario(proxy, uac=None, uas=None, **options) -> ScenarioResult."""
    counter = itertools.count()

    def run(proxy, uac=None, uas=None, *, service=None, username=None, password=None,
            keys=None, calls=1, duration=None, timeout=20.0, check=True, uac_transport="udp",
            uas_transport="udp"):
        roles = addresses.allocate()
        logdir = tmp_path / f"sipp-{next(counter)}"
        logdir.mkdir()
        common = dict(service=service, username=username, password=password,
                      keys=dict(keys or {}), calls=calls, duration=duration,
                      media_port=MEDIA_PORT)
        agents = []
        if uas is not False:
            agents.append(Agent("uas", "uas", _path(uas), roles.uas_ip, UAS_PORT,
                                transport=uas_transport, **common))
        remote = (roles.uas_ip, UAS_PORT) if agents else (proxy.address, proxy.port)
        agents.append(Agent("uac", "uac", _path(uac), roles.uac_ip, UAC_PORT,
                            transport=uac_transport, remote=remote,
                            proxy=(proxy.address, proxy.port), **common))
        folder = _path(uac).parent if uac else Path.cwd()     # SIPp's cwd, for pcap files
        results, note = run_agents(agents, logdir, timeout, folder)
        result = ScenarioResult(request.node.name, folder, logdir, agents=results,
                                passed=not note and all(a.ok for a in results), problem=note,
                                cfg=proxy.cfg, proxy_log=proxy.log_path)
        if not result.passed:
            result.report = explain(result)
            if check:
                pytest.fail(result.report, pytrace=False)
        return result

    return run


def _path(value):
    return Path(value).resolve() if value else None


# --- scenario folders as test items ------------------------------------------------------

def pytest_collect_file(file_path, parent):
    folder = file_path.parent
    if file_path.name == "scenario.yml" or (
            file_path.name == "opensips.cfg" and not (folder / "scenario.yml").exists()):
        if is_scenario_dir(folder):
            return ScenarioFile.from_parent(parent, path=file_path)
    return None


class ScenarioFile(pytest.File):
    def collect(self):
        yield ScenarioItem.from_parent(self, name=self.path.parent.name)


class ScenarioFailed(Exception):
    def __init__(self, result):
        super().__init__(result.report)
        self.result = result


class ScenarioItem(pytest.Item):
    """One scenario folder: passes iff every SIPp agent exits 0."""

    def runtest(self):
        config = self.config
        folder = self.path.parent
        names = config.stash[_LOG_NAMES]
        name = folder.name if folder.name not in names else f"{folder.parent.name}.{folder.name}"
        names.add(name)
        logdir = Path(config.rootpath, config.getoption("cfgscript_logs"), name)
        result = run_scenario(folder, logdir, coverage=config.getoption("cfg_cov"))
        if result.cov_data:
            config.stash[_COV_FILES].append(result.cov_data)
        if not result.passed:
            raise ScenarioFailed(result)

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, ScenarioFailed):
            return excinfo.value.result.report
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, None, f"scenario {self.path.parent.name}"


# --- coverage report ---------------------------------------------------------------------

def pytest_terminal_summary(terminalreporter, config):
    if not config.getoption("cfg_cov"):
        return
    files = coverage.merge(config.stash[_COV_FILES])
    terminalreporter.write_sep("-", "cfg script coverage")
    if not files:
        terminalreporter.write_line("no proxy ran with coverage")
        return
    terminalreporter.write(coverage.summary_text(files, config.rootpath))
    outdir = Path(config.rootpath, config.getoption("cfg_cov_html"))
    index = coverage.write_html(files, outdir, config.rootpath)
    terminalreporter.write_line(f"coverage report: {index}")

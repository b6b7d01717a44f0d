"""Run one scenario folder against the real proxy and explain a failure.

A scenario passes iff every SIPp agent exits 0. Its logs stay in its log folder:
proxy.log (with --trace lines), <agent>.messages.log / .errors.log / .screen.log /
.stderr.log, result.txt, and proxy.cov.json when coverage is on.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from . import addresses, scenario
from .proxy import Proxy, ProxyError, parse_traces
from .sipp import LOG_KINDS, AgentResult, run_agents

MAX_CALL_IDS = 3


@dataclass
class ScenarioResult:
    name: str
    path: Path
    logdir: Path
    passed: bool = False
    seconds: float = 0.0
    agents: list[AgentResult] = field(default_factory=list)
    proxy_returncode: int | None = None
    problem: str = ""                 # why it could not run, or a timeout note
    report: str = ""                  # the explanation of a failure
    cov_data: Path | None = None
    cfg: Path | None = None
    proxy_log: Path | None = None

    @property
    def status(self) -> str:
        return "PASS" if self.passed else "FAIL"


_LOG_FILES = ("proxy.log", "proxy.cov.json", "result.txt")


def run_scenario(path, logdir, *, coverage=False) -> ScenarioResult:
    """Start the proxy on the scenario's cfg, run its agents, stop the proxy."""
    started = time.monotonic()
    path, logdir = Path(path).resolve(), Path(logdir).resolve()
    logdir.mkdir(parents=True, exist_ok=True)
    result = ScenarioResult(path.name, path, logdir)
    try:
        scen = scenario.load(path, addresses.allocate())
        _clear_old_logs(logdir, scen)
        result.cfg, result.proxy_log = scen.cfg, logdir / "proxy.log"
        result.cov_data = logdir / "proxy.cov.json" if coverage else None
        proxy = Proxy(scen.cfg, [scen.proxy_socket], result.proxy_log,
                      cov_data=result.cov_data, cwd=scen.path).start()
        try:
            result.agents, result.problem = run_agents(scen.agents, logdir, scen.timeout,
                                                       scen.path)
        finally:
            result.proxy_returncode = proxy.stop()
    except scenario.ScenarioError as e:
        result.problem = f"cannot run this scenario: {e}"
    except (ProxyError, OSError) as e:
        result.problem = str(e)
    result.passed = (not result.problem and bool(result.agents)
                     and all(a.ok for a in result.agents))
    result.seconds = time.monotonic() - started
    result.report = "" if result.passed else explain(result)
    (logdir / "result.txt").write_text(f"{result.status} {result.name}\n{result.report}")
    return result


def _clear_old_logs(logdir, scen):
    """Remove what an earlier run left (SIPp writes an errors file only when it has some)."""
    names = list(_LOG_FILES)
    for agent in scen.agents:
        names += [f"{agent.name}.{kind}.log" for kind in LOG_KINDS]
    for name in names:
        (logdir / name).unlink(missing_ok=True)


def explain(result: ScenarioResult) -> str:
    """Why the scenario failed: SIPp's exit codes and words, and the script lines taken."""
    failing = [a for a in result.agents if not a.ok]
    out = [result.problem] if result.problem else []
    if failing:
        out.append("SIPp failed: " + ", ".join(
            f"{a.agent.name} exit {a.returncode}" for a in failing))
    for agent in result.agents:
        script = _script_name(agent.agent, result.path)
        out.append(f"{agent.agent.name} ({script}): exit {agent.returncode}: {agent.meaning}")
        if agent.ok:
            continue
        out += [f"  SIPp: {line}" for line in agent.errors()]
        table = agent.screen_table()
        if table:
            out.append("  where the calls stopped:")
            out += [f"    {row}" for row in table]
    call_ids = []
    for agent in failing:
        call_ids += [c for c in agent.failing_call_ids() if c not in call_ids]
    if call_ids:
        out += _script_path(result, call_ids[:MAX_CALL_IDS])
    if result.proxy_returncode not in (None, 0):
        out.append(f"the proxy exited with {result.proxy_returncode}")
    out.append(f"logs: {result.logdir}")
    return "\n".join(out)


def _script_name(agent, folder):
    if agent.scen_file is None:
        return f"built-in {agent.role}"
    try:
        return str(agent.scen_file.relative_to(folder))
    except ValueError:
        return str(agent.scen_file)


def _script_path(result, call_ids):
    try:
        log = result.proxy_log.read_text(errors="replace") if result.proxy_log else ""
    except OSError:
        log = ""
    out = []
    for call_id in call_ids:
        traces = parse_traces(log, call_id)
        if not traces:
            out.append(f"script lines for Call-ID {call_id}: none traced (no message of this "
                       "call reached the script)")
            continue
        out.append(f"script lines for Call-ID {call_id}:")
        for trace in traces:
            out.append(f"  {trace.method} in {trace.route}:")
            out += [f"    {name}:{line}: {_source_line(result.cfg, name, line)}"
                    for name, line in trace.positions]
    return out


def _source_line(cfg, name, line):
    if cfg is None:
        return ""
    path = cfg.parent / name
    try:
        return path.read_text(errors="replace").splitlines()[line - 1].strip()
    except (OSError, IndexError):
        return ""

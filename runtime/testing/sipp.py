"""Run a scenario's SIPp agents through pysipp, and say why one failed.

pysipp renders each agent's command line and runs them with its PopenRunner (which stops
the others with SIGUSR1 when one fails). Its runner starts agents 1/300 s apart with no
readiness check, so we give it a launcher that starts each agent when its `require` says
(after the agents it waits for have ended, `wait` seconds later) and holds the next one
until a UAS is bound (seen in /proc/net/udp). Every agent runs with SIPp's own -timeout;
as that does not end a call stuck waiting for a message, an agent still alive shortly
after it is stopped by pid (SIGUSR2 for its screen, SIGTERM, then SIGKILL).
"""
from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from . import pysipp_compat
from .addresses import bound_sockets
from .scenario import Agent

EXIT_MEANINGS = {
    0: "all calls were successful",
    1: "at least one call failed (or, SIPp 3.6, a bad scenario file or option)",
    97: "exit on internal command, or the global -timeout expired",
    99: "normal exit without any call processed",
    253: "RTP check failed",
    254: "fatal error binding a socket",
    255: "fatal error",
}
_NOISE = ("Failed to delete FD from epoll", "Resolving remote host", "There were more errors")
_EVENT = re.compile(r"^\d{4}-\d\d-\d\d\t[\d:.]+\t[\d.]+: ", re.M)
_CALL_ID = re.compile(r"Call-I[dD]\s*'([^']+)'|^(?:Call-ID|i)\s*:\s*(\S+)", re.M | re.I)
READY_TIMEOUT = 2.0
GRACE = 2.0          # seconds past SIPp's own -timeout before we stop an agent
LOG_KINDS = ("messages", "errors", "screen", "actions", "stderr")   # <agent>.<kind>.log


def exit_meaning(rc) -> str:
    if rc is None:
        return "not started"
    if rc < 0:
        return f"killed by signal {signal.Signals(-rc).name}"
    return EXIT_MEANINGS.get(rc, "unknown exit code")


@dataclass
class AgentResult:
    agent: Agent
    returncode: int | None
    command: str
    files: dict[str, Path]           # messages, errors, screen, actions, stderr

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def meaning(self) -> str:
        return exit_meaning(self.returncode)

    def read(self, kind) -> str:
        try:
            return self.files[kind].read_text(errors="replace")
        except (KeyError, FileNotFoundError):
            return ""

    def errors(self) -> list[str]:
        """SIPp's own words: the error log's events and stderr, one line each, no noise."""
        events = [e.strip() for e in _EVENT.split(self.read("errors"))[1:]]
        lines = [e.splitlines()[0] for e in events if e]
        lines += [ln for ln in (_EVENT.sub("", x) for x in self.read("stderr").splitlines())
                  if ln.strip()]
        unique = []
        for line in lines:
            if not line.startswith(_NOISE) and line not in unique:
                unique.append(line)
        return unique

    def screen_table(self) -> list[str]:
        """The message table of the last scenario screen (where the calls stopped)."""
        screen = self.read("screen").split("Scenario Screen")
        if len(screen) < 2:
            return []
        rows, inside = [], False
        for line in screen[-1].splitlines():
            if "Messages  Retrans" in line:
                inside = True
            elif inside and (not line.strip() or line.startswith(("Last Error", "----"))):
                break
            if inside:
                rows.append(line.rstrip())
        return rows

    def call_ids(self) -> list[str]:
        """Every Call-ID in the agent's message trace."""
        return _call_ids(self.read("messages"))

    def failing_call_ids(self) -> list[str]:
        """Call-IDs named in SIPp's error log, else every Call-ID the agent traced."""
        return _call_ids(self.read("errors")) or self.call_ids()


def _call_ids(text):
    ids = []
    for m in _CALL_ID.finditer(text):
        cid = m.group(1) or m.group(2)
        if cid not in ids:
            ids.append(cid)
    return ids


class _Launcher:
    """A `subprocess` stand-in for pysipp's PopenRunner: starts agents when they may start."""
    PIPE = subprocess.PIPE

    def __init__(self, agents, cwd, deadline):
        self.agents, self.cwd, self.deadline = agents, cwd, deadline
        self.procs: dict[str, subprocess.Popen] = {}

    def Popen(self, argv, stdout, stderr):  # noqa: N802 - the name pysipp calls
        agent = self.agents[len(self.procs)]
        for name in agent.after:
            try:
                self.procs[name].wait(max(0.0, self.deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        time.sleep(agent.wait)
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                                cwd=self.cwd)
        self.procs[agent.name] = proc
        if agent.role == "uas":
            ready_by = time.monotonic() + READY_TIMEOUT
            while (proc.poll() is None and time.monotonic() < ready_by
                   and (agent.ip, agent.port) not in bound_sockets()):
                time.sleep(0.01)
        return proc


def _user_agent(pysipp, agent: Agent, logdir: Path, timeout: float):
    files = {kind: logdir / f"{agent.name}.{kind}.log" for kind in LOG_KINDS}
    kw = dict(local_host=agent.ip, local_port=agent.port,
              media_addr=agent.ip, media_port=agent.media_port,
              call_count=agent.calls, timeout=f"{int(timeout)}s",
              message_file=str(files["messages"]), error_file=str(files["errors"]),
              screen_file=str(files["screen"]), log_file=str(files["actions"]),
              trace_message=True, trace_error=True)
    if agent.scen_file:
        kw["scen_file"] = str(agent.scen_file)
    else:
        kw["scen_name"] = agent.role
    if agent.transport != "udp":
        kw["transport"] = {"tcp": "t1"}[agent.transport]
    optional = dict(uri_username=agent.service, auth_username=agent.username,
                    auth_password=agent.password, pause_duration=agent.duration,
                    key_vals=agent.keys or None, destaddr=agent.remote,
                    proxyaddr=agent.proxy)
    kw.update({k: v for k, v in optional.items() if v is not None})
    return pysipp.agent.ua(**kw), files


def run_agents(agents: list[Agent], logdir, timeout: float, cwd) -> tuple[list[AgentResult], str]:
    """Run `agents` (in order) to completion; returns their results and a note on overtime."""
    if shutil.which("sipp") is None:
        raise FileNotFoundError("sipp is not installed (Debian: apt-get install sip-tester)")
    pysipp = pysipp_compat.load()
    logdir = Path(logdir)
    built = [_user_agent(pysipp, a, logdir, timeout) for a in agents]
    scen = pysipp.agent.Scenario(
        [ua for ua, _ in built],
        defaults=dict(rate=None, limit=None, recv_timeout=None, call_count=None,
                      logdir=str(logdir)))
    commands = [ua.render() for ua in scen.prepare()]
    deadline = time.monotonic() + timeout
    launcher = _Launcher(agents, str(cwd), deadline)
    runner = pysipp.launch.PopenRunner(subprocmod=launcher)
    overtime = []
    try:
        finalize = scen(block=False, runner=runner)
        overtime = _stop_overtime(launcher.procs, deadline + GRACE)
        finalize(timeout=GRACE, raise_exc=True)
    except pysipp.SIPpFailure:
        pass                                  # the exit codes tell
    finally:
        for proc in launcher.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    results = []
    for agent, command, (_, files) in zip(agents, commands, built):
        proc = launcher.procs.get(agent.name)
        streams = getattr(proc, "streams", None)
        if streams and streams.stderr:
            files["stderr"].write_bytes(streams.stderr)
        results.append(AgentResult(agent, proc.returncode if proc else None, command, files))
    note = ""
    if overtime:
        note = (f"{', '.join(overtime)} still running {timeout + GRACE:.0f}s after the start "
                "(a call waiting for a message that never came: SIPp's -timeout does not end "
                "it); stopped with SIGTERM")
    return results, note


def _stop_overtime(procs, deadline) -> list[str]:
    """Wait for the agents until `deadline`; stop the others (screen dumped first)."""
    overtime = []
    for name, proc in procs.items():
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            overtime.append(name)
            proc.send_signal(signal.SIGUSR2)  # SIPp writes its screen file
            time.sleep(0.3)
            proc.terminate()
            try:
                proc.wait(GRACE)
            except subprocess.TimeoutExpired:
                proc.kill()
    return overtime

"""The proxy under test: `cfgscript -f CFG -l ... --trace` as a child process."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

_TRACE = re.compile(r"NOTICE:trace: trace (\S+) (\S+): (\S+): (.*)$")


class ProxyError(Exception):
    """The proxy did not start."""


@dataclass
class Trace:
    """The script lines one message took through one route."""
    method: str
    call_id: str
    route: str
    positions: list[tuple[str, int]]     # (file name, line)


class Proxy:
    """A running cfgscript proxy; its stderr goes to `log_path`."""

    def __init__(self, cfg, sockets, log_path, *, trace=True, cov_data=None, args=(),
                 cwd=None):
        self.cfg = Path(cfg).resolve()
        self.sockets = list(sockets)
        self.log_path = Path(log_path)
        self.cov_data = Path(cov_data) if cov_data else None
        cmd = [sys.executable, "-m", "runtime.cli", "-f", str(self.cfg)]
        for sock in self.sockets:
            cmd += ["-l", sock]
        if trace:
            cmd.append("--trace")
        if self.cov_data:
            cmd += ["--cov-data", str(self.cov_data)]
        self.cmd = cmd + list(args)
        self.cwd = cwd or self.cfg.parent
        self.process = None
        self.returncode = None

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def address(self) -> str:
        """The IP of the first socket."""
        return self.sockets[0].split(":")[1]

    @property
    def port(self) -> int:
        """The port of the first socket."""
        return int(self.sockets[0].split(":")[2])

    @property
    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def start(self, timeout=15.0) -> "Proxy":
        """Start it and wait for a `listening on` line per socket."""
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=log, cwd=self.cwd)
        deadline = time.monotonic() + timeout
        while True:
            text = self.log
            if all(f"listening on {s}" in text for s in self.sockets):
                return self
            if self.process.poll() is not None:
                self.returncode = self.process.returncode
                raise ProxyError(f"the proxy exited with {self.returncode} before it was "
                                 f"ready:\n{_tail(text)}")
            if time.monotonic() > deadline:
                self.kill()
                raise ProxyError(f"the proxy was not listening on {', '.join(self.sockets)} "
                                 f"after {timeout:.0f}s:\n{_tail(text)}")
            time.sleep(0.05)

    def stop(self, timeout=10.0) -> int:
        """SIGTERM, then wait; SIGKILL after `timeout`. Returns the exit code."""
        if self.returncode is not None:
            return self.returncode
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self.returncode = self.process.returncode
        return self.returncode

    def kill(self):
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.returncode = self.process.returncode

    def traces(self, call_id=None) -> list[Trace]:
        """The --trace lines of the log (of one Call-ID), in order."""
        return parse_traces(self.log, call_id)


def parse_traces(log: str, call_id=None) -> list[Trace]:
    out = []
    for line in log.splitlines():
        m = _TRACE.search(line)
        if m and (call_id is None or m.group(2) == call_id):
            positions = []
            for pos in m.group(4).split():
                name, _, number = pos.rpartition(":")
                positions.append((name, int(number)))
            out.append(Trace(m.group(1), m.group(2), m.group(3), positions))
    return out


def _tail(text, lines=20):
    return "\n".join(text.splitlines()[-lines:])

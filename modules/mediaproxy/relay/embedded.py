"""Run the dispatcher + relay as a child process (``python -m modules.mediaproxy.relay``).

    handle = start("/tmp/mp.sock", port_range=(40000, 40100))
    ...
    handle.stop()

The child is a separate process because the module's client blocks (as in
OpenSIPS) while the relay must keep forwarding media.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time


class EmbeddedRelay:
    """A running child; ``stop()`` sends SIGTERM and returns its exit status."""

    def __init__(self, process: subprocess.Popen, socket_path: str):
        self.process = process
        self.pid = process.pid
        self.socket_path = socket_path

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start(socket_path: str, *, port_range=(40000, 60000), listen_ip: str = "127.0.0.1",
          advertised_ip: str | None = None, routable_private: bool = False,
          routable_ranges=(), relay_listen: str | None = None, management: str | None = None,
          local_relay: bool = True, stream_timeout: float | None = None,
          on_hold_timeout: float | None = None, idle_timeout: float | None = None,
          mi_socket: str | None = None, log_level: str = "INFO", stderr=None,
          extra_args=(), ready_timeout: float = 10.0) -> EmbeddedRelay:
    """Start the dispatcher (+ relay on ``listen_ip``) and wait until ``socket_path`` accepts.

    ``relay_listen``/``management`` are ``"host:port"`` strings (off when None);
    ``stderr`` is where the child logs (inherited when None).  Raises RuntimeError
    if the child exits or does not accept connections within ``ready_timeout``.
    """
    socket_path = os.path.abspath(socket_path)
    args = [sys.executable, "-m", "modules.mediaproxy.relay", "--socket", socket_path,
            "--relay-ip", listen_ip, "--port-range", "%d:%d" % tuple(port_range),
            "--log-level", log_level]
    options = {"--advertised-ip": advertised_ip, "--listen": relay_listen,
               "--management": management, "--stream-timeout": stream_timeout,
               "--on-hold-timeout": on_hold_timeout, "--idle-timeout": idle_timeout,
               "--mi-socket": mi_socket,
               "--routable-private-ranges": ",".join(routable_ranges) or None}
    for flag, value in options.items():
        if value is not None:
            args += [flag, str(value)]
    if routable_private:
        args.append("--routable-private")
    if not local_relay:
        args.append("--no-local-relay")
    args += list(extra_args)
    process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stderr=stderr)
    handle = EmbeddedRelay(process, socket_path)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("mediaproxy dispatcher exited with status %d" % process.returncode)
        if answers(socket_path):
            return handle
        time.sleep(0.02)
    handle.stop()
    raise RuntimeError("mediaproxy dispatcher did not open %s within %g s"
                       % (socket_path, ready_timeout))


def answers(path: str) -> bool:
    """Whether something listens on the UNIX stream socket `path`."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(path)
        except OSError:
            return False
    return True

"""Real media daemons for the rtpengine and rtpproxy module tests, each on its own loopback
address: Sipwise rtpengine (Debian's rtpengine-daemon, userspace only) and RTPProxy (the
`rtp.io` package from PyPI runs Sippy's rtpproxy inside a Python process)."""
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from runtime.testing import addresses

RTPENGINE = shutil.which("rtpengine")


class Daemon:
    def __init__(self, process, ip, port, log_path, ports):
        self.process = process
        self.ip = ip
        self.port = port
        self.log_path = log_path
        self.ports = ports            # (min, max) media ports

    @property
    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _wait_for(probe, process, log_path, what, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}:\n"
                               + log_path.read_text(errors="replace")[-3000:])
        if probe():
            return
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{what} did not answer in {timeout}s:\n"
                       + log_path.read_text(errors="replace")[-3000:])


def udp_exchange(ip, port, data: bytes, timeout=0.5) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.sendto(data, (ip, port))
            return s.recv(65536)
        except OSError:
            return None


@pytest.fixture
def rtpengine_daemon(tmp_path):
    """Start `rtpengine` (userspace, --table=-1) on a fresh loopback address."""
    if RTPENGINE is None:
        pytest.skip("rtpengine is not installed (apt-get install -y rtpengine-daemon)")
    ip = addresses.allocate().proxy_ip
    port, ports = 22222, (30000, 30999)
    log_path = tmp_path / "rtpengine.log"
    cmd = [RTPENGINE, "--table=-1", f"--interface={ip}", f"--listen-ng={ip}:{port}",
           "--foreground", "--log-stderr", "--log-level=6", f"--port-min={ports[0]}",
           f"--port-max={ports[1]}", "--config-file=none", "--delete-delay=0"]
    with open(log_path, "w") as log:
        process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    _wait_for(lambda: udp_exchange(ip, port, b"1 d7:command4:pinge") == b"1 d6:result4:ponge",
              process, log_path, "rtpengine")
    daemon = Daemon(process, ip, port, log_path, ports)
    yield daemon
    daemon.stop()


RTPIO_SCRIPT = """
import signal, sys
from rtp.io import rtpproxy
ip, port, lo, hi = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
r = rtpproxy(port_min=lo, port_max=hi, debug_level="info",
             extra_args=["-F", "-l", ip, "-s", "udp:%s:%s" % (ip, port)])
print("rtpproxy ready", flush=True)
signal.sigwait([signal.SIGTERM, signal.SIGINT])
"""


def rtpio_available() -> bool:
    try:
        import rtp.io  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture
def rtpproxy_daemon(tmp_path):
    """Start Sippy's RTPProxy (through the rtp.io package) on a fresh loopback address,
    with its UDP control socket."""
    if not rtpio_available():
        pytest.skip("RTPProxy is not available: Debian has no rtpproxy package; "
                    "pip install rtp.io (Sippy's RTPProxy in a Python module)")
    ip = addresses.allocate().proxy_ip
    port, ports = 22222, (31000, 31999)
    log_path = tmp_path / "rtpproxy.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "-c", RTPIO_SCRIPT, ip, str(port),
                                    str(ports[0]), str(ports[1])],
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    _wait_for(lambda: (udp_exchange(ip, port, b"c1 V") or b"").startswith(b"c1 2004"),
              process, log_path, "rtpproxy")
    daemon = Daemon(process, ip, port, log_path, ports)
    yield daemon
    daemon.stop()

"""A proxy with the MI transports loaded, and the clients OpenSIPS users have: opensips-cli
over the FIFO, the `opensips` package's OpenSIPSMI over FIFO, HTTP and datagram."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from runtime.testing import addresses
from runtime.testing.addresses import PROXY_PORT

MI_MODULES = """
loadmodule "mi_fifo.so"
modparam("mi_fifo", "fifo_name", "{fifo}")
modparam("mi_fifo", "fifo_mode", 0600)
modparam("mi_fifo", "reply_dir", "{reply_dir}")
loadmodule "httpd.so"
modparam("httpd", "ip", "{ip}")
modparam("httpd", "port", {http_port})
loadmodule "mi_http.so"
"""


def opensips_cli() -> str:
    exe = Path(sys.executable).with_name("opensips-cli")
    found = str(exe) if exe.exists() else shutil.which("opensips-cli")
    if not found:
        pytest.skip("opensips-cli is not installed (pip install opensipscli)")
    return found


@dataclass
class MIProxy:
    proxy: object
    fifo: Path
    reply_dir: Path
    url: str
    home: Path

    def cli(self, *args, check=True, timeout=30):
        """`opensips-cli -x <args>` against this proxy's FIFO: (returncode, stdout, stderr)."""
        cmd = [opensips_cli(), "-o", f"fifo_file={self.fifo}",
               "-o", f"fifo_reply_dir={self.reply_dir}", "-x", *args]
        env = dict(os.environ, HOME=str(self.home))
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                             cwd=self.home)
        if check:
            assert res.returncode == 0, (res.stdout, res.stderr, self.proxy.log[-3000:])
        return res

    def fifo_mi(self):
        from opensips.mi import OpenSIPSMI
        return OpenSIPSMI("fifo", fifo_file=str(self.fifo), fifo_reply_dir=str(self.reply_dir))

    def http_mi(self):
        from opensips.mi import OpenSIPSMI
        return OpenSIPSMI("http", url=self.url)


def _wait_ready(proxy, fifo, http, timeout=10.0):
    """The MI transports start right after the SIP sockets: wait for the FIFO and httpd."""
    import socket
    import stat
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if stat.S_ISFIFO(os.stat(fifo).st_mode):
                with socket.create_connection(http, timeout=1):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError("the MI transports did not start:\n" + proxy.log[-3000:])


def free_tcp_port(ip: str) -> int:
    import socket
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


@pytest.fixture
def mi_proxy(cfgscript_proxy, tmp_path):
    """mi_proxy(script) -> MIProxy: the script with mi_fifo, httpd and mi_http appended to
    its module lines (put `{mi}` where they go), on fresh loopback addresses."""
    pytest.importorskip("opensips")

    def start(script: str, extra_args=()):
        roles = addresses.allocate()
        fifo = tmp_path / "opensips_fifo"
        reply_dir = tmp_path / "replies"
        reply_dir.mkdir(exist_ok=True)
        home = tmp_path / "home"
        home.mkdir(exist_ok=True)
        port = free_tcp_port(roles.proxy_ip)
        mi = MI_MODULES.format(fifo=fifo, reply_dir=reply_dir, ip=roles.proxy_ip,
                               http_port=port)
        cfg = script.replace("{mi}", mi) if "{mi}" in script else script + mi
        proxy = cfgscript_proxy(cfg, sockets=[f"udp:{roles.proxy_ip}:{PROXY_PORT}"],
                                args=tuple(extra_args))
        _wait_ready(proxy, fifo, (roles.proxy_ip, port))
        return MIProxy(proxy, fifo, reply_dir, f"http://{roles.proxy_ip}:{port}/mi", home)

    return start

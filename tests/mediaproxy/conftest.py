"""Real dispatcher/relay processes, real UNIX and UDP sockets on 127.0.0.x."""

import subprocess
import sys

import pytest

from modules.mediaproxy.relay import embedded
from tests.mediaproxy.mp_helpers import Dispatch, port_range


@pytest.fixture
def start_dispatcher(tmp_path):
    """start_dispatcher(**embedded.start kwargs) -> (handle, Dispatch, log path)."""
    handles, clients = [], []

    def start(**kwargs):
        path = str(tmp_path / ("d%d.sock" % len(handles)))
        log_path = tmp_path / ("d%d.log" % len(handles))
        kwargs.setdefault("port_range", port_range())
        kwargs.setdefault("log_level", "DEBUG")
        with open(log_path, "w") as log:
            handle = embedded.start(path, stderr=log, **kwargs)
        handles.append(handle)
        client = Dispatch(path)
        clients.append(client)
        return handle, client, log_path

    yield start
    for client in clients:
        client.close()
    for handle in handles:
        assert handle.stop() == 0


@pytest.fixture
def start_relay(tmp_path):
    """start_relay(relay_ip, dispatcher "host:port", *args) -> Popen of cfgscript-relay."""
    processes = []

    def start(relay_ip, dispatcher, *args):
        log = open(tmp_path / ("relay-%s.log" % relay_ip), "w")
        lo, hi = port_range()
        process = subprocess.Popen(
            [sys.executable, "-m", "modules.mediaproxy.relay.cli", "--relay-ip", relay_ip,
             "--dispatcher", dispatcher, "--port-range", "%d:%d" % (lo, hi),
             "--reconnect-delay", "0.2", "--log-level", "DEBUG", *args],
            stdin=subprocess.DEVNULL, stderr=log)
        processes.append((process, log))
        return process

    yield start
    for process, log in processes:
        if process.poll() is None:
            process.terminate()
            assert process.wait(10) == 0
        log.close()

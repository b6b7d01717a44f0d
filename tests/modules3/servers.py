"""Real peers for the cachedb, rest_client and MI tests, each on loopback with a free port:
redis-server and memcached (Debian's packages; a test is skipped with the reason when the
binary is absent) and a small HTTP server in a thread. Every process started here is
stopped by the one who started it (its pid, never a name)."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


def free_port(ip="127.0.0.1", kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def _wait_port(ip, port, proc, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            with socket.create_connection((ip, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {ip}:{port} after {timeout}s")


class ServerProcess:
    def __init__(self, name, cmd, ip, port, log_path):
        self.name = name
        self.ip = ip
        self.port = port
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        try:
            _wait_port(ip, port, self.proc)
        except RuntimeError as e:
            self.stop()
            raise RuntimeError(f"{name} did not start: {e}\n{self.log()}") from None

    def log(self) -> str:
        try:
            return open(self.log_path, errors="replace").read()[-3000:]
        except OSError:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


def need(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} is not installed (apt-get install -y "
                    f"{'redis-server' if 'redis' in binary else binary})")
    return path


@contextmanager
def redis_server(tmp_path, ip="127.0.0.1", password=None):
    exe = need("redis-server")
    port = free_port(ip)
    cmd = [exe, "--port", str(port), "--bind", ip, "--save", "", "--appendonly", "no",
           "--dir", str(tmp_path), "--daemonize", "no", "--protected-mode", "no"]
    if password:
        cmd += ["--requirepass", password]
    srv = ServerProcess("redis-server", cmd, ip, port, tmp_path / f"redis-{port}.log")
    try:
        yield srv
    finally:
        srv.stop()


@contextmanager
def memcached_server(tmp_path, ip="127.0.0.1"):
    exe = need("memcached")
    port = free_port(ip)
    cmd = [exe, "-l", ip, "-p", str(port), "-U", "0"]
    if os.geteuid() == 0:
        cmd += ["-u", "nobody"]          # memcached will not run as root otherwise
    srv = ServerProcess("memcached", cmd, ip, port, tmp_path / f"memcached-{port}.log")
    try:
        yield srv
    finally:
        srv.stop()


# --- HTTP ----------------------------------------------------------------------------------

class Recorded:
    """What the HTTP peer saw: one dict per request."""

    def __init__(self):
        self.requests = []
        self.lock = threading.Lock()

    def add(self, r):
        with self.lock:
            self.requests.append(r)

    def last(self):
        with self.lock:
            return self.requests[-1] if self.requests else None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "test-peer"

    def log_message(self, *args):
        pass

    def _handle(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        rec = {"method": self.command, "path": self.path, "headers": dict(self.headers.items()),
               "body": body}
        self.server.recorded.add(rec)
        route = self.server.routes.get(self.path.split("?")[0])
        if route is None:
            status, ctype, payload, delay = 404, "text/plain", b"no such page\n", 0
        else:
            status, ctype, payload, delay = route(rec)
        if delay > 0:
            time.sleep(delay)
        if isinstance(payload, (dict, list)):
            payload = json.dumps(payload).encode()
        elif isinstance(payload, str):
            payload = payload.encode()
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        try:
            if delay < 0:                   # stall in the middle of the body
                self.wfile.write(payload[:len(payload) // 2])
                self.wfile.flush()
                time.sleep(-delay)
                self.wfile.write(payload[len(payload) // 2:])
            else:
                self.wfile.write(payload)
        except OSError:
            pass

    do_GET = do_POST = do_PUT = do_DELETE = _handle


@contextmanager
def http_server(routes, ip="127.0.0.1"):
    """A threaded HTTP server: routes maps a path to fn(request) -> (status, content type,
    body, delay seconds: before the reply, or when negative, after half of the body).
    Yields (base URL, Recorded)."""
    srv = ThreadingHTTPServer((ip, 0), _Handler)
    srv.daemon_threads = True
    srv.routes = routes
    srv.recorded = Recorded()
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True)
    t.start()
    try:
        yield f"http://{ip}:{srv.server_address[1]}", srv.recorded
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(5)

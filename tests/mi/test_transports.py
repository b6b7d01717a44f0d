"""The MI over FIFO (opensips-cli), HTTP (OpenSIPSMI), datagram, and statistics for
Prometheus, against the real proxy process."""
import json
import os
import re
import socket
import time
import urllib.error
import urllib.request

import pytest

BASE = """
log_level=3
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "sipmsgops.so"
{mi}
route {
    sl_send_reply(404, "Not Here");
}
"""

OPTIONS = ("OPTIONS sip:nobody@{ip} SIP/2.0\r\n"
           "Via: SIP/2.0/UDP {me};branch=z9hG4bK-{n}\r\n"
           "From: <sip:test@{ip}>;tag={n}\r\nTo: <sip:nobody@{ip}>\r\n"
           "Call-ID: mi-{n}@test\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
           "Content-Length: 0\r\n\r\n")


def send_options(proxy, count=1):
    """Real requests on the proxy's socket; wait for each 404."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((proxy.address, 0))
        s.settimeout(5)
        me = "%s:%d" % s.getsockname()
        for n in range(count):
            s.sendto(OPTIONS.format(ip=proxy.address, me=me, n=n).encode(),
                     (proxy.address, proxy.port))
            assert s.recv(65535).startswith(b"SIP/2.0 404")


def fifo_raw(mi, text: bytes, timeout=10.0) -> str:
    """Write `:<reply fifo>:<text>` into the FIFO as a client does; read the reply."""
    name = f"raw_reply_{os.getpid()}_{time.monotonic_ns()}"
    path = mi.reply_dir / name
    os.mkfifo(path, 0o600)
    try:
        with open(mi.fifo, "wb") as f:
            f.write(b":" + name.encode() + b":" + text)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        data, deadline = b"", time.monotonic() + timeout
        opened = False
        while time.monotonic() < deadline:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                time.sleep(0.02)
                continue
            if chunk:
                data += chunk
                opened = True
            elif opened or data:
                break
            else:
                time.sleep(0.02)      # no writer yet
        os.close(fd)
        return data.decode()
    finally:
        path.unlink()


def http_post(url, body: bytes, method="POST"):
    req = urllib.request.Request(url, data=body if method == "POST" else None, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


# --- opensips-cli over the FIFO -------------------------------------------------------------

def test_opensips_cli_mi_ps(mi_proxy):
    mi = mi_proxy(BASE)
    procs = json.loads(mi.cli("mi", "ps").stdout)["Processes"]
    assert [p["ID"] for p in procs] == list(range(len(procs)))
    assert {p["PID"] for p in procs} == {mi.proxy.pid}
    types = [p["Type"] for p in procs]
    assert types[0] == "attendant"
    assert f"SIP receiver udp:{mi.proxy.address}:{mi.proxy.port}" in types
    assert "MI FIFO" in types and any(t.startswith("HTTPD ") for t in types)


def test_opensips_cli_mi_uptime(mi_proxy):
    mi = mi_proxy(BASE)
    up = json.loads(mi.cli("mi", "uptime").stdout)
    assert set(up) == {"Now", "Up since", "Up time"}
    assert re.fullmatch(r"\d+ \[sec\]", up["Up time"])
    fmt = "%a %b %d %H:%M:%S %Y"
    since = time.mktime(time.strptime(up["Up since"], fmt))
    now = time.mktime(time.strptime(up["Now"], fmt))
    assert 0 <= now - since <= 60 and abs(now - time.time()) < 5


def test_opensips_cli_mi_get_statistics_all(mi_proxy):
    mi = mi_proxy(BASE)
    send_options(mi.proxy, 3)
    stats = json.loads(mi.cli("mi", "get_statistics", "all").stdout)
    assert stats["core:rcv_requests"] == 3
    assert stats["sl:4xx_replies"] == 3 and stats["sl:sent_replies"] == 3
    for name in ("core:fwd_requests", "core:drop_requests", "core:err_requests",
                 "tm:UAS_transactions", "tm:inuse_transactions", "sl:1xx_replies"):
        assert name in stats
    assert json.loads(mi.cli("mi", "get_statistics", "sl:", "rcv_requests").stdout) == {
        **{k: v for k, v in stats.items() if k.startswith("sl:")}, "core:rcv_requests": 3}

    # reset_statistics: incremental stats go back to 0, gauges stay
    assert json.loads(mi.cli("mi", "reset_statistics", "rcv_requests").stdout) == "OK"
    after = json.loads(mi.cli("mi", "get_statistics", "core:").stdout)
    assert after["core:rcv_requests"] == 0
    kinds = json.loads(mi.cli("mi", "list_statistics").stdout)
    assert kinds["core:rcv_requests"] == "incremental"
    assert kinds["tm:inuse_transactions"] == "non-incremental"


def test_opensips_cli_errors(mi_proxy):
    mi = mi_proxy(BASE)
    res = mi.cli("mi", "get_statistics", "no_such_stat", check=False)
    assert "404: Statistics Not Found" in res.stderr
    res = mi.cli("mi", "log_level", "x", check=False)
    assert "-32602: Invalid params (Bad type for parameter 'level')" in res.stderr


def test_log_level_and_which(mi_proxy):
    mi = mi_proxy(BASE)
    fifo = mi.fifo_mi()
    assert fifo.execute("log_level", {"level": 4}) == {"New global log level": 4}
    levels = fifo.execute("log_level")["Processes"]
    assert {p["Log level"] for p in levels} == {4}
    assert fifo.execute("log_level", [2, mi.proxy.pid]) == {"Log level": 2}
    names = fifo.execute("which")
    for name in ("ps", "uptime", "version", "which", "log_level", "get_statistics",
                 "list_statistics", "reset_statistics", "reload_routes"):
        assert name in names
    assert fifo.execute("which", ["log_level"]) == [[], ["level"], ["level", "pid"]]


# --- malformed JSON-RPC: errors, never a crash ----------------------------------------------

def test_malformed_requests_over_the_fifo(mi_proxy):
    mi = mi_proxy(BASE)
    cases = [
        (b"{nope", {"code": -32700, "message": "Parse error"}, None),
        (b'{"jsonrpc":"2.0","method":"ps","id":1', {"code": -32700, "message": "Parse error"},
         None),                                           # cut short: answered after a wait
        (b'[{"jsonrpc":"2.0","method":"ps","id":1}]',
         {"code": -32600, "message": "Invalid Request"}, None),
        (b'{"jsonrpc":"1.0","method":"ps","id":5}',
         {"code": -32600, "message": "Invalid Request"}, 5),
        (b'{"jsonrpc":"2.0","method":7,"id":"x"}',
         {"code": -32600, "message": "Invalid Request"}, "x"),
        (b'{"jsonrpc":"2.0","method":"ps","params":"all","id":"x"}',
         {"code": -32600, "message": "Invalid Request"}, "x"),
        (b'{"jsonrpc":"2.0","method":"no_such_command","id":2}',
         {"code": -32601, "message": "Method not found"}, 2),
        (b'{"jsonrpc":"2.0","method":"ps","params":[1],"id":3}',
         {"code": -32602, "message": "Invalid params", "data": "Too few or too many parameters"},
         3),
        (b'{"jsonrpc":"2.0","method":"log_level","params":{"lvl":1},"id":4}',
         {"code": -32602, "message": "Invalid params", "data": "Named parameters do not match"},
         4),
        (b'\xff\xfe{"jsonrpc"', {"code": -32700, "message": "Parse error"}, None),
    ]
    for text, error, rid in cases:
        reply = json.loads(fifo_raw(mi, text))
        assert reply == {"jsonrpc": "2.0", "error": error, "id": rid}, text
    # a notification (no id) gets no reply: the reply FIFO is closed empty
    assert fifo_raw(mi, b'{"jsonrpc":"2.0","method":"ps"}') == ""
    assert json.loads(mi.cli("mi", "ps").stdout)["Processes"]
    assert mi.proxy.process.poll() is None


def test_malformed_requests_over_http(mi_proxy):
    mi = mi_proxy(BASE)
    status, body = http_post(mi.url, b"{not json")
    assert status == 200
    assert json.loads(body) == {"jsonrpc": "2.0", "id": None,
                                "error": {"code": -32700, "message": "Parse error"}}
    status, body = http_post(mi.url, b'{"jsonrpc":"2.0","method":"nope","id":"a"}')
    assert json.loads(body)["error"] == {"code": -32601, "message": "Method not found"}
    assert http_post(mi.url, b"")[0] == 400
    assert http_post(mi.url, b"", method="GET")[0] == 405
    assert http_post(mi.url, b'{"jsonrpc":"2.0","method":"ps"}') == (202, "")
    assert http_post(mi.url.replace("/mi", "/nothing"), b"{}")[0] == 404
    # garbage on the TCP connection itself
    host, port = mi.url.split("//")[1].split("/")[0].split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"\x00\x01garbage\r\n\r\n")
        assert s.recv(1024).startswith(b"HTTP/1.1 400")
    assert mi.http_mi().execute("ps")["Processes"]


# --- OpenSIPSMI over HTTP ---------------------------------------------------------------------

def test_opensips_mi_over_http(mi_proxy):
    mi = mi_proxy(BASE)
    http = mi.http_mi()
    procs = http.execute("ps")["Processes"]
    assert {p["PID"] for p in procs} == {mi.proxy.pid}
    assert re.fullmatch(r"\d+ \[sec\]", http.execute("uptime")["Up time"])
    assert http.execute("version")["Server"].startswith("cfgscript (")
    send_options(mi.proxy, 2)
    stats = http.execute("get_statistics", {"statistics": ["core:", "sl:4xx_replies"]})
    assert stats["core:rcv_requests"] == 2 and stats["sl:4xx_replies"] == 2
    assert "tm:UAS_transactions" not in stats
    from opensips.mi import OpenSIPSMIException
    with pytest.raises(OpenSIPSMIException, match="-32601: Method not found"):
        http.execute("no_such_command")
    with pytest.raises(OpenSIPSMIException, match="404: Statistics Not Found"):
        http.execute("get_statistics", [["nothing:"]])


def test_http_keep_alive_and_chunked_body(mi_proxy):
    mi = mi_proxy(BASE)
    host, port = mi.url.split("//")[1].split("/")[0].split(":")
    body = b'{"jsonrpc":"2.0","method":"uptime","id":1}'
    with socket.create_connection((host, int(port)), timeout=5) as s:
        f = s.makefile("rb")
        for _ in range(3):
            s.sendall(b"POST /mi HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                      % (len(body), body))
            status = f.readline()
            assert status.startswith(b"HTTP/1.1 200"), status
            headers = {}
            while (line := f.readline()) not in (b"\r\n", b""):
                k, _, v = line.decode().partition(":")
                headers[k.lower()] = v.strip()
            assert headers["content-type"] == "application/json"
            reply = json.loads(f.read(int(headers["content-length"])))
            assert reply["id"] == 1 and "Up time" in reply["result"]
        chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        s.sendall(b"POST /mi HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                  b"Connection: close\r\n\r\n" + chunked)
        assert f.readline().startswith(b"HTTP/1.1 200")


# --- prometheus and mi_datagram ----------------------------------------------------------------

def test_prometheus_metrics(mi_proxy):
    script = BASE.replace("{mi}", """{mi}
loadmodule "prometheus.so"
modparam("prometheus", "statistics", "core: sl:4xx_replies")
modparam("prometheus", "statistics", "tm:inuse_transactions")
""")
    mi = mi_proxy(script)
    send_options(mi.proxy, 2)
    url = mi.url.replace("/mi", "/metrics")
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        text = r.read().decode()
    assert "# TYPE opensips_rcv_requests counter\nopensips_rcv_requests 2\n" in text
    assert "# TYPE opensips_4xx_replies counter\nopensips_4xx_replies 2\n" in text
    assert "# TYPE opensips_inuse_transactions gauge\nopensips_inuse_transactions 0\n" in text
    assert "UAS_transactions" not in text
    assert text.endswith("\n\n")
    assert http_post(url, b"{}")[0] == 405


def test_mi_datagram(mi_proxy):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]          # a free port for the datagram socket
    script = BASE.replace("{mi}", "{mi}\n" + f'''loadmodule "mi_datagram.so"
modparam("mi_datagram", "socket_name", "udp:127.0.0.1:{port}")
''')
    mi = mi_proxy(script)
    from opensips.mi import OpenSIPSMI
    dg = OpenSIPSMI("datagram", datagram_ip="127.0.0.1", datagram_port=port,
                    datagram_timeout=5)
    for attempt in range(20):             # it starts right after httpd: give it a moment
        try:
            procs = dg.execute("ps")["Processes"]
            break
        except Exception:
            if attempt == 19:
                raise
            time.sleep(0.1)
    assert "MI Datagram" in [p["Type"] for p in procs]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(b"{garbage", ("127.0.0.1", port))
        assert json.loads(s.recv(65535)) == {"jsonrpc": "2.0", "id": None,
                                             "error": {"code": -32700,
                                                       "message": "Parse error"}}


# --- a FIFO that cannot be served here does not stop the proxy --------------------------------

def test_fifo_in_use_or_missing_directory_leaves_the_proxy_running(mi_proxy, tmp_path):
    first = mi_proxy(BASE)
    second = mi_proxy(BASE)                 # same FIFO path: served by the first proxy
    assert first.fifo == second.fifo
    assert "is served by another running process" in second.proxy.log
    procs = json.loads(first.cli("mi", "ps").stdout)["Processes"]
    assert {p["PID"] for p in procs} == {first.proxy.pid}
    assert second.http_mi().execute("ps")["Processes"]
    send_options(second.proxy)

    missing = BASE.replace("{mi}", '{mi}\nmodparam("mi_fifo", "fifo_name", "%s")'
                           % (tmp_path / "no" / "such" / "fifo"))
    third = mi_proxy(missing)
    assert "MI FIFO %s is off: directory %s does not exist" % (
        tmp_path / "no" / "such" / "fifo", tmp_path / "no" / "such") in third.proxy.log
    send_options(third.proxy)
    assert third.http_mi().execute("uptime")

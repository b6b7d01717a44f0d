"""siptrace: messages into a real SQLite sip_trace table (3.x trace_id and 1.x db_url), HEPv3
and plain SIP duplicates to a UDP socket on loopback, and transaction scope (every message
of the Call-ID the server receives or sends)."""
import socket
import struct

import pytest

from cfgscript import parse_text
from modules.siptrace import hep3, parse_trace_id
from runtime import db
from runtime.context import Context, ScriptExit
from runtime.engine import Socket
from runtime.loader import load_script
from runtime.sip.message import Message

MSG = (b"INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n"
       b"From: <sip:alice@example.com>;tag=ft1\r\nTo: <sip:bob@example.com>\r\n"
       b"Call-ID: trace-1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
REPLY = (b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n"
         b"From: <sip:alice@example.com>;tag=ft1\r\nTo: <sip:bob@example.com>;tag=tt\r\n"
         b"Call-ID: trace-1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")


def load(params, body):
    loaded = load_script(parse_text(f'loadmodule "db_sqlite.so"\nloadmodule "siptrace.so"\n'
                                    f'{params}\nroute {{\n{body}\n}}\n', "t.cfg"))
    assert loaded.ok, [str(d) for d in loaded.diagnostics]
    rt = loaded.rt
    rt.sockets.append(Socket("udp", "127.0.0.1", 5060))
    rt.modules["siptrace"].init(rt)
    rt.modules["siptrace"].child_init(rt)
    return rt


def run(rt, data=MSG):
    ctx = Context(rt, Message.parse(data), src=("10.0.0.1", 5062), socket=rt.sockets[0])
    try:
        rt.routes[("route", None)](ctx)
    except ScriptExit:
        pass
    return ctx


@pytest.fixture(autouse=True)
def _close():
    yield
    db.close_all()


def test_trace_id_to_a_database_table(tmp_path):
    path = tmp_path / "t.db"
    rt = load(f'modparam("siptrace", "trace_id", "[tid]uri=sqlite://{path};table=sip_trace")',
              'sip_trace("tid", "m", "sip|xlog", "$fU"); $var(rc) = $rc;')
    run(rt)
    assert rt.vars["rc"] == 1
    rows = db.connect(f"sqlite://{path}").query("sip_trace")
    assert len(rows) == 1
    r = rows[0]
    assert (r["callid"], r["method"], r["direction"], r["fromtag"]) == \
        ("trace-1", "INVITE", "in", "ft1")
    assert (r["from_ip"], r["from_port"], r["to_ip"], r["to_port"]) == \
        ("10.0.0.1", 5062, "127.0.0.1", 5060)
    assert r["trace_attrs"] == "alice" and r["msg"].encode() == MSG


def test_old_parameters_and_unknown_id(tmp_path):
    path = tmp_path / "old.db"
    rt = load(f'modparam("siptrace", "db_url", "sqlite://{path}")\n'
              f'modparam("siptrace", "table", "trace_old")\n'
              f'modparam("siptrace", "trace_flag", 22)\nmodparam("siptrace", "trace_on", 1)',
              'setflag(22); sip_trace();')
    run(rt)
    assert db.connect(f"sqlite://{path}").query("trace_old")[0]["method"] == "INVITE"
    with pytest.raises(ValueError, match="no uri"):
        parse_trace_id("[x]table=t")


def test_hep_and_sip_duplicates_on_loopback():
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(2)
    port = rx.getsockname()[1]
    rt = load(f'modparam("siptrace", "trace_id", "[h]uri=hep:127.0.0.1:{port};'
              f'uri=sip:127.0.0.1:{port}")', 'sip_trace("h");')
    run(rt)
    hep, _ = rx.recvfrom(65535)
    dup, _ = rx.recvfrom(65535)
    rx.close()
    if not hep.startswith(b"HEP3"):
        hep, dup = dup, hep
    assert dup == MSG
    assert hep[:4] == b"HEP3" and struct.unpack("!H", hep[4:6])[0] == len(hep)
    chunks, off = {}, 6
    while off < len(hep):
        _, ctype, n = struct.unpack("!HHH", hep[off:off + 6])
        chunks[ctype] = hep[off + 6:off + n]
        off += n
    assert chunks[1] == b"\x02" and chunks[2] == bytes([17]) and chunks[11] == b"\x01"
    assert socket.inet_ntoa(chunks[3]) == "10.0.0.1" and socket.inet_ntoa(chunks[4]) == \
        "127.0.0.1"
    assert struct.unpack("!H", chunks[7])[0] == 5062 and chunks[15] == MSG


def test_hep3_ipv6():
    pkt = hep3(b"x", ("2001:db8::1", 1), ("::1", 2), "tcp")
    assert b"\x00\x00\x00\x05\x00\x16" + socket.inet_pton(socket.AF_INET6, "2001:db8::1") in pkt


def test_transaction_scope_follows_the_call_id(tmp_path):
    from runtime.server import Server
    path = tmp_path / "t.db"
    rt = load(f'modparam("siptrace", "trace_id", "[tid]uri=sqlite://{path}")',
              'sip_trace("tid", "t");')
    sent = []

    class Transport:
        def sendto(self, data, addr):
            sent.append((data, addr))
    server = Server(rt)
    server.receive = lambda data, addr, sock, proto: None   # the proxy itself is not run
    rt.sockets[0].transport = Transport()
    run(rt)
    server.send(rt.sockets[0], ("10.0.0.2", 5060), MSG.replace(b"10.0.0.1", b"127.0.0.1"))
    server.receive(REPLY, ("10.0.0.2", 5060), rt.sockets[0], "udp")
    server.send(rt.sockets[0], ("10.0.0.2", 5060), MSG.replace(b"trace-1", b"other"))
    rows = db.connect(f"sqlite://{path}").query("sip_trace", order_by=["id"])
    assert [(r["method"], r["status"], r["direction"]) for r in rows] == [
        ("INVITE", "", "in"), ("INVITE", "", "out"), ("INVITE", "180 Ringing", "in")]
    assert rows[1]["to_ip"] == "10.0.0.2" and len(sent) == 2


def test_scope_is_checked_at_load():
    loaded = load_script(parse_text('loadmodule "siptrace.so"\nroute { sip_trace("x", "q"); }',
                                    "t.cfg"))
    assert any("scope must be m, t or d" in d.message for d in loaded.diagnostics)

"""Module ↔ dispatcher wire protocol (reference §1.6, §2) over real UNIX sockets."""

import logging
import socket
import threading
import time

import pytest

from modules.mediaproxy import dispatcher_client as dc
from modules.mediaproxy import sdp

CALL_ID = "a84b4c76e66710@pc33.example.com"
INVITE_SDP = (b"v=0\r\no=alice 2890844526 2890844526 IN IP4 192.168.1.10\r\ns=-\r\n"
              b"c=IN IP4 192.168.1.10\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0 8 101\r\n"
              b"a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n")
OK_SDP = b"v=0\r\no=bob 1 1 IN IP4 192.0.2.20\r\ns=-\r\nc=IN IP4 192.0.2.20\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0 101\r\n"

EXPECTED_UPDATE_A = (
    b"update\r\n"
    b"type: request\r\n"
    b"dialog_id: 5299989648942\r\n"
    b"call_id: a84b4c76e66710@pc33.example.com\r\n"
    b"cseq: 314159\r\n"
    b"from_uri: alice@example.com\r\n"
    b"to_uri: bob@example.org\r\n"
    b"from_tag: 1928301774\r\n"
    b"to_tag: \r\n"
    b"user_agent: ExamplePhone/1.0\r\n"
    b"signaling_ip: 198.51.100.7\r\n"
    b"media_relay: \r\n"
    b"media: audio:192.168.1.10:49170:sendrecv:ice=no\r\n"
    b"\r\n")
EXPECTED_UPDATE_B = (
    b"update\r\ntype: reply\r\ndialog_id: 5299989648942\r\ncall_id: a84b4c76e66710@pc33.example.com\r\n"
    b"cseq: 314159\r\nfrom_uri: alice@example.com\r\nto_uri: bob@example.org\r\nfrom_tag: 1928301774\r\n"
    b"to_tag: a6c85cf\r\nuser_agent: ExampleGW/2.3\r\nsignaling_ip: 192.0.2.20\r\nmedia_relay: \r\n"
    b"media: audio:192.0.2.20:5004:sendrecv:ice=no\r\n\r\n")
EXPECTED_REMOVE_C = (b"remove\r\ncall_id: a84b4c76e66710@pc33.example.com\r\nfrom_tag: 1928301774\r\n"
                     b"to_tag: a6c85cf\r\n\r\n")


def update_a(**overrides):
    fields = dict(type="request", dialog_id=dc.dialog_id(1234, 5678), call_id=CALL_ID,
                  cseq="314159", from_uri=dc.command_uri("sip:alice@example.com"),
                  to_uri=dc.command_uri("sip:bob@example.org"), from_tag="1928301774", to_tag="",
                  user_agent=dc.user_agent("ExamplePhone/1.0"), signaling_ip="198.51.100.7",
                  media_relay="", media=sdp.media_line(sdp.parse(INVITE_SDP)))
    fields.update(overrides)
    return dc.build_update(**fields)


class FakeDispatcher:
    """A real UNIX stream server; ``handler(conn)`` runs per accepted connection."""

    def __init__(self, path, handler):
        self.path, self.handler = path, handler
        self.received = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(8)
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                self.handler(self, conn)

    def read_command(self, conn):
        data = b""
        while not data.endswith(b"\r\n\r\n"):
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
        self.received.append(data)
        return data

    def close(self):
        self.sock.close()


def answer(*replies):
    """Handler answering successive commands on one connection with ``replies``."""
    def handler(server, conn):
        for reply in replies:
            if server.read_command(conn) is None:
                return
            for chunk in reply if isinstance(reply, tuple) else (reply,):
                conn.sendall(chunk)
                time.sleep(0.02)
    return handler


@pytest.fixture
def sock_path(tmp_path):
    return str(tmp_path / "dispatcher.sock")


def test_worked_example_field_derivation():
    assert dc.dialog_id(1234, 5678) == "5299989648942"
    assert dc.command_uri("sip:alice@example.com:5060;transport=udp") == b"alice@example.com:5060"
    assert dc.command_uri("SIP:bob@example.org") == b"bob@example.org"
    assert dc.command_uri("sips:bob@example.org") == b"sips:bob@example.org"
    assert dc.command_uri("") == b"unknown"
    raw = b"SIP/2.0 200 OK\r\nVia: x\r\nserver:  ExampleGW/2.3 \r\nContent-Length: 0\r\n\r\n"
    assert dc.user_agent(None, raw) == b"ExampleGW/2.3"
    assert dc.user_agent("", b"SIP/2.0 200 OK\r\nX-Server: no\r\n") == b"unknown agent"


def test_update_and_remove_bytes_match_the_worked_example():
    assert update_a() == EXPECTED_UPDATE_A
    assert update_a(dialog_id="").startswith(b"update\r\ntype: request\r\ndialog_id: \r\ncall_id:")
    update_b = dc.build_update(type="reply", dialog_id="5299989648942", call_id=CALL_ID,
                               cseq="314159", from_uri="alice@example.com", to_uri="bob@example.org",
                               from_tag="1928301774", to_tag="a6c85cf",
                               user_agent=dc.user_agent(None, b"Server: ExampleGW/2.3\r\n"),
                               signaling_ip="192.0.2.20",
                               media=sdp.media_line(sdp.parse(OK_SDP)))
    assert update_b == EXPECTED_UPDATE_B
    assert dc.build_remove(CALL_ID, "1928301774", "a6c85cf") == EXPECTED_REMOVE_C


def test_e1_update_without_sdp_has_no_media_line():
    command = update_a(type="reply", to_tag="a6c85cf", media=b"")
    assert command.endswith(b"media_relay: \r\n\r\n") and b"media:" not in command


def test_command_limits():
    with pytest.raises(dc.MediaProxyError, match="longer than 8192"):
        update_a(user_agent="x" * 8192)
    with pytest.raises(dc.MediaProxyError, match="longer than 2048"):
        dc.build_remove("c" * 2048, "f", "t")


def test_bytes_on_the_socket(sock_path):
    server = FakeDispatcher(sock_path, answer(b"203.0.113.5 40002\r\n", b"203.0.113.5 40000\r\n",
                                              b"removed\r\n"))
    client = dc.DispatcherClient(sock_path, timeout_ms=500)
    try:
        assert client.send_command(EXPECTED_UPDATE_A) == b"203.0.113.5 40002\r\n"
        assert client.send_command(EXPECTED_UPDATE_B) == b"203.0.113.5 40000\r\n"
        assert client.send_command(EXPECTED_REMOVE_C) == b"removed\r\n"
    finally:
        client.close()
        server.close()
    assert server.received == [EXPECTED_UPDATE_A, EXPECTED_UPDATE_B, EXPECTED_REMOVE_C]
    # and the answer rewrites the INVITE as in the worked example
    session = sdp.parse(INVITE_SDP)
    ip, ports = dc.parse_update_reply(b"203.0.113.5 40002\r\n", session.supported_count, True)
    out = sdp.apply_edits(INVITE_SDP, sdp.rewrite(session, ip, ports))
    assert b"c=IN IP4 203.0.113.5\r\n" in out and b"m=audio 40002 RTP/AVP 0 8 101\r\n" in out


def test_reply_split_across_reads(sock_path):
    server = FakeDispatcher(sock_path, answer((b"203.0.113.5 4000", b"2\r", b"\n")))
    client = dc.DispatcherClient(sock_path)
    try:
        assert client.send_command(EXPECTED_UPDATE_A) == b"203.0.113.5 40002\r\n"
    finally:
        client.close()
        server.close()


def test_e14_failures_lock_out_silently(sock_path, caplog):
    caplog.set_level(logging.ERROR, logger="cfgscript.mediaproxy")
    client = dc.DispatcherClient(sock_path, timeout_ms=100, retry_interval=0.3)
    assert client.send_command(EXPECTED_REMOVE_C) is None
    assert "failed to connect to %s" % sock_path in caplog.text
    caplog.clear()
    server = FakeDispatcher(sock_path, answer(b"removed\r\n"))
    try:
        assert client.send_command(EXPECTED_REMOVE_C) is None   # still locked out
        assert caplog.text == ""                                 # ... without a log line
        time.sleep(0.35)
        assert client.send_command(EXPECTED_REMOVE_C) == b"removed\r\n"
    finally:
        client.close()
        server.close()


def test_timeout_and_close_are_logged_and_disconnect(sock_path, caplog):
    caplog.set_level(logging.ERROR, logger="cfgscript.mediaproxy")

    def silent_then_close(server, conn):
        server.read_command(conn)
        time.sleep(0.3)

    server = FakeDispatcher(sock_path, silent_then_close)
    client = dc.DispatcherClient(sock_path, timeout_ms=100, retry_interval=0.0)
    try:
        started = time.monotonic()
        assert client.send_command(EXPECTED_REMOVE_C) is None
        assert 0.09 < time.monotonic() - started < 1.0
        assert "did timeout waiting for an answer" in caplog.text
        time.sleep(0.3)
        caplog.clear()

        server.handler = lambda server, conn: server.read_command(conn)  # close, no answer
        assert client.send_command(EXPECTED_REMOVE_C) is None
        assert "connection with mediaproxy closed" in caplog.text
    finally:
        client.close()
        server.close()


def test_broken_pipe_reconnects_at_once(sock_path):
    def one_answer_then_hang_up(server, conn):
        server.read_command(conn)
        conn.sendall(b"removed\r\n")
        conn.shutdown(socket.SHUT_RDWR)

    server = FakeDispatcher(sock_path, one_answer_then_hang_up)
    client = dc.DispatcherClient(sock_path, retry_interval=60)
    try:
        assert client.send_command(EXPECTED_REMOVE_C) == b"removed\r\n"
        time.sleep(0.05)
        # the old connection is dead; EPIPE/ECONNRESET reconnects despite the 60 s interval
        assert client.send_command(EXPECTED_REMOVE_C) == b"removed\r\n"
    finally:
        client.close()
        server.close()
    assert len(server.received) == 2


def test_parse_update_reply_tokens():
    assert dc.parse_update_reply(b"203.0.113.5 40002 0\r\n", 2, True) == (
        b"203.0.113.5", [b"40002", b"0"])
    many = b"1.2.3.4 " + b" ".join(b"%d" % p for p in range(40000, 40080, 2)) + b"\r\n"
    ip, ports = dc.parse_update_reply(many, 32, True)
    assert len(ports) == 32  # at most 33 tokens are read

"""Helpers for the mediaproxy relay tests: protocol client, UDP peers, port ranges."""

import itertools
import json
import socket
import time

from modules.mediaproxy.dispatcher_client import DispatcherClient, build_remove, build_update

_ranges = itertools.count(44000, 200)


def port_range():
    """A fresh 100-pair range per relay, so tests never share ports."""
    start = next(_ranges)
    return (start, start + 200)


def free_tcp_port(ip="127.0.0.1"):
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


class Dispatch:
    """Speaks the OpenSIPS side of the protocol to a dispatcher socket."""

    def __init__(self, path):
        self.client = DispatcherClient(path, timeout_ms=3000, retry_interval=0)

    def command(self, data: bytes) -> str:
        reply = self.client.send_command(data)
        assert reply is not None, "no reply from dispatcher"
        return reply.decode().rstrip("\r\n")

    def update(self, call_id, *, type="request", cseq=1, from_tag="caller", to_tag="",
               media=(), media_relay="", dialog_id="", user_agent="test-ua", signaling_ip="127.0.0.1"):
        line = b""
        if media:
            line = b"media: " + ",".join(media).encode() + b"\r\n"
        return self.command(build_update(
            type=type, dialog_id=dialog_id, call_id=call_id, cseq=str(cseq), from_uri="alice@x",
            to_uri="bob@y", from_tag=from_tag, to_tag=to_tag, user_agent=user_agent,
            signaling_ip=signaling_ip, media_relay=media_relay, media=line))

    def remove(self, call_id, from_tag="caller", to_tag="callee"):
        return self.command(build_remove(call_id, from_tag, to_tag))

    def sessions(self):
        return json.loads(self.command(b"sessions\r\n"))

    def summary(self):
        return json.loads(self.command(b"summary\r\n"))

    def close(self):
        self.client.close()


def audio(ip, port, direction="sendrecv", ice="no", kind="audio"):
    return "%s:%s:%d:%s:ice=%s" % (kind, ip, port, direction, ice)


def wait_for(predicate, timeout=5.0, interval=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met within %g s" % timeout)


class Peer:
    """A UDP endpoint playing caller or callee: an RTP and an RTCP socket."""

    def __init__(self, ip):
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind((ip, 0))
        self.ip, self.port = self.rtp.getsockname()
        self.rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtcp.bind((ip, 0))
        for s in (self.rtp, self.rtcp):
            s.settimeout(1.0)

    @staticmethod
    def packet(seq, pt=0, size=172):
        head = bytes([0x80, pt]) + seq.to_bytes(2, "big") + b"\0" * 8
        return head + b"\xd5" * (size - len(head))

    def send(self, relay_ip, relay_port, count=1, pt=0, rtcp=False):
        sock, port = (self.rtcp, relay_port + 1) if rtcp else (self.rtp, relay_port)
        for seq in range(count):
            sock.sendto(self.packet(seq, pt), (relay_ip, port))

    def receive(self, count, rtcp=False, timeout=1.0):
        sock = self.rtcp if rtcp else self.rtp
        sock.settimeout(timeout)
        got = []
        try:
            while len(got) < count:
                got.append(sock.recvfrom(4096))
        except socket.timeout:
            pass
        return got

    def nothing(self, rtcp=False, wait=0.2):
        return self.receive(1, rtcp, timeout=wait) == []

    def close(self):
        self.rtp.close()
        self.rtcp.close()

"""Media relay throughput on loopback: packets/s and concurrent G.711 calls per core.

    .venv/bin/python bench/relay_throughput.py [--calls 500,1000,2000] [--seconds 5]

The relay under test (the embedded dispatcher + relay child process, and Debian's
``rtpengine`` with ``--table=-1``, i.e. its userspace relay, when installed) is
pinned to CPU 0 and the load generator to CPU 1.  Every call is set up through
the real control protocol (MediaProxy ``update`` / rtpengine ``ng`` offer-answer)
and latched from both sides; then each call carries two G.711 streams of 50
packets/s (172-byte packets, 20 ms apart), one per direction.  A step passes when
every packet sent arrives within the drain time and the relay's core is not
saturated.  ``packets/s`` is the forwarding rate with the relay flooded.
Every run is bounded in time (--seconds per step, --max-seconds overall) and in
count (--calls); traffic only goes to 127.0.0.0/8.

Measured (Debian 12, Python 3.11.7 + uvloop 0.23, 2 shared vCPUs, --seconds 4;
"ok" = no packet lost and none later than 100 ms):

    relay                               calls ok   at CPU   first failing step     flood
    cfgscript relay (this package)        1250       90%    1500: 16% lost          177k pps
    rtpengine 10.5.3 userspace, 1 thread  1000       87%    1250: 120 ms late       82k pps*

    * rtpengine drops streams it sees flooded ("UDP receive queue exceeded"), so its
      flood figure is a floor; with lag allowed it carried 2000 calls without loss.
    Target was 2,000 calls per core: not reached in userspace Python (1 recvfrom +
    1 sendto + 1 event-loop callback per packet, about 5.5 us); see below.
    Runs on this shared machine vary by about 15%.

Kernel fast path (not implemented).  Pure-Python forwarding costs one wake-up,
one recvfrom and one sendto per packet; AG MediaProxy avoids that after the first
packets by installing a conntrack entry per substream (§5.6 of the reference):
original tuple caller_remote→caller_local, reply tuple its inverse, DNAT to
callee_remote and SNAT to callee_local, so the kernel forwards both directions
and keeps byte/packet counters.  Doing the same from Python needs: root or
CAP_NET_ADMIN; nf_conntrack + nf_nat loaded with an active NAT hook (an nftables
``type nat`` chain or iptable_nat); net.ipv4.ip_forward=1 and
net.netfilter.nf_conntrack_acct=1; conntrack hooks enabled (kernels >= 5.1:
``modprobe nf_conntrack enable_hooks=1`` or any conntrack rule); permissive
rp_filter for the DNAT'ed flows.  With pyroute2: ``NFCTSocket().entry('add', ...)``
with CTA_TUPLE_ORIG/REPLY, CTA_NAT_SRC/DST and CTA_TIMEOUT once both sides are
latched, after deleting stale entries for both tuples (optionally with a
temporary nftables ``notrack`` rule to close the race with in-flight packets);
a netlink socket on NFNLGRP_CONNTRACK_DESTROY reports expiry and final counters.
The userspace relay stays the state machine; the kernel entry is an accelerator
and its counters must be added to the userspace ones.  Loopback traffic works
for tests only if route_localnet=1 is set for DNAT to 127.0.0.0/8.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from modules.mediaproxy.dispatcher_client import DispatcherClient, build_update  # noqa: E402
from modules.mediaproxy.relay import embedded  # noqa: E402

TICK = 0.020                 # 50 packets/s per stream
PACKET = 172                 # 12-byte RTP header + 160 bytes of G.711
RELAY_CPU, LOAD_CPU = 0, 1
GEN_IP = "127.0.0.10"


def cpu_seconds(pid: int) -> float:
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pin(pid: int, cpu: int) -> None:
    """Pin every thread of ``pid`` (0: this process) to ``cpu``."""
    if not os.cpu_count() or os.cpu_count() <= cpu:
        return
    for task in os.listdir("/proc/%s/task" % (pid or "self")):
        os.sched_setaffinity(int(task), {cpu})


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32),
                ("iov", ctypes.POINTER(_Iovec)), ("iovlen", ctypes.c_size_t),
                ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("hdr", _Msghdr), ("len", ctypes.c_uint)]


class _SockaddrIn(ctypes.Structure):
    _fields_ = [("family", ctypes.c_ushort), ("port", ctypes.c_uint16),
                ("addr", ctypes.c_uint8 * 4), ("zero", ctypes.c_uint8 * 8)]


_libc = ctypes.CDLL(None, use_errno=True)
BATCH = 1024  # UIO_MAXIOV


class Batch:
    """sendmmsg/recvmmsg through ctypes, so that the generator costs little per packet."""

    def __init__(self, sock: socket.socket, destinations=()):
        """A receiver (no destinations: BATCH buffers) or a sender of one shared payload."""
        self.fd = sock.fileno()
        n = len(destinations) or BATCH
        self.buffers = [ctypes.create_string_buffer(2048) for _ in range(1 if destinations else n)]
        self.iovecs = (_Iovec * n)()
        self.msgs = (_Mmsghdr * n)()
        self.names = (_SockaddrIn * len(destinations))()
        for i, (ip, port) in enumerate(destinations):
            name = self.names[i]
            name.family = socket.AF_INET
            name.port = socket.htons(port)
            name.addr[:] = socket.inet_aton(ip)
        for i in range(n):
            self.iovecs[i].base = ctypes.addressof(self.buffers[0 if destinations else i])
            self.iovecs[i].len = 2048
            hdr = self.msgs[i].hdr
            hdr.iov = ctypes.pointer(self.iovecs[i])
            hdr.iovlen = 1
            if destinations:
                hdr.name = ctypes.addressof(self.names[i])
                hdr.namelen = ctypes.sizeof(_SockaddrIn)
        self.count = len(destinations)
        self.length = 0

    def send(self, data: bytes) -> int:
        """Send ``data`` to every destination; returns how many went out."""
        ctypes.memmove(self.buffers[0], data, len(data))
        if len(data) != self.length:
            self.length = len(data)
            for i in range(self.count):
                self.iovecs[i].len = len(data)
        sent = 0
        while sent < self.count:
            n = _libc.sendmmsg(self.fd, ctypes.byref(self.msgs, sent * ctypes.sizeof(_Mmsghdr)),
                               min(BATCH, self.count - sent), socket.MSG_DONTWAIT)
            if n <= 0:
                break
            sent += n
        return sent

    def receive(self) -> tuple:
        """Drain the socket: (packets, oldest sequence number seen or None)."""
        got, oldest = 0, None
        while True:
            n = _libc.recvmmsg(self.fd, self.msgs, BATCH, socket.MSG_DONTWAIT, None)
            if n <= 0:
                return got, oldest
            if oldest is None:
                oldest = int.from_bytes(self.buffers[0].raw[2:4], "big")
            got += n


def udp_socket(ip: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for force, plain, size in ((33, socket.SO_RCVBUF, 64 << 20), (32, socket.SO_SNDBUF, 16 << 20)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, size)  # SO_*BUFFORCE (root)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, plain, size)
    sock.bind((ip, 0))
    sock.setblocking(False)
    return sock


class Load:
    """One caller socket and one callee socket shared by all calls (each relay port
    latches the same address, which costs the relay nothing extra)."""

    def __init__(self):
        self.caller = udp_socket(GEN_IP)
        self.callee = udp_socket(GEN_IP)
        self.calls = []      # (relay ip, caller-facing port, callee-facing port)
        self.receivers = [Batch(self.caller), Batch(self.callee)]

    def senders(self, calls: int):
        chosen = self.calls[:calls]
        return (Batch(self.caller, [(ip, a) for ip, a, _b in chosen]),
                Batch(self.callee, [(ip, b) for ip, _a, b in chosen]))

    def latch(self):
        for sender in self.senders(len(self.calls)):
            sender.send(packet(0))
        time.sleep(0.5)
        self.drain()

    def drain(self, seq_now=None) -> tuple:
        got, lag = 0, 0
        for receiver in self.receivers:
            n, oldest = receiver.receive()
            got += n
            if seq_now is not None and oldest is not None:
                lag = max(lag, (seq_now - oldest) & 0xFFFF)
        return got, lag

    def run(self, calls: int, seconds: float) -> dict:
        """Paced G.711 load on the first ``calls`` calls."""
        senders = self.senders(calls)
        sent = received = max_lag = late = 0
        ticks = int(seconds / TICK)
        start = time.monotonic()
        for tick in range(1, ticks + 1):
            data = packet(tick)
            sent += sum(sender.send(data) for sender in senders)
            deadline = start + tick * TICK
            while True:
                got, lag = self.drain(tick)
                received += got
                max_lag = max(max_lag, lag)
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.001)
            if time.monotonic() > deadline + TICK:
                late += 1
        end = time.monotonic() + 0.3
        while time.monotonic() < end:
            received += self.drain()[0]
            time.sleep(0.005)
        return {"sent": sent, "received": received, "max_lag_ms": max_lag * TICK * 1000,
                "late_ticks": late, "ticks": ticks}

    def flood(self, seconds: float) -> tuple:
        """Send as fast as possible for ``seconds``: (packets sent, packets relayed back)."""
        senders = self.senders(min(len(self.calls), 256))
        data, sent, received = packet(1), 0, 0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            sent += sum(sender.send(data) for sender in senders)
            received += self.drain()[0]
        end = time.monotonic() + 0.3
        while time.monotonic() < end:
            received += self.drain()[0]
            time.sleep(0.005)
        return sent, received

    def close(self):
        self.caller.close()
        self.callee.close()


def packet(seq: int) -> bytes:
    return bytes([0x80, 0]) + (seq & 0xFFFF).to_bytes(2, "big") + bytes(8) + b"\xd5" * (PACKET - 12)


# -- the relays under test ------------------------------------------------------------

class CfgscriptRelay:
    name = "cfgscript relay (Python, uvloop)"

    def __init__(self, workdir: str):
        self.socket = os.path.join(workdir, "dispatcher.sock")
        self.handle = embedded.start(self.socket, port_range=(20000, 60000), listen_ip="127.0.0.1",
                                     idle_timeout=3600, stream_timeout=3600, log_level="WARNING")
        self.pid = self.handle.pid
        self.client = DispatcherClient(self.socket, timeout_ms=5000)

    def setup_call(self, n: int, load: Load):
        caller_port, callee_port = load.caller.getsockname()[1], load.callee.getsockname()[1]

        def update(kind, to_tag, port):
            media = b"media: audio:%s:%d:sendrecv:ice=no\r\n" % (GEN_IP.encode(), port)
            reply = self.client.send_command(build_update(
                type=kind, call_id="bench-%d" % n, cseq="1", from_uri="a@b", to_uri="c@d",
                from_tag="f%d" % n, to_tag=to_tag, user_agent="bench", signaling_ip=GEN_IP,
                media=media)).split()
            return reply[0].decode(), int(reply[1])

        ip, to_callee = update("request", "", caller_port)
        _, to_caller = update("reply", "t%d" % n, callee_port)
        return ip, to_caller, to_callee

    def stop(self):
        self.client.close()
        assert self.handle.stop() == 0


def bencode(value) -> bytes:
    if isinstance(value, int):
        return b"i%de" % value
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        return b"%d:%s" % (len(value), value)
    if isinstance(value, list):
        return b"l" + b"".join(bencode(v) for v in value) + b"e"
    return b"d" + b"".join(bencode(k) + bencode(v) for k, v in sorted(value.items())) + b"e"


class Rtpengine:
    name = "rtpengine 10.5 userspace (--table=-1, 1 thread)"
    NG = ("127.0.0.1", 22299)

    def __init__(self, workdir: str):
        self.process = subprocess.Popen(
            ["rtpengine", "--config-file=none", "--foreground", "--log-stderr", "--log-level=4",
             "--table=-1", "--interface=127.0.0.1", "--listen-ng=127.0.0.1:%d" % self.NG[1],
             "--port-min=20000", "--port-max=60000", "--num-threads=1",
             "--pidfile=%s/rtpengine.pid" % workdir],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(workdir, "rtpengine.log"), "w"))
        self.pid = self.process.pid
        self.ng = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.ng.settimeout(2)
        self.cookie = 0
        for _ in range(50):
            try:
                if b"pong" in self.command({"command": "ping"}):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("rtpengine did not answer ping")

    def command(self, body: dict) -> bytes:
        self.cookie += 1
        cookie = b"%d " % self.cookie
        self.ng.sendto(cookie + bencode(body), self.NG)
        while True:
            data = self.ng.recv(65536)
            if data.startswith(cookie):
                return data[len(cookie):]

    def setup_call(self, n: int, load: Load):
        def sdp(port):
            return ("v=0\r\no=- 1 1 IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\n"
                    "m=audio %d RTP/AVP 0\r\n" % (GEN_IP, GEN_IP, port))

        def port_of(reply: bytes) -> int:
            return int(re.search(rb"m=audio (\d+)", reply).group(1))

        call = {"call-id": "bench-%d" % n, "from-tag": "f%d" % n}
        to_callee = port_of(self.command(dict(call, command="offer",
                                              sdp=sdp(load.caller.getsockname()[1]))))
        to_caller = port_of(self.command(dict(call, command="answer", **{"to-tag": "t%d" % n},
                                              sdp=sdp(load.callee.getsockname()[1]))))
        return "127.0.0.1", to_caller, to_callee

    def stop(self):
        self.ng.close()
        self.process.terminate()
        self.process.wait(10)


# -- the run --------------------------------------------------------------------------------

def measure(relay, steps, seconds: float, deadline: float) -> list:
    pin(relay.pid, RELAY_CPU)
    load = Load()
    print("\n== %s" % relay.name, flush=True)
    try:
        started = time.monotonic()
        for n in range(max(steps)):
            load.calls.append(relay.setup_call(n, load))
        print("set up %d calls in %.1f s" % (len(load.calls), time.monotonic() - started))
        load.latch()

        rows = []
        for calls in steps:
            if time.monotonic() + seconds + 2 > deadline:
                print("time budget exhausted, stopping")
                break
            cpu0 = cpu_seconds(relay.pid)
            result = load.run(calls, seconds)
            cpu = (cpu_seconds(relay.pid) - cpu0) / (seconds + 0.3)
            lost = result["sent"] - result["received"]
            ok = lost == 0 and result["max_lag_ms"] <= 100
            rows.append((calls, result, cpu, ok))
            print("%5d calls  %7d pps  lost %6d (%.3f%%)  max lag %4.0f ms  relay CPU %3.0f%%  "
                  "late ticks %d  %s" % (calls, 100 * calls, lost, 100.0 * lost / result["sent"],
                                         result["max_lag_ms"], 100 * cpu, result["late_ticks"],
                                         "ok" if ok else "FAIL"), flush=True)
            if not ok and lost > result["sent"] // 100:
                break
        best = max([c for c, _r, _cpu, ok in rows if ok] or [0])
        print("=> %d concurrent G.711 calls with no loss on one core" % best)
        cpu0 = cpu_seconds(relay.pid)
        sent, received = load.flood(3.0)
        cpu = (cpu_seconds(relay.pid) - cpu0) / 3.3
        print("flood: %d packets/s relayed (offered %d/s, relay CPU %.0f%%)"
              % (received / 3.0, sent / 3.0, 100 * cpu))
        return rows
    finally:
        load.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", default="250,500,750,1000,1250,1500,2000,2500,3000",
                        help="comma-separated call counts to try (default %(default)s)")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per step")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="bound for the whole run")
    parser.add_argument("--no-rtpengine", action="store_true", help="skip the rtpengine comparison")
    args = parser.parse_args(argv)
    steps = sorted(int(c) for c in args.calls.split(","))
    deadline = time.monotonic() + args.max_seconds
    pin(0, LOAD_CPU)
    kinds = [CfgscriptRelay]
    if args.no_rtpengine:
        pass
    elif subprocess.run(["which", "rtpengine"], capture_output=True).returncode == 0:
        kinds.append(Rtpengine)
    else:
        print("rtpengine not installed (apt-get install -y rtpengine-daemon): no comparison")
    with tempfile.TemporaryDirectory() as workdir:
        for kind in kinds:
            relay = kind(workdir)
            try:
                measure(relay, steps, args.seconds, deadline)
            finally:
                relay.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Loopback addresses for test runs: one 127.x.y.z per role, never shared by two scenarios.

A process picks a /24 at random in 127.100.0.0 - 127.199.255.0 and hands out blocks of
three consecutive addresses from it, so parallel scenarios of one run never meet and two
runs on one machine (or other software on 127.0.0.1) almost never do. A block is skipped
if anything is bound on its addresses (read from /proc/net, which does not disturb the
sockets it looks at).
"""
from __future__ import annotations

import random
import socket
import struct
import threading
from dataclasses import dataclass

PROXY_PORT = 5060
UAC_PORT = 5070
UAS_PORT = 5080

_lock = threading.Lock()
_blocks = None


@dataclass(frozen=True)
class Roles:
    """The addresses of one scenario: proxy, UAS and UAC each on their own IP."""
    proxy_ip: str
    uas_ip: str
    uac_ip: str


def allocate() -> Roles:
    """A fresh set of role addresses nobody is bound on."""
    global _blocks
    with _lock:
        if _blocks is None:
            _blocks = _block_iter()
        busy = bound_ips()
        for ips in _blocks:
            if busy.isdisjoint(ips):
                return Roles(*ips)


def _block_iter():
    rnd = random.Random()
    while True:
        net = f"127.{rnd.randrange(100, 200)}.{rnd.randrange(256)}"
        for start in range(0, 252, 4):
            yield [f"{net}.{start + n}" for n in (1, 2, 3)]


def bound_ips() -> set[str]:
    """Local IPv4 addresses with a UDP or TCP socket bound on them."""
    return {ip for ip, _port in bound_sockets()}


def bound_sockets() -> set[tuple[str, int]]:
    """(ip, port) of every bound IPv4 UDP socket and TCP listener, from /proc/net."""
    found = set()
    for table, wanted_state in (("udp", None), ("tcp", "0A")):
        try:
            with open(f"/proc/net/{table}") as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if wanted_state and fields[3] != wanted_state:
                continue
            hexip, hexport = fields[1].split(":")
            ip = socket.inet_ntoa(struct.pack("=I", int(hexip, 16)))
            found.add((ip, int(hexport, 16)))
    return found

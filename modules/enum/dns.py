"""A small DNS stub resolver for NAPTR records (RFC 1035 / RFC 3403), standard library only.

It asks the name servers of /etc/resolv.conf (the system resolver's configuration), or those
of the CFGSCRIPT_DNS_SERVERS environment variable (`ip[:port][,ip[:port]...]`, for tests and
labs), over UDP, falling back to TCP for a truncated answer.

    naptr("4.3.2.1.e164.arpa.") -> [NAPTR(order, pref, flags, services, regexp, replacement)]
    None when no server answered; [] for NXDOMAIN or no such records.
"""
from __future__ import annotations

import os
import random
import socket
import struct
from dataclasses import dataclass

NAPTR_TYPE = 35


class DNSError(Exception):
    pass


@dataclass(frozen=True)
class NAPTR:
    order: int
    pref: int
    flags: str
    services: str
    regexp: str
    replacement: str


def servers() -> list[tuple[str, int]]:
    env = os.environ.get("CFGSCRIPT_DNS_SERVERS")
    out = []
    if env:
        for item in env.split(","):
            item = item.strip()
            if not item:
                continue
            if item.startswith("["):
                host, _, port = item[1:].partition("]:")
            elif item.count(":") == 1:
                host, _, port = item.partition(":")
            else:
                host, port = item, ""
            out.append((host, int(port) if port else 53))
        return out
    try:
        with open("/etc/resolv.conf") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver":
                    out.append((parts[1].split("%")[0], 53))
    except OSError:
        pass
    return out or [("127.0.0.1", 53)]


def build_query(name: str, qtype: int = NAPTR_TYPE, qid: int | None = None) -> bytes:
    qid = random.randrange(1 << 16) if qid is None else qid
    header = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)   # RD
    return header + encode_name(name) + struct.pack("!HH", qtype, 1)


def encode_name(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        if not label:
            continue
        raw = label.encode("idna") if not label.isascii() else label.encode()
        if len(raw) > 63:
            raise DNSError(f"label too long in '{name}'")
        out += bytes([len(raw)]) + raw
    return out + b"\0"


def _read_name(data: bytes, off: int) -> tuple[str, int]:
    labels, end, jumps = [], None, 0
    while True:
        if off >= len(data):
            raise DNSError("truncated name")
        n = data[off]
        if n & 0xC0 == 0xC0:
            if off + 1 >= len(data):
                raise DNSError("truncated pointer")
            if end is None:
                end = off + 2
            off = ((n & 0x3F) << 8) | data[off + 1]
            jumps += 1
            if jumps > 64:
                raise DNSError("name compression loop")
            continue
        if n == 0:
            off += 1
            break
        labels.append(data[off + 1:off + 1 + n].decode("ascii", "replace"))
        off += 1 + n
    return ".".join(labels) + ".", (end if end is not None else off)


def _char_string(data: bytes, off: int) -> tuple[str, int]:
    n = data[off]
    return data[off + 1:off + 1 + n].decode("utf-8", "replace"), off + 1 + n


def parse_response(data: bytes, qid: int | None = None) -> tuple[int, bool, list[NAPTR]]:
    """(rcode, truncated, NAPTR answers)."""
    if len(data) < 12:
        raise DNSError("short DNS message")
    rid, flags, qd, an, _ns, _ar = struct.unpack("!HHHHHH", data[:12])
    if qid is not None and rid != qid:
        raise DNSError("answer to another query")
    rcode, tc = flags & 0xF, bool(flags & 0x0200)
    off = 12
    for _ in range(qd):
        _, off = _read_name(data, off)
        off += 4
    out = []
    for _ in range(an):
        _, off = _read_name(data, off)
        rtype, _cls, _ttl, rdlen = struct.unpack("!HHIH", data[off:off + 10])
        off += 10
        rdata_end = off + rdlen
        if rtype == NAPTR_TYPE:
            order, pref = struct.unpack("!HH", data[off:off + 4])
            p = off + 4
            flags_s, p = _char_string(data, p)
            services, p = _char_string(data, p)
            regexp, p = _char_string(data, p)
            repl, p = _read_name(data, p)
            out.append(NAPTR(order, pref, flags_s, services, regexp, repl))
        off = rdata_end
    return rcode, tc, out


def _udp(server, query, timeout):
    fam = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
    with socket.socket(fam, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(query, server)
        while True:
            data, addr = s.recvfrom(65535)
            if addr[0] == server[0]:
                return data


def _tcp(server, query, timeout):
    fam = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(server)
        s.sendall(struct.pack("!H", len(query)) + query)
        head = s.recv(2)
        n = struct.unpack("!H", head)[0]
        data = b""
        while len(data) < n:
            chunk = s.recv(n - len(data))
            if not chunk:
                break
            data += chunk
        return data


def naptr(name: str, timeout: float = 2.0, nameservers=None):
    """The NAPTR records of `name`; None when no server answered."""
    qid = random.randrange(1 << 16)
    query = build_query(name, NAPTR_TYPE, qid)
    for server in (nameservers or servers()):
        try:
            data = _udp(server, query, timeout)
            rcode, tc, records = parse_response(data, qid)
            if tc:
                rcode, tc, records = parse_response(_tcp(server, query, timeout), qid)
        except (OSError, DNSError, struct.error, IndexError):
            continue
        if rcode == 3:        # NXDOMAIN
            return []
        if rcode != 0:
            continue
        return records
    return None

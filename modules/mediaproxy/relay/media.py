"""The media relay: sessions, streams, port pairs and the UDP data path.

Semantics follow AG MediaProxy's relay (reference §5.5-5.8):

* a session is keyed by ``(call_id, from_tag)`` of the message that created it
  and found again through the To tag for requests from the callee;
* the (caller CSeq, callee CSeq) tuple tells offers (greater), answers (equal)
  and stale messages (less) apart;
* every stream owns two even/odd port pairs, caller side first, and answers
  with the callee-facing port when the SDP goes downstream;
* each of the four sockets of a stream latches its remote address from the
  first packet; before that, RTP (never RTCP) is sent to the SDP address when
  that address is routable;
* a side that sends nothing within ``stream_timeout`` expires the stream
  (``on_hold_timeout`` while on hold); a latched stream with no traffic for
  ``idle_timeout`` expires too (the userspace stand-in for the kernel conntrack
  timeout, reported as ``idle timeout``).

Counters are userspace counts of what was relayed: ``caller_packets`` are the
packets the caller sent that the relay forwarded to the callee.  AG counts only
kernel-forwarded traffic; this relay has no kernel path.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from itertools import chain

from .protocol import VERSION, CommandError, relay_headers

log = logging.getLogger("cfgscript.mediaproxy.relay")

RTP_PAYLOADS = {
    0: "G711u", 1: "1016", 2: "G721", 3: "GSM", 4: "G723", 5: "DVI4", 6: "DVI4",
    7: "LPC", 8: "G711a", 9: "G722", 10: "L16", 11: "L16", 14: "MPA", 15: "G728",
    18: "G729", 25: "CelB", 26: "JPEG", 28: "nv", 31: "H261", 32: "MPV", 33: "MP2T",
    34: "H263",
}
PRIVATE_RANGES = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
                  "127.0.0.0/8", "169.254.0.0/16")
STUN_COOKIE = b"\x21\x12\xa4\x42"
STUN_QUEUE = 32
NULL_IP = "0.0.0.0"
CALLER, CALLEE = "caller", "callee"
NO_TRAFFIC, ON_HOLD, IDLE = "no-traffic timeout", "on hold timeout", "idle timeout"
ICE_UNSELECTED = "unselected ICE candidate"
LIVE = ("active", "on hold")


@dataclass
class RelayConfig:
    relay_ip: str = "127.0.0.1"
    advertised_ip: str | None = None
    port_range: tuple = (40000, 60000)
    stream_timeout: float = 90.0
    on_hold_timeout: float = 7200.0
    idle_timeout: float = 180.0
    routable_ranges: tuple = ()           # extra ranges counted as routable, as CIDR strings
    tick: float = 1.0                     # timer resolution
    traffic_sampling_period: float = 15.0
    networks: tuple = field(init=False, repr=False)

    def __post_init__(self):
        start, end = self.port_range
        if start % 2 or end % 2 or not 1024 <= start < end <= 65536:
            raise ValueError("bad port range %d:%d: even numbers in [1024, 65536], start < end"
                             % (start, end))
        self.networks = tuple(ipaddress.ip_network(r, strict=False) for r in self.routable_ranges)

    def is_routable(self, ip: str) -> bool:
        """May packets be sent to ``ip`` before it has sent anything (§5.6)?"""
        try:
            addr = ipaddress.IPv4Address(ip)
        except ValueError:
            return False
        if addr.is_unspecified or addr.is_multicast or addr == ipaddress.IPv4Address("255.255.255.255"):
            return False
        return addr.is_global or any(addr in net for net in self.networks)


def is_stun(data: bytes) -> bool:
    return (len(data) >= 20 and data[4:8] == STUN_COOKIE and (data[0] << 8 | data[1]) & 0x000C == 0)


def codec_name(data: bytes) -> str:
    if len(data) < 2:
        return "Unknown"
    pt = data[1] & 0x7F
    if pt > 95:
        return "Dynamic(%d)" % pt
    return RTP_PAYLOADS.get(pt, "Unknown(%d)" % pt)


class PortsExhausted(Exception):
    pass


class PortPool:
    """Even RTP / odd RTCP port pairs; freed pairs go to the back."""

    def __init__(self, start: int, end: int):
        self.free = deque((p, p + 1) for p in range(start, end, 2))
        self.bad = deque()

    def take(self) -> tuple:
        if len(self.bad) > len(self.free):
            self.free.extend(self.bad)
            self.bad.clear()
        if not self.free:
            raise PortsExhausted("no free relay ports")
        return self.free.popleft()

    def release(self, pair: tuple) -> None:
        self.free.append(pair)


# -- data path -----------------------------------------------------------------------
#
# One SubParty is one relay socket, facing one side (caller or callee) of one
# substream (RTP or RTCP).  Its remote address is a small state machine:
#
#   state       packet from `remote`     packet from another source
#   UNKNOWN     -                        learn it, forward
#   LATCHED     forward                  drop
#   OBSOLETE    drop                     learn it, forward
#
# UNKNOWN is `remote is None`; OBSOLETE follows a changed SDP address in an answer.

class SubParty:
    __slots__ = ("sock", "substream", "peer", "remote", "obsolete", "latched", "sdp",
                 "packets", "bytes", "codec", "deadline", "reason", "wait", "waiting",
                 "pending", "local", "_recvfrom", "_sendto")

    def __init__(self, substream, sock):
        self.sock = sock
        self.substream = substream
        self.peer = None
        self.remote = None
        self.obsolete = False
        self.latched = False
        self.sdp = None          # SDP address to use before latching (RTP, routable only)
        self.packets = self.bytes = 0
        self.codec = "Unknown"
        self.deadline = None
        self.reason = None
        self.wait = 0
        self.waiting = False     # a no-traffic deadline runs until the first media packet
        self.pending = []        # STUN packets for this side, held until it is known
        self.local = "%s:%d" % sock.getsockname()
        self._recvfrom = sock.recvfrom
        self._sendto = sock.sendto

    def on_readable(self) -> None:
        try:
            data, addr = self._recvfrom(4096)
        except OSError:
            return
        if addr == self.remote:
            if self.obsolete:
                return
            if self.waiting and not is_stun(data):
                self._first_media(data)
        elif self.latched:
            return
        else:
            self._learn(addr, data)
        peer = self.peer
        dest = peer.remote or peer.sdp
        if dest is None:
            if is_stun(data) and len(peer.pending) < STUN_QUEUE:
                peer.pending.append(data)
            return
        try:
            peer._sendto(data, dest)
        except OSError:
            return
        self.packets += 1
        self.bytes += len(data)

    def _learn(self, addr, data) -> None:
        self.remote, self.obsolete, self.latched = addr, False, True
        if not is_stun(data):
            self._first_media(data)
        for packet in self.pending:
            try:
                self._sendto(packet, addr)
            except OSError:
                pass
        self.pending.clear()

    def _first_media(self, data) -> None:
        if self.waiting:
            self.deadline = None
            self.waiting = False
        stream = self.substream.stream
        if self.substream is stream.rtp and self.codec == "Unknown":
            self.codec = codec_name(data)
        if stream.first_media_time is None:
            stream.first_media_time = time.time()

    def arm(self, now: float, reason: str, timeout: float) -> None:
        self.deadline, self.reason, self.wait = now + timeout, reason, timeout
        self.waiting = reason == NO_TRAFFIC

    def disarm(self) -> None:
        self.deadline = None
        self.waiting = False

    def reset(self, keep_remote: bool, now: float, stream_timeout: float) -> None:
        """Start learning again: keep the old address as obsolete (with a no-traffic
        deadline), or forget it entirely."""
        if keep_remote:
            self.arm(now, NO_TRAFFIC, stream_timeout)
            self.obsolete = self.remote is not None
        else:
            self.disarm()
            self.remote, self.obsolete = None, False
        self.latched = False

    def remote_text(self) -> str:
        return "%s:%d" % self.remote if self.remote else "Unknown"


class SubStream:
    """RTP or RTCP of one stream: the caller-facing and the callee-facing socket."""

    def __init__(self, stream, caller_sock, callee_sock):
        self.stream = stream
        self.caller = SubParty(self, caller_sock)
        self.callee = SubParty(self, callee_sock)
        self.caller.peer, self.callee.peer = self.callee, self.caller
        self.idle_mark = (0, 0.0)

    def side(self, party: str) -> SubParty:
        return self.caller if party == CALLER else self.callee

    @property
    def total_packets(self) -> int:
        return self.caller.packets + self.callee.packets


class MediaParty:
    """One side of a stream: its port pair, SDP address, hold and ICE flags."""

    def __init__(self, relay):
        self.relay = relay
        self.remote_sdp = None
        self.on_hold = False
        self.ice = False
        while True:
            self.ports = relay.ports.take()
            try:
                self.rtp_sock = _bind(relay.config.relay_ip, self.ports[0])
            except OSError:
                relay.ports.bad.append(self.ports)
                continue
            try:
                self.rtcp_sock = _bind(relay.config.relay_ip, self.ports[1])
            except OSError:
                self.rtp_sock.close()
                relay.ports.bad.append(self.ports)
                continue
            break

    def close(self) -> None:
        for sock in (self.rtp_sock, self.rtcp_sock):
            self.relay.loop.remove_reader(sock.fileno())
            sock.close()
        self.relay.ports.release(self.ports)


def _bind(ip: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.bind((ip, port))
    except OSError:
        sock.close()
        raise
    return sock


class MediaStream:
    def __init__(self, session, media, party: str):
        self.session = session
        self.relay = relay = session.relay
        self.type = media.type
        self.alive = True
        self.status = "active"
        self.timeout_wait = 0
        self.create_time = time.time()
        self.first_media_time = self.start_time = self.end_time = None
        self.caller = MediaParty(relay)
        try:
            self.callee = MediaParty(relay)
        except PortsExhausted:
            self.caller.close()
            raise
        self.rtp = SubStream(self, self.caller.rtp_sock, self.callee.rtp_sock)
        self.rtcp = SubStream(self, self.caller.rtcp_sock, self.callee.rtcp_sock)
        now = relay.loop.time()
        for sub in self.subparties():
            sub.arm(now, NO_TRAFFIC, relay.config.stream_timeout)
            relay.loop.add_reader(sub.sock.fileno(), sub.on_readable)
        self.set_sdp(party, media.ip, media.port)
        self.check_hold(party, media)
        if media.port == 0:
            self.close("closed")

    def party(self, party: str) -> MediaParty:
        return self.caller if party == CALLER else self.callee

    def subparties(self):
        return (self.rtp.caller, self.rtp.callee, self.rtcp.caller, self.rtcp.callee)

    def matches(self, party: str, media) -> bool:
        """Does an offered entry continue this stream (same address, or a hold of it)?"""
        old = self.party(party).remote_sdp
        return (self.alive and self.type == media.type and old is not None
                and (old == (media.ip, media.port) or (media.ip == NULL_IP and old[1] == media.port)))

    def set_sdp(self, party: str, ip: str, port: int) -> None:
        self.party(party).remote_sdp = (ip, port)
        routable = port != 0 and self.relay.config.is_routable(ip)
        self.rtp.side(party).sdp = (ip, port) if routable else None

    def check_hold(self, party: str, media) -> None:
        was_on_hold = self.on_hold
        p = self.party(party)
        p.on_hold = media.direction in ("sendonly", "inactive") or media.ip == NULL_IP
        p.ice = media.ice
        if was_on_hold == self.on_hold or not self.alive:
            return
        config, now = self.relay.config, self.relay.loop.time()
        self.status = "on hold" if self.on_hold else "active"
        for sub in self.subparties():
            if self.on_hold:
                sub.arm(now, ON_HOLD, config.on_hold_timeout)
            elif sub.latched:
                sub.disarm()
            else:
                sub.arm(now, NO_TRAFFIC, config.stream_timeout)

    @property
    def on_hold(self) -> bool:
        return self.caller.on_hold or self.callee.on_hold

    def reset(self, party: str, ip: str, port: int) -> None:
        """The party answered with a new address: learn its sockets again."""
        now, timeout = self.relay.loop.time(), self.relay.config.stream_timeout
        self.rtp.side(party).reset(True, now, timeout)
        self.rtcp.side(party).reset(True, now, timeout)
        self.set_sdp(party, ip, port)

    def local_port(self, party: str) -> int:
        return self.party(party).ports[0] if self.status in LIVE else 0

    def substream_expired(self, substream: SubStream, reason: str, wait: float) -> None:
        if substream is self.rtcp or (reason == IDLE and self.on_hold):
            substream.caller.reset(False, 0, 0)
            substream.callee.reset(False, 0, 0)
            return
        if reason == NO_TRAFFIC and self.caller.ice and self.callee.ice:
            reason = ICE_UNSELECTED
        self.timeout_wait = int(wait)
        session = self.session
        self.close(reason)
        session.stream_expired()

    def check_timers(self, now: float) -> None:
        for substream in (self.rtp, self.rtcp):
            for sub in (substream.caller, substream.callee):
                if sub.deadline is not None and now >= sub.deadline:
                    self.substream_expired(substream, sub.reason, sub.wait)
                    return
            if substream.caller.latched and substream.callee.latched:
                total = substream.total_packets
                if total != substream.idle_mark[0]:
                    substream.idle_mark = (total, now)
                elif now - substream.idle_mark[1] >= self.relay.config.idle_timeout:
                    substream.idle_mark = (total, now)
                    self.substream_expired(substream, IDLE, self.relay.config.idle_timeout)
                    return

    def close(self, status: str = "closed") -> None:
        if not self.alive:
            return
        self.alive = False
        self.status = status
        self.end_time = time.time()
        for sub in self.subparties():
            sub.disarm()
        self.caller.close()
        self.callee.close()

    @property
    def relayed_bytes(self) -> int:
        return sum(sub.bytes for sub in self.subparties())

    def statistics(self, session) -> dict:
        info = {"media_type": self.type, "status": self.status, "timeout_wait": self.timeout_wait,
                "caller_codec": self.rtp.caller.codec, "callee_codec": self.rtp.callee.codec}
        if self.start_time is None:
            info["start_time"] = info["end_time"] = None
        elif session.start_time is None:
            info["start_time"] = info["end_time"] = 0
        else:
            start = max(int(self.start_time - session.start_time), 0)
            info["start_time"] = start
            if self.status == "rejected":
                info["end_time"] = start
            elif self.end_time is None:
                info["end_time"] = session.duration
            else:
                info["end_time"] = min(int(self.end_time - session.start_time), session.duration)
        info["post_dial_delay"] = (None if self.first_media_time is None
                                   else self.first_media_time - self.create_time)
        rtp, rtcp = self.rtp, self.rtcp
        info["caller_bytes"] = rtp.caller.bytes + rtcp.caller.bytes
        info["callee_bytes"] = rtp.callee.bytes + rtcp.callee.bytes
        info["caller_packets"] = rtp.caller.packets + rtcp.caller.packets
        info["callee_packets"] = rtp.callee.packets + rtcp.callee.packets
        info["caller_local"] = rtp.caller.local
        info["callee_local"] = rtp.callee.local
        info["caller_remote"] = rtp.caller.remote_text()
        info["callee_remote"] = rtp.callee.remote_text()
        return info


class Session:
    def __init__(self, relay, owner, call_id, from_tag, from_uri, to_uri):
        self.relay, self.owner = relay, owner
        self.call_id, self.from_tag = call_id, from_tag
        self.from_uri, self.to_uri = from_uri, to_uri
        self.to_tag = self.caller_ua = self.callee_ua = None
        self.cseq = self.previous_cseq = None
        self.streams = {}            # (caller CSeq, callee CSeq) -> [MediaStream]
        self.start_time = self.end_time = None

    def update(self, cseq: int, to_tag, user_agent, media: list,
               downstream: bool, caller_cseq: bool) -> None:
        old = self.cseq or (0, 0)
        if caller_cseq:
            key = (cseq, old[1])
            if self.to_tag is None and to_tag:
                self.to_tag = to_tag
        else:
            key = (old[0], cseq)
        party = CALLER if downstream else CALLEE
        if party == CALLER and self.caller_ua is None:
            self.caller_ua = user_agent
        elif party == CALLEE and self.callee_ua is None:
            self.callee_ua = user_agent
        if self.cseq is None or key > self.cseq:
            self._offer(key, party, media)
        elif key == self.cseq:
            self._answer(key, party, media, to_tag)
        else:
            log.debug("got old CSeq %d:%d, ignoring", *key)

    def _offer(self, key, party: str, media: list) -> None:
        if not media:
            return
        current = self.streams.get(self.cseq, [])
        new = []
        try:
            for entry in media:
                stream = next((s for s in current if s not in new and s.matches(party, entry)), None)
                if stream is None:
                    stream = MediaStream(self, entry, party)
                else:
                    stream.check_hold(party, entry)
                new.append(stream)
        except PortsExhausted:
            for stream in new:
                if stream not in current:
                    stream.close()
            raise
        for stream in self.streams.get(self.previous_cseq, []):
            if stream not in current and stream not in new:
                stream.close()
        self.streams[key] = new
        self.previous_cseq, self.cseq = self.cseq, key

    def _answer(self, key, party: str, media: list, to_tag) -> None:
        now = time.time()
        if self.start_time is None:
            self.start_time = now
        current = self.streams[key]
        for stream in current:
            if stream.start_time is None:
                stream.start_time = now
        if to_tag and not media:
            return
        for stream in current[len(media):]:
            stream.close("rejected")
        for stream, entry in zip(current, media):
            if stream.type != entry.type:
                raise CommandError("media types do not match: %r and %r" % (stream.type, entry.type))
            if entry.port == 0:
                stream.close("rejected")
                continue
            stream.check_hold(party, entry)
            old = stream.party(party).remote_sdp
            if old is None or old[0] == NULL_IP:
                stream.set_sdp(party, entry.ip, entry.port)
            elif old[1] != entry.port or (entry.ip not in (old[0], NULL_IP)):
                log.debug("updating stream of %s for %s", self.call_id, party)
                stream.reset(party, entry.ip, entry.port)
        for stream in self.streams.get(self.previous_cseq, []):
            if stream not in current:
                stream.close()

    def local_ports(self, downstream: bool, cseq: int, caller_cseq: bool):
        """Relay ports to put in the SDP, or None if nothing is known for that CSeq."""
        pos = 0 if caller_cseq else 1
        keys = [k for k in self.streams if k[pos] == cseq]
        if not keys:
            return None
        side = CALLEE if downstream else CALLER
        return [s.local_port(side) for s in self.streams[max(keys)]]

    def all_streams(self) -> list:
        return list(dict.fromkeys(chain.from_iterable(self.streams.values())))

    def live_streams(self) -> list:
        return [s for s in self.all_streams() if s.alive]

    def stream_expired(self) -> None:
        if not self.live_streams():
            self.relay.session_expired(self)

    def close(self) -> None:
        self.end_time = time.time()
        for stream in self.all_streams():
            stream.close()

    @property
    def duration(self) -> int:
        if self.start_time is None:
            return 0
        return int((self.end_time or time.time()) - self.start_time)

    def statistics(self) -> dict:
        stats = {"call_id": self.call_id, "from_tag": self.from_tag, "from_uri": self.from_uri,
                 "to_tag": self.to_tag, "to_uri": self.to_uri, "start_time": self.start_time,
                 "duration": self.duration, "caller_ua": self.caller_ua or "Unknown",
                 "callee_ua": self.callee_ua or "Unknown", "username": None}
        answered = [s for s in self.all_streams() if s.start_time is not None]
        answered.sort(key=lambda s: s.start_time)
        stats["streams"] = [s.statistics(self) for s in answered]
        return stats


class Relay:
    """All sessions of one relay IP.  ``handle()`` answers dispatcher commands.

    ``on_expired(owner, stats)`` is called when a session expires by itself;
    ``owner`` is whatever was passed to ``handle()`` when the session was created.
    """

    def __init__(self, config: RelayConfig, on_expired=None):
        self.config = config
        self.on_expired = on_expired
        self.ports = PortPool(*config.port_range)
        self.sessions = {}
        self.loop = None
        self.start_time = time.time()
        self.bps_relayed = 0
        self._byte_totals = {}
        self._timer_task = None

    def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._timer_task = self.loop.create_task(self._timers())

    async def _timers(self) -> None:
        next_sample = self.loop.time() + self.config.traffic_sampling_period
        while True:
            await asyncio.sleep(self.config.tick)
            now = self.loop.time()
            for session in list(self.sessions.values()):
                for stream in session.live_streams():
                    stream.check_timers(now)
            if now >= next_sample:
                self._sample_speed()
                next_sample = now + self.config.traffic_sampling_period

    def _sample_speed(self) -> None:
        totals = {key: sum(s.relayed_bytes for s in session.all_streams())
                  for key, session in self.sessions.items()}
        delta = sum(total - self._byte_totals.get(key, 0) for key, total in totals.items())
        self.bps_relayed = int(8 * delta / self.config.traffic_sampling_period)
        self._byte_totals = totals

    # -- commands ---------------------------------------------------------------------

    def handle(self, owner, command: str, lines) -> str:
        """Answer one dispatcher command (header lines as received); never raises."""
        try:
            headers = relay_headers(command, lines)
            return getattr(self, "_cmd_" + command)(owner, headers)
        except (CommandError, PortsExhausted) as e:
            log.error("%s: %s", command, e)
        except Exception:
            log.exception("error processing %r command", command)
        return "error"

    def _find(self, call_id, from_tag, to_tag):
        for tag in (from_tag, to_tag):
            if tag and (call_id, tag) in self.sessions:
                return (call_id, tag)
        return None

    def _cmd_update(self, owner, h) -> str:
        media, to_tag = h.get("media", []), h.get("to_tag")
        key = self._find(h["call_id"], h["from_tag"], to_tag)
        if key is not None:
            session = self.sessions[key]
            downstream = (session.from_tag != h["from_tag"]) ^ (h["type"] == "request")
            caller_cseq = session.from_tag == h["from_tag"]
            session.update(h["cseq"], to_tag, h["user_agent"], media, downstream, caller_cseq)
        elif h["type"] == "reply" and not media:
            return "None"
        else:
            downstream, caller_cseq = h["type"] == "request", True
            session = Session(self, owner, h["call_id"], h["from_tag"], h["from_uri"], h["to_uri"])
            try:
                session.update(h["cseq"], to_tag, h["user_agent"], media, downstream, caller_cseq)
            except Exception:
                session.close()
                raise
            self.sessions[(h["call_id"], h["from_tag"])] = session
            log.debug("created session %s (%s -> %s)", h["call_id"], h["from_uri"], h["to_uri"])
        ports = session.local_ports(downstream, h["cseq"], caller_cseq)
        if not ports:
            return "None"
        ip = self.config.advertised_ip or self.config.relay_ip
        return " ".join([ip] + [str(p) for p in ports])

    def _cmd_remove(self, owner, h) -> str:
        key = self._find(h["call_id"], h["from_tag"], h.get("to_tag"))
        if key is None:
            log.warning("remove for session %s that is not on this relay", h["call_id"])
            return "error"
        session = self.sessions.pop(key)
        session.close()
        return json.dumps(session.statistics())

    def _cmd_sessions(self, owner, h) -> str:
        return json.dumps([s.statistics() for s in self.sessions.values()])

    def _cmd_summary(self, owner, h) -> str:
        return json.dumps(self.summary())

    def summary(self) -> dict:
        counts = {}
        for session in self.sessions.values():
            for stream in session.live_streams():
                counts[stream.type] = counts.get(stream.type, 0) + 1
        return {"ip": self.config.relay_ip, "version": VERSION, "status": "active",
                "uptime": int(time.time() - self.start_time), "session_count": len(self.sessions),
                "stream_count": counts, "bps_relayed": self.bps_relayed}

    # -- expiry and shutdown ----------------------------------------------------------

    def session_expired(self, session) -> None:
        key = (session.call_id, session.from_tag)
        if self.sessions.pop(key, None) is None:
            return
        session.close()
        stats = session.statistics()
        log.info("session %s expired: %s", session.call_id,
                 ", ".join(s["status"] for s in stats["streams"]) or "no answered stream")
        if self.on_expired is not None:
            self.on_expired(session.owner, stats)

    def shutdown(self) -> None:
        """Expire every session (each reported) and stop the timers."""
        for session in list(self.sessions.values()):
            for stream in session.live_streams():
                stream.close("closed")
            self.session_expired(session)
        if self._timer_task is not None:
            self._timer_task.cancel()

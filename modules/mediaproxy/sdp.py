"""SDP handling of the OpenSIPS ``mediaproxy`` module, byte for byte.

Pure functions, no I/O.  ``parse()`` reads a body the way mediaproxy.c does
(reference §3.1: case-sensitive line-start searches, stream blocks running from
one m= port token to the next, the line separator taken after ``v=``),
``media_line()`` builds the ``media:`` line of the ``update`` command (§2.2) and
``rewrite()`` turns the dispatcher's reply into a list of byte-range ``Edit``s
against the original body (§3.3-3.9).  ``apply_edits()`` applies such a list the
way OpenSIPS applies lumps: sorted by offset, same-offset edits in call order.
"""

from __future__ import annotations

import re
import socket
import struct
from dataclasses import dataclass, field
from typing import NamedTuple, Sequence

MAX_STREAMS = 32
MEDIA_BUFFER = 4096  # size of the C module's media_str buffer

ICE_HIGH_PRIORITY = (130 << 24) + 16777215  # 2197815295
ICE_LOW_PRIORITY = 16777215
ICE_INVALID_PRIORITY = 0xFFFFFFFF  # (unsigned)-1: script-mode quirk, §3.9

_TOKEN = re.compile(rb"[^ \t\r\n]+")
_DIRECTIONS = (b"sendrecv", b"sendonly", b"recvonly", b"inactive")
_NULL_ADDR = b"0.0.0.0"


class SDPError(ValueError):
    """The body cannot be handled; the module logs and returns -1."""


class Edit(NamedTuple):
    """Replace ``body[start:end]`` with ``text`` (``start == end``: insert)."""

    start: int
    end: int
    text: bytes


Span = tuple[int, int]  # (start, end) byte offsets into the body


@dataclass(frozen=True)
class Stream:
    """One m= line and the facts the module takes from its block."""

    type: bytes
    port: bytes                 # without a trailing "/1"
    port_span: Span
    supported: bool
    ip: bytes                   # own c= address, else the session's
    ip_span: Span | None        # span of the own c= address, None if inherited
    next_line: int              # insertion point after the m= line (§3.8)
    rtcp_port: bytes | None
    rtcp_port_span: Span | None
    rtcp_ip_span: Span | None   # 4th token of a=rtcp:, if present
    direction: bytes
    has_ice: bool
    has_rtcp_ice: bool          # some candidate has component id 2
    first_candidate: int | None

    @property
    def local_ip(self) -> bool:
        return self.ip_span is not None


@dataclass(frozen=True)
class Session:
    """The parsed SDP.  ``streams`` is empty when there is no m= line."""

    ip: bytes | None = None
    ip_span: Span | None = None
    ip_line_span: Span | None = None  # whole session c= line with its line breaks
    direction: bytes = b"sendrecv"
    separator: bytes = b"\r\n"
    streams: tuple = ()
    body: bytes = field(default=b"", repr=False)

    @property
    def supported_count(self) -> int:
        return sum(1 for s in self.streams if s.supported)


# -- C string helpers, same semantics as mediaproxy.c -------------------------

def _find_line(buf: bytes, needle: bytes, start: int, end: int) -> int:
    """First ``needle`` at a line start within [start, end); ``start`` counts as one."""
    pos = start
    while True:
        i = buf.find(needle, pos, end)
        if i <= start or buf[i - 1] in b"\r\n":
            return i
        pos = i + len(needle)


def _count_lines(buf: bytes, needle: bytes, start: int, end: int) -> int:
    count, pos = 0, start
    while True:
        i = buf.find(needle, pos, end)
        if i < 0:
            return count
        if i == start or buf[i - 1] in b"\r\n":
            count += 1
        pos = i + len(needle)


def _line_end(buf: bytes, pos: int, end: int) -> int:
    while pos < end and buf[pos] not in b"\r\n":
        pos += 1
    return pos


def _tokens(buf: bytes, start: int, end: int, limit: int) -> list:
    """Up to ``limit`` whitespace-separated token spans in [start, end)."""
    spans = []
    for m in _TOKEN.finditer(buf, start, end):
        spans.append(m.span())
        if len(spans) == limit:
            break
    return spans


def _strtoint(text: bytes) -> int:
    """C ``strtol(s, NULL, 10)`` truncated to int: leading digits, else 0."""
    m = re.match(rb"\s*([+-]?\d+)", text)
    if not m:
        return 0
    value = int(m.group(1)) & 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def _line_value(buf: bytes, prefix: bytes, start: int, end: int):
    """(value_start, value_end) of the first line starting with ``prefix``, or None."""
    i = _find_line(buf, prefix, start, end)
    if i < 0:
        return None
    vstart = i + len(prefix)
    return vstart, _line_end(buf, vstart, end)


def _c_address(buf: bytes, start: int, end: int):
    """Span of the address in the block's first c= line, None if none; SDPError if short."""
    line = _line_value(buf, b"c=", start, end)
    if line is None:
        return None
    tokens = _tokens(buf, *line, 3)
    if len(tokens) != 3:
        raise SDPError("invalid `c=' line in SDP body")
    return tokens[2]


def _direction(buf: bytes, start: int, end: int, default: bytes) -> bytes:
    pos = start
    while True:
        line = _line_value(buf, b"a=", pos, end)
        if line is None:
            return default
        value = buf[line[0]:line[1]]
        if len(value) == 8 and value.lower() in _DIRECTIONS:
            return value
        pos = line[1]


def _has_ice_attributes(buf: bytes, start: int, end: int) -> bool:
    return (_find_line(buf, b"a=ice-pwd:", start, end) >= 0
            and _find_line(buf, b"a=ice-ufrag:", start, end) >= 0)


def _has_candidate_component(buf: bytes, start: int, end: int, component: int) -> bool:
    pos = start
    while True:
        line = _line_value(buf, b"a=candidate:", pos, end)
        if line is None:
            return False
        tokens = _tokens(buf, *line, 2)
        if len(tokens) == 2 and _strtoint(buf[slice(*tokens[1])]) == component:
            return True
        pos = line[1]


# -- parsing -------------------------------------------------------------------

def _supported_transport(proto: bytes) -> bool:
    return proto[:3].lower() in (b"rtp", b"udp")


def _separator(body: bytes) -> bytes:
    v = _find_line(body, b"v=", 0, len(body))
    start = _line_end(body, v, len(body))
    end = start
    while end < len(body) and body[end] in b"\r\n":
        end += 1
    return body[start:min(end, start + 2)]


def parse(body: bytes) -> Session:
    """Parse an SDP body like mediaproxy.c's get_session_info(); SDPError on failure."""
    end = len(body)
    if _count_lines(body, b"v=", 0, end) != 1:
        raise SDPError("cannot handle more than 1 media session in SDP")
    count = _count_lines(body, b"m=", 0, end)
    if count > MAX_STREAMS:
        raise SDPError("cannot handle more than %d media streams in SDP" % MAX_STREAMS)
    if count == 0:
        return Session(body=body)

    session_end = _find_line(body, b"m=", 0, end)
    ip_span = _c_address(body, 0, session_end)
    ip = ip_line_span = None
    if ip_span is not None:
        ip = body[slice(*ip_span)]
        if b"/" in ip:
            raise SDPError("unsupported multicast IP specification in SDP: %s" % ip.decode("latin-1"))
        line_start = _find_line(body, b"c=", 0, session_end)
        line_stop = _line_end(body, line_start, session_end)
        while line_stop < end and body[line_stop] in b"\r\n":
            line_stop += 1
        ip_line_span = (line_start, line_stop)
    direction = _direction(body, 0, session_end, b"sendrecv")
    separator = _separator(body)
    session_ice = _has_ice_attributes(body, 0, session_end)

    m_lines = []  # (type, port, port_span, supported, next_line)
    pos = 0
    for number in range(1, count + 1):
        m = _find_line(body, b"m=", pos, end)
        zone_end = _line_end(body, m + 2, end)
        tokens = _tokens(body, m + 2, zone_end, 3)
        if len(tokens) != 3:
            raise SDPError("invalid `m=' line in the SDP body")
        next_line = min(zone_end + len(separator), end)
        port_start, port_end = tokens[1]
        supported = _supported_transport(body[slice(*tokens[2])])
        if supported:
            slash = body.find(b"/", port_start, port_end)
            if slash >= 0:
                if slash + 1 == port_end:
                    raise SDPError("invalid port specification in `m=' line: %s"
                                   % body[port_start:port_end].decode("latin-1"))
                if body[slash + 1:port_end] != b"1":
                    raise SDPError("unsupported number of ports specified in `m=' line")
                port_end = slash
        m_lines.append((body[slice(*tokens[0])], body[port_start:port_end],
                        (port_start, port_end), supported, next_line))
        pos = zone_end

    streams = []
    for i, (mtype, port, port_span, supported, next_line) in enumerate(m_lines):
        block_start = port_span[0]
        block_end = m_lines[i + 1][2][0] if i + 1 < count else end
        own_ip = _c_address(body, block_start, block_end)
        if own_ip is None:
            if ip is None:
                raise SDPError("media stream number %d doesn't define a contact IP "
                               "and the session-level IP is missing" % (i + 1))
            stream_ip = ip
        else:
            stream_ip = body[slice(*own_ip)]
            if supported and b"/" in stream_ip:
                raise SDPError("unsupported multicast IP specification in stream nr %d: %s"
                               % (i + 1, stream_ip.decode("latin-1")))
        rtcp_port = rtcp_port_span = rtcp_ip_span = None
        rtcp = _line_value(body, b"a=rtcp:", block_start, block_end)
        if rtcp is not None:
            tokens = _tokens(body, *rtcp, 4)
            if tokens:
                rtcp_port_span = tokens[0]
                rtcp_port = body[slice(*rtcp_port_span)]
            if len(tokens) == 4:
                rtcp_ip_span = tokens[3]
        first_candidate = _find_line(body, b"a=candidate:", block_start, block_end)
        has_ice = first_candidate >= 0 and (
            session_ice or _has_ice_attributes(body, block_start, block_end))
        streams.append(Stream(
            type=mtype, port=port, port_span=port_span, supported=supported,
            ip=stream_ip, ip_span=own_ip, next_line=next_line,
            rtcp_port=rtcp_port, rtcp_port_span=rtcp_port_span, rtcp_ip_span=rtcp_ip_span,
            direction=_direction(body, block_start, block_end, direction),
            has_ice=has_ice,
            has_rtcp_ice=_has_candidate_component(body, block_start, block_end, 2),
            first_candidate=first_candidate if first_candidate >= 0 else None,
        ))
    return Session(ip=ip, ip_span=ip_span, ip_line_span=ip_line_span, direction=direction,
                   separator=separator, streams=tuple(streams), body=body)


def has_remote_candidates(body: bytes) -> bool:
    """True if a line starts with ``a=remote-candidates`` (end of ICE negotiation, §1.3)."""
    return _find_line(body, b"a=remote-candidates", 0, len(body)) >= 0


def is_sdp_content_type(value) -> bool:
    """Content-Type check of §1.3 step 4; ``None`` (header missing) is accepted."""
    if value is None:
        return True
    if isinstance(value, str):
        value = value.encode("latin-1", "replace")
    value = value.strip()
    return value[:15].lower() == b"application/sdp" and (
        len(value) == 15 or value[15:16] in (b" ", b"\t", b";", b"\r", b"\n", b"\v", b"\f"))


# -- the update command's media line -------------------------------------------

def media_line(session: Session) -> bytes:
    """``b"media: type:ip:port:direction:ice=yes|no,...\\r\\n"`` for the supported streams."""
    entries = []
    room = MEDIA_BUFFER - len(b"media: ") - 2
    for s in session.streams:
        if not s.supported:
            continue
        if len(s.type) + len(s.ip) + len(s.port) + len(s.direction) + 4 > room:
            raise SDPError("media stream description is longer than %d bytes" % MEDIA_BUFFER)
        entry = b"%s:%s:%s:%s:%s" % (s.type, s.ip, s.port, s.direction,
                                     b"ice=yes" if s.has_ice else b"ice=no")
        entries.append(entry)
        room -= len(entry) + 1
    if not entries:
        return b""
    return b"media: " + b",".join(entries) + b"\r\n"


# -- ICE priority ----------------------------------------------------------------

def ice_priority(setting, *, engage: bool = False) -> int | None:
    """Candidate priority for an ``ice_candidate`` value, None for no candidate (§3.5, §3.9).

    ``high-priority``/``low-priority`` (any case) give 2197815295/16777215,
    ``none`` gives None.  Any other value gives 4294967295 in script mode (the C
    module's unsigned -1) and None in engage mode.
    """
    if isinstance(setting, bytes):
        setting = setting.decode("latin-1")
    setting = (setting or "").lower()
    if setting == "high-priority":
        return ICE_HIGH_PRIORITY
    if setting == "low-priority":
        return ICE_LOW_PRIORITY
    if setting == "none" or engage:
        return None
    return ICE_INVALID_PRIORITY


def _foundation(ip: bytes) -> bytes:
    """``R`` + the address bytes read as a little-endian uint32, in hex."""
    try:
        value = struct.unpack("<I", socket.inet_aton(ip.decode("ascii")))[0]
    except (OSError, UnicodeDecodeError, ValueError):
        value = 0
    return b"R%x" % value


# -- rewriting ---------------------------------------------------------------------

def rewrite(session: Session, ip: bytes, ports: Sequence[bytes],
            ice_priority: int | None = None) -> list:
    """Edits that point the SDP at the relay ``ip``/``ports`` (the dispatcher reply).

    ``ports`` holds one token per supported stream, in order; with fewer (a
    broken reply, see §7 E12) the rewrite stops at the first stream without one.
    ``ice_priority`` from ``ice_priority()``; None adds no relay candidate.
    """
    body, sep, edits = session.body, session.separator, []

    def replace(span, text):  # replace_element(): nothing to do if unchanged
        if body[span[0]:span[1]] != text:
            edits.append(Edit(span[0], span[1], text))

    removed_session_ip = False
    if session.ip is not None and session.ip != _NULL_ADDR:
        if session.supported_count == len(session.streams):
            replace(session.ip_span, ip)
        else:
            edits.append(Edit(*session.ip_line_span, b""))
            removed_session_ip = True

    j = 0
    for s in session.streams:
        if not s.supported:
            if not s.local_ip and removed_session_ip:
                edits.append(Edit(s.next_line, s.next_line, b"c=IN IP4 " + session.ip + sep))
            continue
        if j >= len(ports):
            break
        port = ports[j]
        if s.port != b"0":
            replace(s.port_span, port)
        if s.rtcp_port and s.rtcp_port != b"0":
            replace(s.rtcp_port_span, b"%d" % (_strtoint(port) + 1))
        if s.rtcp_ip_span is not None:
            replace(s.rtcp_ip_span, ip)
        if s.local_ip and s.ip != _NULL_ADDR:
            replace(s.ip_span, ip)
        elif not s.local_ip and removed_session_ip:
            edits.append(Edit(s.next_line, s.next_line, b"c=IN IP4 " + ip + sep))
        if ice_priority is not None and s.has_ice and s.first_candidate is not None:
            foundation, number = _foundation(ip), _strtoint(port)
            line = b"a=candidate:%s %d UDP %d %s %d typ relay raddr %s rport %d%s"
            at = s.first_candidate
            edits.append(Edit(at, at, line % (foundation, 1, ice_priority, ip, number,
                                              ip, number, sep)))
            if s.has_rtcp_ice:
                rtcp_priority = (ice_priority - 1) & 0xFFFFFFFF
                edits.append(Edit(at, at, line % (foundation, 2, rtcp_priority, ip, number + 1,
                                                  ip, number + 1, sep)))
        j += 1
    return edits


def apply_edits(body: bytes, edits: Sequence[Edit]) -> bytes:
    """Apply edits made against ``body``: by start offset, equal offsets in list order."""
    out, pos = [], 0
    for start, end, text in sorted(edits, key=lambda e: e[0]):
        if start < pos:
            raise ValueError("overlapping edits at offset %d" % start)
        out.append(body[pos:start])
        out.append(text)
        pos = end
    out.append(body[pos:])
    return b"".join(out)

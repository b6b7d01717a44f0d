"""Local replies (RFC 3261 8.2.6) and reply routing by Via (RFC 3261 18.2, RFC 3581).

``make_reply`` copies from the request what 8.2.6.2 requires -- every Via in order, From,
To (adding a tag), Call-ID, CSeq -- plus Timestamp on a 100 (8.2.6.1). It reads the raw
header values, so it can answer a request whose other headers are broken (a 400 for a
request with an unparsable Contact must still be sendable).
"""
from __future__ import annotations

try:  # CPython's own MD5: for a few dozen bytes, twice as fast as OpenSSL's through hashlib
    from _md5 import md5
except ImportError:  # pragma: no cover
    from hashlib import md5
import ipaddress
import re

from .headers import ENCODING, ERRORS, SIPError, Via, split_commas
from .message import Message

__all__ = ["make_reply", "make_to_tag", "via_received_params", "reply_destination"]

_TAG_RE = re.compile(r";[ \t]*tag[ \t]*=", re.I)
_CL_LINE_RE = re.compile(r"(?:content-length|l)[ \t]*:", re.I)


def make_to_tag(msg: Message) -> str:
    """A To tag that is the same for every retransmission of ``msg``: a hash of the
    Call-ID, the From tag and the top Via branch (as OpenSIPS sl does), 32 hex digits."""
    call_id = msg.get("call-id") or ""
    try:
        ftag = msg.from_.tag or ""
    except SIPError:
        ftag = msg.get("from") or ""
    try:
        v = msg.via1
        branch = (v.branch or "") if v is not None else ""
    except SIPError:
        branch = msg.get("via") or ""
    h = md5(f"cfgscript-sl\0{call_id}\0{ftag}\0{branch}".encode(ENCODING, ERRORS))
    return h.hexdigest()


def make_reply(req: Message, code: int, reason: str, *, to_tag: str | None = None,
               headers=(), body: bytes = b"", server: str | None = None,
               via1: str | None = None) -> bytes:
    """The bytes of a reply to ``req``. ``headers``: extra header lines (Contact,
    Content-Type, Allow...; a Content-Length among them is ignored); ``via1``: a replacement for the top Via value (normally
    ``via_received_params(req.via1, ...)``). A To tag (``to_tag`` or :func:`make_to_tag`)
    is added when the To has none and ``code`` > 100."""
    if not req.is_request:
        raise ValueError("make_reply() needs a request")
    if not 100 <= code <= 699:
        raise ValueError(f"bad status code {code}")
    out = [f"SIP/2.0 {code} {reason}\r\n"]
    first_via = True
    for k, value in zip(req._keys, req._values):
        if k == "via":
            if first_via and via1 is not None:
                try:
                    rest = split_commas(value)[1:]
                except SIPError:
                    rest = []
                value = ", ".join([via1] + rest)
            first_via = False
            out.append(f"Via: {value}\r\n")
    first = req._first
    for key, name in (("from", "From"), ("to", "To"), ("call-id", "Call-ID"), ("cseq", "CSeq")):
        value = first.get(key)
        if value is None:
            continue
        if key == "to" and code > 100:
            try:
                has_tag = req.to.tag is not None
            except SIPError:
                has_tag = _TAG_RE.search(value) is not None
            if not has_tag:
                value = f"{value};tag={to_tag if to_tag is not None else make_to_tag(req)}"
        out.append(f"{name}: {value}\r\n")
    if code == 100:
        ts = first.get("timestamp")
        if ts is not None:
            out.append(f"Timestamp: {ts}\r\n")
    if server:
        out.append(f"Server: {server}\r\n")
    for line in headers:
        line = line.rstrip("\r\n")
        if line and _CL_LINE_RE.match(line) is None:  # we write Content-Length ourselves
            out.append(line + "\r\n")
    if isinstance(body, str):
        body = body.encode(ENCODING, ERRORS)
    out.append(f"Content-Length: {len(body)}\r\n\r\n")
    return "".join(out).encode(ENCODING, ERRORS) + body


# ------------------------------------------------------------------------ Via and routing

_IPS: dict = {}   # host text -> ip_address or None (bounded memo: parsing is slow)


def _ip(host: str):
    try:
        return _IPS[host]
    except KeyError:
        pass
    h = host[1:-1] if host[:1] == "[" and host[-1:] == "]" else host
    try:
        ip = ipaddress.ip_address(h)
    except ValueError:
        ip = None
    if len(_IPS) >= 4096:
        _IPS.clear()
    _IPS[host] = ip
    return ip


def via_received_params(via: Via, src_ip: str, src_port: int, force_rport: bool = False) -> str:
    """The Via value to use once the request that carried ``via`` arrived from
    ``src_ip:src_port``: RFC 3261 18.2.1 adds ``received=src_ip`` when the sent-by host
    differs from the source address (a host name always differs); RFC 3581 fills an empty
    ``rport`` with the source port (and then always adds ``received``). ``force_rport``
    (OpenSIPS force_rport()) acts as if ``rport`` had been present. An existing
    ``received`` / ``rport`` value is overwritten. IPv6 addresses go into ``received``
    without brackets (RFC 5118 4.5)."""
    received, rport, _ = _via_params(via.params)
    if rport is None and not force_rport and via.host == src_ip and received is None:
        return str(via)  # the common case: sent-by is the source address, nothing to add
    src = _ip(src_ip)
    src_txt = str(src) if src is not None else src_ip.strip("[]")
    want_rport = rport is not None or force_rport
    sent = _ip(via.host)
    add_received = want_rport or sent is None or src is None or sent != src
    if not add_received and not want_rport:
        return str(via)
    changes = {}
    if add_received:
        changes["received"] = src_txt
    if want_rport:
        changes["rport"] = str(src_port)
    return str(via.replace_params(**changes))


_DEFAULT_PORT = {"TLS": 5061, "WSS": 443, "WS": 80}


def _via_params(params) -> tuple:
    """(received, rport, maddr) of a Via's parameters in one pass, as its properties give
    them: the first of each name (any case), '' without a value, quotes removed."""
    received = rport = maddr = None
    for k, v in params:
        k = k.lower()
        if k == "received" or k == "rport" or k == "maddr":
            if v is None:
                v = ""
            elif v[:1] == '"':
                v = v[1:-1]
            if k == "received":
                if received is None:
                    received = v
            elif k == "rport":
                if rport is None:
                    rport = v
            elif maddr is None:
                maddr = v
    return received, rport, maddr


def reply_destination(via: Via, src: tuple[str, int] | None = None,
                      transport: str | None = None) -> tuple[str, int]:
    """Where a reply goes, from the Via it answers (RFC 3261 18.2.2, RFC 3581 4).

    ``src`` is the (ip, port) the request came from, when known (a local reply: ``via`` is
    the request's top Via, possibly without received/rport yet); None when forwarding a
    received reply upstream (``via`` is the next Via, which carries the received/rport we
    added when forwarding the request). ``transport`` defaults to the Via's.

    Reliable transports (TCP/TLS/SCTP/WS) answer to ``src`` (the connection); otherwise
    ``maddr`` wins, then received/rport (or the source address), then sent-by; the default
    port is 5060 (5061 for TLS). SIPError(None) for an unusable address (broadcast or
    unspecified, e.g. RFC 4475 bcast).
    """
    t = (transport or via.transport).upper()
    default = _DEFAULT_PORT.get(t, 5060)
    port = via.port if via.port is not None else default
    if src is not None and t in ("TCP", "TLS", "SCTP", "WS", "WSS"):
        host, p = src
        return _usable(host), int(p)
    received, rport, maddr = _via_params(via.params)
    if maddr:
        return _usable(maddr), port
    if src is not None:
        host = received or src[0]
        if rport is not None:
            port = int(src[1]) if rport == "" else _port(rport)
        return _usable(host), port
    if received:
        if rport:
            port = _port(rport)
        return _usable(received), port
    if rport:
        port = _port(rport)
    return _usable(via.host), port


def _port(s: str) -> int:
    if not (s.isascii() and s.isdigit()) or len(s) > 5 or int(s) > 65535 or int(s) == 0:
        raise SIPError(None, "Bad rport")
    return int(s)


_USABLE: dict = {}   # host -> True when it is an address a reply can go to (bounded memo)
_BROADCAST = ipaddress.IPv4Address("255.255.255.255")


def _usable(host: str) -> str:
    if host in _USABLE:
        return host
    ip = _ip(host)
    if ip is not None:
        if ip.is_unspecified or (ip.version == 4 and ip == _BROADCAST):
            raise SIPError(None, f"Unusable reply address {host}")
    elif not host:
        raise SIPError(None, "No reply address")
    if len(_USABLE) >= 4096:
        _USABLE.clear()
    _USABLE[host] = True
    return host

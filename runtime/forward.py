"""Stateless forwarding (OpenSIPS `forward()`), replies by Via, local replies, next hops."""
from __future__ import annotations

try:  # CPython's own MD5: for a few dozen bytes, twice as fast as OpenSSL's through hashlib
    from _md5 import md5
except ImportError:  # pragma: no cover
    from hashlib import md5
import socket as pysocket
import time

from .sip.edits import build_reply, build_request
from .sip.headers import SIPError
from .sip.reply import make_reply, make_to_tag, reply_destination, via_received_params
from .pv import parse_uri

_DNS_TTL = 60.0
_dns_cache: dict = {}


_literals: dict = {}   # IP literal as written -> the address (bounded)


def resolve(host: str) -> str | None:
    """An IP for a host name (A/AAAA only; cached for a minute). None when unknown."""
    ip = _literals.get(host)
    if ip is not None:
        return ip
    h = host.strip("[]")
    try:
        pysocket.inet_pton(pysocket.AF_INET6 if ":" in h else pysocket.AF_INET, h)
        if len(_literals) >= 4096:
            _literals.clear()
        _literals[host] = h
        return h
    except OSError:
        pass
    hit = _dns_cache.get(h)
    now = time.monotonic()
    if hit and hit[1] > now:
        return hit[0]
    try:
        ip = pysocket.getaddrinfo(h, None, type=pysocket.SOCK_DGRAM)[0][4][0]
    except (OSError, UnicodeError):
        ip = None
    _dns_cache[h] = (ip, now + _DNS_TTL)
    return ip


_hops: dict = {}   # (target, default_proto) -> (proto, host, port) before resolving (bounded)


def next_hop(target: str, default_proto: str = "udp"):
    """(proto, ip, port) for a SIP URI or an OpenSIPS destination `[proto:]host[:port]`."""
    hop = _hops.get((target, default_proto))
    if hop is None:
        hop = _hop(target, default_proto)
        if hop is None:
            return None
        if len(_hops) >= 4096:
            _hops.clear()
        _hops[(target, default_proto)] = hop
    proto, host, port = hop
    ip = resolve(host)
    if ip is None:
        return None
    return proto, ip, port


def _hop(target: str, default_proto: str):
    text = target.strip()
    proto = None
    if text[:4].lower() in ("sip:", "sips", "tel:"):
        u = parse_uri(text)
        if u is None or not u.host:
            return None
        host, port = u.host, u.port
        proto = (u.param("transport") or "").lower() or None
        maddr = u.param("maddr")
        if maddr:
            host = maddr
        if u.scheme.lower() == "sips":
            proto = "tls"
    else:
        head, _, rest = text.partition(":")
        if head.lower() in ("udp", "tcp", "tls", "sctp", "ws", "wss") and rest:
            proto, text = head.lower(), rest
        if text.startswith("["):
            end = text.find("]")
            host, port = text[:end + 1], text[end + 2:] or None
        else:
            host, _, port = text.partition(":")
        port = int(port) if port else None
    proto = proto or default_proto
    return proto, host, port or (5061 if proto == "tls" else 5060)


def _branch(ctx) -> str:
    """Stateless branch: the same for retransmissions and for the CANCEL of an INVITE."""
    msg = ctx.msg
    try:
        seed = msg.via1.branch or ""
    except SIPError:
        seed = ""
    if not seed.startswith("z9hG4bK"):
        seed = f"{msg.get('call-id')}|{msg.get('cseq', '').split()[0] if msg.get('cseq') else ''}|{seed}"
    return "z9hG4bK" + md5(("sl" + seed).encode("utf-8", "surrogateescape")).hexdigest()[:20]


def via_for(ctx, sock, branch: str) -> str:
    host = ctx.adv_address or sock.via_host
    port = ctx.adv_port or sock.via_port
    return f"SIP/2.0/{sock.proto.upper()} {host}:{port};branch={branch}"


def mark_received(ctx):
    """RFC 3261 18.2.1 / RFC 3581: received/rport on the top Via of a forwarded request."""
    msg = ctx.msg
    v1 = msg.via1
    if v1 is None:
        return
    new = via_received_params(v1, ctx.src_ip, ctx.src_port, ctx.force_rport)
    old = v1.text
    if new is not old and new != (str(v1) if old is None else old):
        ctx.get_edits().replace_via1(new)


def outgoing_headers(ctx, sock) -> list:
    """Header lines modules add to a request as it leaves by `sock` (Record-Route...):
    [((where, ref_header_or_None), line)]; `where` as Edits.add_header takes it."""
    out = []
    for hook in ctx.rt.outgoing_hooks:
        out.extend(hook(ctx, sock))
    return out


def choose_socket(ctx, proto: str, ip: str):
    rt = ctx.rt
    if ctx.force_socket is not None:
        return ctx.force_socket
    af = pysocket.AF_INET6 if ":" in ip else pysocket.AF_INET
    if ctx.socket is not None and ctx.socket.proto == proto and ctx.socket.af == af:
        return ctx.socket
    return rt.socket_for(proto, af)


def forward_request(ctx, dest: str | None = None) -> int:
    """Send the request on, statelessly: to `dest`, else $du, else the R-URI."""
    msg = ctx.msg
    rt = ctx.rt
    hop = next_hop(dest or ctx.dst_uri or ctx.ruri)
    if hop is None:
        rt.log.error(f"forward: cannot resolve the destination of '{dest or ctx.dst_uri or ctx.ruri}'")
        return -1
    proto, ip, port = hop
    sock = choose_socket(ctx, proto, ip)
    if sock is None:
        rt.log.error(f"forward: no {proto} socket to send from")
        return -1
    mark_received(ctx)
    edits = ctx.edits
    if rt.outgoing_hooks:
        extra = outgoing_headers(ctx, sock)
        if extra:
            edits = ctx.get_edits().copy()
            for where, line in extra:
                edits.add_header(line, *where)
    local = ctx.local_data
    data = build_request(msg, edits, top_via=via_for(ctx, sock, _branch(ctx)),
                         ruri=ctx.new_ruri, drop_route_count=local.get("drop_routes", 0)
                         if local else 0, stream=proto != "udp")
    if not rt.server.send(sock, (ip, port), data):
        return -1
    ctx.sent = True
    return 1


def forward_reply(rt, msg, edits=None, *, src=None) -> bool:
    """A reply that belongs to no transaction: drop our Via, send it to the next one."""
    vias = msg.vias
    if len(vias) < 2:
        return False
    top = vias[0]
    if not rt.is_myself(top.host, top.port or 5060):
        rt.log.debug(f"reply with a foreign top Via ({top.host}) dropped")
        return False
    try:
        host, port = reply_destination(vias[1])
    except SIPError:
        return False
    proto = vias[1].transport.lower()
    ip = resolve(host)
    if ip is None:
        return False
    sock = rt.socket_for(proto, pysocket.AF_INET6 if ":" in ip else pysocket.AF_INET) \
        or rt.socket_for("udp")
    data = build_reply(msg, edits, stream=proto != "udp")
    return rt.server.send(sock, (ip, port), data)


def send_local_reply(ctx, code: int, reason: str, *, to_tag: str | None = None,
                     headers=(), body: bytes = b"") -> bool:
    """A reply generated here (sl_send_reply), sent where the request's top Via says."""
    msg = ctx.msg
    rt = ctx.rt
    try:
        v1 = msg.via1
    except SIPError:
        return False
    if v1 is None:
        return False
    if code > 100 and to_tag is None:
        to_tag = make_to_tag(msg)
    via1 = via_received_params(v1, ctx.src_ip, ctx.src_port, ctx.force_rport)
    extra = list(headers)
    server = rt.config.get("server_header")
    if server is None and rt.config.get("server_signature", 1):
        server = "Server: cfgscript (OpenSIPS compatible)"
    if server:
        extra.append(server)
    extra.extend(ctx.local_data.get("reply_headers", ()))
    data = make_reply(msg, code, reason, to_tag=to_tag, headers=extra, body=body, via1=via1)
    try:
        host, port = reply_destination(v1, (ctx.src_ip, ctx.src_port), ctx.proto.upper())
    except SIPError:
        return False
    if ctx.force_rport:
        port = ctx.src_port
    ip = resolve(host)
    if ip is None:
        return False
    ok = rt.server.send(ctx.socket, (ip, port), data)
    if ok:
        ctx.sent = ctx.replied = True
    return ok

"""NOTIFY requests: built from a subscription dialog (RFC 6665 4.2.2, RFC 3261 12.2) and sent
through a small non-INVITE client transaction of this module's own.

The engine has no tm API for requests the proxy originates itself yet (OpenSIPS's
`t_request`/`t_uac_dlg`), so, as uac_registrant does for its REGISTERs, this module
retransmits at T1, 2*T1 ... T2 over UDP, gives up after fr_timeout (a local 408), and takes
the replies whose top Via branch is one of its own off the server's reply path before tm
sees them.
"""
from __future__ import annotations

import itertools
import secrets
import socket as pysocket

from runtime.forward import next_hop
from runtime.pv import parse_uri
from runtime.sip.headers import NameAddr, SIPError, split_commas

T1 = 0.5
T2 = 4.0


def route_set(record_route: str) -> list:
    """The URIs of a stored route set ("<uri>, <uri>")."""
    if not record_route:
        return []
    out = []
    try:
        for part in split_commas(record_route):
            out.append(NameAddr.parse(part.strip()).uri)
    except SIPError:
        return []
    return out


def dialog_route(subs) -> tuple[str, list, str]:
    """(Request-URI, Route URIs, next hop) of a request in this dialog: the route set the
    SUBSCRIBE recorded (RFC 3261 12.2.1.1), the first loose router being the next hop."""
    routes = route_set(subs.record_route)
    ruri = subs.contact
    if not routes:
        return ruri, [], ruri
    first = parse_uri(routes[0])
    if first is not None and first.param("lr") is None:
        # a strict router (RFC 2543): it becomes the Request-URI
        return routes[0], routes[1:] + [subs.contact], routes[0]
    return ruri, routes, routes[0]


def build_notify(subs, sock, branch, *, state_line, body="", content_type=None,
                 event_name=None, extra_headers=()) -> bytes:
    """The NOTIFY for this dialog, with its local_cseq."""
    ruri, routes, _ = dialog_route(subs)
    event = event_name or subs.event
    if subs.event_id:
        event += f";id={subs.event_id}"
    lines = [f"NOTIFY {ruri} SIP/2.0",
             f"Via: SIP/2.0/{sock.proto.upper()} {sock.via_host}:{sock.via_port};"
             f"branch={branch};rport",
             "Max-Forwards: 70"]
    for r in routes:
        lines.append(f"Route: <{r}>")
    lines += [f"From: <{subs.to_uri}>;tag={subs.to_tag}",
              f"To: <{subs.watcher_uri}>;tag={subs.from_tag}",
              f"Call-ID: {subs.callid}",
              f"CSeq: {subs.local_cseq} NOTIFY",
              f"Event: {event}",
              f"Contact: <{subs.local_contact}>",
              f"Subscription-State: {state_line}",
              *extra_headers]
    data = body.encode("utf-8", "surrogateescape") if body else b""
    if data and content_type:
        lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {len(data)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape") + data


class _Pending:
    __slots__ = ("data", "sock", "addr", "callback", "timers", "done")


class NotifyUAC:
    """The client transactions of NOTIFYs sent by this process."""

    def __init__(self, rt, timeout=5.0):
        self.rt = rt
        self.timeout = timeout
        self.pending: dict = {}
        self.prev_hook = None
        self.hooked = False
        self.tag = secrets.token_hex(4)
        self.ids = itertools.count(1)
        self.sent = 0

    def new_branch(self) -> str:
        return f"z9hG4bK-cfgpres-{self.tag}-{next(self.ids)}"

    def _hook(self):
        server = self.rt.server
        if self.hooked or server is None:
            return
        self.prev_hook = server.reply_hook
        server.reply_hook = self._on_reply
        self.hooked = True

    def _on_reply(self, ctx) -> bool:
        try:
            branch = ctx.msg.via1.branch or ""
        except (SIPError, AttributeError):
            branch = ""
        p = self.pending.get(branch)
        if p is None:
            return self.prev_hook(ctx) if self.prev_hook is not None else False
        if ctx.msg.status >= 200:
            self._finish(branch, ctx.msg)
        return True

    def socket_for(self, socket_info: str, proto: str, ip: str):
        rt = self.rt
        s = rt.find_socket(socket_info) if socket_info else None
        if s is not None and s.proto == proto:
            return s
        af = pysocket.AF_INET6 if ":" in ip else pysocket.AF_INET
        return rt.socket_for(proto, af) or s or rt.socket_for("udp")

    def send(self, data: bytes, sock, addr, branch, callback) -> bool:
        """Send a request; callback(reply Message | None) once: None for a timeout or a
        send failure."""
        rt = self.rt
        self._hook()
        p = _Pending()
        p.data, p.sock, p.addr, p.callback, p.timers, p.done = data, sock, addr, callback, [], \
            False
        self.pending[branch] = p
        loop = rt.server.loop
        p.timers.append(loop.call_later(self.timeout, self._finish, branch, None))
        self.sent += 1
        if not rt.server.send(sock, addr, data):
            loop.call_soon(self._finish, branch, None)
            return False
        if sock.proto == "udp":
            p.timers.append(loop.call_later(T1, self._retransmit, branch, T1))
        return True

    def _retransmit(self, branch, interval):
        p = self.pending.get(branch)
        if p is None or p.done:
            return
        self.rt.server.send(p.sock, p.addr, p.data)
        nxt = min(interval * 2, T2)
        p.timers.append(self.rt.server.loop.call_later(nxt, self._retransmit, branch, nxt))

    def _finish(self, branch, reply):
        p = self.pending.pop(branch, None)
        if p is None or p.done:
            return
        p.done = True
        for t in p.timers:
            t.cancel()
        try:
            p.callback(reply)
        except Exception:
            import traceback
            self.rt.log.error("NOTIFY callback failed:\n" + traceback.format_exc(), "presence")


def destination(target: str):
    """(proto, ip, port) for a NOTIFY's next hop, or None."""
    return next_hop(target)

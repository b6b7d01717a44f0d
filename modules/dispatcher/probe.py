"""SIP probing for the routing modules (dispatcher, load_balancer, drouting).

OpenSIPS modules probe their destinations with tm's `t_uac` (a locally originated request
in its own client transaction). cfgscript's tm does not export a way to originate requests
yet, so this file holds a small UAC of its own: one non-INVITE client transaction per probe
(RFC 3261 17.1.2: retransmissions at T1, 2*T1 ... T2 over UDP; a local 408 after
`fr_timeout`), its replies taken off the server's reply path before tm sees them (only the
ones whose Via branch is ours).

    uac = ProbeUAC.of(rt)
    uac.send("OPTIONS", "sip:10.0.0.5:5060", "sip:ping@proxy.example", callback)
    # callback(code) once: the final reply's status, or 408

One ProbeUAC per runtime, shared by the modules that probe.
"""
from __future__ import annotations

import itertools
import secrets
import socket as pysocket

from runtime.forward import next_hop
from runtime.sip.headers import SIPError

T1 = 0.5
T2 = 4.0
_instances: dict = {}


def parse_reply_codes(text) -> tuple[set, set]:
    """`"501, 403"` (OpenSIPS) or `"class=2;code=403"` (Kamailio) -> (codes, classes)."""
    codes, classes = set(), set()
    for part in str(text or "").replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        key, eq, value = part.partition("=")
        try:
            if eq and key.strip() == "class":
                classes.add(int(value))
            elif eq and key.strip() == "code":
                codes.add(int(value))
            elif not eq:
                codes.add(int(part))
        except ValueError:
            raise ValueError(f"bad reply code list '{text}'") from None
    return codes, classes


def probe_ok(code: int, codes: set, classes: set) -> bool:
    return code == 200 or code in codes or (code // 100) in classes


class _Probe:
    __slots__ = ("method", "uri", "data", "sock", "addr", "callback", "timers", "done")


class ProbeUAC:
    """The local client transactions of probes, keyed by Via branch."""

    def __init__(self, rt):
        self.rt = rt
        self.pending: dict = {}
        self.prev_hook = None
        self.hooked = False
        self.ids = itertools.count(1)
        self.tag = secrets.token_hex(4)
        self.sent = 0

    @classmethod
    def of(cls, rt) -> "ProbeUAC":
        uac = _instances.get(id(rt))
        if uac is None or uac.rt is not rt:
            uac = _instances[id(rt)] = cls(rt)
        return uac

    # --- the reply path --------------------------------------------------------------------
    def _hook(self):
        """Put our reply filter in front of whatever handles replies now (tm)."""
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
        probe = self.pending.get(branch)
        if probe is None:
            return self.prev_hook(ctx) if self.prev_hook is not None else False
        code = ctx.msg.status
        if code >= 200:
            self._finish(branch, code)
        return True

    # --- sending ---------------------------------------------------------------------------
    def send(self, method, uri, from_uri, callback, *, sock=None, max_forwards=None,
             timeout=None) -> bool:
        """Send one probe; `callback(code)` is called once with the final status."""
        rt = self.rt
        if rt.server is None or rt.server.loop is None:
            return False
        self._hook()
        hop = next_hop(uri)
        if hop is None:
            rt.log.warning(f"probe: cannot resolve '{uri}'", "probe")
            callback(408)
            return False
        proto, ip, port = hop
        if sock is None:
            af = pysocket.AF_INET6 if ":" in ip else pysocket.AF_INET
            sock = rt.socket_for(proto, af) or rt.socket_for("udp")
        if sock is None:
            rt.log.warning(f"probe: no {proto} socket to probe '{uri}'", "probe")
            callback(408)
            return False
        n = next(self.ids)
        branch = f"z9hG4bK-cfgprobe-{self.tag}-{n}"
        call_id = f"cfgprobe-{self.tag}-{n}@{sock.via_host}"
        mf = 70 if max_forwards is None or max_forwards < 0 else max_forwards
        lines = [f"{method} {uri} SIP/2.0",
                 f"Via: SIP/2.0/{sock.proto.upper()} {sock.via_host}:{sock.via_port};"
                 f"branch={branch}",
                 f"Max-Forwards: {mf}",
                 f"From: <{from_uri}>;tag={self.tag}{n:x}",
                 f"To: <{uri}>",
                 f"Call-ID: {call_id}",
                 f"CSeq: 10 {method}",
                 "Content-Length: 0"]
        p = _Probe()
        p.method, p.uri, p.sock, p.addr, p.callback = method, uri, sock, (ip, port), callback
        p.data = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")
        p.timers = []
        p.done = False
        self.pending[branch] = p
        self.sent += 1
        loop = rt.server.loop
        if timeout is None:
            timeout = float(rt.modparams.get("tm", {}).get("fr_timeout") or 5)
        p.timers.append(loop.call_later(timeout, self._finish, branch, 408))
        if not rt.server.send(sock, p.addr, p.data):
            self._finish(branch, 408)
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

    def _finish(self, branch, code):
        p = self.pending.pop(branch, None)
        if p is None or p.done:
            return
        p.done = True
        for t in p.timers:
            t.cancel()
        try:
            p.callback(code)
        except Exception:
            import traceback
            self.rt.log.error("probe callback failed:\n" + traceback.format_exc(), "probe")


def socket_of(rt, text):
    """A listening socket from `proto:host[:port]` text (DB socket columns, probing_sock)."""
    if not text:
        return None
    text = str(text).strip()
    if ":" not in text:
        text = "udp:" + text
    return rt.find_socket(text)

"""A small non-INVITE client transaction (RFC 3261 17.1.2) for requests the proxy originates
itself, with the whole reply handed back.

The engine has no API for modules to originate requests through tm yet (OpenSIPS's
`t_request`/`t_uac`), so this is the module's own: retransmissions at T1, 2*T1 ... T2 over
UDP, a timeout after `timeout` seconds, the replies whose Via branch is ours taken off the
server's reply path before tm sees them.

    uac = RequestUAC.of(rt)
    uac.send(data, sock, (ip, port), branch, callback)   # callback(reply Message | None)
"""
from __future__ import annotations

import itertools
import secrets

from runtime.sip.headers import SIPError

T1 = 0.5
T2 = 4.0
_instances: dict = {}


class _Pending:
    __slots__ = ("data", "sock", "addr", "callback", "timers", "done")


class RequestUAC:
    def __init__(self, rt):
        self.rt = rt
        self.pending: dict = {}
        self.prev_hook = None
        self.hooked = False
        self.tag = secrets.token_hex(4)
        self.ids = itertools.count(1)

    @classmethod
    def of(cls, rt) -> "RequestUAC":
        uac = _instances.get(id(rt))
        if uac is None or uac.rt is not rt:
            uac = _instances[id(rt)] = cls(rt)
        return uac

    def new_branch(self) -> str:
        return f"z9hG4bK-cfgreg-{self.tag}-{next(self.ids)}"

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

    def send(self, data: bytes, sock, addr, branch, callback, timeout=5.0) -> bool:
        rt = self.rt
        self._hook()
        p = _Pending()
        p.data, p.sock, p.addr, p.callback, p.timers, p.done = data, sock, addr, callback, [], \
            False
        self.pending[branch] = p
        loop = rt.server.loop
        p.timers.append(loop.call_later(timeout, self._finish, branch, None))
        if not rt.server.send(sock, addr, data):
            self._finish(branch, None)
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
            self.rt.log.error("request callback failed:\n" + traceback.format_exc(),
                              "uac_registrant")

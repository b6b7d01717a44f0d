"""Stateful proxying: server and client transactions, branches, reply selection.

The RFC 3261 state machines live in runtime.sip.transaction (tables); this file is their
owner: it sends what they say to send, runs their timers on the event loop, and does what
OpenSIPS's tm does on top (forking, failure/branch/onreply routes, CANCEL, 503->500...).
"""
from __future__ import annotations

import copy
try:  # CPython's own MD5: for a few dozen bytes, twice as fast as OpenSSL's through hashlib
    from _md5 import md5
except ImportError:  # pragma: no cover
    from hashlib import md5
import heapq
import itertools
import time

from runtime.context import Context, ScriptExit
from runtime.forward import choose_socket, mark_received, next_hop, outgoing_headers, resolve
from runtime.log import L_DBG
from runtime.module import BRANCH, FAILURE, ONREPLY
from runtime.sip.edits import Edits, build_reply, build_request
from runtime.sip.headers import SIPError
from runtime.sip.message import Message
from runtime.sip.reply import make_reply, make_to_tag, reply_destination, via_received_params
from runtime.sip import transaction
from runtime.sip.transaction import (INVITE_CLIENT, INVITE_SERVER, NON_INVITE_CLIENT,
                                     NON_INVITE_SERVER, Machine, response_class)

_ids = itertools.count(1)
_PREFERRED_4XX = (401, 407, 415, 420, 484)
# status // 100 -> the server machine's event for sending it (response_class)
_SEND_EVENT = (None, "send_1xx", "send_2xx", "send_300-699", "send_300-699", "send_300-699",
               "send_300-699")


class Timer:
    """A timer of :class:`Timers`; ``cancel()`` as an asyncio handle's."""

    __slots__ = ("timers", "id")

    def __init__(self, timers, id_):
        self.timers = timers
        self.id = id_

    def cancel(self):
        self.timers.pending.pop(self.id, None)

    def cancelled(self) -> bool:
        return self.id not in self.timers.pending


class Timers:
    """The transactions' timers on one event-loop timer, as OpenSIPS and Kamailio run them
    on a wheel: a timer goes into the slot of TICK seconds its time falls in; the loop wakes
    up once per slot that has timers. A timer fires between its time and one TICK later,
    never earlier. cancel() forgets the callback at once (a slot only lists numbers), so a
    cancelled timer keeps nothing alive until its slot comes."""

    TICK = 0.01

    def __init__(self, loop, log):
        self.loop = loop
        self.log = log
        self.pending: dict = {}  # timer number -> (callback, args)
        self.slots: dict = {}    # slot number -> [timer number]
        self.heap: list = []     # slot numbers that have a list in slots
        self.armed = None        # (slot number, loop handle) of the next wake-up
        self.ids = itertools.count()

    def call_later(self, delay: float, fn, *args) -> Timer:
        i = next(self.ids)
        self.pending[i] = (fn, args)
        n = int((self.loop.time() + delay) / self.TICK) + 1
        slot = self.slots.get(n)
        if slot is None:
            slot = self.slots[n] = []
            heapq.heappush(self.heap, n)
            armed = self.armed
            if armed is None or n < armed[0]:
                if armed is not None:
                    armed[1].cancel()
                self.armed = (n, self.loop.call_at(n * self.TICK, self._run, n))
        slot.append(i)
        return Timer(self, i)

    def _run(self, n):
        self.armed = None
        limit = max(n, int(self.loop.time() / self.TICK))
        heap, slots, pending = self.heap, self.slots, self.pending
        while heap and heap[0] <= limit:
            for i in slots.pop(heapq.heappop(heap)):
                entry = pending.pop(i, None)
                if entry is not None:
                    try:
                        entry[0](*entry[1])
                    except Exception:
                        import traceback
                        self.log.error("tm timer failed:\n" + traceback.format_exc(), "tm")
        if heap:  # wake up for the first slot left (callbacks may have armed a later one)
            n = heap[0]
            armed = self.armed
            if armed is None or armed[0] != n:
                if armed is not None:
                    armed[1].cancel()
                self.armed = (n, self.loop.call_at(n * self.TICK, self._run, n))


class Branch:
    """One client transaction: the request sent to one destination and what came back."""

    def __init__(self, tx, idx, uri, dst, sock, data, branch_id, flags, reliable):
        self.tx = tx
        self.idx = idx
        self.uri = uri                 # the R-URI of this branch
        self.dst = dst                 # (ip, port)
        self.sock = sock
        self.data = data               # the bytes sent (for retransmissions and CANCEL)
        self.id = branch_id            # our Via branch
        self.flags = flags
        self.reply = None              # last reply Message (None for a local 408)
        self.status = 0
        self.final = False
        self.provisional = False
        self.cancel_pending = False
        self.cancelled = False
        self.local = False
        method = tx.method
        self.machine = Machine(INVITE_CLIENT if method == "INVITE" else NON_INVITE_CLIENT,
                               reliable, B=tx.fr_timeout, F=tx.fr_timeout)
        self.timers = {}               # the machine's timers
        self.fr_timer = None           # tm's own: fr_inv_timeout once it rang (RFC timer C)
        self.reply_edits = None        # what the onreply route (and callbacks) changed

    def edits_for_reply(self, msg) -> Edits:
        """The Edits the reply being processed will be relayed with (created on demand)."""
        if self.reply_edits is None or self.reply_edits.msg is not msg:
            self.reply_edits = Edits(msg)
        return self.reply_edits


class Transaction:
    """A server transaction (the request from upstream) with its branches downstream."""

    def __init__(self, tm, ctx: Context, key):
        self.tm = tm
        self.id = next(_ids)
        self.key = key
        self.ctx = ctx                 # the request's context, kept for failure routes
        self.msg = ctx.msg
        self.method = ctx.msg.method
        self.src = (ctx.src_ip, ctx.src_port)
        self.sock = ctx.socket
        self.proto = ctx.proto
        self.created = time.monotonic()
        reliable = ctx.proto != "udp"
        self.machine = Machine(INVITE_SERVER if self.method == "INVITE" else NON_INVITE_SERVER,
                               reliable)
        self.timers = {}
        self.branches: list[Branch] = []
        self.last_response = None      # bytes of the last reply sent upstream
        self.last_status = 0
        self.local_replied = ()        # per reply sent: was it generated here
        self.to_tag = None
        self.cancelled = False
        self.on_failure = None
        self.on_reply = None
        self.on_branch = None
        self.fr_timeout = tm.fr_timeout
        self.fr_inv_timeout = tm.fr_inv_timeout
        self.in_failure = False
        self.winner = None             # the Branch whose reply went upstream
        self.callbacks = list(ctx.local_data.get("tm_callbacks", ())) if ctx.local_data \
            else []                    # cb(tx, branch, reply)
        self.upstream = None           # (force_rport, (ip, port)): where replies go

    @property
    def final_sent(self) -> bool:
        return self.last_status >= 200


class TM:
    """All transactions of the process."""

    def __init__(self, rt, params):
        self.rt = rt
        self.fr_timeout = params["fr_timeout"]
        self.fr_inv_timeout = params["fr_inv_timeout"]
        self.wt_timer = params["wt_timer"]
        self.auto_100 = params["auto_inv_100"]
        self.reason_100 = params["auto_inv_100_reason"]
        self.disable_503 = bool(rt.config.get("disable_503_translation"))
        self.timers = None             # Timers on the server's loop, made on first use
        self.request_in: list = []     # cb(ctx, tx) when a transaction is created
        self.server_txs: dict = {}     # matching key -> Transaction
        self.client: dict = {}         # our Via branch -> Branch
        self.stats = {"UAS_transactions": 0, "UAC_transactions": 0, "2xx_transactions": 0,
                      "3xx_transactions": 0, "4xx_transactions": 0, "5xx_transactions": 0,
                      "6xx_transactions": 0, "inuse_transactions": 0}

    # --- matching ----------------------------------------------------------------------
    @staticmethod
    def key_of(msg, method=None):
        """RFC 3261 17.2.3 (branch with magic cookie), else the RFC 2543 fallback."""
        memo = _last_key  # a request is matched several times in a row (script, t_relay)
        if memo[0] is msg and memo[1] == method:
            return memo[2]
        key = _key_of(msg, method)
        memo[:] = (msg, method, key)
        return key

    def lookup(self, msg, method=None):
        key = self.key_of(msg, method)
        return None if key is None else self.server_txs.get(key)

    # --- server side -------------------------------------------------------------------
    def new_tx(self, ctx) -> Transaction | None:
        key = self.key_of(ctx.msg)
        if key is None:
            return None
        tx = Transaction(self, ctx, key)
        local = ctx.local_data
        if local:
            tx.on_failure = local.get("t_on_failure")
            tx.on_reply = local.get("t_on_reply")
            tx.on_branch = local.get("t_on_branch")
            fr = local.get("fr_timeout")
            if fr:
                tx.fr_timeout = fr
            fr_inv = local.get("fr_inv_timeout")
            if fr_inv:
                tx.fr_inv_timeout = fr_inv
        self.server_txs[key] = tx
        ctx.tx = tx
        self.stats["UAS_transactions"] += 1
        self.stats["inuse_transactions"] += 1
        for cb in self.request_in:
            cb(ctx, tx)
        if tx.method == "INVITE" and self.auto_100:
            self.reply(tx, 100, self.reason_100, local=True)
        return tx

    def retransmission(self, ctx) -> bool:
        """A request of an existing transaction: resend the last reply."""
        tx = self.lookup(ctx.msg)
        if tx is None or tx.ctx is ctx:
            return False
        self._run(tx, tx.machine, "request", tx)
        return True

    def reply(self, tx, code, reason, *, local=True, msg=None, branch=None, headers=(),
              body=b"") -> bool:
        """Send a reply upstream through the server transaction."""
        if tx.last_status >= 200 and not (200 <= code < 300 and tx.method == "INVITE"
                                          and msg is not None):
            return False
        if msg is not None:
            data = build_reply(msg, branch.reply_edits if branch else None,
                               stream=tx.proto != "udp")
        else:
            if code > 100 and tx.to_tag is None:
                tx.to_tag = make_to_tag(tx.msg)
            ctx = tx.ctx
            via1 = via_received_params(tx.msg.via1, tx.src[0], tx.src[1], ctx.force_rport)
            extra = list(headers) + list(ctx.local_data.get("reply_headers", ()))
            server = self.rt.config.get("server_header")
            if server:
                extra.append(server)
            data = make_reply(tx.msg, code, reason, to_tag=tx.to_tag if code > 100 else None,
                              headers=extra, body=body, via1=via1)
        tx.last_response = data
        tx.last_status = code
        tx.local_replied += (local,)
        machine = tx.machine
        self._apply(tx, machine, machine.feed(_SEND_EVENT[code // 100]), tx)
        if code >= 200:
            cls = f"{code // 100}xx_transactions"
            self.stats[cls] = self.stats.get(cls, 0) + 1
        return True

    def send_upstream(self, tx, data):
        force = tx.ctx.force_rport
        up = tx.upstream
        if up is None or up[0] != force:
            try:
                host, port = reply_destination(tx.msg.via1, tx.src, tx.proto.upper())
            except SIPError:
                return
            if force:
                port = tx.src[1]
            ip = resolve(host)
            if ip is None:
                return
            up = tx.upstream = (force, (ip, port))
        self.rt.server.send(tx.sock, up[1], data)

    # --- relaying ----------------------------------------------------------------------
    def relay(self, ctx, proxy: str | None = None) -> int:
        """Send the request to every destination of its branch set (t_relay)."""
        tx = ctx.tx
        if tx is None:
            tx = self.new_tx(ctx)
            if tx is None:
                return -2
        if tx.last_status >= 200 and not tx.in_failure:
            return -1
        if tx.cancelled:
            return -1
        targets = [(ctx.ruri, ctx.dst_uri, ctx.bflags, None)]
        if ctx.branches:
            targets += [(b.uri, b.dst_uri, b.flags, b.path) for b in ctx.branches]
            ctx.branches = []
        mark_received(ctx)
        sent = 0
        err = -3
        for uri, dst, flags, path in targets:
            r = self._add_branch(tx, ctx, uri, proxy or dst, flags)
            if r > 0:
                sent += 1
            else:
                err = r
        if not sent:
            ctx.error_info = (500, "Server Internal Error") if err == -6 else (
                (400, "Bad Request") if err == -2 else (478, "Unresolvable destination"))
            return err
        ctx.sent = True
        return 1

    def _add_branch(self, tx, ctx, uri, dst, flags) -> int:
        idx = len(tx.branches)
        saved = (ctx.new_ruri, ctx.dst_uri, ctx.bflags, ctx.edits)
        ctx.new_ruri, ctx.dst_uri, ctx.bflags = uri, dst, flags
        ctx.edits = branch_edits(ctx)
        try:
            if tx.on_branch:
                fn = self.rt.routes.get(("branch_route", tx.on_branch))
                if fn is not None:
                    ctx.branch_idx = idx
                    if not self._run_route(ctx, fn, f"branch_route[{tx.on_branch}]", BRANCH):
                        return -1
            hop = next_hop(ctx.dst_uri or ctx.ruri)
            if hop is None:
                self.rt.log.error(f"t_relay: cannot resolve '{ctx.dst_uri or ctx.ruri}'", "tm")
                return -3
            proto, ip, port = hop
            sock = choose_socket(ctx, proto, ip)
            if sock is None:
                self.rt.log.error(f"t_relay: no {proto} socket", "tm")
                return -6
            branch_id = f"z9hG4bK{_tx_hash(tx)}.{idx}"
            top_via = f"SIP/2.0/{sock.proto.upper()} {ctx.adv_address or sock.via_host}:" \
                      f"{ctx.adv_port or sock.via_port};branch={branch_id}"
            for where, line in outgoing_headers(ctx, sock):
                ctx.edits.add_header(line, *where)
            data = build_request(ctx.msg, ctx.edits, top_via=top_via, ruri=ctx.ruri,
                                 drop_route_count=ctx.local_data.get("drop_routes", 0),
                                 stream=proto != "udp")
        finally:
            branch_flags = ctx.bflags
            ctx.new_ruri, ctx.dst_uri, ctx.bflags, ctx.edits = saved
        b = Branch(tx, idx, uri, (ip, port), sock, data, branch_id, branch_flags, proto != "udp")
        tx.branches.append(b)
        self.client[branch_id] = b
        self.stats["UAC_transactions"] += 1
        if not self.rt.server.send(sock, (ip, port), data):
            return -6
        self._apply(b, b.machine, b.machine.start_actions(), b)
        return 1

    # --- replies from downstream -------------------------------------------------------
    def on_reply(self, ctx) -> bool:
        """A received reply: True if it belongs to one of our branches (and is handled)."""
        msg = ctx.msg
        try:
            v = msg.via1
            method = msg.cseq[1]
        except SIPError:
            return False
        b = self.client.get(v.branch or "")
        if b is None:
            return False
        if method != b.tx.method:
            return True  # the answer to one of our CANCELs: hop-by-hop, absorbed
        ctx.tx = b.tx
        ctx.branch_idx = b.idx
        self._run(b, b.machine, response_class(msg.status), b, msg)
        return True

    def _branch_reply(self, b: Branch, msg: Message):
        """What the client machine passes up: a reply on branch b."""
        tx = b.tx
        code = msg.status
        b.reply_edits = None
        if tx.on_reply:
            fn = self.rt.routes.get(("onreply_route", tx.on_reply))
            if fn is not None:
                rctx = Context(self.rt, msg, src=b.dst, proto=b.sock.proto, socket=b.sock,
                               route_type=ONREPLY)
                rctx.tx, rctx.branch_idx = tx, b.idx
                rctx.flags, rctx.avps = tx.ctx.flags, tx.ctx.avps
                self.rt.server.run(rctx, fn, f"onreply_route[{tx.on_reply}]")
                tx.ctx.flags = rctx.flags
                if rctx.dropped and code < 200:
                    return
                b.reply_edits = rctx.edits
        for cb in tx.callbacks:
            cb(tx, b, msg)
        b.reply = msg
        b.status = code
        if code < 200:
            b.provisional = True
            if tx.method == "INVITE" and not b.final:
                self._arm_fr_inv(b, tx.fr_inv_timeout)
            if b.cancel_pending or tx.cancelled:
                self._cancel_branch(b)
            if code > 100 and not tx.final_sent:
                self.reply(tx, code, msg.reason, local=False, msg=msg, branch=b)
            return
        b.final = True
        if b.fr_timer is not None:
            b.fr_timer.cancel()
        if 200 <= code < 300:
            tx.winner = b
            self.reply(tx, code, msg.reason, local=False, msg=msg, branch=b)
            if tx.method == "INVITE":
                for other in tx.branches:
                    if other is not b and not other.final:
                        self._cancel_branch(other)
            return
        if code >= 600 and tx.method == "INVITE":
            for other in tx.branches:
                if other is not b and not other.final:
                    self._cancel_branch(other)
        self._maybe_complete(tx)

    def _branch_timeout(self, b: Branch):
        """No (final) reply in time: a local 408 for this branch (and CANCEL if it rang)."""
        tx = b.tx
        if b.final:
            return
        if tx.method == "INVITE" and b.provisional:
            self._cancel_branch(b)
        b.final = True
        b.local = True
        b.status = 408
        b.reply = None
        self._maybe_complete(tx)

    def _maybe_complete(self, tx):
        if tx.final_sent or any(not b.final for b in tx.branches):
            return
        best = self.best_branch(tx)
        if best is None:
            return
        if tx.on_failure and not tx.in_failure:
            fn = self.rt.routes.get(("failure_route", tx.on_failure))
            if fn is not None:
                n_before = len(tx.branches)
                self._failure_route(tx, best, fn)
                if tx.final_sent or len(tx.branches) > n_before:
                    return
        self._send_best(tx, best)

    def _failure_route(self, tx, best, fn):
        ctx = tx.ctx
        name = tx.on_failure
        tx.on_failure = None        # the script must re-arm it for further failover
        ctx.local_data.pop("t_on_failure", None)
        ctx.reply = best.reply if best.reply is not None else _local_reply_msg(tx, 408)
        ctx.branch_idx = best.idx
        tx.in_failure = True
        tx.winner = best
        try:
            self._run_route(ctx, fn, f"failure_route[{name}]", FAILURE)
        finally:
            tx.in_failure = False

    def best_branch(self, tx):
        """RFC 3261 16.7: a 6xx wins; else the lowest class, 4xx preferring 401/407/..."""
        finals = [b for b in tx.branches if b.final]
        if not finals:
            return None
        six = [b for b in finals if b.status >= 600]
        if six:
            return six[0]
        return min(finals, key=lambda b: (b.status // 100,
                                          0 if b.status in _PREFERRED_4XX else 1, b.status))

    def _send_best(self, tx, best):
        code = best.status
        if best.reply is None:
            self.reply(tx, code, "Request Timeout" if code == 408 else "Error", local=True)
            return
        if code == 503 and not self.disable_503:
            self.reply(tx, 500, "Service Unavailable", local=True)
            return
        self.reply(tx, code, best.reply.reason, local=False, msg=best.reply, branch=best)

    # --- CANCEL and ACK ----------------------------------------------------------------
    def cancel(self, ctx) -> int:
        """A CANCEL from upstream: 200 to it, CANCEL each pending branch (487 comes back)."""
        inv = self.lookup(ctx.msg, "INVITE")
        if inv is None:
            return -1
        from runtime.forward import send_local_reply
        send_local_reply(ctx, 200, "OK")
        inv.cancelled = True
        for b in inv.branches:
            if not b.final:
                self._cancel_branch(b)
        return 1

    def _cancel_branch(self, b: Branch):
        if b.cancelled or b.final and b.status >= 200:
            return
        if not b.provisional:
            b.cancel_pending = True  # RFC 3261 9.1: wait for a provisional
            return
        b.cancelled = True
        data = _cancel_bytes(b)
        self.rt.server.send(b.sock, b.dst, data)
        # RFC 3261 9.1: no final reply 64*T1 after the CANCEL: the INVITE is over
        self.call_later(64 * transaction.T1, self._give_up, b)

    def _give_up(self, b):
        if b.machine.state != "terminated":
            b.machine.state = "terminated"
            self._apply(b, b.machine, [("stop_all", None), ("terminated", None)], b)

    def ack(self, ctx) -> int:
        """An ACK from upstream. Hop-by-hop (to our non-2xx final): absorbed, 0 = handled."""
        tx = self.lookup(ctx.msg, "INVITE")
        if tx is None:
            return -1
        if tx.last_status >= 300:
            self._run(tx, tx.machine, "ACK", tx)
            return 0
        return -2

    # --- routes ------------------------------------------------------------------------
    def _run_route(self, ctx, fn, name, rtype) -> bool:
        """Run a tm-armed route on ctx; False if it dropped."""
        saved_type = ctx.route_type
        ctx.route_type = rtype
        ctx.dropped = False
        self.rt.server.run(ctx, fn, name)
        ctx.route_type = saved_type
        dropped = ctx.dropped
        ctx.dropped = False
        return not dropped

    # --- state machines, timers --------------------------------------------------------
    def call_later(self, delay, fn, *args) -> Timer:
        return self._timers().call_later(delay, fn, *args)

    def _timers(self) -> Timers:
        loop = self.rt.server.loop
        timers = self.timers
        if timers is None or timers.loop is not loop:
            timers = self.timers = Timers(loop, self.rt.log)
        return timers

    def _run(self, owner, machine, event, tx_or_branch, msg=None):
        self._apply(owner, machine, machine.feed(event), tx_or_branch, msg)

    def _apply(self, owner, machine, actions, obj, msg=None):
        for name, arg in actions:
            if name == "start":
                timer, interval = arg
                old = owner.timers.pop(timer, None)
                if old is not None:
                    old.cancel()
                if interval == 0:
                    owner.timers[timer] = self.rt.server.loop.call_soon(
                        self._timer, owner, machine, timer)
                else:
                    owner.timers[timer] = self._timers().call_later(
                        interval, self._timer, owner, machine, timer)
            elif name == "stop":
                h = owner.timers.pop(arg, None)
                if h is not None:
                    h.cancel()
            elif name == "stop_all":
                for h in owner.timers.values():
                    h.cancel()
                owner.timers.clear()
            elif name in ("retransmit", "send_response", "send_request"):
                if isinstance(obj, Transaction):
                    if obj.last_response is not None:
                        self.send_upstream(obj, obj.last_response)
                else:
                    self.rt.server.send(obj.sock, obj.dst, obj.data)
            elif name == "send_ack":
                self.rt.server.send(obj.sock, obj.dst, _ack_bytes(obj, msg))
            elif name == "to_tu":
                self._branch_reply(obj, msg)
            elif name in ("timeout", "transport_error"):
                if isinstance(obj, Branch):
                    self._branch_timeout(obj)
            elif name == "terminated":
                self._terminated(obj)

    def _timer(self, owner, machine, timer):
        owner.timers.pop(timer, None)
        try:
            self._run(owner, machine, "timer_" + timer, owner)
        except Exception:
            import traceback
            self.rt.log.error("tm timer failed:\n" + traceback.format_exc(), "tm")

    def _arm_fr_inv(self, b, interval):
        """OpenSIPS's fr_inv_timeout: from the (last) provisional to the final reply."""
        if b.fr_timer is not None:
            b.fr_timer.cancel()
        b.fr_timer = self.call_later(interval, self._branch_timeout, b)

    def _terminated(self, obj):
        if isinstance(obj, Transaction):
            if self.server_txs.get(obj.key) is obj:
                # keep a 2xx INVITE transaction a little for retransmissions and ACK matching
                # OpenSIPS's wt_timer: a 2xx'ed INVITE transaction lingers for its
                # retransmissions and ACK matching
                linger = self.wt_timer if obj.method == "INVITE" and 200 <= obj.last_status < 300 else 0
                if linger:
                    self.call_later(linger, self._forget, obj)
                else:
                    self._forget(obj)
        else:
            self.client.pop(obj.id, None)

    def _forget(self, tx):
        if self.server_txs.get(tx.key) is tx:
            del self.server_txs[tx.key]
            self.stats["inuse_transactions"] -= 1
        for b in tx.branches:
            if b.machine.state == "terminated":
                self.client.pop(b.id, None)


# --- matching ------------------------------------------------------------------------------

_last_key = [None, None, None]   # (message, method, key) of the last TM.key_of()


def _key_of(msg, method):
    try:
        v = msg.via1
    except SIPError:
        return None
    if v is None:
        return None
    m = method or msg.method
    if m == "ACK":
        m = "INVITE"
    b = v.branch or ""
    if b.startswith("z9hG4bK"):
        return (b, v.host.lower(), v.port or 5060, m)
    try:
        return (msg.ruri, msg.from_.tag, msg.call_id, msg.cseq[0], str(v), m)
    except SIPError:
        return None


# --- building messages ---------------------------------------------------------------------

def branch_edits(ctx) -> Edits:
    """A copy of the request's edits for one branch (branch routes and Record-Route may
    differ per branch)."""
    e = ctx.edits
    return Edits(ctx.msg) if e is None else e.copy()


def _tx_hash(tx) -> str:
    return md5(f"{tx.id}|{tx.key}".encode("utf-8", "surrogateescape")).hexdigest()[:16]


def _ack_bytes(b: Branch, reply: Message) -> bytes:
    """RFC 3261 17.1.1.3: the ACK for a non-2xx final reply, built from our INVITE."""
    req = Message.parse(b.data)
    lines = [f"ACK {req.ruri} SIP/2.0", f"Via: {req.get('via').split(',')[0].strip()}"]
    for h in req.headers:
        if h.key in ("from", "call-id", "route", "max-forwards"):
            lines.append(f"{h.name}: {h.value}")
    lines.append(f"To: {reply.get('to')}")
    lines.append(f"CSeq: {req.cseq[0]} ACK")
    lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")


def _cancel_bytes(b: Branch) -> bytes:
    """RFC 3261 9.1: CANCEL with the INVITE's R-URI, top Via, From, To, Call-ID, Route."""
    req = Message.parse(b.data)
    lines = [f"CANCEL {req.ruri} SIP/2.0", f"Via: {req.get('via').split(',')[0].strip()}"]
    for h in req.headers:
        if h.key in ("from", "to", "call-id", "route", "max-forwards"):
            lines.append(f"{h.name}: {h.value}")
    lines.append(f"CSeq: {req.cseq[0]} CANCEL")
    reason = b.tx.ctx.local_data.get("cancel_reason")
    if reason:
        lines.append(reason)
    lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")


def _local_reply_msg(tx, code) -> Message:
    data = make_reply(tx.msg, code, "Request Timeout", to_tag=make_to_tag(tx.msg))
    return Message.parse(data)

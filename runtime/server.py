"""The proxy: sockets, the event loop, and one script run per message.

One process, one asyncio loop (uvloop when installed): UDP and TCP listeners from the
script's sockets (or `-l`), the request route for each request, the global onreply route for
each reply, timer and startup routes, module hooks; SIGTERM/SIGINT stop it cleanly (exit 0).
"""
from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import socket as pysocket
import sys
import time
import traceback

from cfgscript import CfgError
from cfgscript.parser import parse_file

from .compiler import GENERATED_FILE
from .context import Context, ScriptExit
from .forward import forward_reply, send_local_reply
from .loader import load_script
from .log import L_DBG, Logger
from .module import ERROR, ONREPLY, REQUEST, STARTUP, TIMER
from .sip.headers import SIPError
from .sip.message import Message, stream_frame_length

MAX_TCP_BUFFER = 256 * 1024
DEFAULT_MAXBUFFER = 256 * 1024   # OpenSIPS's and Kamailio's `maxbuffer`


class _UDP(asyncio.DatagramProtocol):
    def __init__(self, server, sock):
        self.server = server
        self.sock = sock

    def connection_made(self, transport):
        self.sock.transport = transport

    def datagram_received(self, data, addr):
        self.server.receive(data, addr, self.sock, "udp")

    def error_received(self, exc):  # ICMP errors on a UDP socket: not ours to handle
        pass


class _TCP(asyncio.Protocol):
    """One TCP connection; SIP messages framed by Content-Length."""

    def __init__(self, server, sock):
        self.server = server
        self.sock = sock
        self.buf = b""
        self.transport = None
        self.peer = None

    def connection_made(self, transport):
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = (peer[0], peer[1])
        self.server.tcp_conns[self.peer] = self

    def data_received(self, data):
        self.buf += data
        while self.buf:
            stripped = self.buf.lstrip(b"\r\n")  # keep-alive CRLFs
            if len(stripped) != len(self.buf):
                self.buf = stripped
                continue
            try:
                n = stream_frame_length(self.buf)
            except SIPError:
                self.server.rt.log.warning(f"bad framing from tcp:{self.peer}, closing")
                self.transport.close()
                return
            if n is None:
                if len(self.buf) > MAX_TCP_BUFFER:
                    self.transport.close()
                return
            frame, self.buf = self.buf[:n], self.buf[n:]
            self.server.receive(frame, self.peer, self.sock, "tcp")

    def connection_lost(self, exc):
        if self.server.tcp_conns.get(self.peer) is self:
            del self.server.tcp_conns[self.peer]


class Server:
    def __init__(self, rt):
        self.rt = rt
        rt.server = self
        self.loop = None
        self.tcp_conns: dict = {}        # (ip, port) -> _TCP
        self.pending_tcp: dict = {}      # (ip, port) -> list of bytes waiting for connect
        self.reply_hook = None           # tm: reply_hook(ctx_like msg, src, sock, proto) -> bool
        self.request_hook = None         # tm: pre-script hook for requests (ACK/CANCEL matching)
        self.stopping = None
        self.hit = self._make_hit()
        self.stats = {"rcv_requests": 0, "rcv_replies": 0, "fwd_replies": 0, "drop_requests": 0,
                      "err_requests": 0, "bad_msgs": 0}

    # --- sending -------------------------------------------------------------------------
    def send(self, sock, addr, data: bytes) -> bool:
        """Send bytes from one of our sockets to (ip, port)."""
        if sock is None:
            self.rt.log.error(f"no socket to send to {addr}")
            return False
        if self.rt.log.level >= L_DBG:
            self.rt.log.debug(f"sending {len(data)} bytes to {sock.proto}:{addr[0]}:{addr[1]}")
        if sock.proto == "udp":
            try:
                sock.transport.sendto(data, addr)
                return True
            except (OSError, AttributeError) as e:
                self.rt.log.error(f"sendto {addr}: {e}")
                return False
        conn = self.tcp_conns.get(addr)
        if conn is not None and not conn.transport.is_closing():
            conn.transport.write(data)
            return True
        waiting = self.pending_tcp.get(addr)
        if waiting is not None:
            waiting.append(data)
            return True
        self.pending_tcp[addr] = [data]
        self.loop.create_task(self._connect(sock, addr))
        return True

    async def _connect(self, sock, addr):
        try:
            _, proto = await asyncio.wait_for(self.loop.create_connection(
                lambda: _TCP(self, sock), addr[0], addr[1]), timeout=5)
        except (OSError, asyncio.TimeoutError) as e:
            self.rt.log.error(f"tcp connect to {addr[0]}:{addr[1]} failed: {e}")
            self.pending_tcp.pop(addr, None)
            return
        for data in self.pending_tcp.pop(addr, []):
            proto.transport.write(data)

    # --- receiving -----------------------------------------------------------------------
    def receive(self, data: bytes, addr, sock, proto: str):
        if data[:1] in b"\r\n\x00 " and not data.strip(b"\r\n\x00 "):
            return  # keep-alive
        try:
            msg = Message.parse(data)
        except SIPError as e:
            self.stats["bad_msgs"] += 1
            self.rt.log.warning(f"dropping unparsable message from {proto}:{addr[0]}:{addr[1]}"
                                f" ({e.reason})")
            return
        except Exception:  # never let a parser bug kill the worker
            self.stats["bad_msgs"] += 1
            self.rt.log.error("parser failure:\n" + traceback.format_exc())
            return
        ctx = Context(self.rt, msg, src=(addr[0], addr[1]), proto=proto, socket=sock)
        try:
            if msg.is_request:
                self.on_request(ctx)
            else:
                self.on_reply(ctx)
        except Exception:
            self.rt.log.error("internal error while handling a message:\n"
                              + traceback.format_exc())

    def on_request(self, ctx):
        self.stats["rcv_requests"] += 1
        msg = ctx.msg
        try:
            msg.check_present()
        except SIPError as e:
            self.stats["err_requests"] += 1
            ctx.error_info = (e.status or 400, e.reason)
            error_route = self.rt.routes.get(("error_route", None))
            if error_route is not None:
                ctx.route_type = ERROR
                self.run(ctx, error_route, "error_route")
            elif msg.method != "ACK" and e.status:
                self._reply_bad(ctx, e)
            return
        if self.request_hook is not None and self.request_hook(ctx):
            return
        ctx.route_type = REQUEST
        self.run(ctx, self.rt.routes[("route", None)], "route")
        if not ctx.sent:
            self.stats["drop_requests"] += 1

    def _reply_bad(self, ctx, e):
        try:
            send_local_reply(ctx, e.status, e.reason)
        except (SIPError, ValueError):
            self.rt.log.warning(f"cannot answer a bad request from {ctx.src_ip}: {e.reason}")

    def on_reply(self, ctx):
        self.stats["rcv_replies"] += 1
        try:
            ctx.msg.vias
        except SIPError:
            return
        route = self.rt.routes.get(("onreply_route", None))
        if route is not None:
            ctx.route_type = ONREPLY
            self.run(ctx, route, "onreply_route")
            if ctx.dropped and ctx.msg.status < 200:
                return
        if self.reply_hook is not None and self.reply_hook(ctx):
            return
        if self.rt.config.get("disable_stateless_fwd"):
            return
        if forward_reply(self.rt, ctx.msg, ctx.edits):
            self.stats["fwd_replies"] += 1

    # --- running the script --------------------------------------------------------------
    def run(self, ctx, fn, name):
        """Run a top route on ctx; the script's exit, drop and errors end here."""
        rt = self.rt
        if rt.tracing:
            ctx.trace = []
        ctx.route_stack.append((name, ctx.route_type))
        try:
            fn(ctx)
        except ScriptExit:
            pass
        except Exception as e:
            where = script_position(e.__traceback__, rt)
            rt.log.error(f"{where}: script error in {name}: {e.__class__.__name__}: {e}")
            if rt.log.enabled(L_DBG):
                rt.log.debug(traceback.format_exc())
        finally:
            ctx.route_stack.pop()
            if ctx.trace is not None:
                self._log_trace(ctx, name)
        return ctx.rc

    def _log_trace(self, ctx, name):
        points = self.rt.compiled.points
        lines = []
        for n in ctx.trace:
            f, line, kind = points[n]
            if not lines or lines[-1] != (f, line):
                lines.append((f, line))
        label = f"{ctx.msg.method} {ctx.msg.get('call-id')}" if ctx.msg is not None else name
        base = os.path.dirname(self.rt.script_file or "")
        text = " ".join(f"{os.path.relpath(f, base) if base else f}:{line}" for f, line in lines)
        self.rt.log.notice(f"trace {label}: {name}: {text}", "trace")

    def _make_hit(self):
        rt = self.rt

        def hit(ctx, n):
            counts = rt.hit_counts
            if counts is not None:
                counts[n] += 1
            if ctx.trace is not None:
                ctx.trace.append(n)
        return hit

    # --- lifecycle -----------------------------------------------------------------------
    async def start(self):
        self.loop = asyncio.get_running_loop()
        rt = self.rt
        rt.compiled.ns["_hit"] = self.hit
        for sock in rt.sockets:
            if sock.proto == "udp":
                transport, _ = await self.loop.create_datagram_endpoint(
                    lambda s=sock: _UDP(self, s), local_addr=(sock.ip, sock.port),
                    reuse_port=False)
                self._grow_receive_buffer(transport.get_extra_info("socket"))
            else:
                srv = await self.loop.create_server(lambda s=sock: _TCP(self, s), sock.ip,
                                                    sock.port, reuse_address=True)
                sock.transport = srv
            rt.log.notice(f"listening on {sock}")
        for mod in rt.modules.values():
            if mod.child_init:
                res = mod.child_init(rt)
                if asyncio.iscoroutine(res):
                    await res
        startup = rt.routes.get(("startup_route", None))
        if startup is not None:
            self.run(Context(rt, _dummy_msg(), route_type=STARTUP), startup, "startup_route")
        for (kind, name), fn in rt.routes.items():
            if kind == "timer_route":
                info = rt.route_infos[(kind, name)]
                interval = int(info.ast.params[0]) if info.ast.params and \
                    info.ast.params[0].isdigit() else 1
                self.loop.create_task(self._timer_route(fn, name, interval))
        for interval, callback in rt.timers:
            self.loop.create_task(self._module_timer(interval, callback))
        settle_gc()

    def _grow_receive_buffer(self, sock):
        """As OpenSIPS and Kamailio do at start-up: raise a UDP socket's receive buffer to
        `maxbuffer` (default 256 KB; the kernel caps it at net.core.rmem_max), so that a
        burst of datagrams waits in the kernel rather than being dropped."""
        want = int(self.rt.config.get("maxbuffer", DEFAULT_MAXBUFFER))
        try:
            if sock.getsockopt(pysocket.SOL_SOCKET, pysocket.SO_RCVBUF) < want:
                sock.setsockopt(pysocket.SOL_SOCKET, pysocket.SO_RCVBUF, want)
        except (OSError, AttributeError, ValueError) as e:
            self.rt.log.warning(f"cannot raise the UDP receive buffer: {e}")

    async def _timer_route(self, fn, name, interval):
        while True:
            await asyncio.sleep(interval)
            self.run(Context(self.rt, _dummy_msg(), route_type=TIMER), fn, f"timer_route[{name}]")

    async def _module_timer(self, interval, callback):
        while True:
            await asyncio.sleep(interval)
            try:
                callback()
            except Exception:
                self.rt.log.error("timer failed:\n" + traceback.format_exc())

    async def serve(self):
        self.stopping = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self.stopping.set)
        await self.stopping.wait()
        self.rt.log.notice("shutting down")
        for mod in self.rt.modules.values():
            if mod.destroy:
                try:
                    mod.destroy(self.rt)
                except Exception:
                    self.rt.log.error(f"module {mod.name} shutdown:\n" + traceback.format_exc())


#: collector thresholds while serving: a message's own objects are freed by reference
#: counting; what reaches the collector is what transactions keep (tens of objects a call),
#: so the default 700 would mean a young collection every few calls
GC_THRESHOLDS = (10000, 10, 10)


def settle_gc():
    """What loading made (the compiled script, module tables, the script parser) lives as
    long as the process: collect once, then freeze it (gc.freeze), so that the collector's
    full passes walk only what the traffic made, not everything loaded at start-up; and
    collect the young generation less often (GC_THRESHOLDS)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _dummy_msg():
    return Message.parse(b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKdummy\r\n"
                         b"From: <sip:startup@127.0.0.1>;tag=1\r\nTo: <sip:startup@127.0.0.1>\r\n"
                         b"Call-ID: dummy\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")


def script_position(tb, rt) -> str:
    """The cfg file:line of the innermost generated-code frame of a traceback."""
    where = "?"
    table = rt.compiled.linetable if rt.compiled else {}
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename == GENERATED_FILE:
            line = tb.tb_lineno
            while line > 0 and line not in table:
                line -= 1
            if line in table:
                f, n = table[line]
                where = f"{f}:{n}"
        tb = tb.tb_next
    return where


def run(args) -> int:
    """`cfgscript -f FILE ...`: load the script and serve until SIGTERM."""
    log = Logger()
    try:
        script = parse_file(args.cfg, pipe=args.pipe, defines=_defines(args.defines))
    except CfgError as e:
        for d in e.diagnostics:
            print(d.render(), file=sys.stderr)
        return 255
    except OSError as e:
        print(f"{args.cfg}: error: {e.strerror}", file=sys.stderr)
        return 255
    argv_vars = dict(v.partition("=")[::2] for v in args.argv_vars)
    instrument = bool(args.trace or getattr(args, "cov_data", None))
    loaded = load_script(script, listen=args.listen, instrument=instrument, log=log,
                         argv_vars=argv_vars)
    errors = [d for d in loaded.diagnostics if d.severity == "error"]
    for d in loaded.diagnostics:
        if d.severity == "error" or args.debug:
            print(d.render(), file=sys.stderr)
    if errors:
        print(f"{args.cfg}: {len(errors)} error{'s' if len(errors) > 1 else ''}, not starting",
              file=sys.stderr)
        return 255
    rt = loaded.rt
    rt.tracing = bool(args.trace)
    if args.debug:
        rt.log.level = rt.log_level = min(4, rt.log_level + args.debug)
    if getattr(args, "cov_data", None):
        rt.hit_counts = [0] * len(rt.compiled.points)
    rt.options = args
    if args.pidfile:
        with open(args.pidfile, "w") as f:
            f.write(f"{os.getpid()}\n")
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    for mod in rt.modules.values():
        if mod.init:
            try:
                mod.init(rt)
            except Exception as e:
                rt.log.error(f"module {mod.name} failed to start: {e}")
                return 255
    server = Server(rt)

    async def main():
        try:
            await server.start()
        except OSError as e:
            rt.log.error(f"cannot listen: {e}")
            return 255
        await server.serve()
        return 0

    started = time.monotonic()
    code = asyncio.run(main())
    if rt.hit_counts is not None:
        _write_coverage(rt, args.cov_data)
    rt.log.notice(f"stopped after {time.monotonic() - started:.1f}s")
    return code


def _write_coverage(rt, path):
    data = {"points": [list(p) for p in rt.compiled.points], "hits": rt.hit_counts}
    with open(path, "w") as f:
        json.dump(data, f)


def _defines(items):
    out = {}
    for item in items:
        name, _, value = item.partition("=")
        out[name] = value
    return out

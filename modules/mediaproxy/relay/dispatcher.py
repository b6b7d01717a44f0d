"""MediaProxy-compatible dispatcher (reference §5.2-5.4, §5.7, §5.9).

Listens on a UNIX stream socket for OpenSIPS (the ``update``/``remove``
protocol of §2), keeps ``call_id → relay`` and forwards each command to the
session's relay.  Relays are the in-process one (``LocalRelay``) and any number
of ``cfgscript-relay`` (or AG ``media-relay`` over plain TCP) that connect to the
``listen`` address (``RemoteRelay``), identified by their TCP peer IP.

Management commands (``summary``, ``sessions``, ``version``; ``quit``/``exit``),
one CRLF line each, answered with one JSON line: accepted on the OpenSIPS UNIX
socket itself and on the optional TCP ``management`` address.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import socket
import time

from .embedded import answers
from .protocol import (VERSION, CommandError, dispatcher_headers, encode_command,
                       read_line, stream_limit)

log = logging.getLogger("cfgscript.mediaproxy.dispatcher")

MANAGEMENT = ("summary", "sessions", "version", "quit", "exit")
EXPIRED_SESSION_LIFETIME = 86400.0


class RelayError(Exception):
    pass


class LocalRelay:
    """The relay running in this process."""

    def __init__(self, relay):
        self.relay = relay
        self.ip = relay.config.relay_ip
        self.available = True

    async def command(self, name: str, lines) -> str:
        reply = self.relay.handle(self, name, lines)
        if reply == "error":
            raise RelayError("relay %s returned error for %r" % (self.ip, name))
        return reply

    def close(self) -> None:
        pass


class RemoteRelay:
    """A relay connected over TCP, speaking the §5.4 protocol."""

    def __init__(self, dispatcher, reader, writer, ip: str):
        self.dispatcher = dispatcher
        self.reader, self.writer, self.ip = reader, writer, ip
        self.seq = 0
        self.pending = {}       # seq -> (command name, future)
        self.halting = False
        self.timed_out = False

    @property
    def available(self) -> bool:
        return not (self.halting or self.timed_out)

    async def command(self, name: str, lines) -> str:
        seq, self.seq = self.seq, self.seq + 1
        future = asyncio.get_running_loop().create_future()
        self.pending[seq] = (name, future)
        self.writer.write(encode_command(name, seq, lines))
        try:
            reply = await asyncio.wait_for(future, self.dispatcher.relay_timeout)
        except asyncio.TimeoutError:
            self.timed_out = True
            raise RelayError("relay at %s timed out" % self.ip) from None
        finally:
            self.pending.pop(seq, None)
        if reply == "error":
            raise RelayError("relay at %s returned error for %r" % (self.ip, name))
        if reply == "halting":
            self.halting = True
            raise RelayError("relay at %s is shutting down" % self.ip)
        return reply

    async def serve(self) -> None:
        try:
            while (line := await read_line(self.reader)) is not None:
                self._line_received(line)
        except (ValueError, ConnectionError) as e:
            log.error("connection with relay at %s was lost: %s", self.ip, e)
        finally:
            for _name, future in self.pending.values():
                if not future.done():
                    future.set_exception(RelayError("relay at %s disconnected" % self.ip))
            self.writer.close()

    def _line_received(self, line: str) -> None:
        if line == "ping":
            self.timed_out = False
            self.writer.write(b"pong\r\n")
            return
        first, _, rest = line.partition(" ")
        if first == "expired":
            self.dispatcher.relay_expired(self, rest)
            return
        entry = self.pending.get(int(first)) if first.isdigit() else None
        if entry is None:
            log.error("unexpected reply from relay at %s: %s", self.ip, line)
        elif not entry[1].done():
            entry[1].set_result(rest)

    def close(self) -> None:
        self.writer.close()


class DispatcherSession:
    __slots__ = ("relay_ip", "dialog_id", "expire_time")

    def __init__(self, relay_ip, dialog_id):
        self.relay_ip, self.dialog_id, self.expire_time = relay_ip, dialog_id, None


class Dispatcher:
    """Routes OpenSIPS commands to relays.  ``rng`` picks relays (injectable for tests)."""

    def __init__(self, relay_timeout: float = 5.0, mi_socket: str | None = None,
                 rng: random.Random | None = None):
        self.relay_timeout = relay_timeout
        self.mi_socket = mi_socket
        self.rng = rng or random.Random()
        self.relays = {}        # ip -> LocalRelay | RemoteRelay
        self.sessions = {}      # call_id -> DispatcherSession
        self.servers = []
        self.handlers = {}      # connection handler task -> its writer
        self.on_stats = None    # optional accounting hook: on_stats(stats dict)

    # -- listeners ----------------------------------------------------------------------

    async def listen_opensips(self, path: str) -> None:
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        if os.path.exists(path):
            if answers(path):
                raise OSError("another dispatcher is listening on %s" % path)
            os.unlink(path)
        self.servers.append(await asyncio.start_unix_server(
            self._serve_opensips, path, limit=stream_limit()))
        log.info("listening for OpenSIPS on %s", path)

    async def listen_relays(self, host: str, port: int) -> None:
        self.servers.append(await asyncio.start_server(
            self._serve_relay, host, port, limit=stream_limit()))
        log.info("listening for relays on %s:%d", host, port)

    async def listen_management(self, host: str, port: int) -> None:
        self.servers.append(await asyncio.start_server(
            self._serve_management, host, port, limit=stream_limit()))
        log.info("management interface on %s:%d", host, port)

    def add_local_relay(self, relay) -> None:
        relay.on_expired = self.relay_expired
        self.relays[relay.config.relay_ip] = LocalRelay(relay)

    async def close(self) -> None:
        """Stop listening and end every connection (handlers finish on EOF)."""
        for server in self.servers:
            server.close()
        for relay in list(self.relays.values()):
            relay.close()
        for writer in self.handlers.values():
            writer.close()
        await asyncio.gather(*self.handlers, return_exceptions=True)

    def _track(self, writer) -> None:
        task = asyncio.current_task()
        self.handlers[task] = writer
        task.add_done_callback(self.handlers.pop)

    # -- connections ----------------------------------------------------------------------

    async def _serve_opensips(self, reader, writer) -> None:
        self._track(writer)
        lines = []
        try:
            while (line := await read_line(reader)) is not None:
                if not lines and line in MANAGEMENT:
                    reply = await self.management(line)
                    if reply is None:
                        break
                elif line:
                    if not line.endswith(": "):  # AG drops headers with an empty value
                        lines.append(line)
                    continue
                elif lines:
                    reply = await self.opensips_command(lines[0], lines[1:])
                    lines = []
                else:
                    continue  # extra empty line
                writer.write(reply.encode() + b"\r\n")
                await writer.drain()
        except (ValueError, ConnectionError) as e:
            log.debug("OpenSIPS connection dropped: %s", e)
        finally:
            writer.close()

    async def _serve_management(self, reader, writer) -> None:
        self._track(writer)
        try:
            while (line := await read_line(reader)) is not None:
                reply = await self.management(line.strip())
                if reply is None:
                    break
                writer.write(reply.encode() + b"\r\n")
                await writer.drain()
        except (ValueError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _serve_relay(self, reader, writer) -> None:
        self._track(writer)
        ip = writer.get_extra_info("peername")[0]
        old = self.relays.get(ip)
        if isinstance(old, LocalRelay):
            log.error("relay connection from %s clashes with the local relay, refused", ip)
            writer.close()
            return
        if old is not None:
            log.warning("relay %s reconnected, dropping its old connection", ip)
            old.close()
        relay = self.relays[ip] = RemoteRelay(self, reader, writer, ip)
        log.info("relay %s connected", ip)
        purge = asyncio.create_task(self._purge_sessions(relay))
        try:
            await relay.serve()
        finally:
            purge.cancel()
            if self.relays.get(ip) is relay:
                del self.relays[ip]
            log.info("relay %s disconnected", ip)

    async def _purge_sessions(self, relay) -> None:
        """Forget sessions the (re)connected relay no longer has (§5.4)."""
        try:
            known = {s["call_id"] for s in json.loads(await relay.command("sessions", []))}
        except (RelayError, ValueError) as e:
            log.warning("could not get sessions from relay %s: %s", relay.ip, e)
            return
        for call_id, session in list(self.sessions.items()):
            if session.relay_ip == relay.ip and call_id not in known:
                log.warning("session %s is no longer on relay %s", call_id, relay.ip)
                del self.sessions[call_id]
                if session.dialog_id is not None:
                    self._end_dialog(session.dialog_id)

    # -- OpenSIPS commands (§5.2) -----------------------------------------------------------

    async def opensips_command(self, name: str, lines) -> str:
        """The one-line reply to an OpenSIPS command (header lines already filtered)."""
        try:
            headers = dispatcher_headers(lines)
            call_id = headers.get("call_id")
            if call_id is None:
                raise CommandError("missing call_id header")
            return await self._route(name, call_id, headers, lines)
        except (CommandError, RelayError) as e:
            log.error("error processing %r: %s", name, e)
            return "error"

    async def _route(self, name, call_id, headers, lines) -> str:
        session = self.sessions.get(call_id)
        if session is not None and session.expire_time is None:
            relay = self.relays.get(session.relay_ip)
            if relay is None:
                raise RelayError("relay for session %s (%s) is no longer connected"
                                 % (call_id, session.relay_ip))
            reply = await relay.command(name, lines)
            return self._removed(call_id, reply) if name == "remove" else reply
        if name == "update":
            return await self._new_session(call_id, headers, lines)
        if name == "remove" and session is not None:
            del self.sessions[call_id]
            return "removed"
        raise CommandError("got %r for unknown session %s" % (name, call_id))

    async def _new_session(self, call_id, headers, lines) -> str:
        candidates = [r for r in self.relays.values() if r.available]
        self.rng.shuffle(candidates)
        wanted = headers.get("media_relay")
        if wanted is not None:
            preferred = self.relays.get(wanted)
            if preferred is not None and preferred.available:
                candidates.remove(preferred)
                candidates.insert(0, preferred)
            else:
                log.warning("user requested media_relay %s for session %s not available",
                            wanted, call_id)
        session = self.sessions[call_id] = DispatcherSession(None, headers.get("dialog_id"))
        for relay in candidates:
            session.relay_ip = relay.ip
            try:
                return await relay.command("update", lines)
            except RelayError as e:
                log.warning("relay %s failed: %s", relay.ip, e)
        if self.sessions.get(call_id) is session:
            del self.sessions[call_id]
        raise RelayError("no suitable relay found")

    def _removed(self, call_id, reply: str) -> str:
        self.sessions.pop(call_id, None)
        try:
            stats = json.loads(reply)
        except ValueError:
            log.error("could not decode statistics of %s", call_id)
        else:
            self._account(stats, dialog_id=None, timed_out=False)
        return "removed"

    def _account(self, stats: dict, dialog_id, timed_out: bool) -> None:
        stats["dialog_id"] = dialog_id
        stats["timed_out"] = timed_out
        log.debug("session statistics: %s", stats)
        if self.on_stats is not None:
            self.on_stats(stats)

    # -- expiry (§5.7) ------------------------------------------------------------------

    def relay_expired(self, relay, stats) -> None:
        """A relay reports a session that expired by itself (``stats``: dict or JSON text)."""
        if isinstance(stats, str):
            try:
                stats = json.loads(stats)
            except ValueError:
                log.error("could not decode expired statistics from relay %s", relay.ip)
                return
        session = self.sessions.get(stats.get("call_id"))
        if session is None or session.relay_ip != relay.ip:
            return
        all_ice = all(s["status"] == "unselected ICE candidate" for s in stats["streams"])
        stats["all_streams_ice"] = all_ice
        self._account(stats, session.dialog_id, timed_out=not all_ice)
        now = time.time()
        if session.dialog_id is not None and stats.get("start_time") is not None and not all_ice:
            self._end_dialog(session.dialog_id)
            session.expire_time = now
        else:
            del self.sessions[stats["call_id"]]
        for call_id, s in list(self.sessions.items()):
            if s.expire_time is not None and now - s.expire_time > EXPIRED_SESSION_LIFETIME:
                del self.sessions[call_id]

    def _end_dialog(self, dialog_id: str) -> None:
        """Ask OpenSIPS (mi_datagram, JSON-RPC) to end the dialog, if a socket is configured."""
        if not self.mi_socket:
            log.info("dialog %s timed out (no MI socket configured to end it)", dialog_id)
            return
        request = {"jsonrpc": "2.0", "id": "%08x" % self.rng.getrandbits(32),
                   "method": "dlg_end_dlg", "params": [dialog_id]}
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            try:
                sock.sendto(json.dumps(request).encode(), self.mi_socket)
            except OSError as e:
                log.error("cannot send dlg_end_dlg to %s: %s", self.mi_socket, e)

    # -- management (§5.9) ----------------------------------------------------------------

    async def management(self, command: str):
        """JSON answer to a management command; None means close the connection."""
        if command in ("quit", "exit"):
            return None
        if command == "version":
            return VERSION
        if command == "summary":
            results = []
            for relay in list(self.relays.values()):
                try:
                    results.append(json.loads(await relay.command("summary", [])))
                except (RelayError, ValueError):
                    results.append({"status": "error", "ip": relay.ip})
            return json.dumps(results)
        if command == "sessions":
            sessions = []
            for relay in list(self.relays.values()):
                try:
                    sessions.extend(json.loads(await relay.command("sessions", [])))
                except (RelayError, ValueError):
                    pass
            return json.dumps(sessions)
        log.error("unknown management command %r", command)
        return "error"

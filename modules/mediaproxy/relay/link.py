"""A relay's connection to one dispatcher (reference §5.4), plain TCP.

The relay connects out from its relay IP (so the dispatcher sees that IP as the
relay's identity and can honour ``media_relay``), answers ``<name> <seq>``
commands with ``<seq> <payload>``, reports ``expired <json>`` and sends ``ping``
every ``keepalive_interval``; three unanswered pings drop the connection.  After
a loss it reconnects after 1 s if the connection had lasted 5 s, otherwise after
``reconnect_delay``.
"""

from __future__ import annotations

import asyncio
import json
import logging

from .protocol import read_line, stream_limit

log = logging.getLogger("cfgscript.mediaproxy.relay")

STABLE_AFTER = 5.0
MISSED_PINGS = 3


class DispatcherLink:
    def __init__(self, relay, host: str, port: int, source_ip: str | None = None,
                 keepalive_interval: float = 10.0, reconnect_delay: float = 10.0):
        self.relay = relay
        self.host, self.port, self.source_ip = host, port, source_ip
        self.keepalive_interval = keepalive_interval
        self.reconnect_delay = reconnect_delay
        self.writer = None
        self.missed = 0          # pings without a pong

    def __repr__(self) -> str:
        return "DispatcherLink(%s:%d)" % (self.host, self.port)

    async def run(self) -> None:
        """Stay connected until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                reader, self.writer = await asyncio.open_connection(
                    self.host, self.port, limit=stream_limit(),
                    local_addr=(self.source_ip, 0) if self.source_ip else None)
            except OSError as e:
                log.error("could not connect to dispatcher at %s:%d: %s (retrying in %g s)",
                          self.host, self.port, e, self.reconnect_delay)
                await asyncio.sleep(self.reconnect_delay)
                continue
            log.info("connected to dispatcher at %s:%d", self.host, self.port)
            try:
                await self._serve(reader)
            finally:
                self.writer.close()
                self.writer = None
            stable = loop.time() - started >= STABLE_AFTER
            delay = min(self.reconnect_delay, 1.0) if stable else self.reconnect_delay
            log.error("connection with dispatcher at %s:%d lost, reconnecting in %g s",
                      self.host, self.port, delay)
            await asyncio.sleep(delay)

    async def _serve(self, reader) -> None:
        self.missed = 0
        pinger = asyncio.create_task(self._keepalive())
        command, lines = None, []
        try:
            while (line := await read_line(reader)) is not None:
                if line == "pong":
                    self.missed = max(self.missed - 1, 0)
                elif command is None:
                    name, _, seq = line.partition(" ")
                    if not seq:
                        log.error("could not decode command from dispatcher: %s", line)
                        continue
                    command, lines = (name, seq), []
                elif line == "":
                    (name, seq), command = command, None
                    self.write("%s %s" % (seq, self.relay.handle(self, name, lines)))
                else:
                    lines.append(line)
        except (ValueError, ConnectionError) as e:
            log.error("dispatcher connection error: %s", e)
        finally:
            pinger.cancel()

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(self.keepalive_interval)
            if self.missed >= MISSED_PINGS:
                log.error("missed %d keepalive answers in a row, dropping the connection",
                          MISSED_PINGS)
                self.writer.transport.abort()
                return
            self.write("ping")
            self.missed += 1

    def write(self, line: str) -> None:
        if self.writer is not None:
            self.writer.write(line.encode("utf-8", "surrogateescape") + b"\r\n")

    def expired(self, stats: dict) -> None:
        """Report a session that expired on this relay."""
        self.write("expired " + json.dumps(stats))

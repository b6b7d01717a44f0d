"""The module side of the MediaProxy dispatcher protocol (reference §1.6, §2).

Command builders produce the exact bytes of mediaproxy.c's ``update`` and
``remove`` commands; ``parse_update_reply()`` reads the one-line answer the way
the module does; ``DispatcherClient`` is the module's blocking transport over
the dispatcher's UNIX stream socket: one connection, one request at a time,
``mediaproxy_timeout`` per wait, and a 10 s silent lock-out after any failure.

Deviation from the C code, on purpose: a CRLF split across two reads is found
(the C module only searches the newest chunk).
"""

from __future__ import annotations

import errno
import logging
import re
import select
import socket
import threading
import time

log = logging.getLogger("cfgscript.mediaproxy")

DEFAULT_SOCKET = "/run/mediaproxy/dispatcher.sock"
DEFAULT_TIMEOUT_MS = 500
RETRY_INTERVAL = 10.0
BUFFER_SIZE = 8192
MAX_REPLY_TOKENS = 33  # MAX_STREAMS + 1
UPDATE_LIMIT = 8192
REMOVE_LIMIT = 2048


class MediaProxyError(Exception):
    """The dispatcher's answer cannot be used; the message is the C module's log text."""


def _b(value) -> bytes:
    if value is None:
        return b""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    return bytes(value)


# -- field derivation (§2.1) ------------------------------------------------------

def command_uri(uri) -> bytes:
    """``from_uri``/``to_uri`` value: leading ``sip:`` (any case) and ``;params`` cut."""
    uri = _b(uri)
    if not uri:
        return b"unknown"
    if uri[:4].lower() == b"sip:":
        uri = uri[4:]
    return uri.split(b";", 1)[0]


_SERVER_LINE = re.compile(rb"(?:^|(?<=[\r\n]))server:([^\r\n]*)", re.IGNORECASE)


def user_agent(user_agent_header, raw_message=b"") -> bytes:
    """User-Agent body, else the first ``Server:`` line of the raw message, else ``unknown agent``."""
    value = _b(user_agent_header)
    if value:
        return value
    m = _SERVER_LINE.search(_b(raw_message))
    if m and m.group(1).strip():
        return m.group(1).strip()
    return b"unknown agent"


def dialog_id(h_entry: int, h_id: int) -> str:
    """Decimal ``(h_entry << 32) | h_id``, as OpenSIPS >= 3.0 sends it."""
    return str((h_entry << 32) | h_id)


# -- commands (§2.1-2.3) ------------------------------------------------------------

def build_update(*, type: str, call_id, cseq, from_uri, to_uri, from_tag, to_tag,
                 user_agent, signaling_ip, media_relay="", dialog_id="", media=b"") -> bytes:
    """The ``update`` command.  ``from_uri``/``to_uri`` as sent (see ``command_uri``),
    ``media`` the line from ``sdp.media_line()`` or ``b""`` when there is no SDP.
    Raises MediaProxyError when the command reaches 8192 bytes."""
    if type not in ("request", "reply"):
        raise ValueError("type must be 'request' or 'reply'")
    fields = (("type", type), ("dialog_id", dialog_id), ("call_id", call_id), ("cseq", cseq),
              ("from_uri", from_uri), ("to_uri", to_uri), ("from_tag", from_tag),
              ("to_tag", to_tag), ("user_agent", user_agent),
              ("signaling_ip", signaling_ip), ("media_relay", media_relay))
    command = b"update\r\n" + b"".join(b"%s: %s\r\n" % (name.encode(), _b(value))
                                       for name, value in fields) + _b(media) + b"\r\n"
    if len(command) >= UPDATE_LIMIT:
        raise MediaProxyError("mediaproxy request is longer than %d bytes" % UPDATE_LIMIT)
    return command


def build_remove(call_id, from_tag, to_tag) -> bytes:
    """The ``remove`` command; MediaProxyError when it reaches 2048 bytes."""
    command = b"remove\r\ncall_id: %s\r\nfrom_tag: %s\r\nto_tag: %s\r\n\r\n" % (
        _b(call_id), _b(from_tag), _b(to_tag))
    if len(command) >= REMOVE_LIMIT:
        raise MediaProxyError("mediaproxy request is longer than %d bytes" % REMOVE_LIMIT)
    return command


def parse_update_reply(reply: bytes, expected: int, is_request: bool) -> tuple:
    """``(ip, [port, ...])`` from an ``update`` answer, for ``expected`` supported streams.

    Raises MediaProxyError for an empty reply, ``error``, or (requests only) too
    few ports; a reply message with too few ports only logs the C warning.
    """
    tokens = re.findall(rb"[^ \t\r\n]+", reply.split(b"\0", 1)[0])[:MAX_REPLY_TOKENS]
    if not tokens:
        raise MediaProxyError("empty response from mediaproxy")
    if len(tokens) == 1 and tokens[0] == b"error":
        raise MediaProxyError("mediaproxy returned error")
    if len(tokens) < expected + 1:
        if is_request:
            raise MediaProxyError("insufficient ports returned from mediaproxy: got %d, expected %d"
                                  % (len(tokens) - 1, expected))
        log.warning("broken client. Called UA added extra media stream(s) in the OK reply")
    return tokens[0], tokens[1:]


# -- transport (§1.6) -------------------------------------------------------------------

class DispatcherClient:
    """Blocking client of one dispatcher UNIX socket, shared safely by threads.

    ``send_command()`` returns the raw answer (up to and including its CRLF) or
    None after any failure; failures are logged with the C module's messages.
    """

    def __init__(self, socket_path: str = DEFAULT_SOCKET, timeout_ms: int = DEFAULT_TIMEOUT_MS,
                 retry_interval: float = RETRY_INTERVAL):
        self.socket_path = socket_path
        self.timeout = timeout_ms / 1000.0
        self.retry_interval = retry_interval
        self._sock = None
        self._last_failure = None
        self._lock = threading.Lock()

    def connect(self) -> bool:
        """Connect unless connected; silently refuse within the retry interval of a failure."""
        if self._sock is not None:
            return True
        if (self._last_failure is not None
                and time.monotonic() < self._last_failure + self.retry_interval):
            return False
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.socket_path)
        except OSError as e:
            sock.close()
            log.error("failed to connect to %s: %s", self.socket_path, e.strerror or e)
            self._last_failure = time.monotonic()
            return False
        self._sock = sock
        return True

    def close(self) -> None:
        """Disconnect; counts as a failure for the retry interval, as in the C module."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self._last_failure = time.monotonic()

    def send_command(self, command: bytes):
        with self._lock:
            if not self.connect():
                return None
            if not self._send(command):
                return None
            return self._receive()

    def _send(self, command: bytes) -> bool:
        sent = tries = 0
        while sent < len(command) and tries < 3:
            tries += 1
            try:
                sent += self._sock.send(command[sent:], socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL)
                continue
            except OSError as e:
                if e.errno in (errno.ECONNRESET, errno.EPIPE):
                    self.close()
                    self._last_failure = None  # reconnect at once
                    if self.connect():
                        sent = 0
                        continue
                    log.error("connection with mediaproxy did die")
                elif e.errno == errno.EACCES:
                    log.error("got permission denied while sending to %s", self.socket_path)
                elif e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    log.error("sending command would block!")
                else:
                    log.error("%d: %s", e.errno, e.strerror)
            self.close()
            return False
        if sent < len(command):
            log.error("couldn't send complete command after 3 tries")
            self.close()
            return False
        return True

    def _receive(self):
        data = b""
        while True:
            try:
                ready, _, _ = select.select([self._sock], [], [], self.timeout)
            except OSError as e:
                log.error("select failed: %d: %s", e.errno, e.strerror)
                break
            if not ready:
                log.error("did timeout waiting for an answer")
                break
            try:
                chunk = self._sock.recv(BUFFER_SIZE - 1 - len(data))
            except OSError as e:
                log.error("failed to read answer: %d: %s", e.errno, e.strerror)
                break
            if not chunk:
                log.error("connection with mediaproxy closed")
                break
            data += chunk
            if b"\r\n" in data:
                return data
        self.close()
        return None

"""Sets of weighted control nodes with failover: the media daemons' control sockets
(rtpproxy, rtpengine). `[id ==] url[=weight] url...` parsing, selection by a hash of the
Call-ID and the weights, the blocking request/reply exchange (a cookie on UDP, one
connection per command on UNIX sockets), retries and disabling (OpenSIPS's
send_rtpp_command / select_rtpp_node semantics, which its rtpengine module shares).
The log lines say "RTP proxy", as OpenSIPS's do for both."""
from __future__ import annotations

import os
import select
import socket
import time

from runtime import db

DEFAULT_PORT = 22222            # rtpproxy's and rtpengine's
DEFAULT_SET = 0


class ConfigError(ValueError):
    pass


class Node:
    def __init__(self, url: str, weight: int, set_id: int):
        self.url = url                  # as written: "udp:host:port"
        self.weight = weight
        self.set_id = set_id
        self.disabled = False
        self.recheck_at = 0.0           # monotonic time of the next retry when disabled
        self.forever = False            # disabled by MI
        self.sock = None
        low = url.lower()
        if low.startswith("udp:"):
            self.mode, self.address = "udp", url[4:]
        elif low.startswith("udp6:"):
            self.mode, self.address = "udp6", url[5:]
        elif low.startswith("unix:"):
            self.mode, self.address = "unix", url[5:]
        else:
            self.mode, self.address = "unix", url

    def __repr__(self):
        return f"Node({self.url!r}, set {self.set_id}, weight {self.weight})"

    def host_port(self):
        addr = self.address
        if addr.startswith("["):
            host, _, rest = addr[1:].partition("]")
            port = rest.lstrip(":")
        else:
            host, sep, port = addr.rpartition(":")
            if not sep:
                host, port = addr, ""
        return host, int(port) if port.isdigit() else DEFAULT_PORT


def parse_sets(values, default_set=DEFAULT_SET, node=Node) -> dict[int, list[Node]]:
    """Socket modparam values ("[id ==] url[=weight] url...") -> {set id: [node]}; `node`:
    the Node class, which may read more from the url."""
    sets: dict[int, list[Node]] = {}
    for value in values:
        text = (value or "").strip()
        if not text or text.upper() == "NONE":
            continue
        set_id = default_set
        if "==" in text:
            head, _, text = text.partition("==")
            head = head.strip()
            if not head.isdigit():
                raise ConfigError(f"invalid set id '{head}' in '{value}'")
            set_id = int(head)
            text = text.strip()
            if not text:
                raise ConfigError(f"empty RTP proxy list in '{value}'")
        for item in text.split():
            url, weight = item, 1
            if "=" in item:
                url, _, w = item.partition("=")
                weight = int(w) if w.isdigit() else 0
            sets.setdefault(set_id, []).append(node(url, weight, set_id))
    return sets


def check_socks(value):
    """A modparam check of one socket modparam value: its error, None when it parses."""
    try:
        parse_sets([value])
    except ValueError as e:             # ConfigError too
        return str(e)
    return None


def set_id_fixup(value, rt):
    """The fixup of a set id argument."""
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"invalid set id '{value}'") from None


class Control:
    """The nodes of every set, and the exchange with them."""

    def __init__(self, sets, *, timeout=1.0, retries=5, disable_timeout=60, log=None,
                 reply_end=None):
        self.sets = sets
        self.timeout = max(float(timeout), 0.001)
        self.retries = max(int(retries), 1)
        self.disable_timeout = disable_timeout
        self.log = log
        self.seq = 0
        self.probe = None               # probe(node) -> bool (is it alive and compatible)
        self.reply_end = reply_end      # a stream reply ends so (None: its first chunk is all)

    def _log(self, level, text):
        if self.log is not None:
            self.log(level, text)

    def load_table(self, db_url, table, sock_col, set_col, what, node=Node):
        """Add the nodes of a DB table (a socket and a set id column) to the sets; a driver
        error or a bad row is logged (`what`: the nodes, plural, for the log line)."""
        try:
            rows = db.connect(db_url).query(table, None, [sock_col, set_col])
        except Exception as e:  # any driver error: the sets stay as configured
            self._log("error", f"cannot load {what} from {table}: {e}")
            return
        for row in rows:
            try:
                found = parse_sets([str(row.get(sock_col))], int(row.get(set_col) or 0), node)
            except (ConfigError, ValueError) as e:
                self._log("error", f"bad {table} row {row}: {e}")
                continue
            for sid, nodes in found.items():
                self.sets.setdefault(sid, []).extend(nodes)

    # --- sockets ---------------------------------------------------------------------------
    def connect(self, node: Node) -> bool:
        if node.mode == "unix":
            return True
        host, port = node.host_port()
        family = socket.AF_INET6 if node.mode == "udp6" else socket.AF_INET
        try:
            infos = socket.getaddrinfo(host, port, family, socket.SOCK_DGRAM)
            s = socket.socket(family, socket.SOCK_DGRAM)
            s.connect(infos[0][4])
        except OSError as e:
            self._log("error", f"cannot connect to {node.url}: {e}")
            node.sock = None
            return False
        s.setblocking(False)
        node.sock = s
        return True

    def close(self):
        for nodes in self.sets.values():
            for n in nodes:
                if n.sock is not None:
                    n.sock.close()
                    n.sock = None

    def cookie(self) -> bytes:
        self.seq += 1
        return f"{os.getpid()}_{self.seq}".encode()

    def send(self, node: Node, payload: bytes) -> bytes | None:
        """Send one command, return the reply (without the cookie), None on failure (the
        node is then disabled for disable_timeout seconds)."""
        if node.mode == "unix":
            reply = self._send_unix(node, payload)
        else:
            reply = self._send_udp(node, payload)
        if reply is None:
            self._log("error", f"proxy <{node.url}> does not respond, disable it")
            self.disable(node)
        return reply

    def disable(self, node: Node):
        node.disabled = True
        node.recheck_at = time.monotonic() + max(self.disable_timeout, 0)

    def _send_unix(self, node, payload):
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(self.timeout * self.retries)
                s.connect(node.address)
                s.sendall(payload)
                chunks = []
                while True:
                    data = s.recv(65536)
                    if not data:
                        break
                    chunks.append(data)
                    if self.reply_end is None or data.endswith(self.reply_end):
                        break
                return b"".join(chunks) or None
        except OSError as e:
            self._log("error", f"can't talk to RTP proxy {node.url}: {e}")
            return None

    def _send_udp(self, node, payload):
        if node.sock is None and not self.connect(node):
            return None
        s = node.sock
        while True:   # drain what a late reply left
            try:
                s.recv(65536)
            except BlockingIOError:
                break
            except OSError:
                break
        cookie = self.cookie()
        packet = cookie + b" " + payload
        for _ in range(self.retries):
            try:
                s.send(packet)
            except OSError as e:
                self._log("error", f"can't send command to RTP proxy {node.url}: {e}")
                s.close()
                node.sock = None
                return None
            deadline = time.monotonic() + self.timeout
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                r, _, _ = select.select([s], [], [], left)
                if not r:
                    break
                try:
                    data = s.recv(65536)
                except BlockingIOError:
                    continue
                except OSError as e:
                    self._log("error", f"can't read reply from RTP proxy {node.url}: {e}")
                    s.close()
                    node.sock = None
                    return None
                if data.startswith(cookie + b" "):
                    return data[len(cookie) + 1:]
                if data == cookie:
                    return b""
        self._log("error", f"timeout waiting reply from RTP proxy {node.url}")
        return None

    # --- selection -------------------------------------------------------------------------
    def _retest(self, node: Node, force=False) -> None:
        """Re-enable a disabled node whose recheck time has come, if it answers."""
        if node.forever:
            return
        if not force and (not node.disabled or node.recheck_at > time.monotonic()):
            return
        ok = self.probe(node) if self.probe is not None else True
        node.disabled = not ok
        if not ok:
            node.recheck_at = time.monotonic() + max(self.disable_timeout, 0)

    def select(self, call_id: str, nodes: list[Node]) -> Node | None:
        """A node of the set for this Call-ID: weighted by a hash of the Call-ID, skipping
        disabled nodes (the Call-ID's share goes to the enabled ones)."""
        if not nodes:
            return None
        if len(nodes) == 1:
            n = nodes[0]
            if n.disabled:
                self._retest(n)
            return None if n.disabled else n
        h = sum(call_id.encode("utf-8", "surrogateescape")) & 0xFF
        for forced in (False, True):
            for n in nodes:
                if n.disabled:
                    self._retest(n, force=forced)
            enabled = [n for n in nodes if not n.disabled]
            if enabled:
                break
        else:
            return None
        total = sum(n.weight for n in nodes)
        weight_sum = sum(n.weight for n in enabled)
        if weight_sum <= 0:
            return enabled[0]
        cut = h % total if total else 0
        for n in nodes:
            if cut < n.weight:
                if not n.disabled:
                    return n
                break
            cut -= n.weight
        cut = h % weight_sum
        for n in enabled:
            if cut < n.weight:
                return n
            cut -= n.weight
        return enabled[0]

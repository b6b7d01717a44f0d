"""The running proxy's state: configuration, modules, compiled routes, sockets, variables."""
from __future__ import annotations

import ipaddress
import re
import socket as pysocket
import time
from dataclasses import dataclass, field

from .context import FlagRegistry
from .log import L_NOTICE, Logger


@dataclass
class Socket:
    """A listening socket as OpenSIPS names it: `proto:ip:port`, with what it advertises."""
    proto: str
    ip: str
    port: int
    adv_ip: str | None = None
    adv_port: int | None = None
    tag: str | None = None
    transport: object = field(default=None, repr=False, compare=False)  # set by the server

    def __str__(self):
        ip = f"[{self.ip}]" if ":" in self.ip else self.ip
        return f"{self.proto}:{ip}:{self.port}"

    @property
    def via_host(self) -> str:
        host = self.adv_ip or self.ip
        return f"[{host}]" if ":" in host and not host.startswith("[") else host

    @property
    def via_port(self) -> int:
        return self.adv_port or self.port

    @property
    def af(self) -> int:
        return pysocket.AF_INET6 if ":" in self.ip else pysocket.AF_INET


_SOCKET_TEXT = re.compile(r"^([A-Za-z_]+):(\[[^\]]+\]|[^:]+)(?::(\d+))?$")
DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061, "sctp": 5060, "ws": 80, "wss": 443}


class Runtime:
    """Everything the compiled script and the modules share in this process."""

    def __init__(self, *, log: Logger | None = None):
        self.log = log or Logger()
        self.log_level = L_NOTICE
        self.config: dict = {}                 # global parameters as given
        self.modules: dict = {}                # name -> runtime.module.Module
        self.routes: dict = {}                 # (kind, name) -> compiled function
        self.compiled = None                   # runtime.compiler.Compiled
        self.flag_names = FlagRegistry("message")
        self.bflag_names = FlagRegistry("branch")
        self.vars: dict = {}                   # $var(...) (per process)
        self.shvars: dict = {}                 # $shv(...)
        self.sockets: list[Socket] = []
        self.aliases: list = []                # (proto|None, host, port|0, subdomains)
        self.argv_vars: dict = {}
        self.started = time.time()
        self.current_line = None
        self.server = None                     # runtime.server.Server when running
        self.apis: dict = {}                   # module name -> its api object
        self.hit_counts = None                 # coverage counters (list) when enabled
        self.tracing = False
        self.script_file = None
        self.timers: list = []                 # (interval_s, callback) run by the server
        self.check_only = False                # loaded for -C: nothing will run
        self.outgoing_hooks: list = []         # hook(ctx, sock) -> header lines to add

    # --- logging -----------------------------------------------------------------------
    def set_log_level(self, level):
        self.log_level = self.config.get("log_level", L_NOTICE) if level is None else level
        self.log.level = self.log_level

    # --- addresses ---------------------------------------------------------------------
    def is_myself(self, host: str, port: int = 0) -> bool:
        """Is host[:port] one of our sockets (IP, advertised address) or an alias?"""
        if not host:
            return False
        h = host.strip("[]").lower()
        for s in self.sockets:
            if h in (s.ip.lower(), (s.adv_ip or "").lower()) or \
                    (s.ip in ("0.0.0.0", "::") and _is_local_ip(h)):
                if not port or port in (s.port, s.adv_port):
                    return True
        for proto, ahost, aport, subdomains in self.aliases:
            ah = ahost.lower()
            if h == ah or (subdomains and h.endswith("." + ah)):
                if not port or not aport or port == aport:
                    return True
        return False

    def find_socket(self, text: str) -> Socket | None:
        """A listening socket by `proto:ip:port` (port optional)."""
        m = _SOCKET_TEXT.match(text.strip())
        if not m:
            return None
        proto, host, port = m.group(1).lower(), m.group(2).strip("[]"), m.group(3)
        for s in self.sockets:
            if s.proto == proto and s.ip == host and (not port or int(port) == s.port):
                return s
        return None

    def socket_for(self, proto: str, af: int | None = None) -> Socket | None:
        """The first listening socket of this transport (and address family)."""
        for s in self.sockets:
            if s.proto == proto and (af is None or s.af == af):
                return s
        for s in self.sockets:
            if s.proto == proto:
                return s
        return None


def _is_local_ip(h: str) -> bool:
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return h == "localhost"

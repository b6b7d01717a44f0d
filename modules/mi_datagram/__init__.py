"""mi_datagram: the Management Interface over UDP or a UNIX datagram socket: one JSON-RPC
request per datagram, the reply sent back to the sender, as OpenSIPS's mi_datagram.

    modparam("mi_datagram", "socket_name", "udp:127.0.0.1:8080")
    modparam("mi_datagram", "socket_name", "/var/run/opensips/socket")   # UNIX
"""
from __future__ import annotations

import asyncio
import os
import re
import socket
import stat

from runtime import mi
from runtime.module import Module, Param

exports = Module(
    name="mi_datagram",
    params=[
        Param("socket_name", str, None),
        Param("children_count", int, 1),
        Param("unix_socket_mode", int, 0o660),
        Param("unix_socket_group", (int, str), None),
        Param("unix_socket_user", (int, str), None),
        Param("socket_timeout", int, 2000),
        Param("pretty_printing", int, 0),
        Param("trace_destination", str, None),
        Param("trace_bwlist", str, None),
        Param("reply_indent", str, None),       # 1.x text replies
    ],
    init="init",
    child_init="child_init",
    destroy="destroy",
)

MAX_DATAGRAM = 65457
_INET = re.compile(r"^udp:(\[[^\]]+\]|[^:]+):(\d+)$", re.I)
_state = {"server": None}


def parse_socket_name(text: str):
    """("udp", host, port) or ("unix", path, None)."""
    text = (text or "").strip()
    m = _INET.match(text)
    if m:
        return "udp", m.group(1).strip("[]"), int(m.group(2))
    if text.lower().startswith("udp:"):
        raise ValueError(f"socket_name '{text}': expected udp:ip:port")
    if not text:
        raise ValueError("no socket_name configured")
    return "unix", text, None


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, server):
        self.server = server
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.server.received(self.transport, data, addr)

    def error_received(self, exc):
        pass


class DatagramServer:
    def __init__(self, rt, params):
        self.rt = rt
        self.kind, self.host, self.port = parse_socket_name(params["socket_name"])
        self.mode = params["unix_socket_mode"] or 0o600
        self.pretty = bool(params["pretty_printing"])
        self.owner = (params["unix_socket_user"], params["unix_socket_group"])
        self.transport = None
        self.loop = None
        self.tasks = set()
        if params["trace_destination"]:
            rt.log.warning("trace_destination: MI tracing is not supported, ignored",
                           "mi_datagram")

    async def start(self, loop):
        """Bind. A socket that cannot be had here is an error in the log, not a reason to
        stop the proxy."""
        self.loop = loop
        try:
            await self._bind(loop)
        except OSError as e:
            self.rt.log.error(f"MI datagram socket {self.host}"
                              f"{'' if self.port is None else f':{self.port}'} is off: "
                              f"{e.strerror or e}", "mi_datagram")
            self.transport = None

    async def _bind(self, loop):
        if self.kind == "udp":
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            self.transport, _ = await loop.create_datagram_endpoint(
                lambda: _Protocol(self), local_addr=(self.host, self.port), family=family)
            label = f"udp:{self.host}:{self.port}"
        else:
            if os.path.lexists(self.host):
                if not stat.S_ISSOCK(os.lstat(self.host).st_mode):
                    raise OSError(f"{self.host} exists and is not a socket")
                if _served(self.host):
                    raise OSError(f"{self.host} is served by another running process")
                os.unlink(self.host)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind(self.host)
            os.chmod(self.host, self.mode)
            self._chown()
            self.transport, _ = await loop.create_datagram_endpoint(
                lambda: _Protocol(self), sock=sock)
            label = self.host
        mi.add_process(self.rt, "MI Datagram")
        self.rt.log.info(f"MI datagram socket on {label}", "mi_datagram")

    def _chown(self):
        user, group = self.owner
        uid = gid = -1
        try:
            import grp
            import pwd
            if user not in (None, ""):
                pw = pwd.getpwuid(user) if isinstance(user, int) else pwd.getpwnam(user)
                uid, gid = pw.pw_uid, pw.pw_gid
            if group not in (None, ""):
                gr = grp.getgrgid(group) if isinstance(group, int) else grp.getgrnam(group)
                gid = gr.gr_gid
        except (KeyError, OverflowError):
            self.rt.log.warning(f"unix_socket_user/group {user}/{group}: unknown, the "
                                f"socket keeps this process's owner", "mi_datagram")
            return
        if uid != -1 or gid != -1:
            try:
                os.chown(self.host, uid, gid)
            except OSError as e:
                self.rt.log.warning(f"cannot change the owner of {self.host}: {e.strerror}",
                                    "mi_datagram")

    def received(self, transport, data, addr):
        task = self.loop.create_task(self._run(transport, data, addr))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(self, transport, data, addr):
        try:
            reply = await mi.handle_text(self.rt, data, self.pretty)
        except Exception as e:
            self.rt.log.error(f"MI datagram command failed: {e!r}", "mi_datagram")
            return
        if reply is None or not addr:
            return
        out = reply.encode("utf-8")
        if len(out) > MAX_DATAGRAM:
            self.rt.log.error(f"reply of {len(out)} bytes does not fit in a datagram",
                              "mi_datagram")
            out = mi.dumps({"jsonrpc": "2.0", "error": {
                "code": mi.SERVER_ERROR[0], "message": mi.SERVER_ERROR[1],
                "data": "reply too big for one datagram"},
                "id": mi.parse_request(data).id}).encode("utf-8")
        try:
            transport.sendto(out, addr)
        except OSError as e:
            self.rt.log.error(f"cannot send the reply to {addr}: {e}", "mi_datagram")

    def stop(self):
        if self.transport is None:
            return
        self.transport.close()
        if self.kind == "unix":
            try:
                if stat.S_ISSOCK(os.lstat(self.host).st_mode):
                    os.unlink(self.host)
            except OSError:
                pass


def _served(path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        probe.connect(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()


def init(rt):
    _state["server"] = DatagramServer(rt, rt.modparams["mi_datagram"])


async def child_init(rt):
    server = _state["server"]
    if server is None:
        server = _state["server"] = DatagramServer(rt, rt.modparams["mi_datagram"])
    await server.start(rt.server.loop)


def destroy(rt):
    server = _state.get("server")
    _state["server"] = None
    if server is not None:
        server.stop()

"""mi_xmlrpc: the Management Interface over XML-RPC, the OpenSIPS 1.x module (an HTTP server
on a port of its own, as its embedded Abyss was: httpd's server code, no httpd needed).

    loadmodule "mi_xmlrpc.so"
    modparam("mi_xmlrpc", "port", 8000)                   # the default: 8080 (>= 1024)
    modparam("mi_xmlrpc", "log_file", "/var/log/abyss.log")
    modparam("mi_xmlrpc", "reply_option", 0)              # 0: one string, 1: array of lines

    >>> xmlrpc.client.ServerProxy("http://127.0.0.1:8000/RPC2").uptime()
    'Now:: Mon Nov 25 17:09:22 2024\\nUp since:: ...\\nUp time:: 12 [sec]\\n'

The method name is the MI command, its XML-RPC params are the command's parameters in order
(one struct param: named parameters). The reply is a single param: with reply_option 0 one
string holding the whole answer, one `name:: value` line per node (a nested object's lines
follow its own line, a list repeats its name per element), with reply_option 1 an array of
those lines; a command that only answers OK replies an empty string. A failed command is an
XML-RPC fault with the MI error code and message. As the 1.x module did, LF LF in a string
parameter stands for CR LF (XML parsers turn CR LF into LF).

`log_file` gets one access-log line per request (NCSA common log format). cfgscript listens
on 127.0.0.1 unless `modparam("mi_xmlrpc", "ip", "*")` (all addresses, what Abyss did) or
another address is given; `buffer_size` is accepted (replies have no size limit here).
"""
from __future__ import annotations

import time
import xmlrpc.client
from xml.parsers.expat import ExpatError

from runtime import mi
from runtime.httpserver import HTTPServer
from runtime.module import Module, Param

exports = Module(
    name="mi_xmlrpc",
    params=[
        Param("port", int, 8080, check=lambda v: None if 1024 <= v <= 65535 else
              "ports lower than 1024 are not accepted"),
        Param("log_file", str, None),
        Param("reply_option", int, 0),
        Param("buffer_size", int, 8192, check=lambda v: None if v > 0 else
              "buffer_size must be positive"),
        Param("ip", str, "127.0.0.1"),
    ],
    init="init",
    child_init="child_init",
    destroy="destroy",
)

MAX_BODY = 4 * 1024 * 1024


# --- replies -------------------------------------------------------------------------------

def _scalar(v) -> str:
    if v is None:
        return ""
    if v is True:
        return "true"
    if v is False:
        return "false"
    return str(v)


def _node_lines(name, value, out):
    if isinstance(value, dict):
        out.append(f"{name}:: ")
        for k, v in value.items():
            _node_lines(k, v, out)
    elif isinstance(value, list):
        for item in value:
            _node_lines(name, item, out)
    else:
        out.append(f"{name}:: {_scalar(value)}")


def reply_lines(result) -> list:
    """The answer as the 1.x MI tree printed it, one line per node."""
    out: list = []
    if isinstance(result, dict):
        for k, v in result.items():
            _node_lines(k, v, out)
    elif isinstance(result, list):
        for item in result:
            if isinstance(item, (dict, list)):
                out.extend(reply_lines(item))
            else:
                out.append(_scalar(item))
    elif result is not None and result != mi.OK:
        out.append(_scalar(result))
    return [line + "\n" for line in out]


def _xml_safe(s: str) -> str:
    return "".join(c if c >= " " or c in "\t\n\r" else "?" for c in s)


def response_body(result, reply_option: int) -> bytes:
    lines = [_xml_safe(line) for line in reply_lines(result)]
    value = lines if reply_option else "".join(lines)
    return xmlrpc.client.dumps((value,), methodresponse=True, allow_none=False).encode("utf-8")


def fault_body(code: int, message: str) -> bytes:
    return xmlrpc.client.dumps(xmlrpc.client.Fault(code, _xml_safe(message)),
                               methodresponse=True).encode("utf-8")


def _param(v):
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, str):
        return v.replace("\n\n", "\r\n")
    if isinstance(v, (int, float)):
        return v
    if isinstance(v, xmlrpc.client.Binary):
        return v.data.decode("utf-8", "surrogateescape")
    if isinstance(v, xmlrpc.client.DateTime):
        return v.value
    if isinstance(v, list):
        return [_param(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _param(x) for k, x in v.items()}
    return str(v)


async def handle_call(rt, body: bytes, reply_option: int = 0) -> bytes:
    """One XML-RPC methodCall in, the methodResponse out."""
    try:
        params, method = xmlrpc.client.loads(body)
    except (ExpatError, ValueError, TypeError, xmlrpc.client.ResponseError) as e:
        rt.log.error(f"bad XML-RPC request: {e}", "mi_xmlrpc")
        return fault_body(*mi.PARSE_ERROR)
    if not method:
        return fault_body(*mi.INVALID_REQUEST)
    if method == "system.listMethods":
        return xmlrpc.client.dumps(([c.name for c in mi.registry(rt).commands],),
                                   methodresponse=True).encode("utf-8")
    cmd = mi.registry(rt).lookup(method)
    if cmd is None:
        rt.log.error(f"unable to find MI command [{method}]", "mi_xmlrpc")
        return fault_body(*mi.METHOD_NOT_FOUND)
    if len(params) == 1 and isinstance(params[0], dict):
        args = _param(params[0]) or None
    else:
        args = [_param(p) for p in params] or None
    try:
        result = await mi.run_command(rt, cmd, args)
    except mi.MIError as e:
        msg = e.message + (f": {e.data}" if e.data else "")
        return fault_body(e.code, msg)
    return response_body(result, reply_option)


# --- the HTTP server -----------------------------------------------------------------------

class XMLRPCServer:
    """POST /RPC2 (any path) on runtime/httpserver.py, with the access log of log_file."""

    def __init__(self, rt, params):
        self.rt = rt
        self.reply_option = params["reply_option"]
        self.log_file = params["log_file"]
        self.log_fh = None
        ip = "*" if params["ip"] == "0.0.0.0" else params["ip"]
        self.server = HTTPServer(rt, "mi_xmlrpc", self._handle, ip, params["port"],
                                 max_body=MAX_BODY, on_reply=self._access)

    async def start(self):
        label = self.server.label
        try:
            await self.server.start()
        except OSError as e:
            self.rt.log.error(f"mi_xmlrpc cannot listen on {label}: {e.strerror or e}; "
                              f"XML-RPC is off", "mi_xmlrpc")
            return
        if self.log_file:
            try:
                self.log_fh = open(self.log_file, "a", buffering=1)
            except OSError as e:
                self.rt.log.warning(f"log_file {self.log_file}: {e.strerror or e}; no access"
                                    f" log", "mi_xmlrpc")
        mi.add_process(self.rt, f"MI XMLRPC {label}")
        self.rt.log.notice(f"mi_xmlrpc listening on http://{label}/RPC2", "mi_xmlrpc")

    def stop(self):
        self.server.stop()
        if self.log_fh is not None:
            self.log_fh.close()
            self.log_fh = None

    def _access(self, req, status, size):
        if self.log_fh is None:
            return
        stamp = time.strftime("%d/%b/%Y:%H:%M:%S %z")
        try:
            self.log_fh.write(f'{req.client[0]} - - [{stamp}] "{req.line}" {status} {size}\n')
        except OSError:
            pass

    async def _handle(self, req):
        headers = {"Server": "cfgscript mi_xmlrpc"}
        if req.method != "POST":
            return 405, b"", {**headers, "Allow": "POST"}
        if "content-length" not in req.headers and "transfer-encoding" not in req.headers:
            return 411, b"", headers
        reply = await handle_call(self.rt, req.body, self.reply_option)
        return 200, reply, {**headers, "Content-Type": "text/xml"}


_state = {"server": None}


def init(rt):
    _state["server"] = XMLRPCServer(rt, rt.modparams["mi_xmlrpc"])


async def child_init(rt):
    server = _state["server"]
    if server is None:
        server = _state["server"] = XMLRPCServer(rt, rt.modparams["mi_xmlrpc"])
    await server.start()


def destroy(rt):
    server = _state.get("server")
    _state["server"] = None
    if server is not None:
        server.stop()

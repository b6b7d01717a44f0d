"""httpd: the embedded HTTP server other modules hang their pages on (mi_http at /mi,
prometheus at /metrics), as OpenSIPS's httpd module.

    modparam("httpd", "ip", "127.0.0.1")    # the default: loopback only; "*" for all
    modparam("httpd", "port", 8888)         # the default

A module registers a root path through the API, `rt.apis["httpd"].register_httpdcb(module,
root, handler, content_type)`; a request for `/<root>` or `/<root>/...` goes to its handler:

    handler(rt, request) -> (status, body) | (status, body, headers)   (may be async)

`request` has .method .path .query .headers (lower-case names) .body .client.

HTTP/1.1 with keep-alive, Content-Length and chunked request bodies. TLS when
`tls_cert_file` and `tls_key_file` are set (plain HTTP is then off); HTTP Basic
authentication when `auth_username` and `auth_password` are set.
"""
from __future__ import annotations

import asyncio
import base64
import hmac
import inspect
import ssl
import traceback
from dataclasses import dataclass, field
from urllib.parse import unquote

from runtime import mi
from runtime.module import Module, Param

exports = Module(
    name="httpd",
    params=[
        Param("ip", str, "127.0.0.1"),
        Param("port", int, 8888, check=lambda v: None if 1024 <= v <= 65535 else
              "ports lower than 1024 are not accepted"),
        Param("conn_timeout", int, 30),
        Param("buf_size", int, 0),
        Param("post_buf_size", int, 1024),
        Param("receive_buf_size", int, 1024),
        Param("tls_cert_file", str, ""),
        Param("tls_key_file", str, ""),
        Param("tls_ciphers", str, ""),
        Param("auth_realm", str, "OpenSIPS MI"),
        Param("auth_username", str, ""),
        Param("auth_password", str, ""),
    ],
    init="init",
    child_init="child_init",
    destroy="destroy",
)

MAX_HEAD = 64 * 1024
MAX_BODY = 8 * 1024 * 1024
REASONS = {200: "OK", 202: "Accepted", 400: "Bad Request", 401: "Unauthorized",
           404: "Not Found", 405: "Method Not Allowed", 411: "Length Required",
           413: "Payload Too Large", 500: "Internal Server Error",
           505: "HTTP Version Not Supported"}


@dataclass
class Root:
    module: str
    root: str
    handler: object
    content_type: str


@dataclass
class HTTPRequest:
    method: str
    path: str
    query: str
    version: str
    headers: dict = field(default_factory=dict)
    body: bytes = b""
    client: tuple = ()


class Api:
    """What mi_http and prometheus use (OpenSIPS httpd_api_t)."""

    def __init__(self):
        self.roots: dict[str, Root] = {}

    def register_httpdcb(self, module, root, handler, content_type="text/html"):
        root = root.strip("/")
        taken = self.roots.get(root)
        if taken is not None and taken.module != module:
            raise ValueError(f"http root '/{root}' is already taken by module "
                             f"{taken.module}")
        self.roots[root] = Root(module, root, handler, content_type)


api = Api()
exports.api = api
_state = {"server": None}


class HTTPServer:
    def __init__(self, rt, params):
        self.rt = rt
        self.params = params
        self.ip = params["ip"]
        self.port = params["port"]
        self.timeout = params["conn_timeout"] or None
        self.server = None
        self.ssl = None
        cert, key = params["tls_cert_file"], params["tls_key_file"]
        if cert or key:
            if not (cert and key):
                raise ValueError("TLS needs both tls_cert_file and tls_key_file")
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(cert, key)
            self.ssl = ctx
        user, password = params["auth_username"], params["auth_password"]
        self.auth = None
        if user and password:
            self.auth = base64.b64encode(f"{user}:{password}".encode()).decode()
        elif user or password:
            rt.log.warning("HTTP authentication needs both auth_username and auth_password;"
                           " it stays off", "httpd")

    async def start(self):
        """Listen. An address or port that cannot be had here is an error in the log, not
        a reason to stop the proxy (several proxies of a test run share a machine)."""
        host = None if self.ip in ("*", "") else self.ip
        label = f"{'*' if host is None else self.ip}:{self.port}"
        try:
            self.server = await asyncio.start_server(self._client, host, self.port,
                                                     ssl=self.ssl, reuse_address=True,
                                                     limit=MAX_HEAD)
        except OSError as e:
            self.rt.log.error(f"httpd cannot listen on {label}: {e.strerror or e}; "
                              f"HTTP is off", "httpd")
            return
        mi.add_process(self.rt, f"HTTPD {label}")
        self.rt.log.notice(f"httpd listening on {'https' if self.ssl else 'http'}://{label}"
                           f" ({', '.join('/' + r for r in api.roots) or 'no root paths'})",
                           "httpd")

    def stop(self):
        if self.server is not None:
            self.server.close()

    async def _client(self, reader, writer):
        peer = writer.get_extra_info("peername") or ("?", 0)
        try:
            while True:
                try:
                    req = await asyncio.wait_for(self._read(reader, writer, peer),
                                                 self.timeout)
                except asyncio.TimeoutError:
                    break
                if req is None:
                    break
                if isinstance(req, int):        # a request we cannot read: answer, close
                    await self._send(writer, req, b"", {}, close=True)
                    break
                keep = _keep_alive(req)
                status, body, headers = await self._dispatch(req)
                await self._send(writer, status, body, headers, close=not keep,
                                 head_only=req.method == "HEAD")
                if not keep:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        except Exception:
            self.rt.log.error("httpd connection failed:\n" + traceback.format_exc(), "httpd")
        finally:
            try:
                writer.close()
            except Exception:
                pass

    async def _read(self, reader, writer, peer):
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            return 413
        except asyncio.IncompleteReadError as e:
            return None if not e.partial.strip() else 400
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return 400
        method, target, version = parts
        if version not in ("HTTP/1.0", "HTTP/1.1"):
            return 505
        headers = {}
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep:
                return 400
            headers[name.strip().lower()] = value.strip()
        path, _, query = target.partition("?")
        req = HTTPRequest(method, unquote(path), query, version, headers, b"", peer[:2])
        if headers.get("expect", "").lower() == "100-continue" and version == "HTTP/1.1":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await writer.drain()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = b""
            while True:
                size_line = await reader.readuntil(b"\r\n")
                try:
                    size = int(size_line.split(b";")[0].strip(), 16)
                except ValueError:
                    return 400
                if size == 0:
                    await reader.readuntil(b"\r\n")        # (no trailers expected)
                    break
                body += await reader.readexactly(size)
                await reader.readexactly(2)
                if len(body) > MAX_BODY:
                    return 413
            req.body = body
        elif "content-length" in headers:
            try:
                n = int(headers["content-length"])
            except ValueError:
                return 400
            if n < 0:
                return 400
            if n > MAX_BODY:
                return 413
            req.body = await reader.readexactly(n)
        return req

    def _authorized(self, req) -> bool:
        if self.auth is None:
            return True
        got = req.headers.get("authorization", "")
        scheme, _, cred = got.partition(" ")
        return scheme.lower() == "basic" and hmac.compare_digest(cred.strip(), self.auth)

    async def _dispatch(self, req):
        if not self._authorized(req):
            realm = self.params["auth_realm"].replace('"', "'")
            return 401, b"", {"WWW-Authenticate": f'Basic realm="{realm}"'}
        root = req.path.strip("/").split("/", 1)[0]
        entry = api.roots.get(root)
        if entry is None:
            return 404, b"", {}
        try:
            res = entry.handler(self.rt, req)
            if inspect.isawaitable(res):
                res = await res
        except Exception:
            self.rt.log.error(f"http handler of {entry.module} failed:\n"
                              + traceback.format_exc(), "httpd")
            return 500, b"", {}
        status, body = res[0], res[1]
        headers = dict(res[2]) if len(res) > 2 else {}
        if isinstance(body, str):
            body = body.encode("utf-8")
        if body and "Content-Type" not in headers:
            headers["Content-Type"] = entry.content_type
        return status, body, headers

    async def _send(self, writer, status, body, headers, close=False, head_only=False):
        lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}"]
        for k, v in headers.items():
            lines.append(f"{k}: {v}")
        lines.append(f"Content-Length: {len(body)}")
        if close:
            lines.append("Connection: close")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        writer.write(data if head_only else data + body)
        await writer.drain()


def _keep_alive(req) -> bool:
    conn = req.headers.get("connection", "").lower()
    if req.version == "HTTP/1.0":
        return conn == "keep-alive"
    return conn != "close"


def mi_list_root_path(rt):
    """The http root paths and the module serving each."""
    return {"http_roots": [{"http_root": r.root, "module": r.module}
                           for r in api.roots.values()]}


exports.mi = {"httpd_list_root_path": mi.Cmd(mi_list_root_path,
                                              aliases=("httpd:list_root_path",))}


def init(rt):
    _state["server"] = HTTPServer(rt, rt.modparams["httpd"])


async def child_init(rt):
    server = _state["server"]
    if server is None:
        server = _state["server"] = HTTPServer(rt, rt.modparams["httpd"])
    await server.start()


def destroy(rt):
    server = _state.get("server")
    _state["server"] = None
    if server is not None:
        server.stop()

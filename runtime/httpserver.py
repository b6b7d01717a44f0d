"""An HTTP/1.1 server on the event loop, for the modules that answer HTTP (httpd and the
modules on its roots, mi_xmlrpc on a port of its own).

    server = HTTPServer(rt, "httpd", handler, "127.0.0.1", 8888)
    await server.start()                 # OSError when it cannot listen on server.label

    handler(request) -> (status, body) | (status, body, headers)   (may be async)

`request` has .method .path .query .version .headers (lower-case names) .body .client and
.line (the request line as received). Keep-alive, Content-Length and chunked request
bodies, `Expect: 100-continue`, HEAD; TLS with an `ssl` context. A request that cannot be
read is answered (400, 413, 505) and its connection closed.
"""
from __future__ import annotations

import asyncio
import inspect
import ssl
import traceback
from dataclasses import dataclass, field
from urllib.parse import unquote

MAX_HEAD = 64 * 1024
MAX_BODY = 8 * 1024 * 1024
REASONS = {200: "OK", 202: "Accepted", 400: "Bad Request", 401: "Unauthorized",
           404: "Not Found", 405: "Method Not Allowed", 411: "Length Required",
           413: "Payload Too Large", 500: "Internal Server Error",
           505: "HTTP Version Not Supported"}


@dataclass
class HTTPRequest:
    method: str
    path: str
    query: str
    version: str
    headers: dict = field(default_factory=dict)
    body: bytes = b""
    client: tuple = ()
    line: str = ""


class HTTPServer:
    def __init__(self, rt, name, handler, ip, port, *, timeout=30, ssl=None,
                 max_body=MAX_BODY, on_reply=None):
        self.rt = rt
        self.name = name                # the module, for the log
        self.handler = handler
        self.host = None if ip in ("*", "") else ip      # None: every address
        self.port = port
        self.label = f"{'*' if self.host is None else ip}:{port}"
        self.timeout = timeout          # seconds a connection may wait for a request
        self.ssl = ssl
        self.max_body = max_body
        self.on_reply = on_reply        # on_reply(request, status, body size) before a reply
        self.server = None

    async def start(self):
        self.server = await asyncio.start_server(self._client, self.host, self.port,
                                                 ssl=self.ssl, reuse_address=True,
                                                 limit=MAX_HEAD)

    def stop(self):
        if self.server is not None:
            self.server.close()
            self.server = None

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
                status, body, headers = await self._answer(req)
                if self.on_reply is not None:
                    self.on_reply(req, status, len(body))
                await self._send(writer, status, body, headers, close=not keep,
                                 head_only=req.method == "HEAD")
                if not keep:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        except Exception:
            self.rt.log.error(f"{self.name} connection failed:\n" + traceback.format_exc(),
                              self.name)
        finally:
            try:
                writer.close()
            except Exception:
                pass

    async def _answer(self, req):
        res = self.handler(req)
        if inspect.isawaitable(res):
            res = await res
        status, body = res[0], res[1]
        headers = dict(res[2]) if len(res) > 2 else {}
        if isinstance(body, str):
            body = body.encode("utf-8")
        return status, body, headers

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
        req = HTTPRequest(method, unquote(path), query, version, headers, b"", peer[:2],
                          lines[0])
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
                if len(body) > self.max_body:
                    return 413
            req.body = body
        elif "content-length" in headers:
            try:
                n = int(headers["content-length"])
            except ValueError:
                return 400
            if n < 0:
                return 400
            if n > self.max_body:
                return 413
            req.body = await reader.readexactly(n)
        return req

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

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

import base64
import hmac
import inspect
import ssl
import traceback
from dataclasses import dataclass

from runtime import mi
from runtime.httpserver import HTTPServer
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

@dataclass
class Root:
    module: str
    root: str
    handler: object
    content_type: str


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


class Httpd:
    """The server of the httpd modparams: TLS, HTTP Basic authentication, the roots."""

    def __init__(self, rt, params):
        self.rt = rt
        self.params = params
        tls = None
        cert, key = params["tls_cert_file"], params["tls_key_file"]
        if cert or key:
            if not (cert and key):
                raise ValueError("TLS needs both tls_cert_file and tls_key_file")
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(cert, key)
        user, password = params["auth_username"], params["auth_password"]
        self.auth = None
        if user and password:
            self.auth = base64.b64encode(f"{user}:{password}".encode()).decode()
        elif user or password:
            rt.log.warning("HTTP authentication needs both auth_username and auth_password;"
                           " it stays off", "httpd")
        self.server = HTTPServer(rt, "httpd", self._dispatch, params["ip"], params["port"],
                                 timeout=params["conn_timeout"] or None, ssl=tls)

    async def start(self):
        """Listen. An address or port that cannot be had here is an error in the log, not
        a reason to stop the proxy (several proxies of a test run share a machine)."""
        label = self.server.label
        try:
            await self.server.start()
        except OSError as e:
            self.rt.log.error(f"httpd cannot listen on {label}: {e.strerror or e}; "
                              f"HTTP is off", "httpd")
            return
        mi.add_process(self.rt, f"HTTPD {label}")
        self.rt.log.notice(f"httpd listening on {'https' if self.server.ssl else 'http'}://{label}"
                           f" ({', '.join('/' + r for r in api.roots) or 'no root paths'})",
                           "httpd")

    def stop(self):
        self.server.stop()

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
        if body and "Content-Type" not in headers:
            headers["Content-Type"] = entry.content_type
        return status, body, headers


def mi_list_root_path(rt):
    """The http root paths and the module serving each."""
    return {"http_roots": [{"http_root": r.root, "module": r.module}
                           for r in api.roots.values()]}


exports.mi = {"httpd_list_root_path": mi.Cmd(mi_list_root_path,
                                              aliases=("httpd:list_root_path",))}


def init(rt):
    _state["server"] = Httpd(rt, rt.modparams["httpd"])


async def child_init(rt):
    server = _state["server"]
    if server is None:
        server = _state["server"] = Httpd(rt, rt.modparams["httpd"])
    await server.start()


def destroy(rt):
    server = _state.get("server")
    _state["server"] = None
    if server is not None:
        server.stop()

"""rest_client: HTTP(S) GET/POST/PUT from the script, as OpenSIPS's rest_client (libcurl)
does it, with blocking requests bounded by the module's timeouts.

    modparam("rest_client", "connection_timeout", 5)      # seconds to connect (20)
    modparam("rest_client", "curl_timeout", 10)           # seconds for the whole transfer (20)
    modparam("rest_client", "ssl_verifypeer", 0)          # and ssl_verifyhost, ssl_capath

    $var(rc) = rest_get("http://h/credit?acc=$fU", $var(body), $var(ctype), $var(code));
    rest_post(url, "$json(req)", "application/json", $var(body), $var(ctype), $var(code));
    rest_put(url, $var(data), , $var(body));
    rest_append_hf("Authorization: Bearer $var(token)");  # for the next request only
    async(rest_get(...), resume_route);                   # runs as a blocking call here

Return codes: 1 a reply arrived (whatever its status: see the code variable), -1 connection
refused, -2 connect timeout, -3 transfer timeout (the body read so far and the status, or 0,
are still set), -10 anything else (bad URL, unknown host, TLS failure, max_transfer_size).
The reply body and Content-Type are stored trimmed of blanks; the code variable is always
set (0: no reply). POST and PUT send `Content-Type: application/x-www-form-urlencoded`
unless a content type is given; redirects are not followed.

Transformations: {rest.escape} percent-encodes all but A-Z a-z 0-9 - . _ ~, {rest.unescape}
decodes %XX.

The request blocks the proxy's event loop for at most curl_timeout seconds (OpenSIPS blocks
its worker the same way; async() does not suspend here).
"""
from __future__ import annotations

import http.client
import socket
import ssl
import time
import urllib.parse

from runtime import transforms as T
from runtime.module import ALL, STR, VAR, Arg, Func, Module, Param

exports = Module(
    name="rest_client",
    params=[
        Param("curl_timeout", int, 20),
        Param("connection_timeout", int, 20),
        Param("connect_poll_interval", int, 20),
        Param("max_async_transfers", int, 100),
        Param("max_transfer_size", int, 0),
        Param("ssl_verifypeer", int, 1),
        Param("ssl_verifyhost", int, 1),
        Param("ssl_capath", str, None),
        Param("curl_http_version", int, 0),
        Param("enable_expect_100", int, 0),
        Param("no_concurrent_connects", int, 0),
        Param("curl_conn_lifetime", int, 0),
    ],
    functions=[
        Func("rest_get", "rest_get",
             [Arg(STR, name="url"), Arg(VAR, name="body_pv"),
              Arg(VAR, optional=True, name="ctype_pv"),
              Arg(VAR, optional=True, name="retcode_pv")], ALL, is_async=True),
        Func("rest_post", "rest_post",
             [Arg(STR, name="url"), Arg(STR, name="send_body"),
              Arg(STR, optional=True, name="send_ctype"), Arg(VAR, name="recv_body_pv"),
              Arg(VAR, optional=True, name="recv_ctype_pv"),
              Arg(VAR, optional=True, name="retcode_pv")], ALL, is_async=True),
        Func("rest_put", "rest_put",
             [Arg(STR, name="url"), Arg(STR, name="send_body"),
              Arg(STR, optional=True, name="send_ctype"), Arg(VAR, name="recv_body_pv"),
              Arg(VAR, optional=True, name="recv_ctype_pv"),
              Arg(VAR, optional=True, name="retcode_pv")], ALL, is_async=True),
        Func("rest_append_hf", "rest_append_hf", [Arg(STR, name="txt")], ALL),
        Func("rest_init_client_tls", "rest_init_client_tls",
             [Arg(STR, name="tls_client_domain")], ALL),
    ],
)

RCL_OK = 1
RCL_CONNECT_REFUSED = -1
RCL_CONNECT_TIMEOUT = -2
RCL_TRANSFER_TIMEOUT = -3
RCL_INTERNAL_ERR = -10

DEFAULT_CTYPE = "application/x-www-form-urlencoded"
_BLANKS = " \t\r\n"


class Result:
    __slots__ = ("rc", "status", "body", "ctype")

    def __init__(self, rc, status=0, body=b"", ctype=None):
        self.rc = rc
        self.status = status
        self.body = body
        self.ctype = ctype


class _Timeout(Exception):
    pass


def _params(rt):
    return rt.modparams.get("rest_client") or {p.name: p.default for p in exports.params}


def _ssl_context(p):
    ctx = ssl.create_default_context()
    if p.get("ssl_capath"):
        try:
            ctx.load_verify_locations(capath=p["ssl_capath"])
        except (OSError, ssl.SSLError):
            pass
    if not p.get("ssl_verifyhost", 1):
        ctx.check_hostname = False
    if not p.get("ssl_verifypeer", 1):
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _header_lines(extra, method, body, ctype, host_header):
    """The request headers, as libcurl sends them, with the script's added or replaced."""
    headers = [("Host", host_header), ("Accept", "*/*")]
    if method in ("POST", "PUT"):
        headers.append(("Content-Type", DEFAULT_CTYPE))
    for line in extra:
        name, sep, value = line.partition(":")
        name, value = name.strip(), value.strip()
        if not sep or not name:
            continue
        headers = [(n, v) for n, v in headers if n.lower() != name.lower()]
        if value:                            # "Accept:" removes a default header, as in curl
            headers.append((name, value))
    if ctype is not None and method in ("POST", "PUT"):
        headers = [(n, v) for n, v in headers if n.lower() != "content-type"]
        headers.append(("Content-Type", ctype))
    if method in ("POST", "PUT"):
        headers.append(("Content-Length", str(len(body))))
    return headers


def transfer(method, url, body=None, ctype=None, extra_headers=(), params=None, log=None):
    """One HTTP request; never raises. `params`: the module's parameters."""
    p = params or {}
    total = max(float(p.get("curl_timeout", 20) or 0), 0.001)
    connect_to = min(float(p.get("connection_timeout", 20) or total), total)
    max_size = int(p.get("max_transfer_size", 0) or 0) * 1024
    start = time.monotonic()
    deadline = start + total

    def fail(rc, what, status=0, data=b"", rctype=None):
        if log is not None:
            log.error(f"{method} {url}: {what}", "rest_client")
        return Result(rc, status, data, rctype)

    try:
        u = urllib.parse.urlsplit(url.strip())
        port = u.port
    except ValueError as e:
        return fail(RCL_INTERNAL_ERR, f"bad URL ({e})")
    scheme = (u.scheme or "http").lower()
    if scheme not in ("http", "https") or not u.hostname:
        return fail(RCL_INTERNAL_ERR, "unsupported or malformed URL")
    host = u.hostname
    port = port or (443 if scheme == "https" else 80)
    target = (u.path or "/") + (f"?{u.query}" if u.query else "")
    host_header = u.netloc.rpartition("@")[2]
    data = b"" if body is None else body.encode("utf-8", "surrogateescape")
    headers = _header_lines(extra_headers, method, data, ctype, host_header)

    try:
        addrs = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        return fail(RCL_INTERNAL_ERR, f"could not resolve host {host} ({e})")
    sock = None
    refused = False
    for family, stype, proto, _, addr in addrs:
        left = min(connect_to - (time.monotonic() - start), deadline - time.monotonic())
        if left <= 0:
            break
        s = socket.socket(family, stype, proto)
        s.settimeout(left)
        try:
            s.connect(addr)
            sock = s
            break
        except socket.timeout:
            s.close()
        except OSError:
            s.close()
            refused = True
    if sock is None:
        if refused:
            return fail(RCL_CONNECT_REFUSED, "connection refused")
        return fail(RCL_CONNECT_TIMEOUT, f"connect timeout ({connect_to:g}s)")

    status, got, rctype = 0, bytearray(), None
    conn = None
    try:
        if scheme == "https":
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            try:
                sock = _ssl_context(p).wrap_socket(sock, server_hostname=host)
            except (ssl.SSLError, ssl.CertificateError) as e:
                return fail(RCL_INTERNAL_ERR, f"TLS handshake failed ({e})")
        conn = http.client.HTTPConnection(host, port)
        conn.sock = sock
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        conn.endheaders(data if method in ("POST", "PUT") else None)
        resp = conn.getresponse()
        status = resp.status
        rctype = resp.getheader("Content-Type")
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _Timeout
            sock.settimeout(left)
            chunk = resp.read1(65536) if hasattr(resp, "read1") else resp.read(65536)
            if not chunk:
                break
            got += chunk
            if max_size and len(got) > max_size:
                return fail(RCL_INTERNAL_ERR, f"max_transfer_size exceeded "
                                              f"({max_size // 1024} KB)", status)
        return Result(RCL_OK, status, bytes(got), rctype)
    except (_Timeout, socket.timeout):
        return fail(RCL_TRANSFER_TIMEOUT, f"transfer timeout ({total:g}s)", status, bytes(got),
                    rctype)
    except ssl.SSLError as e:
        return fail(RCL_INTERNAL_ERR, f"TLS error ({e})", status)
    except (http.client.HTTPException, OSError, ValueError) as e:
        return fail(RCL_INTERNAL_ERR, f"{type(e).__name__}: {e}", status)
    finally:
        try:
            if conn is not None:
                conn.close()
            else:
                sock.close()
        except OSError:
            pass


def _text(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape").strip(_BLANKS)


def _headers_of(ctx):
    """rest_append_hf() lines waiting for the next request (per message; cleared by it)."""
    return ctx.local_data.setdefault("rest_client_headers", [])


def _perform(ctx, method, url, body, ctype, body_pv, ctype_pv, code_pv):
    extra = list(_headers_of(ctx))
    _headers_of(ctx).clear()
    ctx.local_data.pop("rest_client_tls", None)
    res = transfer(method, url, body, ctype, extra, _params(ctx.rt), ctx.rt.log)
    if code_pv is not None:
        code_pv.set(ctx, res.status)
    if res.rc < 0 and res.rc != RCL_TRANSFER_TIMEOUT:
        return res.rc
    body_pv.set(ctx, _text(res.body))
    if ctype_pv is not None:
        ctype_pv.set(ctx, (res.ctype or "").strip(_BLANKS))
    return res.rc


def rest_get(ctx, url, body_pv, ctype_pv=None, code_pv=None):
    return _perform(ctx, "GET", url, None, None, body_pv, ctype_pv, code_pv)


def rest_post(ctx, url, body, ctype, body_pv, ctype_pv=None, code_pv=None):
    return _perform(ctx, "POST", url, body, ctype or None, body_pv, ctype_pv, code_pv)


def rest_put(ctx, url, body, ctype, body_pv, ctype_pv=None, code_pv=None):
    return _perform(ctx, "PUT", url, body, ctype or None, body_pv, ctype_pv, code_pv)


def rest_append_hf(ctx, text):
    line = text.rstrip("\r\n")
    if ":" not in line:
        ctx.rt.log.error(f"rest_append_hf: '{text}' is not a header (Name: value)",
                         "rest_client")
        return -1
    _headers_of(ctx).append(line)
    return 1


def rest_init_client_tls(ctx, domain):
    ctx.rt.log.warning(f"rest_init_client_tls({domain}): TLS client domains are not "
                       f"supported; the next request uses no client certificate",
                       "rest_client")
    ctx.local_data["rest_client_tls"] = domain
    return 1


# --- {rest.escape} / {rest.unescape} -------------------------------------------------------

def _bytes(v) -> bytes:
    return str(v).encode("utf-8", "surrogateescape")


@T.transform("rest.escape")
def _tr_escape(value):
    return urllib.parse.quote_from_bytes(_bytes(value), safe="")


@T.transform("rest.unescape")
def _tr_unescape(value):
    return urllib.parse.unquote_to_bytes(str(value)).decode("utf-8", "surrogateescape")

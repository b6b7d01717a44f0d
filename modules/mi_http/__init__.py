"""mi_http: the Management Interface as JSON-RPC over HTTP POST, on httpd's server.

    loadmodule "httpd.so"
    loadmodule "mi_http.so"
    modparam("mi_http", "root", "mi")      # the default: POST http://127.0.0.1:8888/mi

Replies as OpenSIPS's mi_http: 200 with the JSON-RPC response (errors included), 202 with
no body for a notification, 405 for another method than POST, 400 for an empty body.
"""
from __future__ import annotations

from runtime import mi
from runtime.module import Module, Param

exports = Module(
    name="mi_http",
    params=[
        Param("root", str, "mi"),
        Param("pretty_printing", int, 0),
        Param("trace_destination", str, None),
        Param("trace_bwlist", str, None),
        Param("mi_http_method", int, None),    # 2.x HTML form interface
    ],
    depends=("httpd",),
    init="init",
)

CONTENT_TYPE = "application/json"


def init(rt):
    params = rt.modparams["mi_http"]
    pretty = bool(params["pretty_printing"])
    if params["mi_http_method"] is not None:
        rt.log.notice("mi_http_method (the 2.x HTML interface) is ignored: mi_http speaks "
                      "JSON-RPC over POST", "mi_http")
    if params["trace_destination"]:
        rt.log.warning("trace_destination: MI tracing is not supported, ignored", "mi_http")

    async def handler(rt, req):
        if req.method != "POST":
            rt.log.error(f"unexpected http method [{req.method}]", "mi_http")
            return 405, b""
        if not req.body:
            rt.log.error("empty request", "mi_http")
            return 400, b""
        reply = await mi.handle_text(rt, req.body, pretty)
        if reply is None:
            return 202, b""
        return 200, reply, {"Content-Type": CONTENT_TYPE}

    rt.apis["httpd"].register_httpdcb("mi_http", params["root"] or "mi", handler,
                                      CONTENT_TYPE)

"""path: Path headers (RFC 3327) on REGISTERs an edge proxy forwards to a registrar."""
from urllib.parse import quote

from runtime.module import REQUEST, STR, Arg, Func, Module, Param

exports = Module(
    name="path",
    params=[Param("use_received", int, 0), Param("enable_double_path", int, 1)],
    functions=[
        Func("add_path", "add_path", [Arg(STR, optional=True), Arg(STR, optional=True)],
             REQUEST),
        Func("add_path_received", "add_path_received",
             [Arg(STR, optional=True), Arg(STR, optional=True)], REQUEST),
    ],
    init="init",
)


def init(rt):
    rt.outgoing_hooks.append(_path_header)
    if rt.modparams["path"]["use_received"]:
        rt.log.warning("use_received: routing by the 'received' parameter of a Path is not "
                       "supported; the Route is followed as written", "path")


def add_path(ctx, user=None, params=None):
    """Add a Path header with our address (the socket the request leaves by)."""
    return _add(ctx, user, params, None)


def add_path_received(ctx, user=None, params=None):
    """add_path() with `;received=` the escaped source of the request (for NAT)."""
    src = f"sip:{ctx.src_ip}:{ctx.src_port}"
    if ctx.proto != "udp":
        src += f";transport={ctx.proto}"
    return _add(ctx, user, params, src)


def _add(ctx, user, params, received):
    if ctx.msg.method != "REGISTER" or "path_header" in ctx.local_data:
        return -1
    ctx.local_data["path_header"] = (user, params, received)
    return 1


def _path_header(ctx, sock):
    """Outgoing hook: the Path header, with the address of the socket used."""
    info = ctx.local_data.get("path_header")
    if info is None:
        return []
    user, params, received = info
    uri = f"sip:{user + '@' if user else ''}{sock.via_host}:{sock.via_port}"
    if sock.proto != "udp":
        uri += f";transport={sock.proto}"
    uri += ";lr"
    if received:
        uri += ";received=" + quote(received, safe="")
    if params:
        uri += ";" + params.lstrip(";")
    return [(("top",), f"Path: <{uri}>")]

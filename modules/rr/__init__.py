"""rr: Record-Route and loose routing (RFC 3261 16.6 / 16.12, strict-router compatible)."""
from runtime.module import BRANCH, FAILURE, REGEX, REQUEST, STR, Arg, Func, Module, Param
from runtime.pv import PVDef
from runtime.sip.headers import SIPError, find_param, split_commas
from runtime.sip.uri import URI

exports = Module(
    name="rr",
    params=[Param("append_fromtag", int, 1), Param("enable_double_rr", int, 1),
            Param("enable_full_lr", int, 0), Param("add_username", int, 0)],
    functions=[
        Func("loose_route", "loose_route", routes=REQUEST),
        Func("record_route", "record_route", [Arg(STR, optional=True)],
             REQUEST | BRANCH | FAILURE),
        Func("record_route_preset", "record_route_preset", [Arg(STR), Arg(STR, optional=True)],
             REQUEST | BRANCH | FAILURE),
        Func("add_rr_param", "add_rr_param", [Arg(STR)], REQUEST | BRANCH | FAILURE),
        Func("check_route_param", "check_route_param", [Arg(REGEX)], REQUEST),
        Func("is_direction", "is_direction", [Arg(STR)], REQUEST),
    ],
    pvs={},
    init="init",
)


def init(rt):
    rt.outgoing_hooks.append(_record_route_lines)


# --- record-routing ------------------------------------------------------------------------

def record_route(ctx, params=None):
    """Ask for our Record-Route on the request as it leaves (one entry, or two when the
    request changes transport or interface: double record-routing)."""
    if ctx.msg.method in ("REGISTER",):
        return -1
    rr = ctx.local_data.setdefault("rr", {"params": [], "preset": None})
    if params:
        rr["params"].append(params.lstrip(";"))
    return 1


def record_route_preset(ctx, addr, addr2=None):
    rr = ctx.local_data.setdefault("rr", {"params": [], "preset": None})
    rr["preset"] = (addr, addr2)
    return 1


def add_rr_param(ctx, param):
    rr = ctx.local_data.get("rr")
    if rr is None:  # OpenSIPS allows it before record_route(): kept for when it comes
        rr = ctx.local_data.setdefault("rr_pending", [])
        rr.append(param.lstrip(";"))
        return 1
    rr["params"].append(param.lstrip(";"))
    return 1


def _rr_uri(host, port, proto, params):
    h = f"[{host}]" if ":" in host and not host.startswith("[") else host
    t = f";transport={proto}" if proto != "udp" else ""
    return f"<sip:{h}:{port}{t};lr{params}>"


def _record_route_lines(ctx, out_sock):
    rr = ctx.local_data.get("rr")
    if rr is None or ctx.msg.method in ("ACK", "CANCEL", "REGISTER") or _has_totag(ctx):
        return []
    opts = ctx.rt.modparams["rr"]
    params = rr["params"]
    pending = ctx.local_data.get("rr_pending")
    if pending:
        params = params + pending
    ptxt = "".join([";" + p for p in params]) if params else ""
    if opts["append_fromtag"]:
        try:
            ftag = ctx.msg.from_.tag
        except SIPError:
            ftag = None
        if ftag:
            ptxt = f";ftag={ftag}{ptxt}"
    first_rr = ctx.msg.get_header("record-route")
    where = ("before", first_rr) if first_rr is not None else ("top", None)
    if rr["preset"] is not None:
        a, b = rr["preset"]
        lines = [f"Record-Route: <{a if a.startswith('sip') else 'sip:' + a};lr{ptxt}>"]
        if b:
            lines.insert(0, f"Record-Route: <{b if b.startswith('sip') else 'sip:' + b};lr{ptxt}>")
        return [(where, line) for line in lines]
    in_sock = ctx.socket
    adv_address, adv_port = ctx.adv_address, ctx.adv_port
    in_host = adv_address or in_sock.via_host
    in_port = adv_port or in_sock.via_port
    if out_sock is in_sock:
        same = True
    else:
        out_host = adv_address or out_sock.via_host
        out_port = adv_port or out_sock.via_port
        same = (in_sock.proto, in_host, in_port) == (out_sock.proto, out_host, out_port)
    if same or not opts["enable_double_rr"]:
        return [(where, "Record-Route: " + _rr_uri(in_host, in_port, in_sock.proto, ptxt))]
    ptxt2 = ptxt + ";r2=on"
    return [(where, "Record-Route: " + _rr_uri(out_host, out_port, out_sock.proto, ptxt2)),
            (where, "Record-Route: " + _rr_uri(in_host, in_port, in_sock.proto, ptxt2))]


def _has_totag(ctx):
    try:
        return bool(ctx.msg.to.tag)
    except SIPError:
        return False


# --- loose routing -------------------------------------------------------------------------

def _parse_uri(text):
    """runtime.pv.parse_uri(): the URI, or None when it does not parse."""
    try:
        return URI.parse(text)
    except ValueError:
        return None


def _is_ours(ctx, uri):
    u = _parse_uri(uri)
    return u is not None and ctx.rt.is_myself(u.host, u.port or 0), u


def loose_route(ctx):
    """Route a request by its Route headers: drop ours, send to the next one ($du);
    strict routers' R-URI handled. -1 when there is nothing to route by."""
    try:
        routes = ctx.msg.routes
    except SIPError:
        return -1
    target = ctx.ruri
    # a strict router's R-URI is our own Record-Route: it has an lr parameter
    ruri_ours, ruri = _is_ours(ctx, target) if ";lr" in target.lower() else (False, None)
    if ruri_ours and ruri is not None and ruri.param("lr") is not None and routes:
        # the previous hop was a strict router: the R-URI is our own Record-Route, the
        # real target is the last Route
        ctx.local_data["rr_route_params"] = ruri.params
        ctx.new_ruri = routes[-1].uri
        h = ctx.msg.get_headers("route")[-1]
        values = split_commas(h.value)
        if len(values) == 1:
            ctx.get_edits().remove_header(h)
        else:
            ctx.get_edits().replace_header(h, f"{h.name}: {', '.join(values[:-1])}")
        return 1
    if not routes:
        return -1
    ours, u = _is_ours(ctx, routes[0].uri)
    if not ours:
        ctx.dst_uri = routes[0].uri  # a preloaded Route to someone else: next hop
        return 1
    drop = 1
    ctx.local_data["rr_route_params"] = u.params
    if len(routes) > 1 and find_param(u.params, "r2") is not None:
        second_ours, u2 = _is_ours(ctx, routes[1].uri)
        if second_ours:
            drop = 2
    ctx.local_data["drop_routes"] = drop
    rest = routes[drop:]
    if rest:
        ctx.dst_uri = rest[0].uri
        return 1
    if not _has_totag(ctx):
        return -1  # a single preloaded Route to us on an initial request: removed
    return 1


def check_route_param(ctx, rx):
    params = ctx.local_data.get("rr_route_params")
    if not params:
        return -1
    text = ";".join(k if v is None else f"{k}={v}" for k, v in params)
    return 1 if rx.search(text) else -1


def is_direction(ctx, direction):
    params = ctx.local_data.get("rr_route_params")
    ftag = find_param(params, "ftag") if params else None
    if ftag is None:
        return -1
    try:
        from_tag = ctx.msg.from_.tag
    except SIPError:
        return -1
    downstream = from_tag == ftag
    return 1 if (direction == "downstream") == downstream else -1


def _rr_params(ctx, sub):
    params = ctx.local_data.get("rr_route_params")
    if not params:
        return None
    return ";".join(k if v is None else f"{k}={v}" for k, v in params)


exports.pvs["rr_params"] = PVDef("rr_params", _rr_params)

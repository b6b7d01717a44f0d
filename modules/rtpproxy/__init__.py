"""rtpproxy: media through RTPProxy daemons, over their text control protocol.

`rtpproxy_sock` defines sets of daemons (`[id ==] udp:host:port[|adv_ip][=weight]`, `unix:`
paths); rtpproxy_offer()/rtpproxy_answer() send one U (create/update) or L (lookup) command
per proxied stream and rewrite the SDP from the answers; rtpproxy_unforce() sends D;
rtpproxy_engage() does it all from dialog callbacks. The 1.x names (force_rtp_proxy,
unforce_rtp_proxy, engage_rtp_proxy, start_recording) and Kamailio's (rtpproxy_manage,
rtpproxy_destroy, set_rtp_proxy_set) are accepted.
"""
from __future__ import annotations

from runtime.module import (BRANCH, FAILURE, INT, LOCAL, ONREPLY, REQUEST, STR, VAR, Arg, Func,
                            Module, Param)
from runtime.nodesets import DEFAULT_SET, Control, check_socks, set_id_fixup
from runtime.sip.headers import SIPError

from . import sdp
from .nodes import Node, parse_sets

ROUTES = REQUEST | ONREPLY | FAILURE | BRANCH | LOCAL
SUP_CPROTOVER = "20040107"
REQ_CPROTOVER = "20050322"
OPTIONAL_CAPS = (sdp.CAP_REPACK, sdp.CAP_CODECS, sdp.CAP_TTL, "20081102", "20150617")


def _check_timeout(value):
    try:
        float(value)
    except (TypeError, ValueError):
        return f"invalid rtpproxy_timeout '{value}'"
    return None


def _oa(name, impl, routes=ROUTES):
    return Func(name, impl, [Arg(STR, optional=True, name="flags"),
                             Arg(STR, optional=True, name="ip_address"),
                             Arg(INT, optional=True, fixup=set_id_fixup, name="set_id"),
                             Arg(VAR, optional=True), Arg(VAR, optional=True)], routes)


exports = Module(
    name="rtpproxy",
    params=[
        Param("rtpproxy_sock", str, None, multi=True, check=check_socks),
        Param("rtpproxy_disable_tout", int, 60),
        Param("rtpproxy_retr", int, 5),
        Param("rtpproxy_tout", (int, str), None),
        Param("rtpproxy_timeout", str, None, check=_check_timeout),
        Param("rtpproxy_autobridge", int, 0),
        Param("nortpproxy_str", str, "a=nortpproxy:yes\r\n"),
        Param("default_set", int, DEFAULT_SET),
        Param("db_url", str, None), Param("db_table", str, "rtpproxy_sockets"),
        Param("rtpp_socket_col", str, "rtpproxy_sock"), Param("set_id_col", str, "set_id"),
        Param("rtpp_notify_socket", str, None),
        Param("generated_sdp_port_min", (int, str), 35000),
        Param("generated_sdp_port_max", (int, str), 65000),
        Param("generated_sdp_media_ip", str, "127.0.0.1"),
        # Kamailio's rtpproxy module
        Param("ice_candidate_priority_avp", str, None), Param("extra_id_pv", str, None),
        Param("timeout_socket", str, None), Param("rtp_inst_pvar", str, None),
        Param("table_name", str, None), Param("rtp_inst_pv", str, None),
        Param("force_send_interface", str, None), Param("rtpp_set_column", str, None),
        Param("rtpp_url_column", str, None), Param("rtpp_weight_column", str, None),
        Param("rtpp_flags_column", str, None),
    ],
    functions=[
        _oa("rtpproxy_offer", "rtpproxy_offer"),
        _oa("rtpproxy_answer", "rtpproxy_answer"),
        _oa("rtpproxy_engage", "rtpproxy_engage", REQUEST | ONREPLY | FAILURE | BRANCH),
        _oa("engage_rtp_proxy", "rtpproxy_engage", REQUEST | ONREPLY | FAILURE | BRANCH),
        Func("force_rtp_proxy", "force_rtp_proxy",
             [Arg(STR, optional=True), Arg(STR, optional=True)], ROUTES),
        Func("rtpproxy_unforce", "rtpproxy_unforce",
             [Arg(INT, optional=True, fixup=set_id_fixup), Arg(VAR, optional=True)], ROUTES),
        Func("unforce_rtp_proxy", "rtpproxy_unforce",
             [Arg(INT, optional=True, fixup=set_id_fixup), Arg(VAR, optional=True)], ROUTES),
        Func("rtpproxy_destroy", "rtpproxy_destroy",                       # Kamailio
             [Arg(STR, optional=True), Arg(VAR, optional=True)], ROUTES),
        Func("rtpproxy_manage", "rtpproxy_manage",                         # Kamailio
             [Arg(STR, optional=True), Arg(STR, optional=True)], ROUTES),
        Func("set_rtp_proxy_set", "set_rtp_proxy_set", [Arg(INT, fixup=set_id_fixup)], ROUTES),
        Func("rtpproxy_stream2uac", "rtpproxy_stream2uac",
             [Arg(STR), Arg(INT), Arg(INT, optional=True, fixup=set_id_fixup),
              Arg(VAR, optional=True)], REQUEST | ONREPLY),
        Func("rtpproxy_stream2uas", "rtpproxy_stream2uas",
             [Arg(STR), Arg(INT), Arg(INT, optional=True, fixup=set_id_fixup),
              Arg(VAR, optional=True)], REQUEST | ONREPLY),
        Func("rtpproxy_stop_stream2uac", "rtpproxy_stop_stream2uac",
             [Arg(INT, optional=True, fixup=set_id_fixup), Arg(VAR, optional=True)],
             REQUEST | ONREPLY),
        Func("rtpproxy_stop_stream2uas", "rtpproxy_stop_stream2uas",
             [Arg(INT, optional=True, fixup=set_id_fixup), Arg(VAR, optional=True)],
             REQUEST | ONREPLY),
        Func("rtpproxy_start_recording", "rtpproxy_start_recording",
             [Arg(INT, optional=True, fixup=set_id_fixup), Arg(VAR, optional=True),
              Arg(STR, optional=True), Arg(STR, optional=True), Arg(INT, optional=True)],
             REQUEST | ONREPLY | BRANCH | FAILURE),
        Func("start_recording", "rtpproxy_start_recording",
             [Arg(INT, optional=True, fixup=set_id_fixup), Arg(VAR, optional=True)],
             REQUEST | ONREPLY | BRANCH | FAILURE),
        Func("rtpproxy_stats", "rtpproxy_stats",
             [Arg(VAR), Arg(VAR), Arg(VAR), Arg(VAR), Arg(INT, optional=True, fixup=set_id_fixup),
              Arg(VAR, optional=True)], ROUTES),
    ],
    init="init",
    child_init="child_init",
    destroy="destroy",
)

_state: dict = {"control": None}


# --- lifecycle -----------------------------------------------------------------------------

def init(rt):
    p = rt.modparams["rtpproxy"]
    default = p["default_set"]
    sets = parse_sets(p["rtpproxy_sock"] or [], default)
    if p["rtpproxy_timeout"]:
        if p["rtpproxy_tout"] is not None:
            raise ValueError("you can't use rtpproxy_timeout and rtpproxy_tout")
        tout = float(p["rtpproxy_timeout"])
    elif p["rtpproxy_tout"] is not None:
        rt.log.warning("rtpproxy_tout param is obsolete, please replace with "
                       "rtpproxy_timeout", "rtpproxy")
        tout = float(p["rtpproxy_tout"])
    else:
        tout = 1.0

    def log(level, text):
        getattr(rt.log, level)(text, "rtpproxy")

    control = Control(sets, timeout=tout, retries=p["rtpproxy_retr"],
                      disable_timeout=p["rtpproxy_disable_tout"], log=log, reply_end=b"\n")
    control.probe = _probe
    marker = (p["nortpproxy_str"] or "").rstrip("\r\n")
    _state.update(control=control, params=p, rt=rt, default=default, marker=marker,
                  engaged={})
    if p["rtpproxy_autobridge"]:
        rt.log.warning("Auto bridging does not properly function when doing "
                       "serial/parallel forking", "rtpproxy")
    if not sets and not p["db_url"]:
        raise ValueError("no rtpproxy set specified (modparam rtpproxy_sock or db_url)")
    if sets and default not in sets:
        rt.log.warning(f"there is no rtpproxy engine in the default set {default}",
                       "rtpproxy")
    if p["rtpp_notify_socket"] or p["timeout_socket"]:
        rt.log.warning("RTPProxy timeout notifications are not supported here: sessions are "
                       "not ended by rtpproxy timeouts", "rtpproxy")


def child_init(rt):
    p = _state["params"]
    control = _state["control"]
    if p["db_url"]:
        control.load_table(p["db_url"], p["table_name"] or p["db_table"], p["rtpp_socket_col"],
                           p["set_id_col"], "rtpproxies", Node)
    for nodes in control.sets.values():
        for node in nodes:
            control.connect(node)
            node.disabled = not _probe(node)
            if node.disabled:
                control.disable(node)


def destroy(rt):
    if _state["control"] is not None:
        _state["control"].close()


def _command(node, text: str) -> str | None:
    reply = _state["control"].send(node, text.encode("utf-8", "surrogateescape"))
    if reply is None:
        return None
    return reply.decode("utf-8", "replace").strip()


def _probe(node) -> bool:
    rt = _state["rt"]
    version = _command(node, "V")
    if version is None:
        rt.log.warning(f"can't get version of the RTP proxy <{node.url}>", "rtpproxy")
        return False
    if version != SUP_CPROTOVER:
        rt.log.warning(f"unsupported version of RTP proxy <{node.url}> found: "
                       f"{SUP_CPROTOVER} supported, {version} present", "rtpproxy")
        return False
    if _command(node, f"VF {REQ_CPROTOVER}") != "1":
        rt.log.warning(f"RTP proxy <{node.url}> doesn't support required protocol version "
                       f"{REQ_CPROTOVER}", "rtpproxy")
        return False
    node.caps = {cap for cap in OPTIONAL_CAPS if _command(node, f"VF {cap}") == "1"}
    rt.log.info(f"rtp proxy <{node.url}> found, support for it enabled", "rtpproxy")
    return True


# --- the exchange --------------------------------------------------------------------------

def _set_of(ctx, set_id):
    if set_id is None:
        set_id = ctx.local_data.get("rtpp_set", _state["default"])
    nodes = _state["control"].sets.get(set_id)
    if nodes is None:
        ctx.rt.log.error(f"cannot find any available rtpproxy engine in set {set_id}",
                         "rtpproxy")
    return nodes


def _select(ctx, call_id, nodes, sock_var):
    node = _state["control"].select(call_id, nodes)
    if node is None:
        ctx.rt.log.error("no available proxies", "rtpproxy")
        return None
    if sock_var is not None:
        sock_var.set(ctx, node.url)
    return node


def _tags(msg):
    return msg.call_id, msg.from_.tag or "", msg.to.tag or ""


def _body(msg, edits):
    if edits is not None and edits.body_changed:
        return edits.new_body()
    return msg.body or b""


class _Where:
    """The message being proxied and how to change it: a request or reply Context, or a
    reply relayed by tm (from a dialog callback)."""

    def __init__(self, msg, edits_of, peek, src_ip, local_ip, rt):
        self.msg, self.edits_of, self.peek = msg, edits_of, peek
        self.src_ip, self.local_ip, self.rt = src_ip, local_ip, rt


def _where(ctx):
    local = ctx.socket.ip if ctx.socket is not None else "127.0.0.1"
    return _Where(ctx.msg, ctx.get_edits, lambda: ctx.edits, ctx.src_ip, local, ctx.rt)


def force(where, flags, ip, set_id, offer, *, ctx=None, sock_var=None, ret_var=None) -> int:
    """force_rtp_proxy(): 1 when the SDP goes through RTPProxy, -1 otherwise."""
    rt = where.rt
    msg = where.msg
    try:
        call_id, from_tag, to_tag = _tags(msg)
    except SIPError:
        rt.log.error("can't get Call-Id field / tags", "rtpproxy")
        return -1
    if not call_id or not from_tag:
        rt.log.error("can't get Call-Id field or From tag", "rtpproxy")
        return -1
    body = _body(msg, where.peek())
    ct = (msg.content_type or "").lower()
    if not body or (ct and "sdp" not in ct):
        rt.log.error("Unable to parse body", "rtpproxy")
        return -1
    if set_id is None and ctx is not None:
        set_id = ctx.local_data.get("rtpp_set")
    set_id = _state["default"] if set_id is None else set_id
    nodes = _state["control"].sets.get(set_id)
    if nodes is None:
        rt.log.error(f"cannot find RTPProxy set {set_id}", "rtpproxy")
        return -1
    chosen = {}

    def exchange(cmd, lookup):
        while True:
            node = _state["control"].select(call_id, nodes)
            if node is None:
                rt.log.error("no available proxies", "rtpproxy")
                return None
            chosen["node"] = node
            reply = _command(node, cmd)
            if reply is None:
                if lookup:
                    rt.log.error("cannot lookup a session on a different RTPProxy",
                                 "rtpproxy")
                    return None
                continue
            if reply.startswith("E") and reply[1:].isdigit() and 7 <= int(reply[1:]) <= 10:
                _state["control"].disable(node)
                continue
            return reply

    text = body.decode("utf-8", "surrogateescape")
    args = sdp.Args(flags=flags or "", ip=ip or None, call_id=call_id, from_tag=from_tag,
                    to_tag=to_tag, offer=offer, is_request=msg.is_request,
                    src_ip=where.src_ip, local_ip=where.local_ip,
                    nortpproxy=_state["marker"])
    node = _state["control"].select(call_id, nodes)
    if node is not None:
        args.caps, args.adv_address = node.caps, node.adv_address
    replies = []
    try:
        new = sdp.rewrite(text, args, exchange,
                          on_reply=lambda addr, port: replies.append((addr, port)))
    except sdp.RtppError as e:
        if str(e):
            rt.log.error(str(e), "rtpproxy")
        return -1
    if sock_var is not None and ctx is not None and "node" in chosen:
        sock_var.set(ctx, chosen["node"].url)
    if ret_var is not None and ctx is not None and replies:
        ret_var.set(ctx, f"{replies[-1][0]}:{replies[-1][1]}")
    if new != text:
        where.edits_of().set_body(new.encode("utf-8", "surrogateescape"))
    return 1


def _unforce(rt, call_id, from_tag, to_tag, nodes, pick) -> int:
    node = pick(call_id, nodes)
    if node is None:
        return -1
    cmd = f"D {call_id} {from_tag}" + (f" {to_tag}" if to_tag else "")
    _command(node, cmd)
    return 1


# --- script functions ----------------------------------------------------------------------

def rtpproxy_offer(ctx, flags=None, ip=None, set_id=None, sock_var=None, ret_var=None):
    return force(_where(ctx), flags, ip, set_id, True, ctx=ctx, sock_var=sock_var,
                 ret_var=ret_var)


def rtpproxy_answer(ctx, flags=None, ip=None, set_id=None, sock_var=None, ret_var=None):
    return force(_where(ctx), flags, ip, set_id, False, ctx=ctx, sock_var=sock_var,
                 ret_var=ret_var)


def force_rtp_proxy(ctx, flags=None, ip=None):
    """1.x: offer on requests, answer on replies ('l' forces the lookup)."""
    return force(_where(ctx), flags, ip, None, ctx.msg.is_request, ctx=ctx)


def rtpproxy_unforce(ctx, set_id=None, sock_var=None):
    msg = ctx.msg
    try:
        call_id, from_tag, to_tag = _tags(msg)
    except SIPError:
        ctx.rt.log.error("can't get Call-Id field", "rtpproxy")
        return -1
    if not call_id or not from_tag:
        return -1
    nodes = _set_of(ctx, set_id)
    if nodes is None:
        return -1
    return _unforce(ctx.rt, call_id, from_tag, to_tag, nodes,
                    lambda cid, ns: _select(ctx, cid, ns, sock_var))


def rtpproxy_destroy(ctx, flags=None, sock_var=None):
    return rtpproxy_unforce(ctx, None, sock_var)


def set_rtp_proxy_set(ctx, set_id):
    if set_id not in _state["control"].sets:
        ctx.rt.log.error(f"could not locate rtpproxy set {set_id}", "rtpproxy")
        return -1
    ctx.local_data["rtpp_set"] = set_id
    return 1


def _has_sdp(msg) -> bool:
    return bool(msg.body) and "sdp" in (msg.content_type or "application/sdp").lower()


def rtpproxy_manage(ctx, flags=None, ip=None):
    """Kamailio: offer, answer or unforce, from the message."""
    msg = ctx.msg
    try:
        method = msg.cseq[1]
    except SIPError:
        return -1
    if msg.is_request:
        if method in ("BYE", "CANCEL") or (ctx.route_type == FAILURE and method == "INVITE"):
            return rtpproxy_unforce(ctx)
        if not _has_sdp(msg):
            return -1
        if method in ("INVITE", "UPDATE"):
            return force(_where(ctx), flags, ip, None, True, ctx=ctx)
        if method in ("ACK", "PRACK"):
            return force(_where(ctx), flags, ip, None, False, ctx=ctx)
        return -1
    if method in ("INVITE", "UPDATE") and msg.status >= 300:
        return rtpproxy_unforce(ctx)
    if not _has_sdp(msg):
        return -1
    tx = ctx.tx
    offer = tx is not None and method == "INVITE" and not _has_sdp(tx.msg)
    return force(_where(ctx), flags, ip, None, offer, ctx=ctx)


def _stream(ctx, prompt, count, set_id, sock_var, to_uac, stop=False) -> int:
    msg = ctx.msg
    try:
        call_id, from_tag, to_tag = _tags(msg)
    except SIPError:
        return -1
    if not call_id or not from_tag:
        return -1
    if not to_uac and not to_tag:
        return -1
    nodes = _set_of(ctx, set_id)
    if nodes is None:
        return -1
    node = _select(ctx, call_id, nodes, sock_var)
    if node is None:
        return -1
    first, second = (from_tag, to_tag) if to_uac else (to_tag, from_tag)
    tags = f"{first};1" + (f" {second};1" if second else "")
    cmd = f"S {call_id} {tags}" if stop else f"P{count} {call_id} {prompt} session {tags}"
    reply = _command(node, cmd)
    if reply is None or reply.startswith("E"):
        ctx.rt.log.error(f"RTPProxy refused '{cmd.split()[0]}': {reply}", "rtpproxy")
        return -1
    return 1


def rtpproxy_stream2uac(ctx, prompt, count, set_id=None, sock_var=None):
    return _stream(ctx, prompt, count, set_id, sock_var, True)


def rtpproxy_stream2uas(ctx, prompt, count, set_id=None, sock_var=None):
    return _stream(ctx, prompt, count, set_id, sock_var, False)


def rtpproxy_stop_stream2uac(ctx, set_id=None, sock_var=None):
    return _stream(ctx, None, 0, set_id, sock_var, True, stop=True)


def rtpproxy_stop_stream2uas(ctx, set_id=None, sock_var=None):
    return _stream(ctx, None, 0, set_id, sock_var, False, stop=True)


def rtpproxy_start_recording(ctx, set_id=None, sock_var=None, flags=None, dest=None,
                             stream=None):
    msg = ctx.msg
    try:
        call_id, from_tag, to_tag = _tags(msg)
    except SIPError:
        return -1
    nodes = _set_of(ctx, set_id)
    if nodes is None or not call_id or not from_tag:
        return -1
    node = _select(ctx, call_id, nodes, sock_var)
    if node is None:
        return -1
    n = stream or 1
    cmd = f"R {call_id} {from_tag};{n}" + (f" {to_tag};{n}" if to_tag else "")
    reply = _command(node, cmd)
    if reply is None or reply.startswith("E"):
        ctx.rt.log.error(f"RTPProxy refused to record: {reply}", "rtpproxy")
        return -1
    return 1


def rtpproxy_stats(ctx, up, down, sent, failed, set_id=None, sock_var=None):
    msg = ctx.msg
    try:
        call_id, from_tag, to_tag = _tags(msg)
    except SIPError:
        return -1
    nodes = _set_of(ctx, set_id)
    if nodes is None:
        return -1
    node = _select(ctx, call_id, nodes, sock_var)
    if node is None:
        return -1
    first, second = (to_tag, from_tag) if not msg.is_request else (from_tag, to_tag)
    reply = _command(node, f"Q {call_id} {first};1 {second};1")
    if reply is None:
        return -1
    if reply.startswith("E"):
        code = int(reply[1:]) if reply[1:].isdigit() else 2
        ctx.rt.log.error(f"RTPProxy error: {reply}", "rtpproxy")
        return -code
    fields = reply.split()
    if len(fields) < 5 or not all(f.isdigit() for f in fields[1:5]):
        ctx.rt.log.error(f"invalid format for return {reply}", "rtpproxy")
        return -2
    for var, value in zip((up, down, sent, failed), fields[1:5]):
        var.set(ctx, int(value))
    return 1


# --- engage: the dialog does the work ------------------------------------------------------

def rtpproxy_engage(ctx, flags=None, ip=None, set_id=None, sock_var=None, ret_var=None):
    rt = ctx.rt
    msg = ctx.msg
    if not msg.is_request or msg.method != "INVITE":
        rt.log.error("this function can only be called from invite", "rtpproxy")
        return -1
    try:
        if msg.to.tag:
            rt.log.error("function can only be called from the initial invite", "rtpproxy")
            return -1
    except SIPError:
        rt.log.error("bad request or missing TO hdr", "rtpproxy")
        return -1
    if "dialog" not in rt.modules or "tm" not in rt.apis:
        rt.log.error("rtpproxy_engage needs the dialog and tm modules", "rtpproxy")
        return -1
    from modules import dialog as dialog_mod
    if dialog_mod.create_dialog(ctx) < 0:
        rt.log.error("error creating dialog", "rtpproxy")
        return -1
    dlg = ctx.local_data["dialog"]
    state = _state["engaged"].get(dlg.id)
    if set_id is None:
        set_id = ctx.local_data.get("rtpp_set", _state["default"])
    if state is None:
        state = {"flags": flags, "ip": ip, "set": set_id, "late": False, "active": True}
        _state["engaged"][dlg.id] = state
        _watch(dlg, state)
    else:
        state.update(flags=flags, ip=ip, set=set_id)
    if _has_sdp(msg):
        if force(_where(ctx), flags, ip, set_id, True, ctx=ctx, sock_var=sock_var,
                 ret_var=ret_var) < 0:
            rt.log.error("error forcing rtp proxy", "rtpproxy")
            return -1
    else:
        state["late"] = True
    return 1


def _watch(dlg, state):
    def on_message(where, is_ack=False):
        msg = where.msg
        has = _has_sdp(msg)
        if is_ack:
            if not state["late"] or not has:
                return
            state["late"] = False
            force(where, state["flags"], state["ip"], state["set"], False)
            return
        if not has:
            if msg.is_request and msg.method in ("INVITE", "UPDATE"):
                state["late"] = True
            return
        # a reply answers the request's offer, unless the request had no SDP (late
        # negotiation: the reply offers, the ACK answers)
        force(where, state["flags"], state["ip"], state["set"],
              state["late"] if not msg.is_request else True)

    def requests(dlg, event, rctx, direction):
        if not state["active"]:
            return
        on_message(_where(rctx), is_ack=rctx.msg.method == "ACK")

    def replies(dlg, event, obj, direction):
        reply, branch = obj
        if not state["active"] or branch is None or not 100 < reply.status < 300:
            return
        sock = branch.sock
        peek = (lambda: branch.reply_edits if branch.reply_edits is not None
                and branch.reply_edits.msg is reply else None)
        on_message(_Where(reply, lambda: branch.edits_for_reply(reply), peek, branch.dst[0],
                          sock.ip if sock is not None else "127.0.0.1", _state["rt"]))

    def ended(dlg, event, obj, direction):
        if not state["active"]:
            return
        state["active"] = False
        _state["engaged"].pop(dlg.id, None)
        nodes = _state["control"].sets.get(state["set"])
        if nodes:
            _unforce(_state["rt"], dlg.call_id, dlg.from_tag, dlg.to_tag or "", nodes,
                     _state["control"].select)

    dlg.on("request", requests)
    dlg.on("response", replies)
    for event in ("terminated", "failed"):
        dlg.on(event, ended)

"""mediaproxy: NAT traversal for symmetric clients through MediaProxy relays.

The module speaks the AG MediaProxy dispatcher protocol on `mediaproxy_socket`; when nothing
listens there, cfgscript starts its own dispatcher + relay on it (relay/).
"""
import logging
import os

from runtime.module import (BRANCH, FAILURE, LOCAL, ONREPLY, REQUEST, Arg, Func, Module, Param)
from runtime.sip.headers import SIPError

from . import sdp
from .dispatcher_client import (DEFAULT_SOCKET, DispatcherClient, MediaProxyError, build_remove,
                                build_update, dialog_id, parse_update_reply, user_agent)

ROUTES = REQUEST | ONREPLY | FAILURE | BRANCH | LOCAL


def _ice_setting(value):
    if str(value).lower() not in ("none", "low-priority", "high-priority"):
        return "invalid value specified for ice_candidate"
    return None


def _avp_spec(value):
    v = str(value).strip()
    if v and not (v.startswith("$avp(") and v.endswith(")")):
        return f"'{v}' is not an AVP ($avp(name))"
    return None


exports = Module(
    name="mediaproxy",
    params=[
        Param("disable", int, 0),
        Param("mediaproxy_socket", str, DEFAULT_SOCKET),
        Param("mediaproxy_timeout", int, 500),
        Param("signaling_ip_avp", str, "$avp(mp_signaling_ip)", check=_avp_spec),
        Param("media_relay_avp", str, "$avp(mp_media_relay)", check=_avp_spec),
        Param("ice_candidate", str, "none", check=_ice_setting),
        Param("ice_candidate_avp", str, "$avp(mp_ice_candidate)", check=_avp_spec),
        # OpenSIPS 1.x mediaproxy also did NAT pinging; nat_traversal/nathelper do it now
        Param("natping_interval", int, 0), Param("sip_asymmetrics", str, None),
        Param("rtp_asymmetrics", str, None),
    ],
    functions=[
        Func("engage_media_proxy", "engage_media_proxy", routes=REQUEST),
        Func("use_media_proxy", "use_media_proxy", routes=ROUTES),
        Func("end_media_session", "end_media_session", routes=ROUTES),
    ],
    init="init",
    child_init="child_init",
    destroy="destroy",
)

log = logging.getLogger("cfgscript.mediaproxy")
_state = {"client": None, "params": None, "embedded": None, "rt": None}


def _avp_name(spec, default):
    spec = (spec or "").strip() or default
    return spec[5:-1]


# --- lifecycle -----------------------------------------------------------------------------

def init(rt):
    p = rt.modparams["mediaproxy"]
    _state["params"] = p
    _state["rt"] = rt
    _state["avps"] = {k: _avp_name(p[k], exports.params_by_name[k].default)
                      for k in ("signaling_ip_avp", "media_relay_avp", "ice_candidate_avp")}
    _bridge_logging(rt)
    if p["disable"]:
        return
    _state["client"] = DispatcherClient(p["mediaproxy_socket"], p["mediaproxy_timeout"])
    opts = getattr(rt, "options", None)
    if opts is not None and not getattr(opts, "no_embedded_mediaproxy", False):
        _maybe_start_embedded(rt, p["mediaproxy_socket"], opts)
    tm = rt.apis.get("tm")
    if tm is None or "dialog" not in rt.modules:
        rt.log.notice("engage_media_proxy() will not work because the TM/dialog modules "
                      "are not loaded", "mediaproxy")


def _maybe_start_embedded(rt, path, opts):
    """Start our dispatcher + relay on `path` when nothing answers there."""
    from .relay import embedded
    if embedded.answers(path):
        rt.log.notice(f"using the MediaProxy dispatcher at {path}", "mediaproxy")
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    if os.path.exists(path):
        os.unlink(path)  # a stale socket nobody answers on
    sock = rt.sockets[0] if rt.sockets else None
    ip = (sock.adv_ip or sock.ip) if sock else "127.0.0.1"
    if ip in ("0.0.0.0", "::"):
        ip = "127.0.0.1"
    lo, _, hi = (getattr(opts, "relay_ports", None) or "40000:60000").partition(":")
    _state["embedded"] = embedded.start(
        path, listen_ip=ip, port_range=(int(lo), int(hi)),
        routable_private=bool(getattr(opts, "relay_routable_private", False)))
    rt.log.notice(f"started the embedded MediaProxy dispatcher and relay on {path} "
                  f"(relay {ip}, ports {lo}-{hi}, pid {_state['embedded'].pid})", "mediaproxy")


def _bridge_logging(rt):
    """The dispatcher client logs through Python logging: send it to our log."""
    class Bridge(logging.Handler):
        def emit(self, record):
            level = -1 if record.levelno >= logging.ERROR else (
                1 if record.levelno >= logging.WARNING else 3)
            rt.log.write(level, record.getMessage(), "mediaproxy")
    log.handlers[:] = [Bridge()]
    log.propagate = False
    log.setLevel(logging.DEBUG)


def child_init(rt):
    tm = rt.apis.get("tm")
    if tm is not None and tm.tm is not None:
        tm.tm.request_in.append(_tm_request_in)


def destroy(rt):
    if _state["embedded"] is not None:
        _state["embedded"].stop()
        _state["embedded"] = None


# --- the functions -------------------------------------------------------------------------

def engage_media_proxy(ctx):
    """Mark the initial INVITE; the work happens when tm creates its transaction."""
    if _state["params"]["disable"]:
        return -1
    rt = ctx.rt
    if "tm" not in rt.apis or "dialog" not in rt.modules:
        rt.log.error("engage_media_proxy requires the TM and dialog modules to be loaded",
                     "mediaproxy")
        return -1
    msg = ctx.msg
    try:
        has_tag = bool(msg.to.tag)
    except SIPError:
        return -1
    if msg.method != "INVITE" or has_tag:
        rt.log.error("engage_media_proxy should only be called for initial INVITE requests",
                     "mediaproxy")
        return -1
    ctx.local_data["mp_engage"] = True
    return 1


def use_media_proxy(ctx):
    if _state["params"]["disable"]:
        return -1
    return _use(ctx, ctx.msg, lambda: ctx.get_edits(), "", None,
                (ctx.src_ip, ctx.avps, ctx.tx))


def end_media_session(ctx):
    if _state["params"]["disable"]:
        return -1
    msg = ctx.msg
    try:
        call_id = msg.call_id
        from_tag = msg.from_.tag or ""
        to_tag = (msg.to.tag or "") if msg.is_request or msg.status >= 200 else ""
    except SIPError:
        ctx.rt.log.error("failed to get Call-ID", "mediaproxy")
        return -1
    return _remove(call_id, from_tag, to_tag)


def _remove(call_id, from_tag, to_tag) -> int:
    try:
        cmd = build_remove(call_id, from_tag, to_tag)
    except MediaProxyError as e:
        log.error(str(e))
        return -1
    return 1 if _state["client"].send_command(cmd) is not None else -1


def _use(ctx, msg, edits_of, dlg_id, ice, where) -> int:
    """use_media_proxy() on `msg` (reference §1.3): update the relay, rewrite the SDP."""
    src_ip, avps, tx = where
    is_request = msg.is_request
    if not is_request and ice is not None and ice.get("skip_next_reply"):
        ice["skip_next_reply"] = False
        return -1
    try:
        call_id = msg.call_id
        cseq = tx.msg.cseq[0] if (not is_request and tx is not None) else msg.cseq[0]
        method = msg.cseq[1]
    except SIPError:
        log.error("failed to get Call-ID")
        return -1
    body = msg.body
    have_sdp = bool(body)
    if have_sdp and not sdp.is_sdp_content_type(msg.content_type):
        return -1
    if not have_sdp:
        if is_request or not (msg.status == 200 and method == "INVITE"):
            return -2
    media = b""
    session = None
    if have_sdp:
        if is_request and sdp.has_remote_candidates(body):
            if ice is not None:
                ice["skip_next_reply"] = True
            return -1
        try:
            session = sdp.parse(body)
        except sdp.SDPError:
            log.error("can't extract media streams from the SDP message")
            return -1
        if session.supported_count == 0:
            return 1
        try:
            media = sdp.media_line(session)
        except sdp.SDPError as e:
            log.error(str(e))
            return -1
    names = _state["avps"]
    signaling_ip = _avp_str(avps, names["signaling_ip_avp"]) or src_ip
    media_relay = _avp_str(avps, names["media_relay_avp"]) or ""
    try:
        frm, to = msg.from_, msg.to
        to_tag = "" if (not is_request and msg.status < 200) else (to.tag or "")
        cmd = build_update(
            type="request" if is_request else "reply", call_id=call_id, cseq=str(cseq),
            from_uri=frm.uri, to_uri=to.uri, from_tag=frm.tag or "", to_tag=to_tag,
            user_agent=user_agent(msg.get("user-agent"), msg.raw), signaling_ip=signaling_ip,
            media_relay=media_relay, dialog_id=dlg_id, media=media)
    except (SIPError, MediaProxyError) as e:
        log.error(str(e))
        return -1
    reply = _state["client"].send_command(cmd)
    if reply is None:
        return -1
    if not have_sdp:
        return 1
    try:
        ip, ports = parse_update_reply(reply, session.supported_count, is_request)
    except MediaProxyError as e:
        log.error(str(e))
        return -1
    if ice is not None:
        priority = ice["priority"]
    else:
        setting = _avp_str(avps, names["ice_candidate_avp"]) or _state["params"]["ice_candidate"]
        priority = sdp.ice_priority(setting)
    changes = sdp.rewrite(session, ip, ports, priority)
    if changes:
        edits = edits_of()
        for e in changes:
            if e.start == e.end:
                edits.insert_text(e.start, e.text)
            else:
                edits.replace_range(e.start, e.end, e.text)
    return 1


def _avp_str(avps, name):
    vals = avps.get(name) if avps else None
    if not vals:
        return None
    v = vals[-1]
    return v if isinstance(v, str) and v else None


# --- engage: dialog wiring (reference §4) --------------------------------------------------

def _tm_request_in(ctx, tx):
    """tm created the transaction of an engaged INVITE: create the dialog, follow it."""
    if not ctx.local_data.get("mp_engage"):
        return
    from modules import dialog as dialog_mod
    if dialog_mod.create_dialog(ctx) < 0:
        log.error("could not create new dialog")
        return
    dlg = ctx.local_data["dialog"]
    p = _state["params"]
    setting = _avp_str(ctx.avps, _state["avps"]["ice_candidate_avp"]) or p["ice_candidate"]
    ice = {"priority": sdp.ice_priority(setting, engage=True), "skip_next_reply": False,
           "active": True}
    did = dialog_id(dlg.h_entry, dlg.h_id)
    avps = ctx.avps

    def requests(dlg, event, rctx, direction):
        _use(rctx, rctx.msg, rctx.get_edits, did, ice, (rctx.src_ip, rctx.avps, rctx.tx))

    def replies(dlg, event, obj, direction):
        reply, branch = obj
        if branch is None or not 101 <= reply.status <= 299:
            return
        _use(None, reply, lambda: branch.edits_for_reply(reply), did, ice,
             (branch.dst[0], avps, branch.tx))

    def ended(dlg, event, obj, direction):
        if ice["active"]:
            ice["active"] = False
            _remove(dlg.call_id, dlg.from_tag, dlg.to_tag or "")

    dlg.on("request", requests)
    dlg.on("response", replies)
    for event in ("terminated", "failed"):
        dlg.on(event, ended)
    _use(ctx, ctx.msg, ctx.get_edits, did, ice, (ctx.src_ip, ctx.avps, tx))

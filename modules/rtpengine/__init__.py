"""rtpengine: media through Sipwise rtpengine daemons, over the bencode "ng" protocol.

`rtpengine_sock` defines sets of daemons (`[id ==] udp:host:port[=weight] ...`); each call
goes to one daemon of the selected set (rtpengine_use_set(), setid_avp, else set 0),
chosen from a hash of the Call-ID and the weights. offer/answer send the message's SDP and
put the daemon's SDP in its place; delete tears the session down. Daemons that do not
answer are disabled for `rtpengine_disable_tout` seconds, as OpenSIPS does.
"""
from __future__ import annotations

from runtime.module import FAILURE, INT, STR, VAR, Arg, Func, Module, Param
from runtime.nodesets import DEFAULT_SET, Control, check_socks, parse_sets, set_id_fixup
from runtime.pv import PVS, PVDef, PVError, bind, parse_pv_text
from runtime.sip.headers import SIPError

from . import bencode, ng
from .sdpbody import replace_sdp, sdp_of


def _check_avp(value):
    if value and not str(value).startswith("$avp("):
        return f"malformed or non AVP definition <{value}>"
    return None


def _check_pv(value):
    if value:
        try:
            parse_pv_text(str(value))
        except (PVError, ValueError) as e:
            return f"malformed PV string: {value} ({e})"
    return None


exports = Module(
    name="rtpengine",
    params=[
        Param("rtpengine_sock", str, None, multi=True, check=check_socks),
        Param("rtpengine_disable_tout", int, 60),
        Param("rtpengine_tout", int, 1),
        Param("rtpengine_tout_ms", int, None),          # Kamailio's name, in ms
        Param("rtpengine_retr", int, 5),
        Param("extra_id_pv", str, None, check=_check_pv),
        Param("setid_avp", str, None, check=_check_avp),
        Param("setid_default", int, DEFAULT_SET),       # Kamailio
        Param("notification_sock", str, None),
        Param("db_url", str, None), Param("db_table", str, "rtpengine"),
        Param("table_name", str, None),                 # Kamailio's db_table
        Param("socket_column", str, "socket"), Param("set_column", str, "set_id"),
        Param("rtpengine_allow_op", int, 0), Param("hash_table_tout", int, 3600),
        Param("hash_table_size", int, 256), Param("rtp_inst_pvar", str, None),
        Param("read_sdp_pv", str, None), Param("write_sdp_pv", str, None),
    ],
    functions=[
        Func("rtpengine_use_set", "rtpengine_use_set", [Arg(INT, fixup=set_id_fixup, name="setid")]),
        Func("set_rtpengine_set", "rtpengine_use_set",
             [Arg(INT, fixup=set_id_fixup), Arg(INT, optional=True)]),          # Kamailio
        Func("rtpengine_offer", "rtpengine_offer",
             [Arg(STR, optional=True, name="flags"), Arg(VAR, optional=True),
              Arg(VAR, optional=True), Arg(STR, optional=True)]),
        Func("rtpengine_answer", "rtpengine_answer",
             [Arg(STR, optional=True, name="flags"), Arg(VAR, optional=True),
              Arg(VAR, optional=True), Arg(STR, optional=True)]),
        Func("rtpengine_manage", "rtpengine_manage",
             [Arg(STR, optional=True, name="flags"), Arg(VAR, optional=True),
              Arg(VAR, optional=True), Arg(STR, optional=True)]),
        Func("rtpengine_delete", "rtpengine_delete",
             [Arg(STR, optional=True, name="flags"), Arg(VAR, optional=True)]),
        Func("rtpengine_query", "rtpengine_query",
             [Arg(STR, optional=True, name="flags"), Arg(VAR, optional=True)]),
        Func("rtpengine_start_recording", "rtpengine_start_recording",
             [Arg(STR, optional=True), Arg(VAR, optional=True)]),
        Func("rtpengine_stop_recording", "rtpengine_stop_recording",
             [Arg(STR, optional=True), Arg(VAR, optional=True)]),
        Func("rtpengine_play_media", "rtpengine_play_media",
             [Arg(STR, name="flags"), Arg(VAR, optional=True), Arg(VAR, optional=True)]),
        Func("rtpengine_stop_media", "rtpengine_stop_media",
             [Arg(STR, optional=True), Arg(VAR, optional=True)]),
        Func("rtpengine_block_media", "rtpengine_block_media",
             [Arg(STR, optional=True), Arg(VAR, optional=True)]),
        Func("rtpengine_unblock_media", "rtpengine_unblock_media",
             [Arg(STR, optional=True), Arg(VAR, optional=True)]),
        Func("rtpengine_block_dtmf", "rtpengine_block_dtmf",
             [Arg(STR, optional=True), Arg(VAR, optional=True)]),
        Func("rtpengine_unblock_dtmf", "rtpengine_unblock_dtmf",
             [Arg(STR, optional=True), Arg(VAR, optional=True)]),
        Func("rtpengine_start_forwarding", "rtpengine_start_forwarding",
             [Arg(STR, optional=True), Arg(VAR, optional=True)]),
        Func("rtpengine_stop_forwarding", "rtpengine_stop_forwarding",
             [Arg(STR, optional=True), Arg(VAR, optional=True)]),
        Func("rtpengine_play_dtmf", "rtpengine_play_dtmf",
             [Arg(STR, name="code"), Arg(STR, optional=True), Arg(VAR, optional=True)]),
    ],
    init="init",
    child_init="child_init",
    destroy="destroy",
)

_state: dict = {"control": None, "params": None, "rt": None}
_STATS = ("mos-average", "mos-min", "mos-min-at", "mos-max", "mos-max-at",
          "jitter-average", "jitter-min", "jitter-min-at", "jitter-max", "jitter-max-at",
          "roundtrip-average", "roundtrip-min", "roundtrip-min-at", "roundtrip-max",
          "roundtrip-max-at", "packetloss-average", "packetloss-min", "packetloss-min-at",
          "packetloss-max", "packetloss-max-at")


# --- lifecycle -----------------------------------------------------------------------------

def init(rt):
    p = rt.modparams["rtpengine"]
    _state["params"], _state["rt"] = p, rt
    default = p["setid_default"]
    sets = parse_sets(p["rtpengine_sock"] or [], default)
    tout = p["rtpengine_tout_ms"] / 1000 if p["rtpengine_tout_ms"] else p["rtpengine_tout"]

    def log(level, text):
        getattr(rt.log, level)(text, "rtpengine")

    control = Control(sets, timeout=tout, retries=p["rtpengine_retr"],
                      disable_timeout=p["rtpengine_disable_tout"], log=log)
    control.probe = _ping
    _state["control"] = control
    _state["default"] = default
    _state["extra_id"] = bind(parse_pv_text(p["extra_id_pv"]), PVS) if p["extra_id_pv"] \
        else None
    _state["setid_avp"] = p["setid_avp"][5:-1] if p["setid_avp"] else None
    if not sets and not p["db_url"]:
        rt.log.warning("no rtpengine_sock given: the rtpengine functions will fail",
                       "rtpengine")
    elif sets and default not in sets:
        rt.log.warning(f"there is no rtpengine in the default set {default}", "rtpengine")


def child_init(rt):
    p = _state["params"]
    control = _state["control"]
    if p["db_url"]:
        control.load_table(p["db_url"], p["table_name"] or p["db_table"], p["socket_column"],
                           p["set_column"], "rtpengines")
    for nodes in control.sets.values():
        for node in nodes:
            if control.connect(node) or node.mode == "unix":
                node.disabled = not _ping(node)
                if node.disabled:
                    control.disable(node)


def destroy(rt):
    if _state["control"] is not None:
        _state["control"].close()


def _ping(node) -> bool:
    control = _state["control"]
    reply = control.send(node, bencode.encode({"command": "ping"}))
    if reply is None:
        return False
    try:
        d = bencode.decode(reply)
    except bencode.BencodeError:
        d = None
    if not isinstance(d, dict) or d.get("result") != b"pong":
        _state["rt"].log.error(f"proxy <{node.url}> responded with invalid response",
                               "rtpengine")
        return False
    _state["rt"].log.info(f"rtp proxy <{node.url}> found, support for it enabled", "rtpengine")
    return True


# --- the exchange --------------------------------------------------------------------------

def _current_set(ctx):
    sid = ctx.local_data.get("rtpe_set")
    return _state["default"] if sid is None else sid


def _set_from_avp(ctx) -> bool:
    name = _state["setid_avp"]
    if not name:
        return True
    vals = ctx.avps.get(name)
    if not vals:
        return True
    v = vals[-1]
    if isinstance(v, str) and not v.lstrip("-").isdigit():
        ctx.rt.log.error("setid_avp must hold an integer value", "rtpengine")
        return False
    sid = int(v)
    if sid not in _state["control"].sets:
        ctx.rt.log.error(f"could not locate rtpengine set {sid}", "rtpengine")
        return False
    ctx.local_data["rtpe_set"] = sid
    return True


def _via_branch(ctx):
    def get(n):
        if n == -1:
            pv = _state["extra_id"]
            if pv is None:
                return None
            v = pv.get(ctx)
            return None if v is None else str(v)
        try:
            vias = ctx.msg.vias
        except SIPError:
            return None
        return vias[n - 1].branch if len(vias) >= n else None
    return get


def call(ctx, op, flags=None, sock_var=None, sdp=None, extra=None):
    """Send one command for the current message; the decoded reply dictionary, or None."""
    rt = ctx.rt
    msg = ctx.msg
    try:
        call_id = msg.call_id
        from_tag = msg.from_.tag or ""
        to_tag = msg.to.tag or ""
    except SIPError as e:
        rt.log.error(f"can't get Call-Id/tags: {e.reason}", "rtpengine")
        return None
    try:
        d, op = ng.build(op, flags, is_request=msg.is_request, call_id=call_id,
                         from_tag=from_tag, to_tag=to_tag, src_ip=ctx.src_ip, sdp=sdp,
                         via_branch=_via_branch(ctx), extra=extra)
    except ng.FlagError as e:
        rt.log.error(str(e), "rtpengine")
        return None
    control = _state["control"]
    sid = _current_set(ctx)
    nodes = control.sets.get(sid)
    if nodes is None:
        rt.log.error(f"script error -no valid set selected ({sid})", "rtpengine")
        return None
    payload = bencode.encode(d)
    while True:
        node = control.select(d["call-id"], nodes)
        if node is None:
            rt.log.error("no available proxies", "rtpengine")
            return None
        reply = control.send(node, payload)
        if reply is not None:
            break
    if sock_var is not None:
        sock_var.set(ctx, node.url)
    try:
        resp = bencode.decode(reply)
    except bencode.BencodeError:
        rt.log.error(f"failed to decode bencoded reply from proxy: {reply[:200]!r}", "rtpengine")
        return None
    if not isinstance(resp, dict):
        rt.log.error("proxy reply is not a dictionary", "rtpengine")
        return None
    if resp.get("result") == b"error":
        reason = bencode.text(resp.get("error-reason"))
        if reason is None:
            rt.log.error(f"proxy return error but didn't give an error reason: {reply!r}",
                         "rtpengine")
        else:
            rt.log.error(f"proxy replied with error: {reason}", "rtpengine")
        return None
    return resp


def _offer_answer(ctx, op, flags, sock_var, sdp_var, body):
    rt = ctx.rt
    if body is None:
        current, where = sdp_of(ctx)
        if current is None:
            rt.log.error("can't extract body from the message", "rtpengine")
            return -1
    else:
        current, where = body.encode("utf-8", "surrogateescape"), None
    resp = call(ctx, op, flags, sock_var, sdp=current)
    if resp is None:
        return -1
    if resp.get("result") != b"ok":
        rt.log.error("proxy didn't return \"ok\" result", "rtpengine")
        return -1
    new = resp.get("sdp")
    if not isinstance(new, bytes):
        rt.log.error("failed to extract sdp body from proxy reply", "rtpengine")
        return -1
    if sdp_var is not None:
        sdp_var.set(ctx, new.decode("utf-8", "surrogateescape"))
    elif body is None or where is not None:
        replace_sdp(ctx, where, new)
    return 1


def _simple(ctx, op, flags=None, sock_var=None, extra=None):
    resp = call(ctx, op, flags, sock_var, extra=extra)
    if resp is None:
        return -1
    if op in (ng.DELETE, ng.QUERY):
        ctx.local_data["rtpe_stats"] = resp
    return 1


# --- script functions ----------------------------------------------------------------------

def rtpengine_use_set(ctx, set_id, _second=None):
    if set_id not in _state["control"].sets:
        ctx.rt.log.error(f"could not locate rtpengine set {set_id}", "rtpengine")
        return -1
    ctx.local_data["rtpe_set"] = set_id
    return 1


def rtpengine_offer(ctx, flags=None, sock_var=None, sdp_var=None, body=None):
    if not _set_from_avp(ctx):
        return -1
    return _offer_answer(ctx, ng.OFFER, flags, sock_var, sdp_var, body)


def rtpengine_answer(ctx, flags=None, sock_var=None, sdp_var=None, body=None):
    if not _set_from_avp(ctx):
        return -1
    if ctx.msg.is_request and ctx.msg.method != "ACK":
        return -1
    return _offer_answer(ctx, ng.ANSWER, flags, sock_var, sdp_var, body)


def rtpengine_delete(ctx, flags=None, sock_var=None):
    if not _set_from_avp(ctx):
        return -1
    return _simple(ctx, ng.DELETE, flags, sock_var)


def rtpengine_query(ctx, flags=None, sock_var=None):
    if not _set_from_avp(ctx):
        return -1
    return _simple(ctx, ng.QUERY, flags, sock_var)


def _has_sdp(msg) -> bool:
    if not msg.body:
        return False
    ct = (msg.content_type or "").lower()
    return "application/sdp" in ct or ct.startswith("multipart/") and \
        b"application/sdp" in msg.body.lower()


def rtpengine_manage(ctx, flags=None, sock_var=None, sdp_var=None, body=None):
    """offer, answer or delete, from the message (OpenSIPS rtpengine_manage)."""
    if not _set_from_avp(ctx):
        return -1
    msg = ctx.msg
    try:
        method = msg.cseq[1]
    except SIPError:
        ctx.rt.log.error("no CSEQ header", "rtpengine")
        return -1
    if method not in ("INVITE", "ACK", "CANCEL", "BYE", "UPDATE"):
        return -1
    if method in ("CANCEL", "BYE"):
        return _simple(ctx, ng.DELETE, flags, sock_var)
    has_sdp = bool(body) if body is not None else _has_sdp(msg)
    if msg.is_request:
        if not has_sdp:
            return -1
        if method == "ACK":
            return _offer_answer(ctx, ng.ANSWER, flags, sock_var, sdp_var, body)
        if method == "UPDATE":
            return _offer_answer(ctx, ng.OFFER, flags, sock_var, sdp_var, body)
        if ctx.route_type == FAILURE:
            return _simple(ctx, ng.DELETE, flags, sock_var)
        return _offer_answer(ctx, ng.OFFER, flags, sock_var, sdp_var, body)
    if msg.status >= 300:
        return _simple(ctx, ng.DELETE, flags, sock_var)
    if not has_sdp:
        return -1
    if method == "UPDATE":
        return _offer_answer(ctx, ng.ANSWER, flags, sock_var, sdp_var, body)
    tx = ctx.tx
    if tx is not None and not _has_sdp(tx.msg):
        return _offer_answer(ctx, ng.OFFER, flags, sock_var, sdp_var, body)  # late offer
    return _offer_answer(ctx, ng.ANSWER, flags, sock_var, sdp_var, body)


def rtpengine_start_recording(ctx, flags=None, sock_var=None):
    return _simple(ctx, ng.START_RECORDING, flags, sock_var)


def rtpengine_stop_recording(ctx, flags=None, sock_var=None):
    return _simple(ctx, ng.STOP_RECORDING, flags, sock_var)


def rtpengine_play_media(ctx, flags, duration_var=None, sock_var=None):
    resp = call(ctx, ng.PLAY_MEDIA, flags, sock_var)
    if resp is None:
        return -1
    if duration_var is not None:
        dur = resp.get("duration")
        duration_var.set(ctx, dur if isinstance(dur, int) else -1)
    return 1


def rtpengine_stop_media(ctx, flags=None, sock_var=None):
    return _simple(ctx, ng.STOP_MEDIA, flags, sock_var)


def rtpengine_block_media(ctx, flags=None, sock_var=None):
    return _simple(ctx, ng.BLOCK_MEDIA, flags, sock_var)


def rtpengine_unblock_media(ctx, flags=None, sock_var=None):
    return _simple(ctx, ng.UNBLOCK_MEDIA, flags, sock_var)


def rtpengine_block_dtmf(ctx, flags=None, sock_var=None):
    return _simple(ctx, ng.BLOCK_DTMF, flags, sock_var)


def rtpengine_unblock_dtmf(ctx, flags=None, sock_var=None):
    return _simple(ctx, ng.UNBLOCK_DTMF, flags, sock_var)


def rtpengine_start_forwarding(ctx, flags=None, sock_var=None):
    return _simple(ctx, ng.START_FORWARD, flags, sock_var)


def rtpengine_stop_forwarding(ctx, flags=None, sock_var=None):
    return _simple(ctx, ng.STOP_FORWARD, flags, sock_var)


def rtpengine_play_dtmf(ctx, code, flags=None, sock_var=None):
    return _simple(ctx, ng.PLAY_DTMF, flags, sock_var, extra={"code": code})


# --- $rtpstat / $rtpquery --------------------------------------------------------------------

def _stats(ctx):
    cached = ctx.local_data.get("rtpe_stats")
    if cached is not None:
        return cached
    resp = call(ctx, ng.QUERY)
    if resp is None or resp.get("result") != b"ok":
        return None
    ctx.local_data["rtpe_stats"] = resp
    return resp


def _counter(d, key):
    v = d.get(key) if isinstance(d, dict) else None
    return v if isinstance(v, int) else -1


def stat_line(resp) -> str | None:
    totals = resp.get("totals") if isinstance(resp, dict) else None
    rtp = totals.get("RTP") if isinstance(totals, dict) else None
    rtcp = totals.get("RTCP") if isinstance(totals, dict) else None
    if not isinstance(rtp, dict) or not isinstance(rtcp, dict):
        return None
    return (f"RTP: {_counter(rtp, 'bytes')} bytes, {_counter(rtp, 'packets')} packets, "
            f"{_counter(rtp, 'errors')} errors; RTCP: {_counter(rtcp, 'bytes')} bytes, "
            f"{_counter(rtcp, 'packets')} packets, {_counter(rtcp, 'errors')} errors")


def stat_value(resp, name: str, tag: str | None = None):
    """One of the MOS/jitter/round-trip/packet-loss statistics of a query reply."""
    name = name.lower()
    kind, _, how = name.partition("-")
    field = {"mos": "MOS", "jitter": "jitter", "roundtrip": "round-trip time",
             "packetloss": "packet loss"}[kind]
    key = {"average": "average MOS", "min": "lowest MOS", "min-at": "lowest MOS",
           "max": "highest MOS", "max-at": "highest MOS"}[how]
    ssrcs = resp.get("SSRC") if isinstance(resp, dict) else None
    if not isinstance(ssrcs, dict):
        return None
    wanted = None
    if tag is not None:
        tags = resp.get("tags")
        t = tags.get(tag) if isinstance(tags, dict) else None
        if not isinstance(t, dict):
            return None
        wanted = set()
        for media in t.get("medias") or []:
            for stream in (media.get("streams") or []) if isinstance(media, dict) else []:
                if isinstance(stream, dict) and isinstance(stream.get("SSRC"), int):
                    wanted.add(str(stream["SSRC"]))
    values, ats = [], []
    for ssrc, info in ssrcs.items():
        if wanted is not None and ssrc not in wanted:
            continue
        m = info.get(key) if isinstance(info, dict) else None
        if not isinstance(m, dict) or not isinstance(m.get(field), int):
            continue
        values.append(m[field])
        ats.append(m.get("reported at"))
    if not values:
        return None
    if how == "average":
        return sum(values) // len(values)
    best = max(values) if how.startswith("max") else min(values)
    if how.endswith("-at"):
        at = ats[values.index(best)]
        created = resp.get("created")
        if not isinstance(at, int) or not isinstance(created, int):
            return None
        return at - created
    return best


def _rtpstat_fixup(text):
    name = str(text).strip()
    if "$" not in name and name.lower() not in _STATS:
        raise PVError(f"Unknown RTP statistic {name}")
    return name


def _rtpstat_get(ctx, sub):
    resp = _stats(ctx)
    if resp is None:
        return None
    if not sub:
        return stat_line(resp)
    name, tag = sub if isinstance(sub, tuple) else (sub, None)
    try:
        return stat_value(resp, str(name), tag)
    except KeyError:
        ctx.rt.log.error(f"Unknown RTP stat {name}", "rtpengine")
        return None


def _rtpquery_get(ctx, sub):
    import json
    resp = _stats(ctx)
    if resp is None:
        return None

    def plain(v):
        if isinstance(v, bytes):
            return v.decode("utf-8", "replace")
        if isinstance(v, list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v
    return json.dumps(plain(resp))


exports.pvs = {
    "rtpstat": PVDef("rtpstat", _rtpstat_get, sub="opt", fixup=_rtpstat_fixup),
    "rtpquery": PVDef("rtpquery", _rtpquery_get),
}

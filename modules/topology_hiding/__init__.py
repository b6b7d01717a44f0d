"""topology_hiding: a proxy that shows nothing of one side to the other.

    topology_hiding(["UCD"[, "/caller_user/callee_user"]])   on the initial request
    topology_hiding_match()                                  on sequential requests
    $TH_callee_callid                                        the Call-ID the callee sees

Engaged on an initial request, the module removes every Via but the proxy's own (the
replies get the sender's Vias back), removes Record-Route, and gives each side a Contact
of the proxy (on the interface facing it) instead of the other side's: the UAs then send
their sequential requests to the proxy, where topology_hiding_match() routes them to the
other side's real Contact through its route set. Flags: U keeps the Contact usernames, C
gives the callee another Call-ID (`th_callid_prefix` + the Call-ID XORed with
`th_callid_passwd`, base64; needs a dialog), D puts the dialog id in the Contact username.

With a dialog (create_dialog(), or `force_dialog`) the other side's details are kept with
the dialog and the Contact carries its id (`did`, dialog's rr_param); without one they
travel encrypted in the Contact itself (`th_contact_encode_param`, XOR with
`th_contact_encode_passwd`, base64/base32), so any request type can be hidden."""
from __future__ import annotations

import base64
import json

from runtime.module import REQUEST, STR, Arg, Func, Module, Param
from runtime.pv import PVDef, parse_uri
from runtime.sip.headers import NameAddr, SIPError, split_commas

exports = Module(
    name="topology_hiding",
    params=[
        Param("force_dialog", int, 0), Param("th_passed_contact_uri_params", str, ""),
        Param("th_passed_contact_params", str, ""), Param("th_callid_passwd", str, "OpenSIPS"),
        Param("th_callid_prefix", str, "DLGCH_"),
        Param("th_contact_encode_passwd", str, "ToPoCtPaSS"),
        Param("th_contact_encode_param", str, "thinfo"),
        Param("th_contact_encode_scheme", str, "base64",
              check=lambda v: None if v in ("base64", "base32") else "must be base64 or base32"),
        Param("th_contact_caller_username_var", str, None),
        Param("th_contact_callee_username_var", str, None),
        Param("th_internal_trusted_tag", str, None),
    ],
    functions=[
        Func("topology_hiding", "topology_hiding",
             [Arg(STR, optional=True, name="flags"), Arg(STR, optional=True, name="users")],
             REQUEST),
        Func("topology_hiding_match", "topology_hiding_match",
             [Arg(STR, optional=True, name="match mode")], REQUEST),
    ],
    pvs={},
    depends=("tm",),
    init="init",
)

_state: dict = {"records": {}}


class Side:
    """How to reach one UA: its Contact, route set (in sending order) and our socket."""
    __slots__ = ("contact", "routes", "socket")

    def __init__(self, contact=None, routes=(), socket=None):
        self.contact, self.routes, self.socket = contact, list(routes), socket

    def to_json(self):
        return {"c": self.contact, "r": self.routes, "s": self.socket}

    @classmethod
    def from_json(cls, d):
        return cls(d.get("c"), d.get("r") or [], d.get("s"))


class Record:
    """A hidden dialog (dialog mode)."""

    def __init__(self, did, flags, callid, from_tag, dlg=None):
        self.did, self.flags, self.callid, self.from_tag = did, flags, callid, from_tag
        self.caller, self.callee = Side(), Side()
        self.callee_callid = None
        self.dlg = dlg
        self.users = (None, None)      # contact usernames given (caller's, callee's)


def init(rt):
    p = rt.modparams["topology_hiding"]
    if p["force_dialog"] and "dialog" not in rt.modules:
        raise ValueError("topology_hiding: force_dialog needs the dialog module")
    _state.update(rt=rt, p=p, records={},
                  uri_params=[x.strip() for x in p["th_passed_contact_uri_params"].split(";")
                              if x.strip()],
                  hdr_params=[x.strip() for x in p["th_passed_contact_params"].split(";")
                              if x.strip()])
    rt.outgoing_hooks.append(_outgoing)


# --- encodings ---------------------------------------------------------------------------------

def _xor(data: bytes, key: bytes) -> bytes:
    key = key or b"\0"
    return bytes(b ^ key[i % len(key)] for i, b in enumerate(data))


def encode_callid(callid, passwd, prefix):
    raw = _xor(callid.encode("utf-8", "surrogateescape"), passwd.encode())
    return prefix + base64.b64encode(raw).decode().replace("+", "-").replace("/", ".") \
        .rstrip("=")


def decode_callid(value, passwd, prefix):
    if not value.startswith(prefix):
        return None
    text = value[len(prefix):].replace("-", "+").replace(".", "/")
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        return None
    return _xor(raw, passwd.encode()).decode("utf-8", "surrogateescape")


def encode_info(obj, passwd, scheme="base64"):
    raw = _xor(json.dumps(obj, separators=(",", ":")).encode(), passwd.encode())
    if scheme == "base32":
        return base64.b32encode(raw).decode().rstrip("=")
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_info(text, passwd, scheme="base64"):
    try:
        if scheme == "base32":
            raw = base64.b32decode(text.upper() + "=" * (-len(text) % 8))
        else:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        return json.loads(_xor(raw, passwd.encode()))
    except (ValueError, UnicodeDecodeError):
        return None


# --- helpers -------------------------------------------------------------------------------------

def _p():
    return _state["p"]


def _contact(msg):
    """The first Contact (NameAddr) of a message, or None."""
    try:
        cs = msg.contacts
    except SIPError:
        return None
    return cs[0] if cs else None


def _sock_text(sock):
    return str(sock) if sock is not None else None


def _sock_of(rt, text):
    return rt.find_socket(text) if text else None


def _record_routes(msg):
    out = []
    for h in msg.get_headers("record-route"):
        try:
            out.extend(split_commas(h.value))
        except SIPError:
            pass
    return out


def _own_contact(sock, user, param, passed_uri, passed_hdr):
    host = sock.via_host
    u = f"sip:{user + '@' if user else ''}{host}:{sock.via_port}"
    if sock.proto != "udp":
        u += f";transport={sock.proto}"
    u += "".join(";" + x for x in passed_uri) + f";{param}"
    return f"Contact: <{u}>" + "".join(";" + x for x in passed_hdr)


def _passed(contact):
    """(uri params, header params) of a Contact that the modparams let through."""
    if contact is None:
        return [], []
    uri_params, hdr_params = [], []
    u = parse_uri(contact.uri)
    wanted = {n.lower() for n in _state["uri_params"]}
    for k, v in (u.params or ()) if u is not None else ():
        if k.lower() in wanted:
            uri_params.append(k if v in (None, "") else f"{k}={v}")
    for name in _state["hdr_params"]:
        for k, v in contact.params:
            if k.lower() == name.lower():
                hdr_params.append(k if v is None else f"{k}={v}")
    return uri_params, hdr_params


def _user_of(uri):
    u = parse_uri(uri) if uri else None
    return (u.user or "") if u is not None else ""


# --- outgoing requests and incoming replies ------------------------------------------------------

def _outgoing(ctx, sock):
    """rt.outgoing_hooks: on a hidden request as it leaves by `sock`: only our Via, and our
    Contact instead of the sender's."""
    out = ctx.local_data.get("th_out")
    if out is None:
        return []
    edits = ctx.get_edits()
    edits.replace_via1(None)
    for h in ctx.msg.get_headers("via"):
        edits.remove_header(h)
    h = ctx.msg.get_header("contact")
    if h is None:
        return []
    param, user, passed = out(sock)
    edits.remove_header(h)
    return [(("before", h), _own_contact(sock, user, param, *passed))]


def _on_replies(ctx, vias, make_contact, callid=None, learn=None):
    """What each reply relayed upstream gets: the sender's Vias back, no Record-Route, our
    Contact, the original Call-ID."""
    def cb(tx, branch, reply):
        edits = branch.edits_for_reply(reply)
        first = reply.get_header("via")
        for line in vias:
            edits.add_header(line, "before", first) if first is not None else \
                edits.add_header(line, "top")
        if learn is not None:
            learn(tx, branch, reply)
        for h in reply.get_headers("record-route"):
            edits.remove_header(h)
        ch = reply.get_header("contact")
        if ch is not None:
            edits.replace_header(ch, make_contact(tx, reply))
        if callid is not None:
            cid = reply.get_header("call-id")
            if cid is not None:
                edits.replace_header(cid, f"{cid.name}: {callid}")
    if ctx.tx is not None:
        ctx.tx.callbacks.append(cb)
    else:
        ctx.local_data.setdefault("tm_callbacks", []).append(cb)


def _via_lines(msg):
    return [f"{h.name}: {h.value}" for h in msg.get_headers("via")]


def _strip_request(ctx):
    edits = ctx.get_edits()
    for h in ctx.msg.get_headers("record-route"):
        edits.remove_header(h)


# --- topology_hiding() ---------------------------------------------------------------------------

def _flags(text):
    return set(text or "")


def _users(spec, flags, caller_contact):
    """(username for the Contact given to the callee, to the caller) from the 2nd argument
    ("user" for both, "/caller/callee") or the U flag."""
    if spec:
        spec = spec.strip()
        if spec.startswith("/"):
            a, _, b = spec[1:].partition("/")
            return a.strip() or None, b.strip() or None
        return spec, spec
    return None, None


def topology_hiding(ctx, flags=None, users=None):
    rt = ctx.rt
    msg = ctx.msg
    try:
        if msg.to.tag:
            rt.log.error("topology_hiding() is for initial requests", "topology_hiding")
            return -1
        callid, from_tag = msg.call_id, msg.from_.tag or ""
    except SIPError:
        return -1
    if ctx.local_data.get("th_out") is not None:
        return 1
    fl = _flags(flags)
    dlg = None
    api = rt.apis.get("dialog")
    if api is not None:
        dlg = api.current(ctx)
        if dlg is None and _p()["force_dialog"] and msg.method == "INVITE":
            rt.modules["dialog"].functions_by_name["create_dialog"].impl(ctx)
            dlg = api.current(ctx)
    caller_contact = _contact(msg)
    given_to_callee, given_to_caller = _users(users, fl, caller_contact)
    caller = Side(caller_contact.uri if caller_contact else None, _record_routes(msg),
                  _sock_text(ctx.socket))
    passed_to_callee = _passed(caller_contact)
    vias = _via_lines(msg)
    _strip_request(ctx)
    if dlg is not None:
        return _hide_with_dialog(ctx, dlg, fl, callid, from_tag, caller, vias,
                                 passed_to_callee, given_to_callee, given_to_caller)
    return _hide_without_dialog(ctx, fl, caller, vias, passed_to_callee, given_to_callee,
                                given_to_caller)


def _did_param(rec):
    return f"{_state['rt'].modparams.get('dialog', {}).get('rr_param', 'did')}={rec.did}"


def _contact_user(rec, fl, side_uri, given):
    if "D" in fl:
        return f"did{rec.did}" if rec is not None else None
    if given:
        return given
    if "U" in fl:
        return _user_of(side_uri) or None
    return None


def _hide_with_dialog(ctx, dlg, fl, callid, from_tag, caller, vias, passed, to_callee_user,
                      to_caller_user):
    rec = Record(str(dlg.did), fl, callid, from_tag, dlg)
    rec.caller = caller
    rec.users = (to_callee_user, to_caller_user)
    _state["records"][rec.did] = rec
    dlg.th = rec

    def forget(dlg, event, obj, direction):
        loop = _state["rt"].server.loop if _state["rt"].server is not None else None
        if loop is not None:
            loop.call_later(10, _state["records"].pop, rec.did, None)
        else:
            _state["records"].pop(rec.did, None)
    dlg.on("terminated", forget)
    dlg.on("failed", forget)
    p = _p()
    if "C" in fl:
        rec.callee_callid = encode_callid(callid, p["th_callid_passwd"], p["th_callid_prefix"])
        h = ctx.msg.get_header("call-id")
        ctx.get_edits().replace_header(h, f"{h.name}: {rec.callee_callid}")
    ctx.local_data["th_out"] = lambda sock: (
        _did_param(rec), _contact_user(rec, fl, caller.contact, to_callee_user), passed)

    def learn(tx, branch, reply):
        _learn_callee(rec.callee, branch, reply)

    def make_contact(tx, reply):
        c = _contact(reply)
        user = _contact_user(rec, fl, c.uri if c else None, to_caller_user)
        return _own_contact(tx.sock, user, _did_param(rec), *_passed(c))
    _on_replies(ctx, vias, make_contact, callid if "C" in fl else None, learn)
    return 1


def _learn_callee(side, branch, reply):
    """The callee's Contact and route set, from a reply that establishes the dialog."""
    try:
        if not reply.to.tag:
            return
    except SIPError:
        return
    c = _contact(reply)
    if c is None or not (101 <= reply.status < 300):
        return
    side.contact = c.uri
    side.routes = list(reversed(_record_routes(reply)))
    side.socket = _sock_text(branch.sock)


def _hide_without_dialog(ctx, fl, caller, vias, passed, to_callee_user, to_caller_user):
    p = _p()
    pw, scheme, pname = (p["th_contact_encode_passwd"], p["th_contact_encode_scheme"],
                         p["th_contact_encode_param"])
    given_to_callee = pname + "=" + encode_info(caller.to_json(), pw, scheme)
    ctx.local_data["th_out"] = lambda sock: (
        given_to_callee, to_callee_user or (_user_of(caller.contact) if "U" in fl else None),
        passed)

    def make_contact(tx, reply):
        c = _contact(reply)
        side = Side(None, [], None)
        side.contact = c.uri if c else None
        side.routes = list(reversed(_record_routes(reply)))
        branch = next((b for b in tx.branches if b.reply is reply), None) or \
            (tx.branches[-1] if tx.branches else None)
        side.socket = _sock_text(branch.sock) if branch is not None else None
        user = to_caller_user or (_user_of(side.contact) if "U" in fl else None)
        return _own_contact(tx.sock, user, pname + "=" + encode_info(side.to_json(), pw, scheme),
                            *_passed(c))
    _on_replies(ctx, vias, make_contact)
    return 1


# --- topology_hiding_match() ---------------------------------------------------------------------

def _find(ctx):
    """(record or None, Side to send to or None, direction) for a sequential request."""
    u = parse_uri(ctx.ruri)
    if u is None or not ctx.rt.is_myself(u.host, u.port or 0):
        return None, None
    did_name = ctx.rt.modparams.get("dialog", {}).get("rr_param", "did")
    did = u.param(did_name)
    if did is None and (u.user or "").startswith("did"):
        did = u.user[3:]
    if did is not None:
        rec = _state["records"].get(did)
        if rec is not None:
            return rec, None
    p = _p()
    info = u.param(p["th_contact_encode_param"])
    if info:
        d = decode_info(info, p["th_contact_encode_passwd"], p["th_contact_encode_scheme"])
        if isinstance(d, dict):
            return None, Side.from_json(d)
    return None, None


def topology_hiding_match(ctx, mode=None):
    rt = ctx.rt
    msg = ctx.msg
    try:
        if not msg.to.tag:
            return -1
        from_tag = msg.from_.tag or ""
    except SIPError:
        return -1
    rec, side = _find(ctx)
    if rec is None and side is None:
        return -1
    callid_out = callid_back = None
    if rec is not None:
        downstream = from_tag == rec.from_tag
        side = rec.callee if downstream else rec.caller
        back = rec.caller if downstream else rec.callee
        if side.contact is None:
            return -1
        if rec.callee_callid:
            callid_out = rec.callee_callid if downstream else rec.callid
            callid_back = msg.call_id
        did = _did_param(rec)
        user_out = _contact_user(rec, rec.flags, back.contact,
                                 rec.users[0] if downstream else rec.users[1])
        user_back = None
        if rec.dlg is not None:
            ctx.local_data.setdefault("dialog", rec.dlg)
        p_out = did
        p_back = did
    else:
        # without a dialog the other side is in our Contact: back to the sender, a Contact
        # made from the request's own (this sender's details)
        back = Side(_contact(msg).uri if _contact(msg) else None, _record_routes(msg),
                    _sock_text(ctx.socket))
        p = _p()
        pw, scheme, pname = (p["th_contact_encode_passwd"], p["th_contact_encode_scheme"],
                             p["th_contact_encode_param"])
        p_out = pname + "=" + encode_info(back.to_json(), pw, scheme)
        p_back = None
        user_out = None
    _route_to(ctx, side)
    if callid_out is not None:
        h = msg.get_header("call-id")
        ctx.get_edits().replace_header(h, f"{h.name}: {callid_out}")
    sender_contact = _contact(msg)
    passed = _passed(sender_contact)
    ctx.local_data["th_out"] = lambda sock: (p_out, user_out, passed)
    vias = _via_lines(msg)

    def make_contact(tx, reply):
        c = _contact(reply)
        if p_back is not None:
            return _own_contact(tx.sock, None, p_back, *_passed(c))
        side_r = Side(c.uri if c else None, [], None)
        branch = next((b for b in tx.branches if b.reply is reply), None)
        side_r.socket = _sock_text(branch.sock) if branch is not None else None
        side_r.routes = side.routes
        pp = _p()
        return _own_contact(tx.sock, None, pp["th_contact_encode_param"] + "=" + encode_info(
            side_r.to_json(), pp["th_contact_encode_passwd"], pp["th_contact_encode_scheme"]),
            *_passed(c))
    _on_replies(ctx, vias, make_contact, callid_back)
    return 1


def _route_to(ctx, side):
    """R-URI: the other side's Contact; Route: its route set (the first one the next hop)."""
    edits = ctx.get_edits()
    for h in ctx.msg.get_headers("route"):
        edits.remove_header(h)
    for h in ctx.msg.get_headers("record-route"):
        edits.remove_header(h)
    ctx.local_data.pop("drop_routes", None)
    ctx.new_ruri = side.contact
    ctx.dst_uri = None
    if side.routes:
        first = side.routes[0]
        for r in side.routes:
            edits.add_header(f"Route: {r}", "top")
        try:
            na = NameAddr.parse(first)
            u = parse_uri(na.uri)
            if u is not None and u.param("lr") is not None:
                ctx.dst_uri = na.uri
            else:       # a strict router: it is the R-URI, the Contact the last Route
                ctx.new_ruri = na.uri
        except SIPError:
            pass
    sock = _sock_of(ctx.rt, side.socket)
    if sock is not None:
        ctx.force_socket = sock


# --- $TH_callee_callid ---------------------------------------------------------------------------

def _th_callee_callid(ctx, sub):
    api = ctx.rt.apis.get("dialog")
    dlg = api.current(ctx) if api is not None else None
    rec = getattr(dlg, "th", None) if dlg is not None else None
    if rec is None:
        rec, _ = _find(ctx) if ctx.msg is not None and ctx.msg.is_request else (None, None)
    return rec.callee_callid if rec is not None else None


exports.pvs["TH_callee_callid"] = PVDef("TH_callee_callid", _th_callee_callid)

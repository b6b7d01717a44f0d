"""nat_traversal: NAT detection, Contact fixing and keepalives to NATed endpoints.

nat_keepalive() marks a request; the source address of the request ("NAT endpoint",
sip:ip:port) is then kept alive while a condition holds: a successful registration (until
it expires), a successful subscription, or an INVITE dialog it started (until the dialog
ends). Every `keepalive_interval` seconds each endpoint gets one `keepalive_method` request
(NOTIFY with "Event: keep-alive" by default) from the socket the request came in on; the
pings are spread over the interval. The table survives restarts in `keepalive_state_file`.
"""
from __future__ import annotations

import ipaddress
import random
import time
import zlib

from runtime.module import (BRANCH, FAILURE, INT, LOCAL, ONREPLY, REQUEST, Arg, Func, Module,
                            Param)
from runtime.pv import PVDef, parse_uri
from runtime.sip.headers import NameAddr, SIPError

_PRIVATE = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")]
STATE_FILE_HEADER = "# Automatically generated file from internal keepalive state. " \
                    "Do NOT modify!"
DIALOG_DEFAULT_TIMEOUT = 12 * 3600


def _tests(value, rt):
    try:
        n = int(str(value).strip(), 0)
    except ValueError:
        raise ValueError(f"invalid test mask '{value}'") from None
    if not 0 < n < 16:
        raise ValueError(f"invalid test mask {n} (1-15: 1 private Contact, 2 source "
                         f"address, 4 private Via, 8 source/Contact IP)")
    return n


exports = Module(
    name="nat_traversal",
    params=[
        Param("keepalive_interval", int, 60),
        Param("keepalive_method", str, "NOTIFY"),
        Param("keepalive_from", str, None),
        Param("keepalive_extra_headers", str, ""),
        Param("keepalive_state_file", str, "keepalive_state"),
        Param("cluster_id", int, 0),
        Param("cluster_sharing_tag", str, None),
    ],
    functions=[
        Func("client_nat_test", "client_nat_test", [Arg(INT, fixup=_tests, name="type")],
             REQUEST | ONREPLY | FAILURE | BRANCH | LOCAL),
        Func("fix_contact", "fix_contact", routes=REQUEST | ONREPLY | BRANCH | LOCAL),
        Func("nat_keepalive", "nat_keepalive", routes=REQUEST),
    ],
    init="init",
    child_init="child_init",
    destroy="destroy",
)


class Endpoint:
    """A NAT endpoint kept alive, and why."""

    __slots__ = ("uri", "socket", "registration", "subscription", "dialogs")

    def __init__(self, uri, socket):
        self.uri = uri
        self.socket = socket
        self.registration = 0.0          # expiry time (epoch), 0: none
        self.subscription = 0.0
        self.dialogs = {}                # dialog id -> expiry time

    def purge(self, now) -> bool:
        """Drop expired conditions; True if some condition is left."""
        if self.registration and now > self.registration:
            self.registration = 0.0
        if self.subscription and now > self.subscription:
            self.subscription = 0.0
        for k in [k for k, exp in self.dialogs.items() if now > exp]:
            del self.dialogs[k]
        return bool(self.registration or self.subscription or self.dialogs)


class Keepalive:
    def __init__(self, rt, params):
        self.rt = rt
        self.interval = params["keepalive_interval"]
        self.method = (params["keepalive_method"] or "NOTIFY").strip()
        self.from_uri = params["keepalive_from"]
        extra = params["keepalive_extra_headers"] or ""
        if extra and not extra.endswith("\r\n"):
            extra = extra.rstrip("\n") + "\r\n"
        self.extra = extra
        self.event = "Event: keep-alive\r\n" if self.method.upper() == "NOTIFY" else ""
        self.state_file = params["keepalive_state_file"]
        self.table: dict[str, Endpoint] = {}
        self.iteration = 0
        self.callid_prefix = f"{random.getrandbits(64):x}"
        self.callid_counter = random.getrandbits(16)
        self.from_tag = random.getrandbits(31)
        self.sent = 0
        self.stats = {"keepalive_endpoints": 0, "registered_endpoints": 0,
                      "subscribed_endpoints": 0, "dialog_endpoints": 0}

    def endpoint(self, uri, socket) -> Endpoint:
        ep = self.table.get(uri)
        if ep is None:
            ep = self.table[uri] = Endpoint(uri, socket)
        return ep

    def update_stats(self):
        eps = self.table.values()
        self.stats.update(keepalive_endpoints=len(self.table),
                          registered_endpoints=sum(1 for e in eps if e.registration),
                          subscribed_endpoints=sum(1 for e in eps if e.subscription),
                          dialog_endpoints=sum(len(e.dialogs) for e in eps))

    # --- sending ---------------------------------------------------------------------------
    def message(self, ep: Endpoint) -> bytes:
        sock = ep.socket
        ip = sock.adv_ip or sock.ip
        host = f"[{ip}]" if ":" in ip else ip
        port = sock.adv_port or sock.port
        from_uri = self.from_uri or f"sip:keepalive@{host}"
        self.from_tag = (self.from_tag + 1) & 0xFFFFFFFF
        self.callid_counter = (self.callid_counter + 1) & 0xFFFFFFFF
        ticks = int(time.monotonic()) & 0xFFFFFFFF
        text = (f"{self.method} {ep.uri} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {host}:{port};branch=0\r\n"
                f"From: {from_uri};tag={self.from_tag:x}\r\n"
                f"To: {ep.uri}\r\n"
                f"Call-ID: {self.callid_prefix}-{self.callid_counter:x}-{ticks:x}@{host}\r\n"
                f"CSeq: 1 {self.method}\r\n"
                f"{self.event}{self.extra}"
                f"Content-Length: 0\r\n\r\n")
        return text.encode("utf-8", "surrogateescape")

    def send(self, ep: Endpoint) -> bool:
        u = parse_uri(ep.uri)
        if u is None or ep.socket is None or self.rt.server is None:
            return False
        ok = self.rt.server.send(ep.socket, (u.host.strip("[]"), u.port or 5060),
                                 self.message(ep))
        if ok:
            self.sent += 1
        return ok

    def tick(self):
        """Once a second: the endpoints of this second's share of the interval."""
        if self.interval <= 0:
            return
        now = time.time()
        it = self.iteration
        self.iteration = (it + 1) % self.interval
        for uri, ep in list(self.table.items()):
            if zlib.crc32(uri.encode()) % self.interval != it:
                continue
            if not ep.purge(now):
                del self.table[uri]
                continue
            self.send(ep)
        self.update_stats()

    # --- state file ------------------------------------------------------------------------
    def save(self):
        if not self.state_file:
            return
        try:
            with open(self.state_file, "w") as f:
                f.write(STATE_FILE_HEADER + "\n")
                now = time.time()
                for ep in self.table.values():
                    if not ep.purge(now) or (not ep.registration and not ep.subscription):
                        continue
                    f.write(f"{ep.uri} {ep.socket} {int(ep.registration)} "
                            f"{int(ep.subscription)}\n")
        except OSError as e:
            self.rt.log.error(f"failed to open keepalive state file for writing: {e}",
                              "nat_traversal")

    def restore(self):
        if not self.state_file:
            return
        try:
            with open(self.state_file) as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return
        except OSError as e:
            self.rt.log.error(f"failed to open keepalive state file for reading: {e}",
                              "nat_traversal")
            return
        now = time.time()
        for line in lines:
            if not line.strip() or line.startswith("#"):
                continue
            parts = line.split()
            if len(parts) != 4:
                self.rt.log.error("invalid/corrupted keepalive state file. ignoring "
                                  "remaining entries.", "nat_traversal")
                break
            uri, sock_text, rtime, stime = parts
            try:
                rtime, stime = float(rtime), float(stime)
            except ValueError:
                break
            if now > rtime and now > stime:
                continue
            sock = self.rt.find_socket(sock_text)
            if sock is None:
                continue  # the socket is gone since last time
            ep = self.endpoint(uri, sock)
            ep.registration = max(ep.registration, rtime if rtime > now else 0.0)
            ep.subscription = max(ep.subscription, stime if stime > now else 0.0)
        self.update_stats()


_state: dict = {"ka": None}


# --- lifecycle -----------------------------------------------------------------------------

def init(rt):
    p = rt.modparams["nat_traversal"]
    ka = Keepalive(rt, p)
    _state["ka"] = ka
    rt.stats_groups = getattr(rt, "stats_groups", {})
    rt.stats_groups["nat_traversal"] = ka.stats
    if ka.interval <= 0:
        return
    if p["cluster_id"]:
        rt.log.warning("nat_traversal: clustering is not supported, this node pings every "
                       "endpoint it knows", "nat_traversal")
    ka.restore()
    rt.timers.append((1, ka.tick))


def child_init(rt):
    tm = rt.apis.get("tm")
    if tm is not None and getattr(tm, "tm", None) is not None:
        tm.tm.request_in.append(_tm_request_in)


def destroy(rt):
    ka = _state["ka"]
    if ka is not None and ka.interval > 0:
        ka.save()


# --- helpers -------------------------------------------------------------------------------

def _ip(text):
    try:
        return ipaddress.ip_address((text or "").strip("[]"))
    except ValueError:
        return None


def _private(host) -> bool:
    ip = _ip(host)
    return ip is not None and ip.version == 4 and any(ip in n for n in _PRIVATE)


def _contact_uri(msg):
    try:
        contacts = msg.contacts
    except SIPError:
        return None
    if not contacts or contacts[0].uri == "*":
        return None
    return parse_uri(contacts[0].uri)


def source_uri(ctx) -> str:
    host = f"[{ctx.src_ip}]" if ":" in ctx.src_ip else ctx.src_ip
    uri = f"sip:{host}:{ctx.src_port}"
    return uri if ctx.proto == "udp" else f"{uri};transport={ctx.proto}"


# --- client_nat_test / fix_contact ---------------------------------------------------------

def client_nat_test(ctx, tests):
    msg = ctx.msg
    if tests & 1:
        u = _contact_uri(msg)
        if u is not None and _private(u.host):
            return 1
    if tests & 2:
        try:
            via = msg.via1
        except SIPError:
            via = None
        if via is not None and (_ip(via.host) != _ip(ctx.src_ip) or
                                (via.port or 5060) != ctx.src_port):
            return 1
    if tests & 4:
        try:
            via = msg.via1
        except SIPError:
            via = None
        if via is not None and _private(via.host):
            return 1
    if tests & 8:
        u = _contact_uri(msg)
        if u is not None and _ip(u.host) != _ip(ctx.src_ip):
            return 1
    return -1


def fix_contact(ctx):
    """The first Contact URI's host:port become the source address of the message."""
    msg = ctx.msg
    try:
        hdr = msg.get_header("contact")
        contacts = msg.contacts
    except SIPError:
        return -1
    if hdr is None or not contacts or contacts[0].uri == "*":
        return -1
    names = ctx.local_data.get("nat_traversal_contact")
    if names is None:
        try:
            names = NameAddr.parse_list(hdr.value)
        except SIPError:
            return -1
        ctx.local_data["nat_traversal_contact"] = names
    u = parse_uri(names[0].uri)
    if u is None or u.is_tel:
        return -1
    host = f"[{ctx.src_ip}]" if ":" in ctx.src_ip else ctx.src_ip
    if u.host.strip("[]") == ctx.src_ip and (u.port or 5060) == ctx.src_port:
        return 1
    new = str(u.replace(host=host, port=ctx.src_port))
    names[0].uri = new
    ctx.get_edits().replace_header(hdr, f"{hdr.name}: {', '.join(str(n) for n in names)}")
    contacts[0].uri = new          # what save() and $ct see from now on
    contacts[0]._uri = None
    return 1


# --- nat_keepalive -------------------------------------------------------------------------

def nat_keepalive(ctx):
    ka = _state["ka"]
    if ka is None or ka.interval <= 0:
        return -1
    if ctx.proto != "udp":
        return -1
    msg = ctx.msg
    method = msg.method
    if method in ("REGISTER", "SUBSCRIBE"):
        ctx.local_data["nat_keepalive"] = True
        cb = _reply_callback(ctx, source_uri(ctx), ctx.socket, method)
        if ctx.tx is not None:
            ctx.tx.callbacks.append(cb)
        else:
            ctx.local_data.setdefault("tm_callbacks", []).append(cb)
        if method == "REGISTER" and ctx.rt.server is not None:
            ctx.rt.server.loop.call_soon(_registered_here, ctx, source_uri(ctx), ctx.socket)
        return 1
    if method == "INVITE":
        if "dialog" not in ctx.rt.modules:
            ctx.rt.log.error("cannot keep alive dialog without the dialog module being "
                             "loaded", "nat_traversal")
            return -1
        try:
            if msg.to.tag:
                ctx.rt.log.error("nat_keepalive should only be called for initial INVITE "
                                 "requests", "nat_traversal")
                return -1
        except SIPError:
            ctx.rt.log.error("missing To header", "nat_traversal")
            return -1
        ctx.local_data["nat_keepalive"] = True
        if ctx.tx is not None:   # the transaction exists already: the dialog starts now
            _tm_request_in(ctx, ctx.tx)
        return 1
    ctx.rt.log.error("unsupported method for keepalive", "nat_traversal")
    return -1


def _expires_of(reply, request=None) -> int:
    """The expiration a positive reply grants: the longest of the bindings the request
    asked for (REGISTER), else the Expires header."""
    default = None
    exp = reply.get("expires")
    if exp is not None and exp.strip().isdigit():
        default = int(exp.strip())
    if request is None:
        return default or 0
    try:
        wanted = {c.uri for c in request.contacts if c.uri != "*"}
        granted = reply.contacts
    except SIPError:
        return default or 0
    best = 0
    for c in granted:
        if wanted and c.uri not in wanted:
            continue
        v = next((val for key, val in c.params if key.lower() == "expires"), None)
        if v is not None and str(v).strip().isdigit():
            best = max(best, int(str(v).strip()))
        elif default:
            best = max(best, default)
    return best


def _reply_callback(ctx, uri, sock, method):
    request = ctx.msg

    def cb(tx, branch, reply):
        if not 200 <= reply.status < 300:
            return
        expires = _expires_of(reply, request if method == "REGISTER" else None)
        if expires > 0:
            _keep(uri, sock, method, expires)
    return cb


def _keep(uri, sock, method, expires):
    ka = _state["ka"]
    ep = ka.endpoint(uri, sock)
    until = time.time() + expires
    if method == "REGISTER":
        ep.registration = max(ep.registration, until)
    else:
        ep.subscription = max(ep.subscription, until)
    ka.update_stats()


def _registered_here(ctx, uri, sock):
    """After the script of a REGISTER: the bindings this REGISTER (its Call-ID) saved in
    usrloc, if the registrar here accepted it."""
    usrloc = ctx.rt.apis.get("usrloc")
    if usrloc is None:
        return
    msg = ctx.msg
    try:
        call_id = msg.call_id
        to = parse_uri(msg.to.uri)
    except SIPError:
        return
    if to is None or not to.user:
        return
    aors = {to.user, to.user.lower(), f"{to.user}@{to.host}", f"{to.user}@{to.host}".lower()}
    now = time.time()
    best = 0.0
    for dom in list(usrloc.domains.values()):
        for aor in aors:
            try:
                contacts = dom.get(aor)
            except Exception:  # a DB-backed table that fails: nothing to learn here
                continue
            for c in contacts:
                if c.callid == call_id and c.expires:
                    best = max(best, c.expires - now)
    if best > 0:
        _keep(uri, sock, "REGISTER", int(best))


def _tm_request_in(ctx, tx):
    """The initial INVITE got its transaction: follow its dialog."""
    if not ctx.local_data.get("nat_keepalive") or ctx.msg.method != "INVITE":
        return
    if ctx.local_data.get("nat_keepalive_dialog"):
        return
    ctx.local_data["nat_keepalive_dialog"] = True
    from modules import dialog as dialog_mod
    if dialog_mod.create_dialog(ctx) < 0:
        ctx.rt.log.error("could not create new dialog", "nat_traversal")
        return
    dlg = ctx.local_data["dialog"]
    ka = _state["ka"]
    caller = ka.endpoint(source_uri(ctx), ctx.socket)
    caller.dialogs[dlg.id] = time.time() + DIALOG_DEFAULT_TIMEOUT
    callees = {}

    def replies(dlg, event, obj, direction):
        reply, branch = obj
        if branch is None or direction != "upstream" or not 100 < reply.status < 300:
            return
        uri = f"sip:{branch.dst[0]}:{branch.dst[1]}"
        ep = ka.table.get(uri)
        if ep is not None and ep.registration:   # a NATed callee we keep for its REGISTER
            ep.dialogs[dlg.id] = time.time() + DIALOG_DEFAULT_TIMEOUT
            callees[uri] = ep
        if reply.status >= 200:                  # only the answering branch stays
            for other, oep in list(callees.items()):
                if other != uri:
                    oep.dialogs.pop(dlg.id, None)
                    del callees[other]

    def ended(dlg, event, obj, direction):
        caller.dialogs.pop(dlg.id, None)
        for ep in callees.values():
            ep.dialogs.pop(dlg.id, None)
        ka.update_stats()

    dlg.on("response", replies)
    for event in ("terminated", "failed"):
        dlg.on(event, ended)
    ka.update_stats()


# --- pseudo-variables ----------------------------------------------------------------------

def _keepalive_socket(ctx, sub):
    ka = _state["ka"]
    if ka is None or sub is None:
        return None
    ep = ka.table.get(str(sub).strip())
    return None if ep is None else str(ep.socket)


def _track_get(ctx, sub):
    return int(ctx.local_data.get("nat_track_dialog", 1))


def _track_set(ctx, sub, value, op, idx):
    ctx.local_data["nat_track_dialog"] = 1 if value not in (None, 0, "0", "") else 0


exports.pvs = {
    "keepalive.socket": PVDef("keepalive.socket", _keepalive_socket, sub="req"),
    "source_uri": PVDef("source_uri", lambda ctx, sub: source_uri(ctx)),
    "nat_traversal.track_dialog": PVDef("nat_traversal.track_dialog", _track_get,
                                        set=_track_set),
}

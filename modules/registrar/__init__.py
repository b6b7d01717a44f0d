"""registrar: REGISTER processing (save) and routing to registered contacts (lookup)."""
import time
from dataclasses import replace

from runtime.context import Branch
from runtime.db import DBError
from runtime.forward import send_local_reply
from runtime.module import (BRANCH, FAILURE, LOCAL, ONREPLY, REQUEST, STATIC, STR, VAR,
                            Arg, Func, Module, Param)
from runtime.pv import PVS, bind, parse_pv_text, parse_uri
from runtime.sip.headers import NameAddr, SIPError, split_commas
from runtime.sip.uri import unescape

from .flags import LookupFlags, SaveFlags, parse_lookup_flags, parse_save_flags

exports = Module(
    name="registrar",
    params=[
        Param("default_expires", int, 3600), Param("min_expires", int, 60),
        Param("max_expires", int, 0), Param("default_q", int, -1),
        Param("tcp_persistent_flag", (int, str), None), Param("realm_prefix", str, None),
        Param("case_sensitive", int, 1), Param("received_avp", str, None),
        Param("received_param", str, "received"), Param("max_contacts", int, 0),
        Param("retry_after", int, 0), Param("sock_hdr_name", str, None),
        Param("mcontact_avp", str, None), Param("attr_avp", str, None),
        Param("expires_max_deviation", int, 0), Param("max_username_len", int, 64),
        Param("max_domain_len", int, 64), Param("max_aor_len", int, 256),
        Param("max_contact_len", int, 255), Param("gruu_secret", str, None),
        Param("disable_gruu", int, 1),
        *[Param(n, t, d) for n, t, d in (
            ("pn_enable", int, 0), ("pn_providers", str, None),
            ("pn_ct_match_params", str, None), ("pn_pnsreg_interval", int, 130),
            ("pn_trigger_interval", int, 120), ("pn_skip_pn_interval", int, 0),
            ("pn_refresh_timeout", int, 6), ("pn_enable_purr", int, 0))],
        # 1.x names, still found in scripts: defaults for save/lookup flags
        Param("append_branches", int, 1), Param("method_filtering", int, 0),
        Param("use_path", int, 0), Param("path_mode", int, 2),
        Param("path_use_received", int, 0), Param("gruu_enabled", int, 0),
        Param("aor_avp", str, None), Param("nat_flag", (int, str), None),
    ],
    functions=[
        Func("save", "save", [Arg(STATIC, name="domain"),
                              Arg(STR, optional=True, fixup=lambda v, rt: parse_save_flags(v)),
                              Arg(STR, optional=True), Arg(STR, optional=True)],
             REQUEST | ONREPLY),
        Func("lookup", "lookup", [Arg(STATIC, name="domain"),
                                  Arg(STR, optional=True,
                                      fixup=lambda v, rt: parse_lookup_flags(v)),
                                  Arg(STR, optional=True)],
             REQUEST | FAILURE | ONREPLY),
        Func("is_registered", "is_registered", [Arg(STATIC), Arg(STR, optional=True)],
             REQUEST | FAILURE | BRANCH | ONREPLY | LOCAL),
        Func("registered", "is_registered", [Arg(STATIC), Arg(STR, optional=True),
                                             Arg(STR, optional=True)],
             REQUEST | FAILURE | BRANCH | ONREPLY | LOCAL),
        Func("is_contact_registered", "is_contact_registered",
             [Arg(STATIC), Arg(STR, optional=True), Arg(STR, optional=True),
              Arg(STR, optional=True)], REQUEST | FAILURE | BRANCH | ONREPLY | LOCAL),
        Func("is_ip_registered", "is_ip_registered",
             [Arg(STATIC), Arg(STR, optional=True), Arg(VAR)],
             REQUEST | FAILURE | BRANCH | ONREPLY | LOCAL),
        Func("remove", "remove", [Arg(STATIC), Arg(STR), Arg(STR, optional=True),
                                  Arg(STR, optional=True), Arg(STR, optional=True)],
             REQUEST | ONREPLY),
        Func("add_sock_hdr", "add_sock_hdr", [Arg(STATIC)], REQUEST),
    ],
    depends=("usrloc",),
    init="init",
)

# registrar errors: (code, reason, P-Registrar-Error text)
E_TO_USER = (400, "Bad Request", "No username in To URI")
E_PARSE = (400, "Bad Request", "Message parse error")
E_INV_EXP = (400, "Bad Request", "Invalid expires param in contact")
E_PARSE_EXP = (400, "Bad Request", "Expires parse error")
E_INV_Q = (400, "Bad Request", "Invalid q param in contact")
E_PARSE_CONT = (400, "Bad Request", "Contact parse error")
E_STAR_EXP = (400, "Bad Request", "* used in contact and expires is not zero")
E_STAR_CONT = (400, "Bad Request", "* used in contact and more than 1 contact")
E_AOR_LEN = (500, "Server Internal Error", "Address Of Record too long")
E_CONTACT_LEN = (400, "Bad Request", "Contact/received too long")
E_TOO_MANY = (503, "Service Unavailable", "Too many registered contacts")
E_PATH_UNSUP = (420, "Bad Extension", "No support for found Path indicated")
E_DB = (500, "Server Internal Error", "usrloc_contact_insert failed")


class RegError(Exception):
    def __init__(self, err):
        super().__init__(err[2])
        self.err = err


class State:
    """The modparams, resolved once at start-up, and the statistics
    (`rt.apis["registrar"]`)."""

    def __init__(self, rt):
        p = rt.modparams["registrar"]
        self.p = p
        self.stats = {"accepted_regs": 0, "rejected_regs": 0}
        self.received_avp = _avp(p["received_avp"])
        self.attr_avp = _avp(p["attr_avp"])
        self.nat_flag = _flag(rt, p["nat_flag"])          # 1.x: a message flag
        if p["pn_enable"]:
            rt.log.warning("SIP push notifications (pn_enable) are not supported", "registrar")
        self.default_save = SaveFlags(
            max_contacts=p["max_contacts"],
            path=({0: "off", 1: "lazy"}.get(p["path_mode"], "strict") if p["use_path"] else None),
            path_received=bool(p["path_use_received"]))
        self.default_lookup = LookupFlags(no_branches=not p["append_branches"],
                                          method_filtering=bool(p["method_filtering"]))

    def save_flags(self, f: SaveFlags | None) -> SaveFlags:
        """save()'s flags completed by the modparams."""
        d = self.default_save
        if f is None:
            return d
        return replace(f, max_contacts=d.max_contacts if f.max_contacts is None
                       else f.max_contacts, path=f.path or d.path,
                       path_received=f.path_received or d.path_received)

    def lookup_flags(self, f: LookupFlags | None) -> LookupFlags:
        d = self.default_lookup
        if f is None:
            return d
        return replace(f, no_branches=f.no_branches or d.no_branches,
                       method_filtering=f.method_filtering or d.method_filtering)


def _avp(text):
    return bind(parse_pv_text(text), PVS) if text else None


def _flag(rt, name):
    return rt.flag_names.bit(name) if name not in (None, "", -1) else None


def init(rt):
    state = rt.apis["registrar"] = State(rt)
    rt.outgoing_hooks.append(_path_routes)
    rt.stats_groups = getattr(rt, "stats_groups", {})
    rt.stats_groups["registrar"] = state.stats


def _state(ctx) -> State:
    return ctx.rt.apis["registrar"]


def _domain(ctx, table):
    return ctx.rt.apis["usrloc"].domain(table)


# --- AORs ----------------------------------------------------------------------------------

def aor_of(ctx, uri_text: str) -> str | None:
    """The AOR of a URI as usrloc keys it: user (unescaped), `@host` with use_domain;
    realm_prefix stripped, lower case unless case_sensitive. None when there is none."""
    u = parse_uri(uri_text.strip().strip("<>")) if uri_text else None
    if u is None:
        return None
    user = unescape(u.user or "")
    if not user:
        return None
    aor = user
    if ctx.rt.apis["usrloc"].use_domain:
        host = u.host.lower()
        prefix = _state(ctx).p["realm_prefix"]
        if prefix and host.startswith(prefix.lower()) and len(host) > len(prefix):
            host = host[len(prefix):]
        aor = f"{user}@{host}"
    return aor if _state(ctx).p["case_sensitive"] else aor.lower()


def _default_aor(ctx):
    """To for REGISTER (and replies), From for other requests."""
    msg = ctx.msg
    try:
        return (msg.to if not msg.is_request or msg.method == "REGISTER" else msg.from_).uri
    except SIPError:
        return None


# --- save ----------------------------------------------------------------------------------

def save(ctx, table, flags=None, aor_text=None, tag=None):
    """Store the REGISTER's contacts and answer it with the AOR's bindings."""
    st = _state(ctx)
    flags = st.save_flags(flags)
    try:
        try:
            contacts = _save(ctx, table, flags, aor_text)
        except DBError as e:
            ctx.rt.log.error(f"save: {e}", "registrar")
            raise RegError(E_DB) from None
    except RegError as e:
        st.stats["rejected_regs"] += 1
        if not flags.no_reply:
            _reply_error(ctx, e.err)
        ctx.rt.log.info(f"save: {e}", "registrar")
        return -1
    st.stats["accepted_regs"] += 1
    if not flags.no_reply:
        headers = []
        if contacts:
            headers.append("Contact: " + ", ".join(_reply_contact(c, st) for c in contacts))
        if flags.path in ("lazy", "strict") and ctx.msg.get_all("path") and _supports_path(ctx):
            headers.append("Path: " + ", ".join(ctx.msg.get_all("path")))
        if not _reply(ctx, 200, "OK", headers):
            return -1
    return 1


def _save(ctx, table, flags, aor_text):
    msg = ctx.msg
    st = _state(ctx)
    p = st.p
    try:
        to_uri = msg.to.uri
        callid = msg.call_id
        cseq = msg.cseq[0]
        contacts = msg.contacts
        expires_hdr = msg.get("expires")
    except SIPError:
        raise RegError(E_PARSE) from None
    aor = aor_of(ctx, aor_text or to_uri)
    if aor is None:
        raise RegError(E_TO_USER)
    if len(aor) > p["max_aor_len"]:
        raise RegError(E_AOR_LEN)
    default_exp = p["default_expires"]
    if expires_hdr is not None:
        try:
            default_exp = int(expires_hdr.strip())
        except ValueError:
            raise RegError(E_PARSE_EXP) from None
    dom = _domain(ctx, table)
    if any(c.uri == "*" for c in contacts):
        if len(contacts) > 1:
            raise RegError(E_STAR_CONT)
        if expires_hdr is None or default_exp != 0:
            raise RegError(E_STAR_EXP)
        dom.delete_aor(aor)
        return []
    if flags.path == "strict" and msg.get_all("path") and not _supports_path(ctx):
        raise RegError(E_PATH_UNSUP)
    now = int(time.time())
    new = [_binding(ctx, c, aor, default_exp, flags, callid, cseq, now) for c in contacts]
    current = dom.get(aor)
    _apply(dom, current, new, flags, ctx.rt.apis["usrloc"].matching_mode)
    result = dom.get(aor)
    if flags.only_request_contacts:
        sent = {b.uri for b in new}
        result = [c for c in result if c.uri in sent]
    return result


def _binding(ctx, na: NameAddr, aor, default_exp, flags, callid, cseq, now):
    """A usrloc Contact (expires relative for now) from one Contact header value."""
    ul = ctx.rt.apis["usrloc"]
    st = _state(ctx)
    p = st.p
    msg = ctx.msg
    if len(na.uri) > p["max_contact_len"]:
        raise RegError(E_CONTACT_LEN)
    exp = na.param("expires")
    if exp is None:
        exp = default_exp
    else:
        try:
            exp = int(exp)
        except ValueError:
            raise RegError(E_INV_EXP) from None
    if exp < 0:
        raise RegError(E_INV_EXP)
    if exp:
        min_e = flags.min_expires if flags.min_expires is not None else p["min_expires"]
        max_e = flags.max_expires if flags.max_expires is not None else p["max_expires"]
        if min_e and exp < min_e:
            exp = min_e
        if max_e and exp > max_e:
            exp = max_e
    q = na.param("q")
    if q is None:
        q = p["default_q"] if p["default_q"] >= 0 else None
    else:
        try:
            q = round(float(q) * 1000)
        except ValueError:
            raise RegError(E_INV_Q) from None
        if not 0 <= q <= 1000:
            raise RegError(E_INV_Q)
    methods = None
    allow = msg.get_all("allow")
    if allow:
        methods = 0
        for m in ",".join(allow).split(","):
            if m.strip():
                methods |= ul.method_bit(m.strip())
    received = st.received_avp.get(ctx) if st.received_avp is not None else None
    cflags = ctx.bflags
    path = ", ".join(msg.get_all("path")) if flags.path and msg.get_all("path") else None
    if path and flags.path_received:
        rcv = _path_received(path)
        if rcv:
            received = rcv
            if ul.nat_flag is not None:
                cflags |= 1 << ul.nat_flag
    socket = str(ctx.socket) if ctx.socket is not None else None
    if flags.socket_header and p["sock_hdr_name"]:
        socket = (msg.get(p["sock_hdr_name"]) or socket or "").strip() or None
    nat = st.nat_flag is not None and ctx.flags >> st.nat_flag & 1
    return ul.Contact(aor=aor, uri=na.uri, expires=exp, q=q, callid=callid, cseq=cseq,
                      flags=(ul.FL_MEM if flags.memory_only else 0) | (ul.FL_NAT if nat else 0),
                      cflags=cflags,
                      user_agent=msg.get("user-agent") or "",
                      received=str(received) if received else None, path=path,
                      socket=socket, methods=methods, instance=na.param("+sip.instance"),
                      attr=_attr(ctx), last_modified=now)


def _attr(ctx):
    avp = _state(ctx).attr_avp
    v = avp.get(ctx) if avp is not None else None
    return str(v) if v is not None else None


def _path_received(path):
    try:
        first = NameAddr.parse(split_commas(path)[0])
        u = parse_uri(first.uri)
    except SIPError:
        return None
    rcv = u.param("received") if u is not None else None
    return unescape(rcv).strip('"') if rcv else None


def _matches(old, new, mode):
    if mode == 1:
        return old.uri == new.uri and old.callid == new.callid
    if isinstance(mode, str):
        a, b = parse_uri(old.uri), parse_uri(new.uri)
        return a is not None and b is not None and a.param(mode) is not None and \
            a.param(mode) == b.param(mode)
    return old.uri == new.uri


def _apply(dom, current, new, flags, default_mode):
    """Update, insert and delete bindings; RegError before any change when max_contacts
    would be exceeded (unless force-registration drops the oldest ones)."""
    mode = flags.matching_mode if flags.matching_mode is not None else default_mode
    plan = []                       # (existing or None, new binding)
    for b in new:
        old = next((c for c in current if _matches(c, b, mode)), None)
        if old is not None and old.callid == b.callid and b.cseq <= old.cseq:
            continue                # retransmission or out of order: keep what we have
        plan.append((old, b))
    max_c = flags.max_contacts
    if max_c:
        kept = [c for c in current if not any(o is c and b.expires == 0 for o, b in plan)]
        added = [b for o, b in plan if o is None and b.expires]
        excess = len(kept) + len(added) - max_c
        if excess > 0:
            if not flags.force:
                raise RegError(E_TOO_MANY)
            updated = {id(o) for o, _ in plan if o is not None}
            for c in sorted(kept, key=lambda c: c.last_modified):
                if excess <= 0:
                    break
                if id(c) not in updated:
                    dom.delete(c)
                    excess -= 1
    for old, b in plan:
        if old is None:
            if b.expires:
                b.expires += int(b.last_modified)
                dom.insert(b)
        elif b.expires == 0:
            dom.delete(old)
        else:
            for f in ("uri", "q", "callid", "cseq", "flags", "cflags", "user_agent", "received",
                      "path", "socket", "methods", "instance", "attr"):
                setattr(old, f, getattr(b, f))
            old.expires = b.expires + int(b.last_modified)
            dom.update(old)


def _supports_path(ctx):
    return any(o.strip().lower() == "path"
               for h in ctx.msg.get_all("supported") for o in h.split(","))


def _q_text(q):
    if q >= 1000:
        return "1"
    return "0" if q <= 0 else "0." + f"{q:03d}".rstrip("0")


def _reply_contact(c, st):
    text = f"<{c.uri}>"
    if c.q is not None:
        text += f";q={_q_text(c.q)}"
    text += f";expires={max(0, c.expires - int(time.time())) if c.expires else 0}"
    if c.received:
        text += f';{st.p["received_param"]}="{c.received}"'
    return text


def _reply_error(ctx, err):
    code, reason, info = err
    headers = [f"P-Registrar-Error: {info}"]
    if code == 420:
        headers += ["Unsupported: path", "Path: " + ", ".join(ctx.msg.get_all("path"))]
    retry = _state(ctx).p["retry_after"]
    if code >= 500 and retry:
        headers.append(f"Retry-After: {retry}")
    _reply(ctx, code, reason, headers)


def _reply(ctx, code, reason, headers) -> bool:
    """Reply statefully when the request has a transaction, else statelessly (signaling)."""
    if not ctx.msg.is_request:
        return True
    tm = ctx.rt.apis.get("tm")
    if tm is not None and (ctx.tx is not None or tm.find_transaction(ctx)):
        ctx.local_data.setdefault("reply_headers", []).extend(headers)
        return tm.t_reply(ctx, code, reason) > 0
    return send_local_reply(ctx, code, reason, headers=headers)


# --- lookup --------------------------------------------------------------------------------

def lookup(ctx, table, flags=None, aor_text=None):
    """Point the request at the AOR's contacts: 1 found, -1 none, -2 none allows the
    method, -3 error."""
    st = _state(ctx)
    flags = st.lookup_flags(flags)
    aor = aor_of(ctx, aor_text or ctx.ruri)
    if aor is None:
        return -3
    dom = _domain(ctx, table)
    try:
        found = _filter(ctx, dom.get(aor), flags)
    except DBError as e:
        ctx.rt.log.error(f"lookup: {e}", "registrar")
        return -3
    if isinstance(found, int):
        return found
    if flags.branch_lookup and not flags.no_branches:
        _expand_branches(ctx, dom, flags)
    to_branches = flags.to_branches_only or not ctx.msg.is_request
    if not to_branches:
        first, found = found[0], found[1:]
        _set_ruri(ctx, first)
    if not flags.no_branches or to_branches:
        for c in found:
            _add_branch(ctx, c)
    return 1


def _filter(ctx, contacts, flags):
    """The contacts lookup may use, or -1 / -2."""
    if not contacts:
        return -1
    if flags.ua_regex is not None:
        contacts = [c for c in contacts if flags.ua_regex.search(c.user_agent or "")]
        if not contacts:
            return -1
    if flags.method_filtering and ctx.msg.is_request:
        contacts = [c for c in contacts if c.allows(ctx.msg.method)]
        if not contacts:
            return -2
    return contacts


def _next_hop(c):
    """$du for a contact: the first Path URI, else its received address."""
    if c.path:
        try:
            return NameAddr.parse(split_commas(c.path)[0]).uri
        except SIPError:
            return None
    return c.received


def _set_ruri(ctx, c):
    ctx.new_ruri = c.uri
    hop = _next_hop(c)
    if hop:
        ctx.dst_uri = hop
    ctx.ruri_q = c.q
    ctx.bflags = c.cflags
    nat = _state(ctx).nat_flag
    if nat is not None and c.flags & ctx.rt.apis["usrloc"].FL_NAT:
        ctx.flags |= 1 << nat
    if c.socket:
        sock = ctx.rt.find_socket(c.socket)
        if sock is not None:
            ctx.force_socket = sock
    _note_branch(ctx, c)


def _add_branch(ctx, c):
    sock = ctx.rt.find_socket(c.socket) if c.socket else None
    ctx.branches.append(Branch(c.uri, _next_hop(c), c.q, c.path, c.cflags, sock))
    _note_branch(ctx, c)


def _note_branch(ctx, c):
    """Remember the branch's Path (sent as Route headers) and push its attributes."""
    if c.path:
        ctx.local_data.setdefault("registrar_paths", {})[c.uri] = c.path
    avp = _state(ctx).attr_avp
    if avp is not None:
        avp.set(ctx, c.attr if c.attr is not None else "")


def _expand_branches(ctx, dom, flags):
    """Branch lookup: replace each branch that is a registered AOR by its contacts."""
    keep = []
    for b in ctx.branches:
        aor = aor_of(ctx, b.uri)
        found = _filter(ctx, dom.get(aor), flags) if aor else -1
        if isinstance(found, int):
            keep.append(b)
            continue
        for c in found:
            keep.append(Branch(c.uri, _next_hop(c), c.q, c.path, c.cflags,
                               ctx.rt.find_socket(c.socket) if c.socket else None))
            _note_branch(ctx, c)
    ctx.branches = keep


def _path_routes(ctx, sock):
    """Outgoing hook: a branch to a contact registered with Path gets it as Route headers
    (before the first Route, else after the last Via)."""
    paths = ctx.local_data.get("registrar_paths")
    path = paths.get(ctx.ruri) if paths else None
    if not path:
        return []
    routes = ctx.msg.get_headers("route")
    if routes:
        return [(("before", routes[0]), f"Route: {path}")]
    return [(("after", ctx.msg.get_headers("via")[-1]), f"Route: {path}")]


# --- checks --------------------------------------------------------------------------------

def _contacts_of(ctx, table, aor_text):
    text = aor_text or _default_aor(ctx)
    aor = aor_of(ctx, text) if text else None
    return _domain(ctx, table).get(aor) if aor else None


def is_registered(ctx, table, aor_text=None, callid=None):
    found = _contacts_of(ctx, table, aor_text)
    if not found:
        return -1
    if callid and not any(c.callid == callid for c in found):
        return -1
    avp = _state(ctx).attr_avp
    if avp is not None and found[0].attr is not None:
        avp.set(ctx, found[0].attr)
    return 1


def is_contact_registered(ctx, table, aor_text=None, contact=None, callid=None):
    found = _contacts_of(ctx, table, aor_text)
    if not found:
        return -1
    if contact is None and callid is None:
        try:
            contact = ctx.msg.contacts[0].uri if ctx.msg.contacts else None
        except SIPError:
            contact = None
    for c in found:
        if (contact is None or c.uri == contact.strip().strip("<>")) and \
                (callid is None or c.callid == callid):
            return 1
    return -1


def _host_of(c):
    """The IP or host a contact is reached at: Path, else received, else Contact."""
    u = parse_uri(_next_hop(c) or c.uri)
    return u.host.strip("[]") if u is not None else None


def is_ip_registered(ctx, table, aor_text, ipvar):
    found = _contacts_of(ctx, table, aor_text)
    if not found:
        return -1
    ips = {str(v) for v in ipvar.values(ctx) if v is not None}
    return 1 if any(_host_of(c) in ips for c in found) else -1


def remove(ctx, table, aor_text, contact=None, next_hop=None, instance=None):
    """Delete the AOR's contacts (those matching contact / next hop / instance if given)."""
    from runtime.forward import resolve
    aor = aor_of(ctx, aor_text)
    dom = _domain(ctx, table)
    found = dom.get(aor) if aor else []
    if not found:
        return -1
    hop_ip = resolve(next_hop) if next_hop else None
    for c in found:
        if contact and c.uri != contact.strip().strip("<>"):
            continue
        if next_hop and resolve(_host_of(c) or "") != hop_ip:
            continue
        if instance and c.instance != instance:
            continue
        dom.delete(c)
    return 1


def add_sock_hdr(ctx, name):
    """Add a header naming the socket the request came in on (for save's socket-header)."""
    if ctx.socket is None:
        return -1
    ctx.get_edits().add_header(f"{name}: {ctx.socket}")
    return 1


__all__ = ["exports", "aor_of", "save", "lookup"]

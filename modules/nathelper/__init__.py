"""nathelper: NAT detection and the Contact/SDP fixes for UAs behind NAT.

fix_nated_contact() also changes the parsed Contact of the message, as OpenSIPS does, so a
later save() stores the public address.
"""
import base64
import ipaddress
import re

from runtime.module import (BRANCH, FAILURE, INT, ONREPLY, REQUEST, STATIC, STR, Arg, Func,
                            Module, Param)
from runtime.pv import PVS, PVError, bind, parse_pv_text, parse_uri
from runtime.sip.headers import NameAddr, SIPError

ROUTES = REQUEST | ONREPLY | FAILURE | BRANCH

# nat_uac_test: 3.x names and the old bitmask values
TESTS = {"private-contact": 1, "diff-ip-src-via": 2, "private-via": 4, "private-sdp": 8,
         "diff-port-src-via": 16, "diff-ip-src-contact": 32, "diff-port-src-contact": 64,
         "carrier-grade-nat": 128}
# RFC 1918 and RFC 6598 (shared address space); with carrier-grade-nat also RFC 6333
_PRIVATE = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12",
                                              "192.168.0.0/16", "100.64.0.0/10")]
_RFC6333 = ipaddress.ip_network("192.0.0.0/29")


def _fix_tests(value, rt):
    text = str(value).strip()
    if text.lower().startswith("0x") or text.isdigit():
        mask = int(text, 0)
        if not 0 < mask < 256:
            raise ValueError(f"bad test mask {text} (1-255)")
        return mask
    mask = 0
    for name in (p.strip().lower() for p in text.split(",") if p.strip()):
        if name not in TESTS:
            raise ValueError(f"unknown test '{name}' ({', '.join(TESTS)})")
        mask |= TESTS[name]
    if not mask & 127:
        raise ValueError("no test given")
    return mask


SDP_FLAGS = {"add-dir-active": 0x01, "rewrite-media-ip": 0x02, "add-no-rtpproxy": 0x04,
             "rewrite-origin-ip": 0x08, "rewrite-null-ips": 0x10}


def _fix_sdp_flags(value, rt):
    """3.x names (CSV) or the old bitmask."""
    text = str(value).strip()
    if re.fullmatch(r"0[xX][0-9a-fA-F]+|\d+", text):
        return int(text, 0)
    mask = 0
    for name in (p.strip().lower() for p in text.split(",") if p.strip()):
        if name not in SDP_FLAGS:
            raise ValueError(f"unknown flag '{name}' ({', '.join(SDP_FLAGS)})")
        mask |= SDP_FLAGS[name]
    return mask


def _fix_contact_flags(value, rt):
    flags = {f.strip() for f in str(value).split(",") if f.strip()}
    if not flags <= {"preserve-uri"}:
        raise ValueError(f"unknown flag '{sorted(flags - {'preserve-uri'})[0]}' (preserve-uri)")
    return frozenset(flags)


def _avp_spec(value):
    if value and not str(value).startswith("$avp("):
        return f"'{value}' is not an AVP ($avp(name))"
    return None


_RTPPROXY_PARAMS = ("rtpproxy_sock", "rtpproxy_disable_tout", "rtpproxy_tout",
                    "rtpproxy_retr", "rtpproxy_disable")

exports = Module(
    name="nathelper",
    params=[
        Param("natping_interval", int, 0), Param("ping_nated_only", int, 0),
        Param("natping_partitions", int, 1), Param("natping_processes", int, 1),
        Param("natping_socket", str, None), Param("received_avp", str, None, check=_avp_spec),
        Param("force_socket", str, None), Param("sipping_bflag", (int, str), None),
        Param("remove_on_timeout_bflag", (int, str), None),
        Param("sipping_latency_flag", (int, str), None),
        Param("sipping_ignore_rpl_codes", str, None),
        Param("sipping_from", str, "sip:pinger@localhost"),
        Param("sipping_method", str, "OPTIONS"),
        Param("nortpproxy_str", str, "a=nortpproxy:yes\r\n"), Param("natping_tcp", int, 0),
        Param("oldip_skip", str, ""), Param("ping_threshold", int, 3),
        Param("max_pings_lost", int, 3), Param("cluster_id", int, 0),
        Param("cluster_sharing_tag", str, None),
        # 1.x, when nathelper also drove rtpproxy (now the rtpproxy module)
        *[Param(n, (int, str), None) for n in _RTPPROXY_PARAMS],
    ],
    functions=[
        Func("nat_uac_test", "nat_uac_test", [Arg(STR, fixup=_fix_tests, name="flags")],
             ROUTES),
        Func("fix_nated_contact", "fix_nated_contact",
             [Arg(STR, optional=True, name="uri_params"),
              Arg(STATIC, optional=True, fixup=_fix_contact_flags, name="flags")], ROUTES),
        Func("restore_nated_ruri", "restore_nated_ruri", routes=REQUEST | BRANCH),
        Func("fix_nated_register", "fix_nated_register", routes=REQUEST),
        Func("add_rcv_param", "add_rcv_param", [Arg(INT, optional=True)], REQUEST),
        Func("fix_nated_sdp", "fix_nated_sdp",
             [Arg(STR, fixup=_fix_sdp_flags, name="flags"),
              Arg(STR, optional=True, name="ip_address"),
              Arg(STR, optional=True, name="sdp_fields")], ROUTES),
    ],
    init="init",
)

_state: dict = {}


def init(rt):
    p = rt.modparams["nathelper"]
    received = None
    if p["received_avp"]:
        try:
            received = bind(parse_pv_text(p["received_avp"]), PVS)
        except PVError as e:
            raise ValueError(f"nathelper: received_avp: {e}") from None
    _state.update(params=p, received=received)
    for name in _RTPPROXY_PARAMS:
        if p[name] is not None:
            rt.log.warning(f"modparam '{name}' ignored: rtpproxy control is in the rtpproxy "
                           "module", "nathelper")
    if p["natping_interval"]:
        rt.log.warning("NAT pinging (natping_interval) is not implemented: no keepalives "
                       "are sent", "nathelper")


# --- helpers -------------------------------------------------------------------------------

def _ip(text):
    try:
        return ipaddress.ip_address((text or "").strip("[]"))
    except ValueError:
        return None


def _private(host, cgn):
    ip = _ip(host)
    if ip is None or ip.version != 4:
        return False
    return any(ip in n for n in _PRIVATE) or (cgn and ip in _RFC6333)


def _contact_uri(ctx):
    try:
        contacts = ctx.msg.contacts
    except SIPError:
        return None
    if not contacts or contacts[0].uri == "*":
        return None
    return parse_uri(contacts[0].uri)


def _sdp_ips(body: bytes):
    """The addresses of the c= lines of an SDP body."""
    text = body.decode("utf-8", "replace")
    return re.findall(r"^c=IN IP[46] ([^\s/]+)", text, re.M)


def _src_uri(ctx):
    host = f"[{ctx.src_ip}]" if ":" in ctx.src_ip else ctx.src_ip
    uri = f"sip:{host}:{ctx.src_port}"
    return uri if ctx.proto == "udp" else f"{uri};transport={ctx.proto}"


# --- nat_uac_test ----------------------------------------------------------------------------

def nat_uac_test(ctx, mask):
    """True if any of the tests in `mask` says the UA is behind NAT."""
    msg = ctx.msg
    cgn = bool(mask & 128)
    try:
        via = msg.via1
    except SIPError:
        via = None
    if mask & 2 and via is not None and (_ip(via.host) is None or
                                         _ip(via.host) != _ip(ctx.src_ip)):
        return 1
    if mask & 16 and via is not None and (via.port or 5060) != ctx.src_port:
        return 1
    if mask & 4 and via is not None and _private(via.host, cgn):
        return 1
    if mask & (1 | 32 | 64):
        u = _contact_uri(ctx)
        if u is not None:
            if mask & 1 and _private(u.host, cgn):
                return 1
            if mask & 32 and _ip(u.host) != _ip(ctx.src_ip):
                return 1
            if mask & 64 and (u.port or 5060) != ctx.src_port:
                return 1
    if mask & 8 and msg.body and any(_private(ip, cgn) for ip in _sdp_ips(msg.body)):
        return 1
    return -1


# --- Contact -------------------------------------------------------------------------------

def _contact_headers(ctx):
    """[(Header, [NameAddr])] as changed so far by this module (shared by the fixes)."""
    cached = ctx.local_data.get("nathelper_contacts")
    if cached is None:
        cached = [(h, NameAddr.parse_list(h.value)) for h in ctx.msg.get_headers("contact")]
        ctx.local_data["nathelper_contacts"] = cached
    return cached


def _write(ctx, hdr, names):
    ctx.get_edits().replace_header(hdr, f"{hdr.name}: {', '.join(str(n) for n in names)}")


def fix_nated_contact(ctx, uri_params=None, flags=None):
    """Rewrite the first Contact URI's host:port to where the message came from (with
    preserve-uri, the old one is kept in an 'org' URI parameter for restore_nated_ruri)."""
    try:
        headers = _contact_headers(ctx)
        first = ctx.msg.contacts[0] if headers else None
    except SIPError:
        return -1
    if first is None or first.uri == "*":
        return -1
    u = parse_uri(headers[0][1][0].uri)
    if u is None or u.is_tel:
        return -1
    host = f"[{ctx.src_ip}]" if ":" in ctx.src_ip else ctx.src_ip
    params = list(u.params)
    if flags and "preserve-uri" in flags:
        org = base64.urlsafe_b64encode(u.hostport.encode()).decode().rstrip("=")
        params.append(("org", org))
    new = str(u.replace(host=host, port=ctx.src_port, params=params)) + (uri_params or "")
    hdr, names = headers[0]
    names[0].uri = new
    _write(ctx, hdr, names)
    first.uri = new               # the parsed Contact, as save() and $ct see it
    first._uri = None
    return 1


def restore_nated_ruri(ctx):
    """The R-URI (without 'org') becomes $du; its host:port go back to what 'org' says."""
    u = parse_uri(ctx.ruri)
    org = u.param("org") if u is not None else None
    if not org:
        return -1
    try:
        hostport = base64.urlsafe_b64decode(org + "=" * (-len(org) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return -1
    m = re.fullmatch(r"(\[[^\]]+\]|[^:]+)(?::(\d+))?", hostport)
    if m is None:
        return -1
    u = u.replace(params=[(k, v) for k, v in u.params if k.lower() != "org"])
    ctx.dst_uri = str(u)
    ctx.new_ruri = str(u.replace(host=m.group(1), port=int(m.group(2)) if m.group(2) else None))
    return 1


def fix_nated_register(ctx):
    """Keep the source address in received_avp, for save() to store as 'received'."""
    pv = _state["received"]
    if pv is None:
        ctx.rt.log.error("fix_nated_register(): modparam received_avp is not set", "nathelper")
        return -1
    pv.set(ctx, _src_uri(ctx))
    return 1


def add_rcv_param(ctx, to_uri=None):
    """Add ;received="<source>" to every Contact (to the URI when the flag is non-zero)."""
    try:
        headers = _contact_headers(ctx)
    except SIPError:
        return -1
    if not headers:
        return -1
    rcv = _src_uri(ctx)
    for hdr, names in headers:
        for n in names:
            if n.uri == "*":
                continue
            if to_uri:
                n.uri += f";received={rcv.replace(';', '%3b')}"
                n.angle = True
            else:
                n.params.append(("received", f'"{rcv}"'))
        _write(ctx, hdr, names)
    return 1


# --- SDP -----------------------------------------------------------------------------------

_NULL_IPS = ("0.0.0.0", "::")


def fix_nated_sdp(ctx, flags, ip=None, sdp_fields=None):
    """0x01 a=direction:active, 0x02 rewrite c= IPs, 0x04 a=nortpproxy:yes, 0x08 rewrite
    the o= IP, 0x10 rewrite null IPs too; `sdp_fields` appended."""
    edits = ctx.edits
    body = edits.new_body() if edits is not None and edits.body_changed else ctx.msg.body
    if not body:
        return -1
    text = body.decode("utf-8", "surrogateescape")
    new_ip = ip or ctx.src_ip
    skip = _state["params"]["oldip_skip"] or ""
    lines = text.split("\r\n") if "\r\n" in text else text.split("\n")
    tail = lines.pop() if lines and lines[-1] == "" else None
    out, olds = [], []
    for line in lines:
        m, kind = None, ""
        if flags & 0x02 and line.startswith("c=IN IP"):
            m = re.match(r"(c=IN IP)([46]) (\S+?)(/.*)?$", line)
            kind = "c"
        elif flags & 0x08 and line.startswith("o="):
            m = re.match(r"(o=\S+ \S+ \S+ IN IP)([46]) (\S+)()$", line)
            kind = "o"
        if m and (flags & 0x10 or m.group(3) not in _NULL_IPS):
            old = m.group(3)
            line = f"{m.group(1)}{'6' if ':' in new_ip else '4'} {new_ip}{m.group(4) or ''}"
            if kind not in skip and old != new_ip:
                olds.append(f"a=old{kind}ip:{old}")
        out.append(line)
    extra = list(dict.fromkeys(olds))
    if flags & 0x01:
        extra.append("a=direction:active")
    if flags & 0x04:
        extra.append(_state["params"]["nortpproxy_str"].strip("\r\n"))
    if sdp_fields:
        extra.extend(f for f in sdp_fields.replace("\r\n", "\n").split("\n") if f)
    out.extend(extra)  # at the end of the body, as OpenSIPS anchors them
    eol = "\r\n" if "\r\n" in text else "\n"
    new = eol.join(out) + (eol if tail is not None else "")
    ctx.get_edits().set_body(new.encode("utf-8", "surrogateescape"))
    return 1

"""force_rtp_proxy: one RTPProxy command per proxied media stream of an SDP body, and the
body rewritten from the answers (m= port, c= address, a=rtcp, o= and the session c= on
request), as OpenSIPS's rtpproxy module does it.

`rewrite(body, args, exchange)` works on text and returns the new body; `exchange(cmd)`
sends one command (opts and arguments, no cookie) and returns the reply line, or None.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

# transports rtpproxy can relay; the RTP ones carry payload types in m=
_PROTOS = {"udp": False, "udptl": False, "rtp/avp": True, "rtp/avpf": True, "rtp/savp": True,
           "rtp/savpf": True, "dccp/tls/rtp/savp": True, "dccp/tls/rtp/savpf": True,
           "udp/tls/rtp/savp": True, "udp/tls/rtp/savpf": True, "udp/bfcp": False}
CAP_REPACK, CAP_CODECS, CAP_TTL = "20071116", "20081224", "20150420"


class RtppError(Exception):
    """The body cannot be proxied (the function returns -1); the text says why."""


@dataclass
class Args:
    flags: str = ""
    ip: str | None = None           # second argument: the address to put in the SDP
    call_id: str = ""
    from_tag: str = ""
    to_tag: str = ""
    offer: bool = True
    is_request: bool = True
    src_ip: str = "127.0.0.1"       # where the message came from
    local_ip: str = "127.0.0.1"     # the socket it came in on
    nortpproxy: str = "a=nortpproxy:yes"
    caps: set = field(default_factory=set)
    adv_address: str | None = None
    notify: tuple | None = None     # (socket, tag) for timeout notifications


@dataclass
class Options:
    opts: str = ""                  # after U/L: A I E S and unknown letters
    asymmetric: bool = False
    lookup: bool = False
    keep_body: bool = False
    force: bool = False
    real: bool = False
    commip: bool = False
    orgip: bool = False
    notify: bool = False
    repacketize: str = ""
    ttl: str = ""
    unknown: list = field(default_factory=list)


def parse_flags(text: str | None) -> Options:
    o = Options()
    s = text or ""
    i = 0
    while i < len(s):
        ch = s[i]
        low = ch.lower()
        if low == "a":
            o.opts += "A"
            o.asymmetric = o.real = True
        elif low == "d":
            while i + 1 < len(s) and s[i + 1].isdigit():
                i += 1
        elif low in ("i", "e"):
            o.opts += low.upper()
        elif low == "l":
            o.lookup = True
        elif low == "k":
            o.keep_body = True
        elif low == "f":
            o.force = True
        elif low == "r":
            o.real = True
        elif low == "c":
            o.commip = True
        elif low == "o":
            o.orgip = True
        elif low == "n":
            o.notify = True
            if i + 1 < len(s) and s[i + 1] == "<":
                end = s.find(">", i)
                i = end if end > 0 else len(s)
        elif low in ("w", "s"):
            o.opts += "S"
        elif low == "t":
            o.ttl += ch
            while i + 1 < len(s) and s[i + 1].isdigit():
                i += 1
                o.ttl += s[i]
        elif low == "z":
            o.repacketize += "Z"
            while i + 1 < len(s) and s[i + 1].isdigit():
                i += 1
                o.repacketize += s[i]
        else:
            o.unknown.append(ch)
            o.opts += ch
        i += 1
    return o


def _family(ip: str) -> int:
    try:
        return ipaddress.ip_address(ip.strip("[]")).version
    except ValueError:
        return 4


def _is_null(ip: str, fam: int) -> bool:
    if fam == 6:
        return all(ch in "0:" for ch in ip)
    return ip == "0.0.0.0"


_C_LINE = re.compile(r"^c=IN IP([46]) ([^\s/]+)(\S*)")
_O_LINE = re.compile(r"^(o=\S+ \S+ \S+ IN IP)([46]) (\S+)")
_M_LINE = re.compile(r"^m=(\S+) (\d+)(/\d+)? (\S+)(.*)$")


class _Line:
    __slots__ = ("text", "eol")

    def __init__(self, text, eol):
        self.text, self.eol = text, eol


def _split(body: str) -> list[_Line]:
    out = []
    for raw in body.splitlines(keepends=True):
        stripped = raw.rstrip("\r\n")
        out.append(_Line(stripped, raw[len(stripped):]))
    return out


def has_marker(body: str, marker: str) -> bool:
    if not marker:
        return False
    return any(line.startswith(marker) for line in body.splitlines())


def _set_c(line: _Line, old_fam: int, new_ip: str, new_fam: int) -> None:
    m = _C_LINE.match(line.text)
    if not m:
        return
    old_ip = m.group(2)
    if old_fam == new_fam and _is_null(old_ip, old_fam):
        return
    if old_ip == new_ip and old_fam == new_fam:
        return
    line.text = f"c=IN IP{new_fam} {new_ip}{m.group(3)}" + line.text[m.end():]


def _set_o(line: _Line, new_ip: str, new_fam: int) -> None:
    m = _O_LINE.match(line.text)
    if not m:
        return
    old_fam, old_ip = int(m.group(2)), m.group(3)
    if old_fam == new_fam and _is_null(old_ip, old_fam):
        return
    if old_ip == new_ip and old_fam == new_fam:
        return
    line.text = f"{m.group(1)}{new_fam} {new_ip}" + line.text[m.end():]


def rewrite(body: str, args: Args, exchange, on_reply=None) -> str:
    """The body with every proxied stream going through RTPProxy. Raises RtppError."""
    o = parse_flags(args.flags)
    from_tag, to_tag = args.from_tag, args.to_tag or ""
    create = args.offer
    if o.lookup:
        if not to_tag:
            to_tag = "dummy"
        create = False
        if args.offer:
            from_tag, to_tag = to_tag, from_tag
    elif (not args.is_request and args.offer) or (args.is_request and not args.offer):
        if not to_tag:
            raise RtppError("can't get To tag")
        from_tag, to_tag = to_tag, from_tag
    proxied = has_marker(body, args.nortpproxy)
    if proxied and not o.force:
        raise RtppError("the SDP was already proxied (nortpproxy marker)")
    lines = _split(body)
    starts = [i for i, ln in enumerate(lines) if ln.text.startswith("v=")]
    if not starts:
        raise RtppError("no sessions in SDP")
    bounds = list(zip(starts, starts[1:] + [len(lines)]))
    medianum = 0
    command = ("U" if create else "L") + o.opts
    for s_start, s_end in bounds:
        o_idx = next((i for i in range(s_start, s_end) if lines[i].text.startswith("o=")), None)
        if o_idx is None:
            raise RtppError("no o= in session")
        m_idxs = [i for i in range(o_idx, s_end) if lines[i].text.startswith("m=")]
        if not m_idxs:
            raise RtppError("no m= in session")
        c_session = next((i for i in range(o_idx, m_idxs[0])
                          if lines[i].text.startswith("c=")), None)
        c_session_altered = False
        o_pending = o_idx if o.orgip else None
        for k, m_idx in enumerate(m_idxs):
            m_end = m_idxs[k + 1] if k + 1 < len(m_idxs) else s_end
            mm = _M_LINE.match(lines[m_idx].text)
            if not mm:
                raise RtppError("can't extract media port from the message")
            proto = mm.group(4).lower()
            if proto not in _PROTOS:
                continue  # a transport rtpproxy cannot relay: left alone
            medianum += 1
            old_port = mm.group(2)
            if old_port == "0":
                continue
            c_media = next((i for i in range(m_idx, m_end)
                            if lines[i].text.startswith("c=")), None)
            c_idx = c_media if c_media is not None else c_session
            if c_idx is None:
                raise RtppError("can't find media IP in the message")
            cm = _C_LINE.match(lines[c_idx].text)
            if not cm:
                raise RtppError("can't extract media IP from the message")
            old_fam, old_ip = int(cm.group(1)), cm.group(2)
            if o.asymmetric or o.real:
                send_ip, send_fam = old_ip, old_fam
            else:
                send_ip, send_fam = args.src_ip, _family(args.src_ip)
            rtcp_idx = next((i for i in range(m_idx, m_end)
                             if lines[i].text.startswith("a=rtcp:")), None)
            opts = command + ("6" if send_fam == 6 else "")
            extra = ""
            if o.repacketize and CAP_REPACK in args.caps:
                extra += o.repacketize
            payloads = mm.group(5).split() if _PROTOS[proto] else []
            if payloads and CAP_CODECS in args.caps:
                extra += "c" + ",".join(p for p in payloads if p.isdigit())
            if o.ttl and CAP_TTL in args.caps:
                extra += o.ttl
            cmd = f"{opts}{extra} {args.call_id} {send_ip} {old_port} {from_tag};{medianum}"
            if to_tag:
                cmd += f" {to_tag};{medianum}"
            if args.notify and create and o.notify:
                cmd += f" {args.notify[0]} {args.notify[1]}"
            reply = exchange(cmd, not create)
            if reply is None:
                raise RtppError("no reply from rtp proxy")
            argv = reply.split()
            if not argv:
                raise RtppError("no reply from rtp proxy")
            if argv[0].startswith("E"):
                raise RtppError(f"unhandled rtpproxy error: {argv[0][1:]}")
            try:
                port = int(argv[0])
            except ValueError:
                raise RtppError(f"incorrect port {argv[0]} in reply from rtp proxy") from None
            if port <= 0 or port > 65535:
                raise RtppError("" if port == 0 and o.lookup else
                                f"incorrect port {port} in reply from rtp proxy")
            new_fam = 6 if len(argv) >= 3 and argv[2].startswith("6") else 4
            if _is_null(old_ip, old_fam):
                new_ip = "::" if new_fam == 6 else "0.0.0.0"
            elif args.ip:
                new_ip = args.ip
            elif args.adv_address:
                new_ip = args.adv_address
            elif len(argv) >= 2:
                new_ip = argv[1]
            else:
                new_ip, new_fam = args.local_ip, _family(args.local_ip)
            if on_reply is not None:
                on_reply(new_ip, port)
            if o.keep_body:
                continue
            mline = lines[m_idx]
            mline.text = mline.text[:mm.start(2)] + str(port) + mline.text[mm.end(2):]
            if rtcp_idx is not None:
                rl = lines[rtcp_idx]
                rl.text = f"a=rtcp:{port + 1} IN IP{new_fam} {new_ip}"
            if c_media is not None or not c_session_altered:
                _set_c(lines[c_idx], old_fam, new_ip, new_fam)
                if c_media is None:
                    c_session_altered = True
            if o.commip and c_session is not None and not c_session_altered:
                sm = _C_LINE.match(lines[c_session].text)
                if sm:
                    _set_c(lines[c_session], int(sm.group(1)), new_ip, new_fam)
                c_session_altered = True
            if o_pending is not None:
                _set_o(lines[o_pending], new_ip, new_fam)
                o_pending = None
    out = "".join(ln.text + ln.eol for ln in lines)
    if not proxied and args.nortpproxy and not o.keep_body:
        eol = "\r\n" if "\r\n" in body else "\n"
        if out and not out.endswith(("\r\n", "\n")):
            out += eol
        out += args.nortpproxy + eol
    return out

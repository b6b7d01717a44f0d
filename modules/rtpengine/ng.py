"""The rtpengine "ng" command dictionary, built from a function's flags string the way the
OpenSIPS module passes it to the daemon.

Flags are space-separated tokens, `token` or `key=value`. The ones OpenSIPS interprets
itself become protocol fields (transport-protocol, direction, replace, rtcp-mux, ICE,
via-branch, call-id/from-tag/to-tag overrides, force-answer...); any other bare token goes
into the "flags" list and any other key=value into the dictionary, blindly, for the daemon
to interpret. `codec-<verb>=<codecs>` becomes the "codec" dictionary the daemon reads.
"""
from __future__ import annotations

import ipaddress
import re

OFFER, ANSWER, DELETE = "offer", "answer", "delete"
START_RECORDING, STOP_RECORDING, QUERY = "start recording", "stop recording", "query"
PLAY_MEDIA, STOP_MEDIA = "play media", "stop media"
BLOCK_MEDIA, UNBLOCK_MEDIA = "block media", "unblock media"
BLOCK_DTMF, UNBLOCK_DTMF = "block DTMF", "unblock DTMF"
START_FORWARD, STOP_FORWARD = "start forwarding", "stop forwarding"
PLAY_DTMF = "play DTMF"

_TRANSPORTS = {0: "RTP/AVP", 1: "RTP/SAVP", 2: "RTP/AVPF", 3: "RTP/SAVPF",
               4: "UDP/TLS/RTP/SAVP", 5: "UDP/TLS/RTP/SAVPF"}
_EXPLICIT_TRANSPORTS = {"RTP/AVP": 0x100, "RTP/SAVP": 0x101, "RTP/AVPF": 0x102,
                        "RTP/SAVPF": 0x103, "UDP/TLS/RTP/SAVP": 0x104,
                        "UDP/TLS/RTP/SAVPF": 0x105}
_RTCP_MUX = {"rtcp-mux-demux": "demux", "rtcp-mux-offer": "offer", "rtcp-mux-reject": "reject",
             "rtcp-mux-accept": "accept", "rtcp-mux-require": "require"}
_CODEC_VERBS = ("strip", "mask", "transcode", "offer", "except", "set", "accept", "consume")


class FlagError(ValueError):
    pass


class Parsed:
    """What parse_flags() found besides the dictionary entries."""

    def __init__(self, op):
        self.op = op
        self.via = 0                  # 1, 2, 3 (auto), -1 (extra_id_pv)
        self.to = op != DELETE        # send the To tag
        self.transport = 0
        self.call_id = None
        self.from_tag = None
        self.to_tag = None
        self.flags: list = []
        self.direction: list = []
        self.replace: list = []
        self.rtcp_mux: list = []
        self.codec: dict = {}
        self.extra: dict = {}         # key=value items, in order


def parse_flags(text: str | None, op: str) -> Parsed:
    p = Parsed(op)
    sdp_op = op in (OFFER, ANSWER)
    in_iface = out_iface = None
    for item in (text or "").split(" "):
        if not item:
            continue
        key, eq, val = item.partition("=")
        value = val if eq else None
        if key == "ICE":
            if value is None:
                raise FlagError(f"error processing flag `{key}': missing value")
            if value not in ("force", "force-relay", "remove"):
                raise FlagError(f"error processing flag `{key}' (value '{value}'): "
                                f"invalid value")
            p.extra["ICE"] = value
        elif key == "RTP" and value is None:
            p.transport = (p.transport | 0x100) & ~0x001
        elif key == "AVP" and value is None:
            p.transport = (p.transport | 0x100) & ~0x002
        elif key == "SRTP" and value is None:
            p.transport |= 0x101
        elif key == "AVPF" and value is None:
            p.transport |= 0x102
        elif key in _EXPLICIT_TRANSPORTS and value is None:
            p.transport = _EXPLICIT_TRANSPORTS[key]
        elif key in ("callid", "call-id") and (value is not None or key == "call-id"):
            if value is None:
                raise FlagError(f"error processing flag `{key}': missing value")
            p.call_id = value
        elif key == "to-tag":
            if value:
                p.to_tag = value
            p.to = True
        elif key == "from-tag":
            if value is None:
                raise FlagError(f"error processing flag `{key}': missing value")
            p.from_tag = value
        elif key == "internal" and value is None:
            in_iface = key
        elif key == "external" and value is None:
            out_iface = key
        elif key == "in-iface":
            in_iface = value
        elif key == "out-iface":
            out_iface = value
        elif key == "via-branch":
            if value is None:
                raise FlagError(f"error processing flag `{key}': missing value")
            if value[:1] in ("1", "2"):
                p.via = int(value[0])
            elif value == "auto":
                p.via = 3
            elif value == "extra":
                p.via = -1
            else:
                raise FlagError(f"error processing flag `{key}' (value '{value}'): "
                                f"invalid value")
        elif key == "repacketize":
            if value is None:
                raise FlagError(f"error processing flag `{key}': missing value")
            digits = re.match(r"\d*", value).group()
            n = int(digits) if digits else 0
            if not n:
                raise FlagError(f"error processing flag `{key}' (value '{value}'): "
                                f"invalid value")
            p.extra["repacketize"] = n
        elif key == "force-answer" and value is None:
            if p.op != OFFER:
                raise FlagError(f"error processing flag `{key}': cannot force answer in "
                                f"non-offer command")
            p.op = ANSWER
        elif key == "delete-delay":
            try:
                n = int(value or "")
            except ValueError:
                n = 0
            if not n:
                raise FlagError(f"error processing flag `{key}' (value '{value}'): "
                                f"invalid value")
            p.extra["delete-delay"] = n
        elif key == "media-address" and value is None:
            raise FlagError(f"error processing flag `{key}': missing value")
        elif key == "replace-origin" and value is None:
            if sdp_op:
                p.replace.append("origin")
        elif key == "replace-session-connection" and value is None:
            if sdp_op:
                p.replace.append("session-connection")
        elif key == "address-family":
            if value is None:
                raise FlagError(f"error processing flag `{key}': missing value")
            if value not in ("IP4", "IP6"):
                raise FlagError(f"error processing flag `{key}' (value '{value}'): "
                                f"invalid value")
            p.extra["address family"] = value
        elif key in _RTCP_MUX and value is None:
            p.rtcp_mux.append(_RTCP_MUX[key])
        elif key.startswith("codec-") and key[6:] in _CODEC_VERBS and value is not None:
            p.codec.setdefault(key[6:], []).extend(c for c in value.split(",") if c)
        elif value is None:
            p.flags.append(key)
        else:
            p.extra[key] = value
    if in_iface and out_iface:
        p.direction = [in_iface, out_iface]
    elif in_iface:
        raise FlagError("in-iface value without out-iface")
    elif out_iface:
        raise FlagError("out-iface value without in-iface")
    return p


def ip_family(ip: str) -> str:
    try:
        return "IP6" if ipaddress.ip_address(ip.strip("[]")).version == 6 else "IP4"
    except ValueError:
        return "?"


def build(op: str, flags: str | None, *, is_request: bool, call_id: str, from_tag: str,
          to_tag: str | None, src_ip: str, sdp: bytes | None = None, via_branch=None,
          extra: dict | None = None):
    """(command dictionary, operation actually used). `via_branch(n)` -> the branch of Via n
    (1, 2) or of extra_id_pv (-1), or None. Raises FlagError."""
    p = parse_flags(flags, op)
    op = p.op
    d: dict = {}
    if extra:
        d.update(extra)
    if op in (OFFER, ANSWER):
        d["sdp"] = sdp if sdp is not None else b""
    call_id = p.call_id or call_id
    if not call_id:
        raise FlagError("can't get Call-Id field")
    to_tag = p.to_tag or to_tag or ""
    from_tag = p.from_tag or from_tag
    if not from_tag:
        raise FlagError("can't get From tag")
    d.update(p.extra)
    if p.direction:
        d["direction"] = p.direction
    if p.flags:
        d["flags"] = p.flags
    if p.replace:
        d["replace"] = p.replace
    if p.transport & 0x100:
        d["transport-protocol"] = _TRANSPORTS[p.transport & 0x007]
    if p.rtcp_mux:
        d["rtcp-mux"] = p.rtcp_mux
    if p.codec:
        d["codec"] = p.codec
    d["call-id"] = call_id
    if p.via:
        n = p.via
        if n == 3:
            n = 1 if is_request else 2
        branch = via_branch(n) if via_branch is not None else None
        if not branch:
            raise FlagError("can't get Via branch/extra ID")
        d["via-branch"] = branch
    d["received-from"] = [ip_family(src_ip), src_ip]
    if (is_request and op != ANSWER) or (not is_request and op in (DELETE, ANSWER, STOP_MEDIA)):
        d["from-tag"] = from_tag
        if op not in (PLAY_MEDIA, STOP_MEDIA) and p.to and to_tag:
            d["to-tag"] = to_tag
    else:
        if not to_tag:
            raise FlagError("No to-tag present")
        d["from-tag"] = to_tag
        d["to-tag"] = from_tag
    d["command"] = op
    return d, op

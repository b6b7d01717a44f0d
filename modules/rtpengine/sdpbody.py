"""The SDP of a message as it will be sent (earlier edits included), and replacing it:
the whole body, or the application/sdp part of a multipart body."""
from __future__ import annotations

import re

_BOUNDARY = re.compile(r'boundary\s*=\s*(?:"([^"]+)"|([^;\s]+))', re.I)


def current_body(ctx) -> bytes:
    edits = ctx.edits
    if edits is not None and edits.body_changed:
        return edits.new_body()
    return ctx.msg.body or b""


def sdp_of(ctx):
    """(sdp bytes, where) or (None, None). `where` is "all" or (start, end) in the body."""
    body = current_body(ctx)
    if not body:
        return None, None
    ct = (ctx.msg.content_type or "").strip().lower()
    if not ct.startswith("multipart/"):
        if ct and not ct.startswith("application/sdp"):
            return None, None
        return body, "all"
    m = _BOUNDARY.search(ctx.msg.content_type or "")
    if not m:
        return None, None
    part = find_part(body, (m.group(1) or m.group(2)).encode(), b"application/sdp")
    if part is None:
        return None, None
    start, end = part
    return body[start:end], (start, end)


def find_part(body: bytes, boundary: bytes, mime: bytes):
    """(start, end) of the content of the first part of type `mime`."""
    delim = b"--" + boundary
    pos = body.find(delim)
    while pos >= 0:
        line_end = body.find(b"\n", pos)
        if line_end < 0:
            return None
        nxt = body.find(delim, line_end)
        if nxt < 0:
            return None
        part = body[line_end + 1:nxt]
        hdr_end = part.find(b"\r\n\r\n")
        sep = 4
        if hdr_end < 0:
            hdr_end, sep = part.find(b"\n\n"), 2
        if hdr_end >= 0:
            headers = part[:hdr_end].lower()
            if re.search(rb"^content-type\s*:\s*" + re.escape(mime), headers, re.M):
                start = line_end + 1 + hdr_end + sep
                end = nxt
                if body[end - 2:end] == b"\r\n":
                    end -= 2
                elif body[end - 1:end] == b"\n":
                    end -= 1
                return start, end
        pos = nxt
        if body[nxt + len(delim):nxt + len(delim) + 2] == b"--":
            return None
    return None


def replace_sdp(ctx, where, new: bytes):
    body = current_body(ctx)
    edits = ctx.get_edits()
    if where == "all" or where is None:
        edits.set_body(new)
    else:
        start, end = where
        edits.set_body(body[:start] + new + body[end:])

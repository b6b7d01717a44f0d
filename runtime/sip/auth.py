"""Digest credentials (RFC 2617 / RFC 7616) as found in Authorization headers."""
from __future__ import annotations

import re

_PARAM_RE = re.compile(r'\s*([A-Za-z0-9_\-]+)\s*=\s*("((?:[^"\\]|\\.)*)"|[^\s,]*)\s*(?:,|$)')


def parse_digest(value: str) -> dict | None:
    """`Digest username="a", realm="b", ...` -> {'username': 'a', 'realm': 'b', ...}
    (names lowercased, quotes removed); None when it is not Digest or is malformed."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        return None
    out = {}
    pos = 0
    rest = rest.strip()
    while pos < len(rest):
        m = _PARAM_RE.match(rest, pos)
        if m is None:
            return None
        name = m.group(1).lower()
        val = m.group(3) if m.group(3) is not None else m.group(2)
        if m.group(3) is not None:
            val = re.sub(r"\\(.)", r"\1", val)
        out[name] = val
        pos = m.end()
    return out

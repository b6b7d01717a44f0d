"""Accounting records as OpenSIPS writes them: the core fields of a request and its reply,
the syslog line (`ACC: transaction answered: timestamp=...;method=...;...`) and the rows of
the `acc` / `missed_calls` tables."""
from __future__ import annotations

import time

from runtime.pv import PVS, PVError, bind, parse_pv_text
from runtime.sip.headers import SIPError

ANSWERED = "ACC: transaction answered: "
MISSED = "ACC: call missed: "
REQUEST = "ACC: request accounted: "
ENDED = "ACC: call ended: "

# reason phrases for codes given without one (OpenSIPS error_text)
_REASONS = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 200: "OK", 202: "Accepted", 300: "Multiple Choices",
    301: "Moved Permanently", 302: "Moved Temporarily", 400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    407: "Proxy Authentication Required", 408: "Request Timeout", 480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist", 483: "Too Many Hops", 484: "Address Incomplete",
    486: "Busy Here", 487: "Request Terminated", 488: "Not Acceptable Here",
    500: "Server Internal Error", 501: "Not Implemented", 503: "Service Unavailable",
    504: "Server Time-out", 600: "Busy Everywhere", 603: "Decline",
}


def reason_for(code: int) -> str:
    return _REASONS.get(code, "Unknown Reply" if code else "")


def parse_comment(comment: str) -> tuple[str, str]:
    """acc_log_request("404 Not Found") -> ('404', 'Not Found'); without a leading code the
    code is empty and the comment is the reason."""
    text = comment or ""
    if len(text) >= 3 and text[:3].isdigit():
        code, reason = text[:3], text[3:].strip()
        return code, reason or reason_for(int(code))
    return "", text


def core_fields(req, to_tag: str | None, code, reason: str, upstream=False) -> list:
    """method, from_tag, to_tag, call_id, code, reason (tags swapped for upstream requests)."""
    try:
        from_tag = req.from_.tag or ""
    except SIPError:
        from_tag = ""
    try:
        call_id = req.call_id or ""
    except SIPError:
        call_id = ""
    to_tag = to_tag or ""
    if upstream:
        from_tag, to_tag = to_tag, from_tag
    return [("method", req.method), ("from_tag", from_tag), ("to_tag", to_tag),
            ("call_id", call_id), ("code", str(code)), ("reason", reason)]


def log_line(text: str, fields, ts: float | None = None, prefix=()) -> str:
    """`<text>timestamp=<ts>;name=value;...` (prefix: (name, value) pairs before the fields
    instead of the timestamp, as CDRs have)."""
    head = ";".join(f"{k}={v}" for k, v in prefix) if prefix else \
        f"timestamp={int(ts if ts is not None else time.time())}"
    return text + head + "".join(f";{k}={'' if v is None else v}" for k, v in fields)


class Extras:
    """`name=$pv;name2=$pv2` (log_extra, db_extra of 1.x/2.x): values read from a context."""

    def __init__(self, spec: str, defs=None):
        self.items = []
        for part in (spec or "").split(";"):
            if not part.strip():
                continue
            name, eq, pv_text = part.partition("=")
            if not eq or not pv_text.strip().startswith("$"):
                raise ValueError(f"bad extra definition '{part.strip()}' (want name=$pv)")
            try:
                self.items.append((name.strip(), bind(parse_pv_text(pv_text), defs or PVS)))
            except PVError as e:
                raise ValueError(str(e)) from None

    def values(self, ctx) -> list:
        out = []
        for name, pv in self.items:
            try:
                v = pv.get(ctx)
            except (SIPError, ValueError):
                v = None
            out.append((name, "" if v is None else str(v)))
        return out


def parse_extra_fields(specs) -> dict:
    """extra_fields (3.x): "log: tag1; tag2->name; db: tag3->column" (the modparam may be
    given several times) -> {backend: [(tag, name)]}."""
    out: dict = {}
    backend = None
    for spec in specs:
        for item in spec.split(";"):
            item = item.strip()
            head, colon, rest = item.partition(":")
            if colon and head.strip().lower() in ("log", "db", "aaa", "evi"):
                backend, item = head.strip().lower(), rest.strip()
            if not item:
                continue
            if backend is None:
                raise ValueError(f"extra_fields: '{item}' comes before any 'log:'/'db:'")
            tag, arrow, name = item.partition("->")
            out.setdefault(backend, []).append((tag.strip(), (name if arrow else tag).strip()))
    return out


def db_row(fields, columns: dict, ts: float, extras=(), cdr=None) -> dict:
    """A row for the acc/missed_calls table from the core fields (and CDR times)."""
    names = {"method": "method", "from_tag": "from_tag", "to_tag": "to_tag",
             "call_id": "callid", "code": "sip_code", "reason": "sip_reason"}
    row = {columns[names[k]]: v for k, v in fields}
    row[columns["time"]] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
    for k, v in extras:
        row[k] = v
    if cdr is not None:
        for k in ("duration", "setuptime", "created"):
            v = cdr[k]
            row[columns[k]] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(v)) \
                if k == "created" else v
    return row

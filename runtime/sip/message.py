"""SIP messages, sans-IO: bytes in, a lazily parsed :class:`Message` out.

``Message.parse`` does the least work that lets a proxy act on a message: it reads the
start line, finds every header line (``bytes.find`` / ``str.split`` over the buffer, one
decode) and frames the body by Content-Length. Header *values* are parsed into typed
objects (Via, NameAddr, CSeq...) on first access and cached on the message.

Text is decoded as UTF-8 with ``surrogateescape`` (see :data:`ENCODING`/:data:`ERRORS`),
so arbitrary bytes survive and can be written back unchanged.

Errors: anything malformed raises :class:`SIPError`, never another exception. For a
request whose request line could be read, ``status`` is the code to answer with (400, 505,
513); for replies and unreadable bytes it is ``None`` (drop). Typed accessors raise the
same way when their header is missing or malformed (400 on requests, None on replies).
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from itertools import islice, repeat

from .headers import (COMPACT_FORMS, ENCODING, ERRORS, NameAddr, SIPError, Via,
                      split_commas)
from .uri import URI

__all__ = ["Message", "Header", "SIPError", "MAX_MESSAGE_SIZE", "stream_frame_length"]

#: the largest message accepted (OpenSIPS's default buffer size); larger is a 513
MAX_MESSAGE_SIZE = 65535

_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_STATUS_LINE_RE = re.compile(r"SIP/2\.0 ([1-6][0-9][0-9])(?: (.*))?", re.S)
_REQ_LINE_RE = re.compile(
    r"([A-Za-z0-9\-.!%*_+`'~]++) ([A-Za-z][A-Za-z0-9+\-.]*+:[^\x00-\x20\x7f<>\"]++) SIP/2\.0")
_CSEQ_RE = re.compile(r"([0-9]{1,10}+)[ \t]++([A-Za-z0-9\-.!%*_+`'~]++)")
_RURI_RE = re.compile(r'[A-Za-z][A-Za-z0-9+\-.]*:[^\x00-\x20\x7f<>"]+')
_VERSION_RE = re.compile(r"SIP/[0-9]+\.[0-9]+", re.I)
_DATE_RE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), ([0-9]{2}) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
    r" ([0-9]{4}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) GMT")
_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
_STREAM_CL_RE = re.compile(rb"(?im)^(?:content-length|l)[ \t]*+:([^\n]*+)")
_MANDATORY = (("via", "Via"), ("from", "From"), ("to", "To"), ("call-id", "Call-ID"),
              ("cseq", "CSeq"))
_SINGLE = (("from", "From"), ("to", "To"), ("call-id", "Call-ID"), ("cseq", "CSeq"))


#: key as asked for (get('Via'), get_header('v')...) -> canonical key; bounded memo
_CANON: dict[str, str] = {}


def _canon(key: str) -> str:
    k = _CANON.get(key)
    if k is None:
        k = key.lower()
        k = COMPACT_FORMS.get(k, k)
        if len(_CANON) < 4096:
            _CANON[key] = k
    return k


#: header name as written (a valid token) -> key; filled as names are seen (bounded, so
#: random names cannot grow it without limit)
_KEYS: dict[str, str] = {}


def _new_keys(names, keys):
    """Fill the keys of names not seen before; None when a name is not a plain token (a
    continuation line, blanks before ':', garbage): the careful path must look."""
    out = []
    for name, k in zip(names, keys):
        if k is None:
            if _TOKEN_RE.fullmatch(name) is None:
                return None
            k = _key(name)
        out.append(k)
    return tuple(out)


def _key(name: str) -> str:
    k = _KEYS.get(name)
    if k is None:
        k = name.lower()
        k = COMPACT_FORMS.get(k, k)
        if len(_KEYS) < 4096:
            _KEYS[name] = k
    return k


class Header:
    """One header line as received.

    ``name`` as written (without the blanks before ':'), ``key`` the canonical lowercase
    full name, ``value`` the body with folded lines joined by one space and surrounding
    whitespace stripped (``str.strip()``, the same on every path), ``start``/``end`` the byte offsets of the whole line (continuation
    lines and line terminator included) in ``Message.raw``.
    """

    __slots__ = ("name", "key", "value", "start", "end")

    def __init__(self, name, key, value, start, end):
        self.name = name
        self.key = key
        self.value = value
        self.start = start
        self.end = end

    def __repr__(self):
        return f"Header({self.name!r}: {self.value!r} @{self.start}:{self.end})"


class Message:
    """A parsed SIP request or reply. Build one with :meth:`parse`."""

    # slots, not an instance dict: a message's attributes are set in varying orders (lazy
    # caches), which makes per-instance dicts lose their shared layout and grow
    __slots__ = (
        "raw", "method", "ruri", "is_request", "status", "reason", "version", "_err",
        "_hdr_start", "_hdr_end", "_body_start", "_names", "_keys", "_values", "_first",
        "content_length", "body",
        # typed-value caches (None, or False for Max-Forwards, until computed)
        "_vias", "_via1", "_from", "_to", "_call_id", "_cseq", "_contacts", "_routes",
        "_record_routes", "_max_forwards", "_ruri_parsed",
        # header lines: the full list (slow path or once asked for), else single ones by
        # index; the offset table of the lines
        "_headers", "_hobjs", "_starts",
    )

    # -------------------------------------------------------------------- parsing
    @classmethod
    def parse(cls, data: bytes) -> "Message":
        if not isinstance(data, bytes):
            if isinstance(data, (bytearray, memoryview)):
                data = bytes(data)
            else:
                raise TypeError("Message.parse() takes bytes")
        if data[:1] in (b"\r", b"\n"):
            data = data.lstrip(b"\r\n")  # RFC 3261 7.5: ignore CRLFs before the start line
        self = cls.__new__(cls)
        self.raw = data
        # request defaults (a reply sets its own) and empty caches
        self.is_request = True
        self.status = 0
        self.reason = ""
        self.version = "SIP/2.0"
        self._err = 400
        self._vias = self._via1 = self._from = self._to = self._call_id = self._cseq = None
        self._contacts = self._routes = self._record_routes = self._ruri_parsed = None
        self._headers = self._hobjs = self._starts = None
        self._max_forwards = False
        fast = False
        # the fast path: the start line and CRLF-terminated 'token: value' lines up to the
        # first empty line, no folding, no bare CR or LF (else the careful scanner below)
        p1 = data.find(b"\r\n\r\n")
        if p1 > 0 and len(data) <= MAX_MESSAGE_SIZE:
            text = data[:p1].decode(ENCODING, ERRORS)
            lines = text.split("\r\n")
            n = len(lines)
            if text.count("\n") == n - 1 and text.count("\r") == n - 1:
                first = lines[0]
                m = _REQ_LINE_RE.fullmatch(first)
                if m is not None:
                    self.method, self.ruri = m.groups()
                else:
                    m = _STATUS_LINE_RE.fullmatch(first)
                    if m is not None:
                        self.is_request = False
                        self._err = None
                        self.ruri = ""
                        code, reason = m.groups()
                        self.status = int(code)
                        self.reason = reason or ""
                    else:
                        self._start_line(first)
                hstart = len(first) + 2
                if len(text) != p1:  # not ASCII: count the start line's bytes
                    hstart = len(first.encode(ENCODING, ERRORS)) + 2
                n -= 1
                if n:
                    names, seps, values = zip(*map(str.partition, islice(lines, 1, None),
                                                   repeat(":", n)))
                    keys = tuple(map(_KEYS.get, names))
                    if None in keys:
                        keys = _new_keys(names, keys)
                    if keys is not None and "" not in seps:
                        fast = True
                        values = tuple(map(str.strip, values))
                else:
                    fast = True
                    names = keys = values = ()
                if fast:
                    hdr_end = p1 + 2
                    body_start = p1 + 4
                    err = self._err
                    fl_end = hstart - 1
        if not fast:
            fl_end = data.find(b"\n")
            if fl_end < 0:
                raise SIPError(None, "Truncated message: no start line")
            first = data[:fl_end]
            if first[-1:] == b"\r":
                first = first[:-1]
            first = first.decode(ENCODING, ERRORS)
            m = _REQ_LINE_RE.fullmatch(first)
            if m is not None:
                self.method, self.ruri = m.groups()
            else:
                self._start_line(first)
            err = self._err
            hstart = fl_end + 1
            p1 = data.find(b"\n\r\n", fl_end)
        if len(data) > MAX_MESSAGE_SIZE:
            raise SIPError(513 if err else None, "Message Too Large")
        self._hdr_start = hstart
        if not fast:
            hdr_end, body_start, hs = self._slow_headers(data, fl_end, p1, err)
            names = tuple(h.name for h in hs)
            keys = tuple(h.key for h in hs)
            values = tuple(h.value for h in hs)
            self._headers = hs
        self._hdr_end = hdr_end
        self._body_start = body_start
        self._names = names
        self._keys = keys
        self._values = values
        # first occurrence of each key wins: assign in reverse order
        first = self._first = dict(zip(reversed(keys), reversed(values)))
        cl = first.get("content-length")
        if cl is None:
            self.content_length = None
            self.body = data[body_start:]
        else:
            if not (cl.isascii() and cl.isdigit()) or len(cl) > 10:
                raise SIPError(err, "Bad Content-Length")
            cl = int(cl)
            if keys.count("content-length") > 1:
                for k, v in zip(keys, values):
                    if k == "content-length":
                        if not (v.isascii() and v.isdigit()) or len(v) > 10:
                            raise SIPError(err, "Bad Content-Length")
                        if int(v) != cl:
                            raise SIPError(err, "Conflicting Content-Length headers")
            self.content_length = cl
            end = body_start + cl
            n = len(data)
            if end > n:
                raise SIPError(err, "Content-Length larger than message")
            if end < n:
                # RFC 3261 18.3: octets after the body are spurious, not part of the message
                self.raw = data = data[:end]
            self.body = data[body_start:end] if cl else b""
        if not self.is_request:
            v = first.get("cseq")
            parts = v.split() if v is not None else ()
            self.method = parts[1] if len(parts) == 2 else ""
        return self

    @staticmethod
    def _slow_headers(data, fl_end, p1, err):
        """The careful header scanner: bare-LF line ends, folded lines, precise errors.
        Returns (end of the header lines, start of the body, [Header])."""
        p2 = data.find(b"\n\n", fl_end, len(data) if p1 < 0 else p1 + 1)
        if p2 >= 0 and (p1 < 0 or p2 < p1):
            hdr_end = p2 + 1
            body_start = p2 + 2
        elif p1 >= 0:
            hdr_end = p1 + 1
            body_start = p1 + 3
        else:
            raise SIPError(err, "Truncated message: no end of headers")
        hstart = fl_end + 1
        if hdr_end <= hstart:
            return hstart, body_start, []
        text = data[hstart:hdr_end].decode(ENCODING, ERRORS)
        n_crlf = text.count("\r\n")
        n_lf = text.count("\n")
        ascii_ = len(text) == hdr_end - hstart
        if n_crlf == n_lf and text.count("\r") == n_crlf:
            lines = text[:-2].split("\r\n")
            eol = 2
        elif text.count("\r") == n_crlf:
            lines = text[:-1].split("\n")
            eol = 1
        else:
            raise SIPError(err, "Bare CR in header section")
        headers = []
        pos = hstart
        token_match = _TOKEN_RE.fullmatch
        h = None
        for line in lines:
            if ascii_:
                ll = len(line) + eol
            else:
                ll = len(line.encode(ENCODING, ERRORS)) + eol
            if eol == 1 and line[-1:] == "\r":
                line = line[:-1]
            c0 = line[:1]
            if c0 == " " or c0 == "\t":
                if h is None:
                    raise SIPError(err, "Continuation line before any header")
                more = line.strip()
                if more:
                    h.value = f"{h.value} {more}" if h.value else more
                pos += ll
                h.end = pos
                continue
            colon = line.find(":")
            if colon <= 0:
                raise SIPError(err, "Bad header line")
            name = line[:colon]
            if name[-1] in " \t":
                name = name.rstrip(" \t")
            if token_match(name) is None:
                raise SIPError(err, "Bad header name")
            h = Header(name, _key(name), line[colon + 1:].strip(), pos, pos + ll)
            pos += ll
            headers.append(h)
        return hdr_end, body_start, headers

    @property
    def headers(self) -> list[Header]:
        """Every header line, in order (built on first use)."""
        hs = self._headers
        if hs is None:
            if self._starts is None:
                self._line_starts()
            hs = self._headers = list(map(self._header, range(len(self._keys))))
            self._hobjs = None
        return hs

    def _header(self, i: int) -> Header:
        """The Header of line ``i``: one object per line (edits check identity), made
        when first asked for, with its byte offsets."""
        hs = self._headers
        if hs is not None:
            return hs[i]
        objs = self._hobjs
        if objs is None:
            objs = self._hobjs = {}
        else:
            h = objs.get(i)
            if h is not None:
                return h
        start, end = self._span(i)
        h = objs[i] = Header(self._names[i], self._keys[i], self._values[i], start, end)
        return h

    def _span(self, i: int) -> tuple[int, int]:
        """Byte offsets (start, end) of header line ``i`` in ``raw``."""
        hs = self._headers
        if hs is not None:
            return hs[i].start, hs[i].end
        starts = self._starts
        if starts is None:
            if i < 16:
                # a line near the top: step over the lines above it (every header line
                # of a fast-parsed message ends in CRLF, no folding)
                find = self.raw.find
                start = self._hdr_start
                for _ in range(i):
                    start = find(b"\r\n", start) + 2
                return start, find(b"\r\n", start) + 2
            starts = self._line_starts()
        return starts[i], starts[i + 1]

    def _line_starts(self) -> list[int]:
        """Byte offset of each header line (fast-parsed messages), and of the end."""
        find = self.raw.find
        pos = self._hdr_start
        starts = [pos]
        for _ in range(len(self._keys)):
            pos = find(b"\r\n", pos) + 2
            starts.append(pos)
        self._starts = starts
        return starts

    def _owns(self, h: Header) -> bool:
        """Is ``h`` one of this message's Header objects?"""
        hs = self._headers
        if hs is not None:
            for x in hs:
                if x is h:
                    return True
            return False
        objs = self._hobjs
        if objs:
            for x in objs.values():
                if x is h:
                    return True
        return False

    def _start_line(self, first: str):
        if first[:4].upper() == "SIP/":
            self.is_request = False
            self._err = None
            self.ruri = ""
            parts = first.split(" ", 2)
            if len(parts) < 2:
                raise SIPError(None, "Bad status line")
            if parts[0].upper() != "SIP/2.0":
                raise SIPError(None, "Unsupported SIP version")
            self.version = "SIP/2.0"
            code = parts[1]
            if len(code) != 3 or not (code.isascii() and code.isdigit()):
                raise SIPError(None, "Bad status code")
            status = int(code)
            if status < 100 or status > 699:
                raise SIPError(None, "Bad status code")
            self.status = status
            self.reason = parts[2] if len(parts) == 3 else ""
            return
        parts = first.split(" ")
        if (len(parts) != 3 or _TOKEN_RE.fullmatch(parts[0]) is None
                or _RURI_RE.fullmatch(parts[1]) is None):
            # answerable when it still reads as 'method ... SIP/x.y' (blanks aside)
            loose = first.split()
            status = (400 if len(loose) >= 3 and _TOKEN_RE.fullmatch(loose[0])
                      and _VERSION_RE.fullmatch(loose[-1]) else None)
            raise SIPError(status, "Bad request line")
        method, ruri, version = parts
        if version != "SIP/2.0":
            if version.upper() != "SIP/2.0":
                if _VERSION_RE.fullmatch(version):
                    raise SIPError(505, "Version Not Supported")
                raise SIPError(400, "Bad request line")
        self.method = method
        self.ruri = ruri

    # -------------------------------------------------------------------- raw access
    def get(self, key: str) -> str | None:
        """Value of the first header ``key`` (any case, compact form accepted), or None."""
        return self._first.get(_CANON.get(key) or _canon(key))

    def get_header(self, key: str) -> Header | None:
        """The first :class:`Header` named ``key``, or None."""
        k = _CANON.get(key) or _canon(key)
        if k not in self._first:
            return None
        return self._header(self._keys.index(k))

    def get_all(self, key: str) -> list[str]:
        """Every ``key`` header line's value, in order (values are not comma-split)."""
        k = _canon(key)
        return [v for kk, v in zip(self._keys, self._values) if kk == k]

    def get_headers(self, key: str) -> list[Header]:
        k = _canon(key)
        if k not in self._first:
            return []
        return [self._header(i) for i, kk in enumerate(self._keys) if kk == k]

    def count(self, key: str) -> int:
        return self._keys.count(_canon(key))

    def __contains__(self, key: str) -> bool:
        return _canon(key) in self._first

    # -------------------------------------------------------------------- typed values
    @property
    def vias(self) -> list[Via]:
        """Every Via value, comma-separated ones split, top first."""
        v = self._vias
        if v is None and self._keys.count("via") < 2:
            v = self._vias = Via.parse_list(self._first["via"], self._err) if "via" in self._first else []
        if v is None:
            v = []
            err = self._err
            for k, val in zip(self._keys, self._values):
                if k == "via":
                    v.extend(Via.parse_list(val, err))
            self._vias = v
        return v

    @property
    def via1(self) -> Via | None:
        """The topmost Via value, or None when there is no Via."""
        v = self._via1
        if v is None:
            if self._vias is not None:
                v = self._vias[0] if self._vias else None
            else:
                val = self._first.get("via")
                if val is None:
                    return None
                if "," in val:
                    val = split_commas(val, self._err)[0]
                v = Via.parse(val, self._err)
            self._via1 = v
        return v

    def _name_addr(self, key, label):
        v = self._first.get(key)
        if v is None:
            raise SIPError(self._err, f"Missing {label}")
        return NameAddr.parse(v, self._err)

    @property
    def from_(self) -> NameAddr:
        v = self._from
        if v is None:
            v = self._from = self._name_addr("from", "From")
        return v

    @property
    def to(self) -> NameAddr:
        v = self._to
        if v is None:
            v = self._to = self._name_addr("to", "To")
        return v

    @property
    def from_tag(self) -> str | None:
        return self.from_.tag

    @property
    def to_tag(self) -> str | None:
        return self.to.tag

    @property
    def call_id(self) -> str:
        v = self._call_id
        if v is None:
            v = self._first.get("call-id")
            if not v:
                raise SIPError(self._err, "Missing Call-ID")
            if " " in v or "\t" in v:
                raise SIPError(self._err, "Bad Call-ID")
            self._call_id = v
        return v

    @property
    def cseq(self) -> tuple[int, str]:
        v = self._cseq
        if v is None:
            v = self._first.get("cseq")
            if v is None:
                raise SIPError(self._err, "Missing CSeq")
            m = _CSEQ_RE.fullmatch(v)
            if m is None:
                raise SIPError(self._err, "Bad CSeq")
            num, method = m.groups()
            n = int(num)
            if n > 0xFFFFFFFF:
                raise SIPError(self._err, "Bad CSeq")
            v = self._cseq = (n, method)
        return v

    def _name_addr_list(self, key):
        n = self._keys.count(key)
        if n < 2:
            return NameAddr.parse_list(self._first[key], self._err) if n else []
        out = []
        err = self._err
        for k, val in zip(self._keys, self._values):
            if k == key:
                out.extend(NameAddr.parse_list(val, err))
        return out

    @property
    def contacts(self) -> list[NameAddr]:
        v = self._contacts
        if v is None:
            v = self._contacts = self._name_addr_list("contact")
        return v

    @property
    def routes(self) -> list[NameAddr]:
        v = self._routes
        if v is None:
            v = self._routes = self._name_addr_list("route")
        return v

    @property
    def record_routes(self) -> list[NameAddr]:
        v = self._record_routes
        if v is None:
            v = self._record_routes = self._name_addr_list("record-route")
        return v

    @property
    def max_forwards(self) -> int | None:
        v = self._max_forwards
        if v is False:
            s = self._first.get("max-forwards")
            if s is None:
                v = None
            else:
                if not (s.isascii() and s.isdigit()) or len(s) > 5 or int(s) > 255:
                    raise SIPError(self._err, "Bad Max-Forwards")
                v = int(s)
            self._max_forwards = v
        return v

    @property
    def content_type(self) -> str | None:
        return self.get("content-type")

    @property
    def parsed_ruri(self) -> URI | None:
        """The Request-URI parsed (None on replies); SIPError(400) when malformed or when a
        SIP(S) Request-URI carries headers, SIPError(416) for an unsupported scheme."""
        if not self.is_request:
            return None
        u = self._ruri_parsed
        if u is None:
            u = URI.parse(self.ruri)
            if u.headers and u.scheme.lower() in ("sip", "sips"):
                raise SIPError(400, "Request-URI with headers")
            self._ruri_parsed = u
        return u

    @property
    def date(self) -> datetime | None:
        """The Date header (RFC 3261 20.17: rfc1123-date, GMT only), or None."""
        s = self.get("date")
        if s is None:
            return None
        m = _DATE_RE.fullmatch(s)
        if m is None:
            raise SIPError(self._err, "Bad Date")
        _, d, mon, y, hh, mm, ss = m.groups()
        try:
            return datetime(int(y), _MONTHS[mon], int(d), int(hh), int(mm), int(ss),
                            tzinfo=timezone.utc)
        except ValueError:
            raise SIPError(self._err, "Bad Date") from None

    # -------------------------------------------------------------------- checks
    def check_present(self) -> None:
        """The cheap check a proxy makes on every request: the mandatory headers are there
        (values are parsed when used). SIPError(400) otherwise."""
        first = self._first
        for key, label in _MANDATORY:
            if key not in first:
                raise SIPError(self._err, f"Missing {label}")

    def check_mandatory(self) -> None:
        """Raise SIPError unless Via, From, To, Call-ID and CSeq are present, single (bar
        Via) and parsable, and, on a request, the CSeq method equals the request method,
        Max-Forwards (optional) is valid and the Request-URI parses (416 for an unknown
        scheme). Status 400 on requests, None on replies."""
        err = self._err
        first = self._first
        for key, label in _MANDATORY:
            if key not in first:
                raise SIPError(err, f"Missing {label}")
        for key, label in _SINGLE:
            if self.count(key) > 1:
                raise SIPError(err, f"Duplicate {label}")
        self.via1
        self.from_
        self.to
        self.call_id
        _, method = self.cseq
        if self.is_request:
            if method != self.method:
                raise SIPError(400, "CSeq method does not match request method")
            self.max_forwards
            self.parsed_ruri

    def check_proxy_require(self, supported=()) -> None:
        """RFC 3261 16.3 step 5: SIPError(420, 'Bad Extension', ['Unsupported: ...']) when
        Proxy-Require lists an option tag not in ``supported``."""
        sup = {s.lower() for s in supported}
        bad = []
        for v in self.get_all("proxy-require"):
            for tag in v.split(","):
                tag = tag.strip(" \t")
                if tag and tag.lower() not in sup:
                    bad.append(tag)
        if bad:
            raise SIPError(420, "Bad Extension", [f"Unsupported: {', '.join(bad)}"])

    def __repr__(self):
        if self.is_request:
            return f"<Message {self.method} {self.ruri} ({len(self._keys)} headers)>"
        return f"<Message {self.status} {self.reason} ({len(self._keys)} headers)>"


def stream_frame_length(buf) -> int | None:
    """For a stream transport: the byte length of the first complete message at the start of
    ``buf`` (leading CRLF keep-alives included), or None while more bytes are needed.

    A missing Content-Length counts as 0 (RFC 3261 18.3 makes it mandatory on streams;
    like OpenSIPS we do not close the connection for it). SIPError(None, ...) when the
    framing cannot be recovered: a bad Content-Length, or a header section or a body
    beyond :data:`MAX_MESSAGE_SIZE` -- the connection should then be closed.
    """
    n = len(buf)
    i = 0
    while i < n and buf[i] in (13, 10):
        i += 1
    if i == n:
        return None
    e1 = buf.find(b"\r\n\r\n", i)
    e2 = buf.find(b"\n\n", i, n if e1 < 0 else e1)
    if e2 >= 0:
        end, body = e2, e2 + 2
    elif e1 >= 0:
        end, body = e1, e1 + 4
    else:
        if n - i > MAX_MESSAGE_SIZE:
            raise SIPError(None, "Header section too large")
        return None
    head = bytes(buf[i:end])
    cl = 0
    for m in _STREAM_CL_RE.finditer(head):
        v = m.group(1).strip(b" \t\r")
        if not v.isdigit() or len(v) > 10:
            raise SIPError(None, "Bad Content-Length")
        cl = int(v)
    if cl > MAX_MESSAGE_SIZE:
        raise SIPError(None, "Body too large")
    total = body + cl
    return total if total <= n else None

"""Edits to a received message, applied when the outgoing message is built (OpenSIPS lumps).

An :class:`Edits` records changes against the byte offsets of a received
:class:`~runtime.sip.message.Message`; nothing is applied until :func:`build_request` /
:func:`build_reply` writes the outgoing bytes. So, as in OpenSIPS, a header added by
``append_hf`` is not visible through ``Message.get()`` in the same route; :func:`apply`
(``msg_apply_changes()``) builds and re-parses to make the changes visible.

Ordering rules:

* edits at the same place come out in the order they were recorded; where two places meet
  (*after* header A = *before* the next header B), what was added after A comes first;
* a header inserted *before* (or *after*) a header that is itself replaced or removed stays
  before (after) the replacement; the new top Via (``build_request(top_via=)``) goes right
  above the received Vias, below headers added at the top;
* :meth:`Edits.remove_header` / :meth:`Edits.replace_header` on the same header: the last
  call wins;
* body edits (:meth:`Edits.insert_text`, :meth:`Edits.replace_range`) are offsets into the
  received body, or into the body given to the last :meth:`Edits.set_body` (which discards
  the body edits recorded before it); overlapping ranges are a ``ValueError``.

Content-Length is recomputed whenever the body changed (the first Content-Length line
keeps its name form and gets the new value, duplicates are dropped, one is added when
there was none) and added when missing on a stream transport (``stream=True``).
"""
from __future__ import annotations

from .headers import ENCODING, ERRORS, SIPError, split_commas
from .message import Header, Message

__all__ = ["Edits", "build_request", "build_reply", "apply"]

_WHERE = ("end", "top", "before", "after")


def _b(text) -> bytes:
    if isinstance(text, bytes):
        return text
    return text.encode(ENCODING, ERRORS)


def _line(text) -> bytes:
    """Header line(s) normalised to CRLF line ends, with exactly one final CRLF."""
    if text.__class__ is str and "\n" not in text and "\r" not in text and ":" in text:
        return (text + "\r\n").encode(ENCODING, ERRORS)  # one line, the common case
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode(ENCODING, ERRORS)
    s = text.rstrip("\r\n")
    if "\n" in s:
        s = s.replace("\r\n", "\n").replace("\n", "\r\n")
    if ":" not in s.split("\r\n", 1)[0]:
        raise ValueError(f"not a header line: {text!r}")
    return (s + "\r\n").encode(ENCODING, ERRORS)


class Edits:
    """Changes recorded against ``msg`` (a received Message)."""

    __slots__ = ("msg", "_seq", "_inserts", "_hdr", "ruri", "_body_base", "_body_edits",
                 "_body_set", "_content_type", "_via1")

    def __init__(self, msg: Message):
        self.msg = msg
        self._seq = 0
        self._inserts = ()        # [(offset, rank, seq, bytes)]: rank 0 'after', 1 others
        self._hdr = {}            # header.start -> (header.end, seq, bytes) ; b'' removes
        self.ruri = None          # new Request-URI (str) or None
        self._body_base = None    # None: the received body
        self._body_edits = ()     # [(start, end, seq, bytes)]
        # (the two lists are made on first use: an Edits can live as long as a transaction)
        self._body_set = False
        self._content_type = None
        self._via1 = None

    def _next(self):
        self._seq += 1
        return self._seq

    def copy(self) -> "Edits":
        """An independent copy (per-branch changes on top of the request's)."""
        new = Edits.__new__(Edits)
        new.msg = self.msg
        new._seq = self._seq
        new._inserts = list(self._inserts) if self._inserts else ()
        new._hdr = dict(self._hdr)
        new.ruri = self.ruri
        new._body_base = self._body_base
        new._body_edits = list(self._body_edits) if self._body_edits else ()
        new._body_set = self._body_set
        new._content_type = self._content_type
        new._via1 = self._via1
        return new

    def _check(self, h: Header):
        if not self.msg._owns(h):
            raise ValueError("header does not belong to this message")

    # ------------------------------------------------------------------ headers
    def add_header(self, line: str, where: str = "end", ref: Header | None = None) -> None:
        """Add header line(s): ``where`` is 'end' (after the last header, append_hf),
        'top' (before the first header, insert_hf), or 'before'/'after' the Header ``ref``."""
        data = _line(line)
        rank = 1
        if where == "end":
            pos = self.msg._hdr_end
        elif where == "top":
            pos = self.msg._hdr_start
        elif where in ("before", "after"):
            if ref is None:
                raise ValueError(f"add_header(where={where!r}) needs ref=<Header>")
            self._check(ref)
            pos = ref.start if where == "before" else ref.end
            rank = 0 if where == "after" else 1
        else:
            raise ValueError(f"where must be one of {_WHERE}")
        if not self._inserts:
            self._inserts = []
        self._inserts.append((pos, rank, self._next(), data))

    def remove_header(self, h: Header) -> None:
        self._check(h)
        self._hdr[h.start] = (h.end, self._next(), b"")

    def replace_header(self, h: Header, new_line: str) -> None:
        self._check(h)
        self._hdr[h.start] = (h.end, self._next(), _line(new_line))

    def replace_value(self, h: Header, value) -> None:
        """Replace the value of ``h``, keeping its name as written (``replace_header`` with
        ``f"{h.name}: {value}"``, without re-checking a line we build ourselves)."""
        value = str(value)
        if "\r" in value or "\n" in value:
            return self.replace_header(h, f"{h.name}: {value}")
        self._check(h)
        self._hdr[h.start] = (h.end, self._next(),
                              f"{h.name}: {value}\r\n".encode(ENCODING, ERRORS))

    def replace_via1(self, value: str) -> None:
        """Replace the topmost Via *value* (only the first of comma-separated values), e.g.
        with ``via_received_params(...)``."""
        self._via1 = value

    def set_ruri(self, uri: str) -> None:
        self.ruri = str(uri)

    # ------------------------------------------------------------------ body
    def set_body(self, body: bytes, content_type: str | None = None) -> None:
        """Replace the whole body. With ``content_type`` the Content-Type header is set (or
        added); an empty body without ``content_type`` removes Content-Type."""
        self._body_base = _b(body)
        self._body_edits = ()
        self._body_set = True
        self._content_type = content_type

    def _base_len(self):
        return len(self.msg.body if self._body_base is None else self._body_base)

    def insert_text(self, offset: int, text) -> None:
        """Insert ``text`` at ``offset`` of the (received or last set) body."""
        if not 0 <= offset <= self._base_len():
            raise ValueError("offset outside the body")
        if not self._body_edits:
            self._body_edits = []
        self._body_edits.append((offset, offset, self._next(), _b(text)))

    def replace_range(self, start: int, end: int, text) -> None:
        """Replace body bytes ``[start, end)`` with ``text`` ('' deletes)."""
        if not 0 <= start <= end <= self._base_len():
            raise ValueError("range outside the body")
        if not self._body_edits:
            self._body_edits = []
        self._body_edits.append((start, end, self._next(), _b(text)))

    @property
    def body_changed(self) -> bool:
        return self._body_set or bool(self._body_edits)

    @property
    def changed(self) -> bool:
        return bool(self._inserts or self._hdr or self.ruri is not None or self._via1
                    is not None or self.body_changed)

    def new_body(self) -> bytes:
        """The body as it will be sent."""
        base = self.msg.body if self._body_base is None else self._body_base
        if not self._body_edits:
            return base
        out = []
        cur = 0
        for s, e, _, data in sorted(self._body_edits, key=lambda x: (x[0], x[1] != x[0], x[2])):
            if s < cur:
                raise ValueError("overlapping body edits")
            out.append(base[cur:s])
            out.append(data)
            cur = e
        out.append(base[cur:])
        return b"".join(out)


# ---------------------------------------------------------------------------------- build

def _via_rewrite(name: str, value: str, first: str | None, err) -> bytes:
    """The first Via header line (``name: value``) with its first value replaced by
    ``first`` (None drops it); b'' when nothing is left."""
    values = split_commas(value, err)
    values = ([first] if first is not None else []) + values[1:]
    if not values:
        return b""
    return f"{name}: {', '.join(values)}\r\n".encode(ENCODING, ERRORS)


def _assemble(msg: Message, edits: Edits | None, start_line: bytes, *, top_via=None,
              drop_route_count=0, drop_top_via=False, stream=False) -> bytes:
    raw = msg.raw
    if edits is not None:
        hdr = edits._hdr
        inserts = edits._inserts
        via1 = edits._via1
        body_changed = edits._body_set or bool(edits._body_edits)
    else:
        hdr = _NO_EDITS
        inserts = ()
        via1 = None
        body_changed = False
    own = False        # hdr copied (automatic edits go into the copy)
    auto = []          # automatic inserts
    seq = 10 ** 9      # automatic edits come after the recorded ones at the same place

    # top Via: replace / drop its first value
    if via1 is not None or drop_top_via or top_via is not None:
        if "via" in msg._first:
            i = msg._keys.index("via")
            start, end = msg._span(i)
        else:
            i = None
            start = msg._hdr_start
        if i is not None and (via1 is not None or drop_top_via):
            hdr, own = dict(hdr), True
            seq += 1
            hdr[start] = (end, seq, _via_rewrite(msg._names[i], msg._values[i],
                                                 None if drop_top_via else via1, msg._err))
        if top_via is not None:
            # directly above the received Vias, after what was recorded for that place
            seq += 1
            auto.append((start, 1, seq, f"Via: {top_via}\r\n".encode(ENCODING, ERRORS)))

    # loose routing: drop the first Route values
    if drop_route_count:
        if not own:
            hdr, own = dict(hdr), True
        left = drop_route_count
        for h in msg.get_headers("route"):
            values = split_commas(h.value, msg._err)
            seq += 1
            if left >= len(values):
                hdr[h.start] = (h.end, seq, b"")
                left -= len(values)
            else:
                rest = ", ".join(values[left:])
                hdr[h.start] = (h.end, seq, f"{h.name}: {rest}\r\n".encode(ENCODING, ERRORS))
                left = 0
            if not left:
                break
        if left:
            raise ValueError("drop_route_count exceeds the Route values")

    # body, Content-Type, Content-Length
    if body_changed or stream:
        if not own:
            hdr, own = dict(hdr), True
        body = edits.new_body() if body_changed else msg.body
        if body_changed and edits._body_set:
            ct = edits._content_type
            cts = msg.get_headers("content-type")
            if ct is not None:
                seq += 1
                if cts:
                    hdr[cts[0].start] = (cts[0].end, seq,
                                         f"{cts[0].name}: {ct}\r\n".encode(ENCODING, ERRORS))
                else:
                    auto.append((msg._hdr_end, 1, seq,
                                 f"Content-Type: {ct}\r\n".encode(ENCODING, ERRORS)))
            elif not body:
                for h in cts:
                    seq += 1
                    hdr[h.start] = (h.end, seq, b"")
        cls = msg.get_headers("content-length")
        if body_changed or not cls:
            n = len(body)
            seq += 1
            if cls:
                hdr[cls[0].start] = (cls[0].end, seq, f"{cls[0].name}: {n}\r\n".encode())
                for h in cls[1:]:
                    hdr[h.start] = (h.end, seq, b"")
            else:
                auto.append((msg._hdr_end, 1, seq, f"Content-Length: {n}\r\n".encode()))
    else:
        body = None    # as received: the rest of raw

    # header section, at one offset: inserts made 'after' the header ending there, then the
    # other inserts, then the replaced line starting there; each group in recording order
    out = [start_line]
    cur = msg._hdr_start
    if hdr or inserts or auto:
        patches = [(pos, rank, s, pos, data) for pos, rank, s, data in inserts] if inserts \
            else []
        if auto:
            patches += [(pos, rank, s, pos, data) for pos, rank, s, data in auto]
        if hdr:
            patches += [(start, 2, s, end, data) for start, (end, s, data) in hdr.items()]
        if len(patches) > 1:
            patches.sort()  # by (offset, rank, seq): seq never repeats at one offset
        for start, _, _, end, data in patches:
            if start < cur:
                raise ValueError("overlapping header edits")
            out.append(raw[cur:start])
            out.append(data)
            cur = end
    if body is None:
        out.append(raw[cur:])
    else:
        out.append(raw[cur:msg._body_start])  # the rest of the headers, the empty line
        out.append(body)
    return b"".join(out)


_NO_EDITS: dict = {}


def build_request(msg: Message, edits: Edits | None = None, *, top_via: str | None = None,
                  ruri: str | None = None, drop_route_count: int = 0,
                  stream: bool = False) -> bytes:
    """The request to forward: ``top_via`` (a Via value) inserted above the received Vias,
    Request-URI from ``ruri``, else ``edits.set_ruri``, else as received; the first
    ``drop_route_count`` Route values removed; then the edits."""
    if not msg.is_request:
        raise ValueError("build_request() needs a request")
    if edits is not None and edits.msg is not msg:
        raise ValueError("edits were recorded against another message")
    uri = ruri if ruri is not None else (edits.ruri if edits is not None and edits.ruri is not None
                                         else msg.ruri)
    start = f"{msg.method} {uri} SIP/2.0\r\n".encode(ENCODING, ERRORS)
    return _assemble(msg, edits, start, top_via=top_via, drop_route_count=drop_route_count,
                     stream=stream)


def build_reply(msg: Message, edits: Edits | None = None, *, drop_top_via: bool = True,
                stream: bool = False) -> bytes:
    """A received reply to forward upstream: our own (top) Via value removed, the edits
    applied; the status line is copied as received."""
    if msg.is_request:
        raise ValueError("build_reply() needs a reply")
    if edits is not None and edits.msg is not msg:
        raise ValueError("edits were recorded against another message")
    if edits is None and drop_top_via and not stream and "via" in msg._first:
        # the common case: no edits, our Via alone on its line: cut the line out
        i = msg._keys.index("via")
        v = msg._values[i]
        if v and "," not in v:
            start, end = msg._span(i)
            raw = msg.raw
            return raw[:start] + raw[end:]
    return _assemble(msg, edits, msg.raw[:msg._hdr_start], drop_top_via=drop_top_via,
                     stream=stream)


def apply(msg: Message, edits: Edits) -> Message:
    """``msg_apply_changes()``: a new Message with the edits applied (re-parsed), so that
    the changes become visible to ``get()``. Raises SIPError if the result does not parse."""
    if msg.is_request:
        data = build_request(msg, edits)
    else:
        data = build_reply(msg, edits, drop_top_via=False)
    try:
        return Message.parse(data)
    except SIPError as e:
        raise SIPError(e.status, f"edited message does not parse: {e.reason}") from None

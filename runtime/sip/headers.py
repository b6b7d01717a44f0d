"""Header-level SIP syntax: the error type, header names, parameters, Via and name-addr.

Everything here works on ``str`` values as stored in :class:`runtime.sip.message.Header`
(decoded from the wire as UTF-8 with ``surrogateescape``, so any byte string round-trips).
Parsers are small hand-written scanners plus a few compiled regular expressions: they are
called lazily, once per header and message, and their results are cached by the message.
"""
from __future__ import annotations

import re

__all__ = [
    "SIPError", "COMPACT_FORMS", "canonical_name", "split_commas", "parse_params",
    "format_params", "find_param", "Via", "NameAddr", "ENCODING", "ERRORS",
]

#: how header text is decoded from / encoded to the wire; surrogateescape makes any byte
#: sequence survive a decode/encode round trip unchanged
ENCODING = "utf-8"
ERRORS = "surrogateescape"


class SIPError(ValueError):
    """A message (or a part of one) that we cannot accept.

    ``status`` is the response code to send when the message is a request that can still be
    answered (400, 413, 416, 420, 505, 513...), or ``None`` when it must be dropped (a bad
    reply, or bytes in which no request line could be read). ``headers`` are extra header
    lines the answer should carry (e.g. ``Unsupported:`` for a 420).
    """

    def __init__(self, status: int | None, reason: str, headers: list[str] | tuple = ()):
        super().__init__(f"{status} {reason}" if status else reason)
        self.status = status
        self.reason = reason
        self.headers = list(headers)


#: compact header forms (RFC 3261 7.3.3 and the extensions that define one)
COMPACT_FORMS = {
    "v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact",
    "l": "content-length", "c": "content-type", "k": "supported", "s": "subject",
    "e": "content-encoding", "o": "event", "r": "refer-to", "b": "referred-by",
    "u": "allow-events", "x": "session-expires", "y": "identity", "a": "accept-contact",
    "j": "reject-contact", "d": "request-disposition",
}


def canonical_name(name: str) -> str:
    """Lowercase full header name for ``name`` (compact forms expanded)."""
    k = name.strip().lower()
    return COMPACT_FORMS.get(k, k)


# token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
TOKEN_RE = re.compile(_TOKEN)
_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")


def is_token(s: str) -> bool:
    return bool(s) and TOKEN_RE.fullmatch(s) is not None


# One generic-param: SEMI name [EQUAL value], LWS allowed around ';' and '='.
# value: quoted-string, or a run of anything but separators (token/host/IPv6 reference;
# non-ASCII is tolerated, as OpenSIPS does).
_PARAM_RE = re.compile(
    r'[ \t]*+;[ \t]*+([^ \t;=,"<>?]++)[ \t]*+(?:=[ \t]*+("(?:[^"\\]|\\.)*+"|[^ \t;,"<>=?]++))?[ \t]*+', re.S)


_PARAM = (r'[ \t]*+;[ \t]*+[^ \t;=,"<>?]++[ \t]*+(?:=[ \t]*+(?:"(?:[^"\\]|\\.)*+"|[^ \t;,"<>=?]++))?')
_PARAMS = r"((?:" + _PARAM + r")*+)[ \t]*+"


def _fast_params(tail: str) -> list[tuple[str, str | None]]:
    """Parameters of a tail already validated by a regex containing _PARAMS."""
    if " " in tail or "\t" in tail or '"' in tail:
        return [(k, v if v else None) for k, v in _PARAM_RE.findall(tail)]
    if ";" not in tail[1:]:
        k, sep, v = tail[1:].partition("=")
        return [(k, v if sep else None)]
    out = []
    for p in tail[1:].split(";"):
        k, sep, v = p.partition("=")
        out.append((k, v if sep else None))
    return out


def parse_params(text: str, pos: int = 0, err=400) -> list[tuple[str, str | None]]:
    """Parse ``;name[=value]...`` from ``text[pos:]`` to its end; SIPError on any garbage.

    Valueless parameters get ``None``; quoted values keep their quotes (so that
    :func:`format_params` round-trips); ``find_param`` strips them.
    """
    out = []
    n = len(text)
    match = _PARAM_RE.match
    while pos < n:
        m = match(text, pos)
        if m is None:
            if text[pos:].strip(" \t") == "":
                break
            raise SIPError(err, "Bad parameter")
        out.append((m.group(1), m.group(2)))
        pos = m.end()
    return out


def format_params(params) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params)


def find_param(params, name: str) -> str | None:
    """Value of the first parameter ``name`` (case-insensitive): None when absent, '' when
    present without a value; surrounding quotes of a quoted value are removed."""
    return _find(params, name.lower())


def _find(params, name: str) -> str | None:
    """find_param() for a lowercase ``name``."""
    for k, v in params:
        if k == name or k.lower() == name:
            if v is None:
                return ""
            if v[:1] == '"':
                return v[1:-1]
            return v
    return None


_COMMA_SCAN = re.compile(r'"(?:[^"\\]|\\.)*+"|<[^>]*+>|[,"]', re.S)


def split_commas(text: str, err=400) -> list[str]:
    """Split a header value at the commas that separate values: not inside a quoted string
    or an <...> URI. Elements are stripped; an empty element is a SIPError."""
    if "," not in text:
        s = text.strip(" \t")
        if not s:
            raise SIPError(err, "Empty list element")
        return [s]
    if '"' not in text and "<" not in text:
        parts = text.split(",")
    else:
        parts = []
        start = 0
        for m in _COMMA_SCAN.finditer(text):
            g = m.group()
            if g == ",":
                parts.append(text[start:m.start()])
                start = m.end()
            elif g == '"':
                raise SIPError(err, "Unterminated quoted string")
        parts.append(text[start:])
    out = [p.strip(" \t") for p in parts]
    if "" in out:
        raise SIPError(err, "Empty list element")
    return out


# ----------------------------------------------------------------------------------- Via

_VIA_RE = re.compile(
    r"[ \t]*+(" + _TOKEN + r")[ \t]*+/[ \t]*+(" + _TOKEN + r")[ \t]*+/[ \t]*+(" + _TOKEN + r")"
    r"[ \t]++(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-_.]++)(?:[ \t]*+:[ \t]*+([0-9]{1,5}+))?")
_VIA_FULL = re.compile(_VIA_RE.pattern + _PARAMS, re.S)
# a subset of _VIA_FULL (same groups but the protocol's): no blanks, no quotes, no IPv6
_VIA_SIMPLE = re.compile(r"SIP/2\.0/(" + _TOKEN + r") ([A-Za-z0-9\-_.]++)(?::([0-9]{1,5}+))?"
                         r'((?:;[^ \t;=,"<>?]++(?:=[^ \t;,"<>=?]++)?)*+)')
_PROTOCOLS: dict = {}


class Via:
    """One Via value (``sent-protocol sent-by *(;param)``), RFC 3261 20.42.

    ``protocol`` is normalised ('SIP/2.0/UDP'), ``transport`` uppercased, ``host`` as
    written (IPv6 references keep their brackets), ``port`` None when absent. ``params``
    keep their order and case; ``branch``/``received``/``rport``/``maddr``/``ttl`` are None
    when absent and '' when present without a value.
    """

    __slots__ = ("text", "protocol", "transport", "host", "port", "params")

    def __init__(self, protocol: str, host: str, port: int | None = None, params=(), text=None):
        self.protocol = protocol
        self.transport = protocol.rsplit("/", 1)[-1].upper()
        self.host = host
        self.port = port
        self.params = list(params)
        self.text = text

    @classmethod
    def parse(cls, text: str, err=400) -> "Via":
        m = _VIA_SIMPLE.fullmatch(text)
        if m is not None:
            # the common form, 'SIP/2.0/UDP host[:port];p[=v]...' with no blanks or quotes
            transport, host, port, tail = m.groups()
            self = cls.__new__(cls)
            p = _PROTOCOLS.get(transport)
            if p is None:
                p = (f"SIP/2.0/{transport}", transport.upper())
                if len(_PROTOCOLS) < 32:
                    _PROTOCOLS[transport] = p
            self.protocol, self.transport = p
            self.host = host
            if port is None:
                self.port = None
            else:
                port = int(port)
                if port > 65535:
                    raise SIPError(err, "Bad Via port")
                self.port = port
            if not tail:
                self.params = []
            elif tail.count(";") == 1:
                k, sep, v = tail[1:].partition("=")
                self.params = [(k, v if sep else None)]
            else:
                params = self.params = []
                for item in tail[1:].split(";"):
                    k, sep, v = item.partition("=")
                    params.append((k, v if sep else None))
            self.text = text
            return self
        m = _VIA_FULL.fullmatch(text)
        if m is None:
            # not valid: find out what is wrong for the message (raises)
            m = _VIA_RE.match(text)
            if m is None:
                raise SIPError(err, "Bad Via")
            parse_params(text, m.end(), err)
            raise SIPError(err, "Bad Via")
        name, version, transport, host, port, tail = m.groups()
        self = cls.__new__(cls)
        if name == "SIP" and version == "2.0":
            p = _PROTOCOLS.get(transport)
            if p is None:
                p = (f"SIP/2.0/{transport}", transport.upper())
                if len(_PROTOCOLS) < 32:
                    _PROTOCOLS[transport] = p
        else:
            p = (f"{name}/{version}/{transport}", transport.upper())
        self.protocol, self.transport = p
        self.host = host
        if port is None:
            self.port = None
        else:
            p = int(port)
            if p > 65535:
                raise SIPError(err, "Bad Via port")
            self.port = p
        self.params = _fast_params(tail) if tail else []
        if text[:1] in " \t" or text[-1:] in " \t":
            text = text.strip(" \t")
        self.text = text
        return self

    @classmethod
    def parse_list(cls, text: str, err=400) -> list["Via"]:
        return [cls.parse(v, err) for v in split_commas(text, err)]

    def param(self, name: str) -> str | None:
        return find_param(self.params, name)

    @property
    def branch(self):
        return _find(self.params, "branch")

    @property
    def received(self):
        return _find(self.params, "received")

    @property
    def rport(self):
        return _find(self.params, "rport")

    @property
    def maddr(self):
        return _find(self.params, "maddr")

    @property
    def ttl(self):
        return _find(self.params, "ttl")

    @property
    def sent_by(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def replace_params(self, **values) -> "Via":
        """A new Via with the given parameters set (value None = flag, False = removed);
        existing parameters keep their place, new ones are appended in argument order."""
        params = []
        todo = {k.lower(): (k, v) for k, v in values.items()}
        for k, v in self.params:
            lk = k.lower()
            if lk in todo:
                name, nv = todo.pop(lk)
                if nv is not False:
                    params.append((k, None if nv is None else str(nv)))
            else:
                params.append((k, v))
        for name, nv in todo.values():
            if nv is not False:
                params.append((name, None if nv is None else str(nv)))
        return Via(self.protocol, self.host, self.port, params)

    def __str__(self) -> str:
        if self.text is not None:
            return self.text
        return f"{self.protocol} {self.sent_by}{format_params(self.params)}"

    def __repr__(self) -> str:
        return f"Via({str(self)!r})"


# ------------------------------------------------------------------------------ name-addr

_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*:")
_DTOK = r"[A-Za-z0-9\-.!%*_+`'~\x80-\U0010ffff]++"
_DISPLAY_TOKENS_RE = re.compile(_DTOK + r"(?:[ \t]++" + _DTOK + ")*+")
_BAD_URI_CHARS_RE = re.compile(r'[ \t\r\n<>"]')
_NA_FULL = re.compile(
    r'[ \t]*+(?:"((?:[^"\\]|\\.)*+)"[ \t]*+|(' + _DTOK + r"(?:[ \t]++" + _DTOK + r")*+)[ \t]*+)?"
    r'<([A-Za-z][A-Za-z0-9+\-.]*:[^ \t\r\n<>"]+)>' + _PARAMS, re.S)
_ADDR_SPEC_FULL = re.compile(r'[ \t]*+([A-Za-z][A-Za-z0-9+\-.]*:[^ \t\r\n<>";?,]+)' + _PARAMS, re.S)


class NameAddr:
    """``[display] <uri> *(;param)`` or ``addr-spec *(;param)`` (From, To, Contact, Route...).

    ``display`` is the display name as written, without the enclosing quotes (quoted-pairs
    are left escaped, so ``str()`` round-trips), or None. ``uri`` is the URI text (a Contact
    of ``*`` gives uri ``'*'``). ``params`` are the header parameters (tag, expires, q...).
    """

    __slots__ = ("display", "uri", "params", "quoted", "angle", "_uri")

    def __init__(self, uri: str, display: str | None = None, params=(), quoted=None, angle=True):
        self.uri = uri
        self.display = display
        self.params = list(params)
        self.quoted = quoted if quoted is not None else bool(display) and not is_token_words(display)
        self.angle = angle or bool(display) or bool(self.params)
        self._uri = None

    @classmethod
    def parse(cls, text: str, err=400) -> "NameAddr":
        m = _NA_FULL.fullmatch(text)
        if m is not None:
            self = cls.__new__(cls)
            quoted, token_display, self.uri, tail = m.groups()
            if quoted is not None:
                self.display = quoted
                self.quoted = True
            else:
                self.display = token_display
                self.quoted = False
            self.angle = True
            self.params = _fast_params(tail) if tail else []
            self._uri = None
            return self
        m = _ADDR_SPEC_FULL.fullmatch(text)
        if m is not None:
            self = cls.__new__(cls)
            self.uri, tail = m.groups()
            self.display = None
            self.quoted = False
            self.angle = False
            self.params = _fast_params(tail) if tail else []
            self._uri = None
            return self
        return cls._parse_slow(text, err)

    @classmethod
    def _parse_slow(cls, text: str, err=400) -> "NameAddr":
        s = text.strip(" \t")
        self = cls.__new__(cls)
        self._uri = None
        self.quoted = False
        self.angle = True
        if s[:1] == '"':
            # quoted display name
            i = 1
            n = len(s)
            while i < n and s[i] != '"':
                i += 2 if s[i] == "\\" else 1
            if i >= n:
                raise SIPError(err, "Unterminated quoted display name")
            self.display = s[1:i]
            self.quoted = True
            lt = i + 1
            while lt < n and s[lt] in " \t":
                lt += 1
            if lt >= n or s[lt] != "<":
                raise SIPError(err, "Expected <URI> after display name")
        else:
            lt = s.find("<")
            if lt < 0:
                # addr-spec form: parameters after the URI belong to the header
                semi = s.find(";")
                uri = s if semi < 0 else s[:semi].rstrip(" \t")
                if s == "*":
                    self.display = None
                    self.uri = "*"
                    self.params = []
                    self.angle = False
                    return self
                if "?" in uri or "," in uri:
                    raise SIPError(err, "URI with headers or commas must be in <>")
                if _SCHEME_RE.match(uri) is None or _BAD_URI_CHARS_RE.search(uri):
                    raise SIPError(err, "Bad URI")
                self.display = None
                self.uri = uri
                self.angle = False
                self.params = parse_params(s, semi, err) if semi >= 0 else []
                return self
            disp = s[:lt].rstrip(" \t")
            if disp:
                if _DISPLAY_TOKENS_RE.fullmatch(disp) is None:
                    raise SIPError(err, "Bad display name")
                self.display = disp
            else:
                self.display = None
        gt = s.find(">", lt + 1)
        if gt < 0:
            raise SIPError(err, "Missing >")
        uri = s[lt + 1:gt]
        if not uri or _SCHEME_RE.match(uri) is None or _BAD_URI_CHARS_RE.search(uri):
            raise SIPError(err, "Bad URI")
        self.uri = uri
        self.params = parse_params(s, gt + 1, err) if gt + 1 < len(s) else []
        return self

    @classmethod
    def parse_list(cls, text: str, err=400) -> list["NameAddr"]:
        return [cls.parse(v, err) for v in split_commas(text, err)]

    def param(self, name: str) -> str | None:
        return find_param(self.params, name)

    @property
    def tag(self) -> str | None:
        return _find(self.params, "tag")

    @property
    def parsed_uri(self):
        """The URI parsed (:class:`runtime.sip.uri.URI`), cached; SIPError if it cannot be."""
        u = self._uri
        if u is None:
            from .uri import URI
            u = self._uri = URI.parse(self.uri)
        return u

    def __str__(self) -> str:
        if self.uri == "*" and not self.angle:
            return "*"
        p = format_params(self.params)
        if not self.angle:
            return f"{self.uri}{p}"
        if self.display is None:
            return f"<{self.uri}>{p}"
        d = f'"{self.display}"' if self.quoted else self.display
        return f"{d} <{self.uri}>{p}"

    def __repr__(self) -> str:
        return f"NameAddr({str(self)!r})"


def is_token_words(s: str) -> bool:
    return all(c in _TOKEN_CHARS or c == " " for c in s)

"""SIP, SIPS (RFC 3261 19.1) and tel (RFC 3966) URIs.

Components are kept exactly as written: ``%HH`` escapes are not decoded (use
:func:`unescape` where an application needs the decoded form, e.g. comparing users), the
host keeps its case and IPv6 brackets. ``str(uri)`` returns the original text until a
component is changed with :meth:`URI.replace`, which rebuilds the text.

Parameters: ``params`` is a list of ``(name, value)`` in order; a parameter written without
``=`` has value ``None``. :meth:`URI.param` returns None when the parameter is absent and
``''`` when it is present without a value (``;lr``).
"""
from __future__ import annotations

import re

from .headers import SIPError

__all__ = ["URI", "unescape"]

_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
_HOST_RE = re.compile(r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-_.]+")
_BAD_CHARS_RE = re.compile(r'[\x00-\x20\x7f<>"]')
_ESC_RE = re.compile(r"%([0-9A-Fa-f]{2})")

_FIELDS = ("scheme", "user", "password", "host", "port", "params", "headers")

# sip:/sips: with no headers, no blanks or quotes, '@' only after the userinfo, non-empty
# parameter names: the careful parser below gives these the same components
_NOT = r'\x00-\x20\x7f<>"'
_SIP_FAST = re.compile(
    r"(sips?):(?:([^@:;?" + _NOT + r"]++)(?::([^@;?" + _NOT + r"]*+))?@)?"
    r"(\[[0-9A-Fa-f:.]++\]|[A-Za-z0-9\-_.]++)(?::([0-9]{1,5}+))?"
    r"((?:;[^;?=@" + _NOT + r"]++(?:=[^;?@" + _NOT + r"]*+)?)*+)")


def unescape(s: str) -> str:
    """Decode %HH escapes (once; not recursively, per RFC 3986)."""
    if "%" not in s:
        return s
    return _ESC_RE.sub(lambda m: chr(int(m.group(1), 16)), s)


class URI:
    """A parsed sip:/sips:/tel: URI.

    For tel URIs the number is in ``user`` and ``host`` is ''. ``password`` is None when
    the userinfo has no ':'; ``port`` None when absent; ``headers`` is the text after '?'
    ('' when none).
    """

    __slots__ = ("scheme", "user", "password", "host", "port", "params", "headers", "_text")

    def __init__(self, scheme="sip", user="", password=None, host="", port=None, params=(),
                 headers=""):
        self.scheme = scheme
        self.user = user
        self.password = password
        self.host = host
        self.port = port
        self.params = list(params)
        self.headers = headers
        self._text = None

    # ------------------------------------------------------------------ parsing
    @classmethod
    def parse(cls, text: str) -> "URI":
        """Parse ``text``; SIPError(400) when malformed, SIPError(416) for a scheme other
        than sip, sips or tel."""
        m = _SIP_FAST.fullmatch(text)
        if m is not None:
            # the common form (lowercase scheme, no headers, nothing unusual): the same
            # result as the careful path below
            self = cls.__new__(cls)
            self.scheme, user, self.password, self.host, port, ptxt = m.groups()
            self.user = user or ""
            if port is None:
                self.port = None
            else:
                port = int(port)
                if port > 65535:
                    raise SIPError(400, "Bad URI port")
                self.port = port
            if ptxt:
                params = self.params = []
                for p in ptxt[1:].split(";"):
                    k, sep, v = p.partition("=")
                    params.append((k, v if sep else None))
            else:
                self.params = []
            self.headers = ""
            self._text = text
            return self
        colon = text.find(":")
        if colon <= 0 or _SCHEME_RE.fullmatch(text, 0, colon) is None:
            raise SIPError(400, "Bad URI")
        if _BAD_CHARS_RE.search(text):
            raise SIPError(400, "Bad URI")
        scheme = text[:colon]
        ls = scheme.lower()
        self = cls.__new__(cls)
        self.scheme = scheme
        self._text = text
        if ls == "sip" or ls == "sips":
            self._parse_sip(text, colon + 1)
        elif ls == "tel":
            self._parse_tel(text, colon + 1)
        else:
            raise SIPError(416, "Unsupported URI Scheme")
        return self

    def _parse_sip(self, text, pos):
        at = text.find("@", pos)
        if at >= 0:
            userinfo = text[pos:at]
            c = userinfo.find(":")
            if c >= 0:
                self.user = userinfo[:c]
                self.password = userinfo[c + 1:]
            else:
                self.user = userinfo
                self.password = None
            if not self.user:
                raise SIPError(400, "Empty URI user")
            pos = at + 1
        else:
            self.user = ""
            self.password = None
        m = _HOST_RE.match(text, pos)
        if m is None:
            raise SIPError(400, "Bad URI host")
        self.host = m.group()
        pos = m.end()
        n = len(text)
        self.port = None
        if pos < n and text[pos] == ":":
            e = pos + 1
            while e < n and "0" <= text[e] <= "9":
                e += 1
            if e == pos + 1 or e - pos > 6:
                raise SIPError(400, "Bad URI port")
            port = int(text[pos + 1:e])
            if port > 65535:
                raise SIPError(400, "Bad URI port")
            self.port = port
            pos = e
        q = text.find("?", pos)
        if q >= 0:
            self.headers = text[q + 1:]
            end = q
        else:
            self.headers = ""
            end = n
        if pos < end and text[pos] != ";":
            raise SIPError(400, "Bad URI")
        self.params = _parse_uri_params(text[pos + 1:end]) if pos < end else []

    def _parse_tel(self, text, pos):
        semi = text.find(";", pos)
        end = len(text) if semi < 0 else semi
        self.user = text[pos:end]
        if not self.user:
            raise SIPError(400, "Empty tel number")
        self.password = None
        self.host = ""
        self.port = None
        self.headers = ""
        self.params = _parse_uri_params(text[end + 1:]) if semi >= 0 else []

    # ------------------------------------------------------------------ access
    def param(self, name: str) -> str | None:
        name = name.lower()
        for k, v in self.params:
            if k.lower() == name:
                return "" if v is None else v
        return None

    @property
    def hostport(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    @property
    def is_tel(self) -> bool:
        return self.scheme.lower() == "tel"

    def replace(self, **fields) -> "URI":
        """A copy with some components changed (scheme, user, password, host, port, params,
        headers); its text is rebuilt."""
        for k in fields:
            if k not in _FIELDS:
                raise TypeError(f"unknown URI field {k!r}")
        new = URI.__new__(URI)
        for k in _FIELDS:
            setattr(new, k, fields[k] if k in fields else getattr(self, k))
        new.params = list(new.params)
        new._text = None
        return new

    def __str__(self) -> str:
        t = self._text
        if t is None:
            t = self._text = self._build()
        return t

    def _build(self) -> str:
        out = [self.scheme, ":"]
        if self.scheme.lower() == "tel":
            out.append(self.user)
        else:
            if self.user:
                out.append(self.user)
                if self.password is not None:
                    out += (":", self.password)
                out.append("@")
            out.append(self.host)
            if self.port is not None:
                out += (":", str(self.port))
        for k, v in self.params:
            out += (";", k) if v is None else (";", k, "=", v)
        if self.headers:
            out += ("?", self.headers)
        return "".join(out)

    def __repr__(self) -> str:
        return f"URI({str(self)!r})"

    def __eq__(self, other):
        if isinstance(other, URI):
            return str(self) == str(other)
        return NotImplemented

    def __hash__(self):
        return hash(str(self))


def _parse_uri_params(s: str) -> list[tuple[str, str | None]]:
    out = []
    for p in s.split(";"):
        eq = p.find("=")
        if eq < 0:
            if not p:
                raise SIPError(400, "Empty URI parameter")
            out.append((p, None))
        else:
            if eq == 0:
                raise SIPError(400, "Empty URI parameter name")
            out.append((p[:eq], p[eq + 1:]))
    return out

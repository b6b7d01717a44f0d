"""JSON as the json-c library reads and writes it (what OpenSIPS's json module uses).

Reading is json-c's non-strict tokener: 'single quoted' strings, /* */ and // comments,
trailing commas, true/false/null/NaN/Infinity in any case; the first complete value is
taken and what follows it is ignored. Values: dict (key order kept), list, str, int,
`Double` (a float that remembers how it was written), bool, None (JSON null).

Writing follows json_object_to_json_string_ext: SPACED (`{ "a": 1, "b": [ 1, 2 ] }`, what
`$json` prints), PLAIN (`{"a":1}`, `$json_compact`) and PRETTY (two-space indent, no space
after the colon, `$json_pretty`); '/' is escaped as '\\/' unless NOSLASHESCAPE, control
characters as \\u00xx, other characters are written as they are.
"""
from __future__ import annotations

import math

SPACED = 1
PRETTY = 2
PLAIN = 0
NOSLASHESCAPE = 16

_INT64_MIN, _INT64_MAX = -(2 ** 63), 2 ** 63 - 1


class JSONError(ValueError):
    pass


class Double(float):
    """A JSON number with a fraction or exponent; `text` is how it was written."""
    __slots__ = ("text",)

    def __new__(cls, value, text=None):
        obj = float.__new__(cls, value)
        obj.text = text
        return obj


# --- reading -------------------------------------------------------------------------------

_WS = " \t\n\r\f\v"
_NUM_CHARS = set("0123456789+-.eE")


class _Reader:
    def __init__(self, text: str):
        self.s = text
        self.i = 0
        self.depth = 0

    def error(self, what):
        raise JSONError(f"{what} at offset {self.i}")

    def skip(self):
        s, n = self.s, len(self.s)
        while self.i < n:
            c = s[self.i]
            if c in _WS:
                self.i += 1
            elif s.startswith("/*", self.i):
                end = s.find("*/", self.i + 2)
                if end < 0:
                    self.error("unterminated comment")
                self.i = end + 2
            elif s.startswith("//", self.i):
                end = s.find("\n", self.i)
                self.i = n if end < 0 else end + 1
            else:
                break

    def value(self):
        self.skip()
        if self.i >= len(self.s):
            self.error("unexpected end of data")
        c = self.s[self.i]
        if c == "{":
            return self.obj()
        if c == "[":
            return self.arr()
        if c in "\"'":
            return self.string()
        if c in "-0123456789":
            return self.number()
        return self.word()

    def _enter(self):
        self.depth += 1
        if self.depth > 32:              # json-c's default JSON_TOKENER_DEFAULT_DEPTH
            self.error("nesting too deep")

    def obj(self):
        self._enter()
        self.i += 1
        out = {}
        self.skip()
        if self._peek() == "}":
            self.i += 1
            self.depth -= 1
            return out
        while True:
            self.skip()
            if self._peek() == "}":          # a trailing comma
                self.i += 1
                break
            if self._peek() not in ("\"", "'"):
                self.error("object key must be a string")
            key = self.string()
            self.skip()
            if self._peek() != ":":
                self.error("':' expected")
            self.i += 1
            out[key] = self.value()
            self.skip()
            c = self._peek()
            if c == ",":
                self.i += 1
                continue
            if c == "}":
                self.i += 1
                break
            self.error("',' or '}' expected")
        self.depth -= 1
        return out

    def arr(self):
        self._enter()
        self.i += 1
        out = []
        self.skip()
        if self._peek() == "]":
            self.i += 1
            self.depth -= 1
            return out
        while True:
            self.skip()
            if self._peek() == "]":          # a trailing comma
                self.i += 1
                break
            out.append(self.value())
            self.skip()
            c = self._peek()
            if c == ",":
                self.i += 1
                continue
            if c == "]":
                self.i += 1
                break
            self.error("',' or ']' expected")
        self.depth -= 1
        return out

    def _peek(self):
        return self.s[self.i] if self.i < len(self.s) else ""

    def string(self):
        s = self.s
        quote = s[self.i]
        self.i += 1
        parts = []
        start = self.i
        n = len(s)
        while True:
            if self.i >= n:
                self.error("unterminated string")
            c = s[self.i]
            if c == quote:
                parts.append(s[start:self.i])
                self.i += 1
                return "".join(parts)
            if c == "\\":
                parts.append(s[start:self.i])
                self.i += 1
                if self.i >= n:
                    self.error("unterminated string")
                e = s[self.i]
                simple = {"\"": "\"", "'": "'", "\\": "\\", "/": "/", "b": "\b", "f": "\f",
                          "n": "\n", "r": "\r", "t": "\t"}
                if e in simple:
                    parts.append(simple[e])
                    self.i += 1
                elif e == "u":
                    cp = self._hex4(self.i + 1)
                    self.i += 5
                    if 0xD800 <= cp < 0xDC00 and s.startswith("\\u", self.i):
                        lo = self._hex4(self.i + 2)
                        if 0xDC00 <= lo < 0xE000:
                            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00)
                            self.i += 6
                    parts.append(chr(cp) if not 0xD800 <= cp < 0xE000 else "\ufffd")
                else:
                    self.error(f"bad escape '\\{e}'")
                start = self.i
            else:
                self.i += 1

    def _hex4(self, at):
        h = self.s[at:at + 4]
        if len(h) != 4 or any(c not in "0123456789abcdefABCDEF" for c in h):
            self.i = at
            self.error("bad \\u escape")
        return int(h, 16)

    def number(self):
        s = self.s
        start = self.i
        if s.startswith("-Infinity", self.i) or s[self.i:self.i + 9].lower() == "-infinity":
            self.i += 9
            return Double(-math.inf, "-Infinity")
        while self.i < len(s) and s[self.i] in _NUM_CHARS:
            self.i += 1
        text = s[start:self.i]
        if any(c in text for c in ".eE"):
            try:
                return Double(float(text), text)
            except ValueError:
                self.i = start
                self.error(f"bad number '{text}'")
        try:
            n = int(text)
        except ValueError:
            self.i = start
            self.error(f"bad number '{text}'")
        return max(_INT64_MIN, min(_INT64_MAX, n))

    def word(self):
        s = self.s
        for word, value in (("true", True), ("false", False), ("null", None),
                            ("nan", Double(math.nan, "NaN")),
                            ("infinity", Double(math.inf, "Infinity"))):
            if s[self.i:self.i + len(word)].lower() == word:
                self.i += len(word)
                return value
        self.error(f"unexpected '{s[self.i]}'")


def loads(text: str):
    """Parse as json-c does (JSONError when it cannot)."""
    if not isinstance(text, str):
        text = str(text)
    return _Reader(text).value()


# --- writing -------------------------------------------------------------------------------

_ESC = {"\b": "\\b", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\f": "\\f", "\"": "\\\"",
        "\\": "\\\\"}


def escape(s: str, flags: int) -> str:
    out = []
    slash = not flags & NOSLASHESCAPE
    for c in s:
        e = _ESC.get(c)
        if e is not None:
            out.append(e)
        elif c == "/" and slash:
            out.append("\\/")
        elif c < " ":
            out.append(f"\\u00{ord(c):02x}")
        else:
            out.append(c)
    return "".join(out)


def _double(v: float) -> str:
    text = getattr(v, "text", None)
    if text:
        return text
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    r = repr(float(v))
    return r


def _indent(out, level, flags):
    if flags & PRETTY:
        out.append("  " * level)


def _write(v, out, level, flags):
    if v is None:
        out.append("null")
    elif v is True:
        out.append("true")
    elif v is False:
        out.append("false")
    elif isinstance(v, int):
        out.append(str(v))
    elif isinstance(v, float):
        out.append(_double(v))
    elif isinstance(v, str):
        out.append("\"" + escape(v, flags) + "\"")
    elif isinstance(v, dict):
        spaced = flags & SPACED and not flags & PRETTY
        out.append("{")
        if flags & PRETTY:
            out.append("\n")
        first = True
        for k, item in v.items():
            if not first:
                out.append(",")
                if flags & PRETTY:
                    out.append("\n")
            first = False
            if spaced:
                out.append(" ")
            _indent(out, level + 1, flags)
            out.append("\"" + escape(str(k), flags) + ("\": " if flags & SPACED else "\":"))
            _write(item, out, level + 1, flags)
        if flags & PRETTY:
            if not first:
                out.append("\n")
            _indent(out, level, flags)
        out.append(" }" if spaced else "}")
    elif isinstance(v, (list, tuple)):
        spaced = flags & SPACED and not flags & PRETTY
        out.append("[")
        if flags & PRETTY:
            out.append("\n")
        first = True
        for item in v:
            if not first:
                out.append(",")
                if flags & PRETTY:
                    out.append("\n")
            first = False
            if spaced:
                out.append(" ")
            _indent(out, level + 1, flags)
            _write(item, out, level + 1, flags)
        if flags & PRETTY:
            if not first:
                out.append("\n")
            _indent(out, level, flags)
        out.append(" ]" if spaced else "]")
    else:
        raise TypeError(f"not a JSON value: {type(v).__name__}")


def dumps(v, flags: int = SPACED) -> str:
    out: list = []
    _write(v, out, 0, flags)
    return "".join(out)

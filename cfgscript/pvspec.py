"""Pseudo-variable specs and format strings, as OpenSIPS's `pv_parse_spec` reads them.

`$name`, `$name(sub)`, `$(<ctx>name(sub)[index]{tr,params}...)`; a format string is text with
PVs in it (`$$` is a literal `$`).
"""
from __future__ import annotations

import re

from .ast import PV, Pos, Str, Num, Transform, NOPOS

_NAME = {"opensips": re.compile(r"[A-Za-z_][A-Za-z0-9_.]*"),
         "kamailio": re.compile(r"[A-Za-z_][A-Za-z0-9_]*")}
_INT = re.compile(r"[-+]?\d+$")


class PVSyntaxError(ValueError):
    def __init__(self, message: str, offset: int = 0):
        super().__init__(message)
        self.offset = offset


def _balanced(text: str, i: int, open_: str = "(", close: str = ")") -> int:
    """Index just past the bracket that closes text[i] (== open_)."""
    depth = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == open_:
            depth += 1
        elif c == close:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise PVSyntaxError(f"unbalanced '{open_}'", i)


def pv_extent(text: str, i: int, dialect: str = "opensips") -> int:
    """End index of the PV starting at text[i] == '$' (as a format string scans it)."""
    if i + 1 < len(text) and text[i + 1] == "(":
        return _balanced(text, i + 1)
    m = _NAME[dialect].match(text, i + 1)
    if not m:
        raise PVSyntaxError("invalid pseudo-variable name after '$'", i)
    j = m.end()
    if j < len(text) and text[j] == "(":
        j = _balanced(text, j)
    return j


def parse_pv(text: str, pos: Pos = NOPOS, dialect: str = "opensips") -> PV:
    """Parse one whole PV token."""
    if not text.startswith("$") or len(text) < 2:
        raise PVSyntaxError(f"'{text}' is not a pseudo-variable")
    if text[1] == "(":
        end = _balanced(text, 1)
        inner = text[2:end - 1]
        if end != len(text):
            raise PVSyntaxError(f"unexpected text after '{text[:end]}'", end)
        return _parse_inner(inner, text, pos, dialect, wrapped=True)
    return _parse_inner(text[1:], text, pos, dialect, wrapped=False)


def _parse_inner(s: str, text: str, pos: Pos, dialect: str, wrapped: bool) -> PV:
    i = 0
    context = None
    s_strip = s.lstrip()
    i = len(s) - len(s_strip)
    if wrapped and s.startswith("<", i):
        j = s.find(">", i)
        if j < 0:
            raise PVSyntaxError("unterminated '<context>'", i)
        context = s[i + 1:j].strip()
        i = j + 1
    m = _NAME[dialect].match(s, i)
    if not m:
        raise PVSyntaxError(f"invalid pseudo-variable '{text}'", i)
    name = m.group(0)
    i = m.end()
    sub = None
    if i < len(s) and s[i] == "(":
        j = _balanced(s, i)
        sub_text = s[i + 1:j - 1]
        sub = _sub_value(sub_text, pos, dialect)
        i = j
    index = None
    if i < len(s) and s[i] == "[":
        j = s.find("]", i)
        if j < 0:
            raise PVSyntaxError("unterminated '[' index", i)
        index = _index_value(s[i + 1:j].strip(), pos, dialect)
        i = j + 1
    transforms = []
    while i < len(s):
        if s[i] in " \t\r\n":
            i += 1
            continue
        if s[i] != "{":
            if not wrapped:
                break  # OpenSIPS ignores trailing junk after a plain $name(...)
            raise PVSyntaxError(f"unexpected '{s[i]}' in '{text}'", i)
        j = _balanced(s, i, "{", "}")
        transforms.append(parse_transform(s[i + 1:j - 1], pos, dialect))
        i = j
    return PV(name, sub, index, tuple(transforms), context, text, pos)


def _sub_value(sub_text: str, pos: Pos, dialect: str):
    if sub_text.startswith("$"):
        try:
            if pv_extent(sub_text, 0, dialect) == len(sub_text):
                return parse_pv(sub_text, pos, dialect)
        except PVSyntaxError:
            pass
    return sub_text


def _index_value(idx: str, pos: Pos, dialect: str):
    if idx in ("*", "append"):
        return idx
    if _INT.match(idx):
        return int(idx)
    if idx.startswith("$"):
        return parse_pv(idx, pos, dialect)
    raise PVSyntaxError(f"invalid index '[{idx}]'")


# transformations whose last parameter runs to the closing brace, commas included
_REST_PARAM = {"re.subst": 0, "s.select": 1, "s.index": 0, "s.rindex": 0}


def parse_transform(body: str, pos: Pos = NOPOS, dialect: str = "opensips") -> Transform:
    """`class.name,p1,p2` (the text between the braces)."""
    name, _, rest = body.partition(",")
    name = name.strip().lower()
    if not name:
        raise PVSyntaxError("empty transformation")
    raw = _split_params(rest) if rest or body.endswith(",") else []
    keep = _REST_PARAM.get(name)
    if keep is not None and len(raw) > keep + 1:
        if name == "s.select" and all(p == "" for p in raw[keep + 1:]):
            raw = raw[:keep + 1]
            raw[keep] = raw[keep] or ","
        elif name in ("re.subst", "s.select"):
            raw = raw[:keep] + [",".join(raw[keep:])]
    params = tuple(_param_value(p, pos, dialect) for p in raw)
    return Transform(name, params, pos)


def _split_params(rest: str):
    out, cur, depth, i = [], [], 0, 0
    while i < len(rest):
        c = rest[i]
        if c == "\\" and i + 1 < len(rest) and rest[i + 1] == ",":
            cur.append(",")
            i += 2
            continue
        if c in "({":
            depth += 1
        elif c in ")}":
            depth -= 1
        if c == "," and depth == 0:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    out.append("".join(cur))
    return out


def _param_value(p: str, pos: Pos, dialect: str):
    s = p.lstrip()
    if s.startswith("$"):
        try:
            if pv_extent(s, 0, dialect) == len(s.rstrip()):
                return parse_pv(s.rstrip(), pos, dialect)
        except PVSyntaxError:
            pass
    if _INT.match(s.strip()):
        return Num(int(s), pos)
    return Str(s, pos)


def parse_format(text: str, pos: Pos = NOPOS, dialect: str = "opensips") -> tuple:
    """Split a format string into literal str pieces and PV items."""
    if "$" not in text:
        return (text,) if text else ()
    parts = []
    lit = []
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c != "$":
            j = text.find("$", i)
            if j < 0:
                j = n
            lit.append(text[i:j])
            i = j
            continue
        if i + 1 < n and text[i + 1] == "$":
            lit.append("$")
            i += 2
            continue
        try:
            j = pv_extent(text, i, dialect)
        except PVSyntaxError as e:
            raise PVSyntaxError(f"{e} in format string", i)
        if lit:
            parts.append("".join(lit))
            lit = []
        parts.append(parse_pv(text[i:j], pos, dialect))
        i = j
    if lit:
        parts.append("".join(lit))
    return tuple(parts)

"""The flags of save() and lookup(), in every spelling scripts use: 3.x names
(`"no-reply,max-contacts=5"`), 2.x/3.0 letters (`"rc5"`), 1.x numbers (`"0x02"`)."""
from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass
class SaveFlags:
    memory_only: bool = False
    no_reply: bool = False
    socket_header: bool = False
    force: bool = False
    only_request_contacts: bool = False
    path: str | None = None          # None (Path not stored), "off", "lazy", "strict"
    path_received: bool = False
    max_contacts: int | None = None  # None: the modparam
    min_expires: int | None = None   # None: the modparam
    max_expires: int | None = None
    matching_mode: int | str | None = None   # 0, 1, a URI parameter name; None: usrloc's


@dataclass
class LookupFlags:
    no_branches: bool = False
    to_branches_only: bool = False
    branch_lookup: bool = False
    method_filtering: bool = False
    ua_regex: re.Pattern | None = None


# 3.x name -> (field, value)
_SAVE_NAMES = {
    "memory-only": ("memory_only", True), "no-reply": ("no_reply", True),
    "socket-header": ("socket_header", True), "force-registration": ("force", True),
    "only-request-contacts": ("only_request_contacts", True),
    "path-off": ("path", "off"), "path-lazy": ("path", "lazy"), "path-strict": ("path", "strict"),
    "path-received": ("path_received", True),
}
_SAVE_VALUES = {"max-contacts": "max_contacts", "min-expires": "min_expires",
                "max-expires": "max_expires"}
# 2.x/3.0 letters
_SAVE_LETTERS = {"m": ("memory_only", True), "r": ("no_reply", True),
                 "s": ("socket_header", True), "f": ("force", True),
                 "o": ("only_request_contacts", True), "v": ("path_received", True)}
_SAVE_NUMBERS = {"c": "max_contacts", "e": "min_expires", "E": "max_expires"}
_PATH_DIGITS = {"0": "off", "1": "lazy", "2": "strict"}
# 1.x bit flags
_SAVE_BITS = {0x01: "memory_only", 0x02: "no_reply", 0x04: "socket_header"}

_LOOKUP_NAMES = {"no-branches": "no_branches", "to-branches-only": "to_branches_only",
                 "branch": "branch_lookup", "method-filtering": "method_filtering"}
_LOOKUP_LETTERS = {"b": "no_branches", "B": "to_branches_only", "r": "branch_lookup",
                   "m": "method_filtering"}
_LOOKUP_IGNORED = {"case-insensitive", "extended-regexp", "global", "sort-by-latency",
                   "max-ping-latency"}


def _named(text: str) -> bool:
    return "-" in text or "=" in text or text in ("branch",)


def _number(text, what):
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{what} needs a number, not '{text}'") from None


def parse_save_flags(text) -> SaveFlags:
    """SaveFlags from save()'s second argument; ValueError for an unknown flag."""
    f = SaveFlags()
    text = (text or "").strip()
    if not text:
        return f
    if re.fullmatch(r"0x[0-9a-fA-F]+|\d+", text):
        n = int(text, 0)
        for bit, name in _SAVE_BITS.items():
            if n & bit:
                setattr(f, name, True)
        return f
    if _named(text):
        for item in (i.strip() for i in text.split(",")):
            if not item:
                continue
            name, eq, value = item.partition("=")
            if name in _SAVE_NAMES and not eq:
                setattr(f, *_SAVE_NAMES[name])
            elif name in _SAVE_VALUES and eq:
                setattr(f, _SAVE_VALUES[name], _number(value, name))
            elif name == "matching-mode" and eq:
                f.matching_mode = _matching(value)
            else:
                raise ValueError(f"unknown save() flag '{item}'")
        return f
    i = 0
    while i < len(text):
        ch = text[i]
        i += 1
        if ch in _SAVE_LETTERS:
            setattr(f, *_SAVE_LETTERS[ch])
        elif ch in _SAVE_NUMBERS:
            m = re.match(r"\d+", text[i:])
            if not m:
                raise ValueError(f"save() flag '{ch}' needs a number")
            setattr(f, _SAVE_NUMBERS[ch], int(m.group()))
            i += m.end()
        elif ch == "p" and text[i:i + 1] in _PATH_DIGITS:
            f.path = _PATH_DIGITS[text[i]]
            i += 1
        elif ch == "M":
            m = re.match(r"<[^>]+>|[01]", text[i:])
            if not m:
                raise ValueError("save() flag 'M' needs 0, 1 or <param>")
            f.matching_mode = _matching(m.group())
            i += m.end()
        else:
            raise ValueError(f"unknown save() flag '{ch}' in '{text}'")
    return f


def _matching(value: str):
    value = value.strip()
    if value in ("0", "1"):
        return int(value)
    if value.startswith("<") and value.endswith(">") and len(value) > 2:
        return value[1:-1]
    raise ValueError(f"matching-mode must be 0, 1 or <param>, not '{value}'")


def parse_lookup_flags(text) -> LookupFlags:
    """LookupFlags from lookup()'s second argument; ValueError for an unknown flag."""
    f = LookupFlags()
    text = (text or "").strip()
    if not text:
        return f
    ua, icase = None, False
    if _named(text):
        for item in (i.strip() for i in text.split(",")):
            name, eq, value = item.partition("=")
            if name in _LOOKUP_NAMES and not eq:
                setattr(f, _LOOKUP_NAMES[name], True)
            elif name == "ua-filtering" and eq:
                ua = value.strip().strip("/")
            elif name == "case-insensitive":
                icase = True
            elif name not in _LOOKUP_IGNORED and item:
                raise ValueError(f"unknown lookup() flag '{item}'")
    else:
        i = 0
        while i < len(text):
            ch = text[i]
            i += 1
            if ch in _LOOKUP_LETTERS:
                setattr(f, _LOOKUP_LETTERS[ch], True)
            elif ch == "u":
                m = re.match(r"/((?:[^/\\]|\\.)*)/", text[i:])
                if not m:
                    raise ValueError("lookup() flag 'u' needs /regex/")
                ua = m.group(1)
                i += m.end()
            elif ch == "i":
                icase = True
            elif ch == "y":
                i += len(re.match(r"\d*", text[i:]).group())
            elif ch not in "egY":
                raise ValueError(f"unknown lookup() flag '{ch}' in '{text}'")
    if ua is not None:
        try:
            f.ua_regex = re.compile(ua, re.I if icase else 0)
        except re.error as e:
            raise ValueError(f"bad user-agent regex '{ua}': {e}") from None
    return f

"""Transformation registry: `{class.name,p1,p2}` with OpenSIPS 3.6 semantics.

The front end parses `$(pv{class.name,p1,p2}{...})` into a name and params; the compiler
calls `check()` once per transformation at load time (OpenSIPS "fixup": unknown name or a
wrong parameter count is a start-up error) and `apply()` per message with the params already
evaluated to script values.

Value model (as everywhere in the engine): a script value is ``None`` (NULL), ``int`` or
``str``.  An ``int`` stands for a value that has both an integer and its decimal string (what
`$var`/`$avp` hold after an integer assignment), so transformations that need text use the
decimal string and the ones that read the integer (`s.int`, `s.hex2dec`, `s.dec2hex`) use it
directly, as OpenSIPS does.

Binary strings (`s.decode.hexa`, `s.b64decode`, `ip.pton`, `s.xor`) are ``str`` holding bytes
decoded as UTF-8 with ``surrogateescape``; every byte-exact operation (`s.len`, `s.substr`,
`s.index`, hashes, hex, base64, xor, ...) works on the UTF-8/surrogateescape bytes of a
non-ASCII string, so lengths and offsets are byte counts as in OpenSIPS, and binary values
round-trip (`$(var(ip){ip.pton}{ip.ntop})`).

Rules common to all classes (OpenSIPS `transformations.c`):
  * NULL input -> NULL output, the transformation is a no-op;
  * any error (bad input, out of range, parse failure) -> NULL;
  * `uri.`, `via.`, `param.`, `nameaddr.`, `csv.`, `ip.`, `re.` need a non-empty string:
    an empty string is an error (NULL).

Modules add their own with the `@transform("class.name", min_params, max_params)` decorator.
"""
from __future__ import annotations

import base64
import binascii
import calendar
import difflib
import functools
import hashlib
import hmac
import ipaddress
import re
import socket
import zlib
from dataclasses import dataclass
from typing import Callable, Optional

__all__ = [
    "TransformError", "TransformSpec", "TRANSFORMS", "transform", "check", "apply",
    "apply_chain",
]


class TransformError(ValueError):
    """A bad transformation name, parameter count or constant parameter, found at load."""


@dataclass(frozen=True)
class TransformSpec:
    name: str
    fn: Callable                 # fn(value, *params) -> None | int | str
    min_params: int = 0
    max_params: int = 0
    # validate(params) at load time; params are the constant values (int/str) or any other
    # object for a parameter only known at run time (a PV).  Raises TransformError.
    validate: Optional[Callable] = None


TRANSFORMS: dict[str, TransformSpec] = {}


def transform(name: str, min_params: int = 0, max_params: int = 0,
              validate: Optional[Callable] = None):
    """Decorator registering `fn(value, *params)` as transformation `name` (`class.name`)."""
    name = name.lower()
    if max_params < min_params:
        max_params = min_params

    def deco(fn):
        if name in TRANSFORMS:
            raise TransformError(f"transformation {{{name}}} is already registered")
        TRANSFORMS[name] = TransformSpec(name, fn, min_params, max_params, validate)
        return fn
    return deco


def _alias(alias: str, name: str) -> None:
    spec = TRANSFORMS[name]
    TRANSFORMS[alias] = TransformSpec(alias, spec.fn, spec.min_params, spec.max_params,
                                      spec.validate)


def _is_const(p) -> bool:
    return p is None or p.__class__ is int or p.__class__ is str


def check(name: str, nparams: int, params=None) -> TransformSpec:
    """Load-time fixup: the spec for `name`, or TransformError with a "did you mean" hint.

    `params`, when given, are the parameters as written: int/str for constants, any other
    object for a run-time value; constant ones are checked (OpenSIPS rejects e.g. a
    non-numeric `s.substr` offset, an empty `s.fill` token or a bad `re.subst` at start-up).
    """
    key = name.strip().lower()
    spec = TRANSFORMS.get(key)
    if spec is None:
        spec = _nameaddr_indexed(key)
    if spec is None:
        raise TransformError(_unknown_message(key))
    if not spec.min_params <= nparams <= spec.max_params:
        if spec.min_params == spec.max_params:
            want = f"{spec.min_params}"
        elif spec.max_params == spec.min_params + 1:
            want = f"{spec.min_params} or {spec.max_params}"
        else:
            want = f"{spec.min_params} to {spec.max_params}"
        plural = "" if want == "1" else "s"
        usage = _USAGE.get(spec.name, "")
        raise TransformError(
            f"transformation {{{key}}} takes {want} parameter{plural}, got {nparams}"
            + (f" (usage: {{{usage}}})" if usage else ""))
    if params is not None and spec.validate is not None:
        spec.validate(tuple(params))
    return spec


def _unknown_message(key: str) -> str:
    cls, dot, _ = key.partition(".")
    names = list(TRANSFORMS)
    classes = sorted({n.split(".", 1)[0] for n in names})
    if not dot and cls in classes:
        return f"invalid transformation {{{key}}}: expected {{{cls}.name}}"
    if not dot or cls not in classes:
        hint = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
        if not hint:
            close = difflib.get_close_matches(cls, classes, n=1, cutoff=0.5)
            if close:
                hint = [close[0] + key[len(cls):]] if dot else [close[0] + ".*"]
        msg = f"unknown transformation class '{cls}' in {{{key}}}"
    else:
        same = [n for n in names if n.startswith(cls + ".")]
        hint = difflib.get_close_matches(key, same, n=1, cutoff=0.5)
        msg = f"unknown transformation {{{key}}}"
    if hint:
        msg += f"; did you mean {{{hint[0]}}}?"
    return msg


def apply(spec: TransformSpec, value, params=()):
    """Run one transformation: NULL in -> NULL out; any failure -> NULL."""
    if value is None:
        return None
    try:
        return spec.fn(value, *params)
    except Exception:
        return None


def apply_chain(chain, value):
    """Run `[(spec, params), ...]` left to right (constant params only)."""
    for spec, params in chain:
        if value is None:
            return None
        try:
            value = spec.fn(value, *params)
        except Exception:
            return None
    return value


# --------------------------------------------------------------------------------------
# helpers

class _Fail(Exception):
    """Internal: the transformation fails (NULL result)."""


def _str(v) -> str:
    return v if v.__class__ is str else str(v)


def _nstr(v) -> str:
    """Input of the classes that need a non-empty string (uri, via, param, csv, ip, ...)."""
    s = v if v.__class__ is str else str(v)
    if not s:
        raise _Fail
    return s


def _tob(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")


def _fromb(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


def _num(p) -> int:
    """A numeric parameter: an int (a PV must hold an integer, as in OpenSIPS)."""
    if p.__class__ is int:
        return p
    if p.__class__ is str:          # a constant written with blanks: "{s.substr, 1 ,2}"
        t = p.strip()
        if t and (t.isdigit() or (t[0] in "+-" and t[1:].isdigit())):
            return int(t)
    raise _Fail


def _sp(p) -> str:
    """A string parameter (OpenSIPS stops a plain string parameter at whitespace)."""
    if p.__class__ is str:
        return p.rstrip(" \t\r\n")
    if p is None:
        raise _Fail
    return str(p)


def _i32(n: int) -> int:
    n &= 0xFFFFFFFF
    return n - 0x100000000 if n & 0x80000000 else n


def _str2sint_partial(s: str) -> int:
    """OpenSIPS str2sint as `s.int` uses it: optional sign, digits up to the first other
    character; no digits -> 0."""
    i = 0
    n = len(s)
    sign = 1
    if n and s[0] in "+-":
        sign = -1 if s[0] == "-" else 1
        i = 1
    j = i
    while j < n and "0" <= s[j] <= "9":
        j += 1
    return _i32(sign * int(s[i:j])) if j > i else 0


def _str2sint_full(s: str) -> int:
    """str2sint that must consume the whole string (`s.dec2hex`)."""
    t = s[1:] if s[:1] in ("+", "-") else s
    if not t or not t.isascii() or not t.isdigit():
        raise _Fail
    return _i32(int(s))


_WS = " \t\r\n"

# --------------------------------------------------------------------------------------
# validators (load time)


def _v_numbers(*idx, nonneg=(), pv=True):
    def v(params):
        for i in idx:
            if i < len(params):
                p = params[i]
                if not _is_const(p):
                    if not pv:
                        raise TransformError("this parameter does not accept a variable")
                    continue
                try:
                    n = _num(p)
                except _Fail:
                    raise TransformError(f"parameter {i + 1} must be a number, not {p!r}")
                if i in nonneg and n < 0:
                    raise TransformError(f"parameter {i + 1} must not be negative")
    return v


def _v_nonempty(*idx):
    def v(params):
        for i in idx:
            if i < len(params) and _is_const(params[i]) and not _sp(params[i]):
                raise TransformError(f"parameter {i + 1} must not be empty")
    return v


def _v_all(*validators):
    def v(params):
        for f in validators:
            f(params)
    return v


# ======================================================================================
# s.* -- string transformations


@transform("s.len")
def _s_len(v):
    s = _str(v)
    return len(s) if s.isascii() else len(_tob(s))


@transform("s.int")
def _s_int(v):
    if v.__class__ is int:
        return v
    return _str2sint_partial(v)


def _digest(algo):
    def fn(v):
        s = _str(v)
        return hashlib.new(algo, _tob(s)).hexdigest()
    return fn


for _a in ("md5", "sha1", "sha224", "sha256", "sha384", "sha512"):
    transform("s." + _a)(_digest(_a))


def _hmac(algo):
    def fn(v, key):
        k = _sp(key)
        return hmac.new(_tob(k), _tob(_str(v)), algo).hexdigest()
    return fn


for _a in ("sha1", "sha224", "sha256", "sha384", "sha512"):
    transform(f"s.{_a}_hmac", 1, 1)(_hmac(_a))


@transform("s.crc32")
def _s_crc32(v):
    return str(zlib.crc32(_tob(_str(v))))


@transform("s.encode.hexa")
def _s_encode_hexa(v):
    s = _str(v)
    return (s.encode("ascii") if s.isascii() else _tob(s)).hex()


_HEX = re.compile(r"[0-9a-fA-F]*$")


@transform("s.decode.hexa")
def _s_decode_hexa(v):
    s = _str(v)
    if len(s) & 1:
        s = s[:-1]              # OpenSIPS decodes len/2 byte pairs, a last odd digit is ignored
    if not _HEX.match(s):
        raise _Fail
    b = bytes.fromhex(s)
    return b.decode("ascii") if b.isascii() else _fromb(b)


@transform("s.hex2dec")
def _s_hex2dec(v):
    if v.__class__ is int:
        return v                # "already converted"
    if not _HEX.match(v):
        raise _Fail
    return _i32(int(v, 16)) if v else 0


@transform("s.dec2hex")
def _s_dec2hex(v):
    n = v if v.__class__ is int else _str2sint_full(v)
    return format(n & 0xFFFFFFFF, "x")


_ESC_COMMON = str.maketrans({"'": "\\'", '"': '\\"', "\\": "\\\\", "\0": "\\0"})
_UNESC_COMMON = re.compile(r"\\(['\"\\0])")
_UNESC_COMMON_MAP = {"'": "'", '"': '"', "\\": "\\", "0": "\0"}


@transform("s.escape.common")
def _s_escape_common(v):
    return _str(v).translate(_ESC_COMMON)


@transform("s.unescape.common")
def _s_unescape_common(v):
    s = _str(v)
    if "\\" not in s:
        return s
    return _UNESC_COMMON.sub(lambda m: _UNESC_COMMON_MAP[m.group(1)], s)


def _escape_table(keep: str):
    tab = {}
    for c in range(32, 127):
        ch = chr(c)
        if not (ch.isalnum() or ch in keep):
            tab[c] = "%" + format(c, "02x")
    return tab


# RFC 3261 user = unreserved / user-unreserved, as OpenSIPS escape_user (which, unlike its
# own comment, escapes '/')
_ESC_USER = _escape_table("-_.!~*'()&=+$,;?")
# OpenSIPS escape_param escapes exactly these
_ESC_PARAM = {ord(c): "%" + format(ord(c), "02x") for c in ' ?&=,;"'}
_NOT_PRINTABLE = re.compile(r"[^\x20-\x7e]")
_PCT = re.compile(r"%(.?)(.?)")


def _escape(s: str, table) -> str:
    if _NOT_PRINTABLE.search(s):
        raise _Fail             # "invalid escaped character"
    return s.translate(table)


def _unescape_user(s: str) -> str:
    if "%" not in s:
        return s

    def rep(m):
        h = m.group(1) + m.group(2)
        if len(h) != 2 or not all(c in "0123456789abcdefABCDEF" for c in h):
            raise _Fail
        c = int(h, 16)
        if c < 32 or c > 126:
            raise _Fail
        return chr(c)
    return _PCT.sub(rep, s)


@transform("s.escape.user")
def _s_escape_user(v):
    return _escape(_str(v), _ESC_USER)


@transform("s.unescape.user")
def _s_unescape_user(v):
    return _unescape_user(_str(v))


@transform("s.escape.param")
def _s_escape_param(v):
    return _escape(_str(v), _ESC_PARAM)


@transform("s.unescape.param")
def _s_unescape_param(v):
    return _unescape_user(_str(v))


_LOWER = {c: c + 32 for c in range(65, 91)}
_UPPER = {c + 32: c for c in range(65, 91)}


@transform("s.tolower")
def _s_tolower(v):
    s = _str(v)
    return s.lower() if s.isascii() else s.translate(_LOWER)


@transform("s.toupper")
def _s_toupper(v):
    s = _str(v)
    return s.upper() if s.isascii() else s.translate(_UPPER)


@transform("s.reverse")
def _s_reverse(v):
    s = _str(v)
    return s[::-1] if s.isascii() else _fromb(_tob(s)[::-1])


@transform("s.substr", 2, 2, validate=_v_numbers(0, 1))
def _s_substr(v, off, length):
    s = _str(v)
    i = _num(off)
    j = _num(length)
    b = s if s.isascii() else _tob(s)
    n = len(b)
    if i < 0:
        if -i > n:
            raise _Fail         # negative start out of range
        i += n
    if i >= n:
        raise _Fail             # start out of range (so never on an empty string)
    if j < 1:
        j = n + j - i           # 0: to the end; <0: end counted from the end
    if i + j > n:
        j = n - i
    if j <= 0:
        return ""
    r = b[i:i + j]
    return r if b is s else _fromb(r)


def _v_select(params):
    _v_numbers(0)(params)
    if len(params) > 1 and _is_const(params[1]) and not _str(params[1] or ""):
        raise TransformError("s.select needs a separator character")


@transform("s.select", 2, 2, validate=_v_select)
def _s_select(v, idx, sep):
    s = _str(v)
    i = _num(idx)
    sep = sep if sep.__class__ is str else _str(sep)
    if not sep:
        raise _Fail
    fields = s.split(sep[0])
    if i >= len(fields) or -i > len(fields):
        return None             # no such field -> NULL; an empty field is ""
    return fields[i]


def _index(v, needle, off, reverse: bool):
    s = _str(v)
    nd = _sp(needle)
    if not nd:
        raise _Fail
    if not s.isascii() or not nd.isascii():
        s = _tob(s)
        nd = _tob(nd)
    n = len(s)
    m = len(nd)
    if off is None:
        i = n - 1 if reverse else 0
    else:
        i = _num(off)
    if i < 0:                   # negative offsets wrap: -2 and -12 are the same on length 10
        if n > 0:
            i = (-i) % n
            if i > 0:
                i = n - i
        else:
            i = 0
    if not reverse:
        if i >= n or m > n - i:
            return None
        r = s.find(nd, i)
        return None if r < 0 else r
    if m > n:
        return None
    if i >= n:
        i = n - 1
    if m > n - i:
        i = n - m
    r = s.rfind(nd, 0, i + m)
    return None if r < 0 else r


@transform("s.index", 1, 2, validate=_v_all(_v_nonempty(0), _v_numbers(1)))
def _s_index(v, needle, off=None):
    return _index(v, needle, off, False)


@transform("s.rindex", 1, 2, validate=_v_all(_v_nonempty(0), _v_numbers(1)))
def _s_rindex(v, needle, off=None):
    return _index(v, needle, off, True)


def _fill_token(p) -> str:
    t = p if p.__class__ is str else _str(p)
    t = t.strip(_WS)
    if len(t) > 1 and t[0] == t[-1] and t[0] in "'\"":
        t = t[1:-1]
    return t


def _v_fill(params):
    if params and not _is_const(params[0]):
        raise TransformError("s.fill does not accept a variable as the padding token")
    if params and not _fill_token(params[0]):
        raise TransformError("s.fill with an empty token is a no-op; quote a blank: ' '")
    if len(params) > 1 and not _is_const(params[1]):
        raise TransformError("s.fill does not accept a variable as the length")
    _v_numbers(1)(params)


def _fill(v, tok, length, left: bool):
    tok = _fill_token(tok)
    if not tok:
        raise _Fail
    s = _str(v)
    n = len(s) if s.isascii() else len(_tob(s))
    pad = _num(length) - n
    if pad < 0:
        return v                # no padding needed: the value is returned as it was
    if len(tok) == 1:
        fill = tok * pad
    elif left:
        r = pad % len(tok)      # a partial token first (its tail), then whole tokens
        fill = tok[len(tok) - r:] + tok * (pad // len(tok)) if r else tok * (pad // len(tok))
    else:
        fill = (tok * (pad // len(tok) + 1))[:pad]
    return fill + s if left else s + fill


@transform("s.fill.left", 2, 2, validate=_v_fill)
def _s_fill_left(v, tok, length):
    return _fill(v, tok, length, True)


@transform("s.fill.right", 2, 2, validate=_v_fill)
def _s_fill_right(v, tok, length):
    return _fill(v, tok, length, False)


@transform("s.width", 1, 1, validate=_v_numbers(0, nonneg=(0,)))
def _s_width(v, width):
    w = _num(width)
    if w <= 0:
        raise _Fail
    s = _str(v)
    if not s.isascii():
        b = _tob(s)
        return _fromb(b[:w]) if w <= len(b) else s + " " * (w - len(b))
    return s[:w] if w <= len(s) else s + " " * (w - len(s))


@transform("s.trim")
def _s_trim(v):
    return _str(v).strip(_WS)


@transform("s.trimr")
def _s_trimr(v):
    return _str(v).rstrip(_WS)


@transform("s.triml")
def _s_triml(v):
    return _str(v).lstrip(_WS)


@transform("s.b64encode")
def _s_b64encode(v):
    return base64.b64encode(_tob(_str(v))).decode("ascii")


_B64_JUNK = re.compile(r"[^A-Za-z0-9+/]")


@transform("s.b64decode")
def _s_b64decode(v):
    s = _str(v)
    data = _B64_JUNK.sub("", s.split("=", 1)[0])
    if len(data) % 4 == 1:
        raise _Fail
    try:
        b = base64.b64decode(data + "=" * (-len(data) % 4))
    except (binascii.Error, ValueError):
        raise _Fail
    return b.decode("ascii") if b.isascii() else _fromb(b)


@transform("s.xor", 1, 1, validate=_v_nonempty(0))
def _s_xor(v, secret):
    key = _tob(_sp(secret))
    if not key:
        raise _Fail
    data = _tob(_str(v))
    k = len(key)
    out = bytes(c ^ key[i % k] for i, c in enumerate(data))
    return out.decode("ascii") if out.isascii() else _fromb(out)


@transform("s.eval")
def _s_eval(v):
    # the engine expands the value as a format string; the transformation itself is identity
    return v


_MONTHS = {m.lower(): i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
_RFC1123 = re.compile(
    r"[ \t]*(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun),[ \t]*)?(\d{1,2})[ \t]+([A-Za-z]{3})[ \t]+"
    r"(\d{4})[ \t]+(\d{1,2}):(\d{2}):(\d{2})[ \t]+GMT[ \t\r\n]*$", re.IGNORECASE)


@transform("s.date2unix")
def _s_date2unix(v):
    m = _RFC1123.match(_str(v))
    if not m:
        raise _Fail
    day, mon, year, hh, mm, ss = m.groups()
    month = _MONTHS.get(mon.lower())
    if month is None:
        raise _Fail
    d, h, mi, se = int(day), int(hh), int(mm), int(ss)
    if not (1 <= d <= 31 and h < 24 and mi < 60 and se < 61):
        raise _Fail
    return calendar.timegm((int(year), month, d, h, mi, se, 0, 0, 0))


# ======================================================================================
# param.* -- `a=1;b=2` lists (OpenSIPS parse_params)


@functools.lru_cache(maxsize=512)
def _parse_params(s: str) -> tuple:
    """`name[=value];...` -> ((name, value), ...); value "" when absent, quotes removed.
    Raises ValueError on bad syntax.  A ',' or '>' ends the list."""
    out = []
    i = 0
    n = len(s)
    while True:
        j = i
        while j < n and s[j] not in " \t\r\n;,=":
            j += 1
        name = s[i:j]
        while j < n and s[j] in _WS:
            j += 1
        value = ""
        if j < n and s[j] == "=":
            j += 1
            while j < n and s[j] in _WS:
                j += 1
            if j >= n:
                raise ValueError("parameter body missing")
            if s[j] == '"':
                e = s.find('"', j + 1)
                if e < 0:
                    raise ValueError("unterminated quoted parameter")
                value = s[j + 1:e]
                j = e + 1
            else:
                k = j
                while k < n and s[k] not in " \t\r\n,;":
                    k += 1
                if k == j:
                    raise ValueError("bad parameter body")
                value = s[j:k]
                j = k
            while j < n and s[j] in _WS:
                j += 1
        out.append((name, value))
        if j >= n or s[j] in ",>":
            return tuple(out)
        if s[j] != ";":
            raise ValueError("';' expected")
        j += 1
        while j < n and s[j] in _WS:
            j += 1
        if j >= n:
            raise ValueError("parameter name missing after ';'")
        i = j


def _params_of(v) -> tuple:
    try:
        return _parse_params(_nstr(v))
    except ValueError:
        raise _Fail


def _find_param(params, name: str):
    name = name.lower()
    for k, val in params:
        if k.lower() == name:
            return val
    return None


def _at(seq, n: int):
    if n >= len(seq) or -n > len(seq):
        return None
    return seq[n]


@transform("param.value", 1, 1, validate=_v_nonempty(0))
def _param_value(v, name):
    return _find_param(_params_of(v), _sp(name))


@transform("param.exist", 1, 1, validate=_v_nonempty(0))
def _param_exist(v, name):
    key = _sp(name).lower()
    return 1 if any(k.lower() == key for k, _ in _params_of(v)) else 0


_alias("param.exists", "param.exist")


@transform("param.valueat", 1, 1, validate=_v_numbers(0))
def _param_valueat(v, idx):
    p = _at(_params_of(v), _num(idx))
    return None if p is None else p[1]


@transform("param.name", 1, 1, validate=_v_numbers(0))
def _param_name(v, idx):
    p = _at(_params_of(v), _num(idx))
    return None if p is None else p[0]


@transform("param.count")
def _param_count(v):
    return len(_params_of(v))


# ======================================================================================
# csv.* -- RFC 4180 comma-separated lists


@functools.lru_cache(maxsize=256)
def _parse_csv(s: str) -> tuple:
    if s.endswith("\r\n"):
        s = s[:-2]
    if _NOT_PRINTABLE.search(s):
        raise ValueError("invalid CSV")
    out = []
    n = len(s)
    start = 0
    i = 0
    while i < n:
        c = s[i]
        if c == ",":
            out.append(s[start:i])
            start = i + 1
        elif c == '"' and i == start:
            j = i + 1
            buf = []
            while True:
                e = s.find('"', j)
                if e < 0:
                    raise ValueError("unterminated quoted CSV field")
                buf.append(s[j:e])
                if e + 1 < n and s[e + 1] == '"':
                    buf.append('"')
                    j = e + 2
                    continue
                break
            out.append("".join(buf))
            if e == n - 1:
                return tuple(out)
            if s[e + 1] != ",":
                raise ValueError("',' expected after a quoted CSV field")
            i = e + 1
            start = i + 1
        i += 1
    out.append(s[start:])
    return tuple(out)


def _csv_of(v) -> tuple:
    try:
        return _parse_csv(_nstr(v))
    except ValueError:
        raise _Fail


@transform("csv.count")
def _csv_count(v):
    return len(_csv_of(v))


@transform("csv.value", 1, 1, validate=_v_numbers(0))
def _csv_value(v, idx):
    return _at(_csv_of(v), _num(idx))


# ======================================================================================
# ip.*

_IP4 = re.compile(r"(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$")
_IP6_CHARS = re.compile(r"[0-9A-Fa-f:]+$")


def _str2ip(s: str) -> Optional[bytes]:
    m = _IP4.match(s)
    if not m:
        return None
    parts = [int(x) for x in m.groups()]
    if max(parts) > 255:
        return None
    return bytes(parts)


def _str2ip6(s: str) -> Optional[bytes]:
    if s[:1] == "[":
        if s[-1:] != "]":
            return None
        s = s[1:-1]
    if not s or not _IP6_CHARS.match(s):
        return None
    try:
        return ipaddress.IPv6Address(s).packed
    except ValueError:
        return None


def _ip2a(b: bytes) -> str:
    """OpenSIPS ip_addr2a: dotted quad; IPv6 as 8 uppercase hex groups, no '::'."""
    if len(b) == 4:
        return "%d.%d.%d.%d" % tuple(b)
    return ":".join("%X" % ((b[k] << 8) | b[k + 1]) for k in range(0, 16, 2))


@transform("ip.pton")
def _ip_pton(v):
    s = _nstr(v)
    b = _str2ip(s) or _str2ip6(s)
    if b is None:
        raise _Fail
    return _fromb(b)


def _binary_ip(v) -> bytes:
    b = _tob(_nstr(v))
    if len(b) not in (4, 16):
        raise _Fail
    return b


@transform("ip.ntop")
def _ip_ntop(v):
    return _ip2a(_binary_ip(v))


@transform("ip.family")
def _ip_family(v):
    return "INET" if len(_binary_ip(v)) == 4 else "INET6"


@transform("ip.isip")
def _ip_isip(v):
    s = _nstr(v)
    return 1 if _str2ip(s) is not None or _str2ip6(s) is not None else 0


@transform("ip.isip4")
def _ip_isip4(v):
    return 1 if _str2ip(_nstr(v)) is not None else 0


@transform("ip.isip6")
def _ip_isip6(v):
    return 1 if _str2ip6(_nstr(v)) is not None else 0


_PRIVATE4 = ((0x0A000000, 0xFF000000), (0xAC100000, 0xFFF00000),
             (0xC0A80000, 0xFFFF0000), (0x64400000, 0xFFC00000))


@transform("ip.isprivate")
def _ip_isprivate(v):
    b = _str2ip(_nstr(v))
    if b is None:
        return 0
    a = int.from_bytes(b, "big")
    return 1 if any(a & mask == net for net, mask in _PRIVATE4) else 0


@functools.lru_cache(maxsize=256)
def _parse_net(p: str):
    ip, slash, bits = p.partition("/")
    if not slash:
        raise ValueError("value not in ip/len format")
    b = _str2ip(ip) or _str2ip6(ip)
    if b is None or not bits.isdigit() or not bits.isascii() or int(bits) > len(b) * 8:
        raise ValueError("bad network")
    nbits = int(bits)
    width = len(b) * 8
    mask = ((1 << nbits) - 1) << (width - nbits) if nbits else 0
    return len(b), int.from_bytes(b, "big") & mask, mask


def _v_net(params):
    if params and _is_const(params[0]):
        try:
            _parse_net(_sp(params[0]))
        except ValueError as e:
            raise TransformError(f"ip.matches: {e}: {params[0]!r}")


@transform("ip.matches", 1, 1, validate=_v_net)
def _ip_matches(v, net):
    s = _nstr(v)
    b = _str2ip(s) or _str2ip6(s)
    if b is None:
        raise _Fail
    try:
        family, addr, mask = _parse_net(_sp(net))
    except ValueError:
        raise _Fail
    if family != len(b):
        raise _Fail             # different address families cannot be compared
    return 1 if int.from_bytes(b, "big") & mask == addr else 0


@transform("ip.resolve")
def _ip_resolve(v):
    s = _nstr(v)
    b = _str2ip(s) or _str2ip6(s)
    if b is not None:
        return _ip2a(b)
    if s.lower() in ("localhost", "localhost.", "localhost.localdomain"):
        return "127.0.0.1"
    try:
        infos = socket.getaddrinfo(s, None, proto=socket.IPPROTO_UDP)
    except (OSError, UnicodeError):
        return None
    for want in (socket.AF_INET, socket.AF_INET6):
        for family, _, _, _, addr in infos:
            if family == want:
                b = socket.inet_pton(family, addr[0].split("%", 1)[0])
                return _ip2a(b)
    return None


# ======================================================================================
# re.subst -- /re/repl/flags with POSIX extended regular expressions

_POSIX_CLASSES = {
    "alpha": "a-zA-Z", "digit": "0-9", "alnum": "0-9a-zA-Z", "upper": "A-Z",
    "lower": "a-z", "space": " \\t\\n\\r\\f\\v", "blank": " \\t",
    "punct": re.escape("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"),
    "print": "\\x20-\\x7e", "graph": "\\x21-\\x7e", "cntrl": "\\x00-\\x1f\\x7f",
    "xdigit": "0-9A-Fa-f", "word": "\\w",
}


def _bracket(p: str, i: int, newline: bool):
    """POSIX bracket expression at p[i] == '[' -> (end index, Python class)."""
    n = len(p)
    j = i + 1
    neg = j < n and p[j] == "^"
    if neg:
        j += 1
    items = []
    first = True
    while True:
        if j >= n:
            raise re.error("unterminated bracket expression")
        c = p[j]
        if c == "]" and not first:
            j += 1
            break
        first = False
        if c == "[" and j + 1 < n and p[j + 1] in ":=.":
            kind = p[j + 1]
            e = p.find(kind + "]", j + 2)
            if e < 0:
                raise re.error("unterminated character class")
            name = p[j + 2:e]
            j = e + 2
            if kind == ":":
                if name not in _POSIX_CLASSES:
                    raise re.error(f"unknown character class [:{name}:]")
                items.append(_POSIX_CLASSES[name])
            else:
                items.append(re.escape(name))
            continue
        if j + 2 < n and p[j + 1] == "-" and p[j + 2] != "]":
            lo, hi = c, p[j + 2]
            if ord(lo) > ord(hi):
                raise re.error("invalid range end")
            items.append(re.escape(lo) + "-" + re.escape(hi))
            j += 3
            continue
        items.append(re.escape(c))      # '\' is literal inside POSIX brackets
        j += 1
    if neg and newline:
        items.append("\\n")             # REG_NEWLINE: a non-matching list excludes newline
    return j, "[" + ("^" if neg else "") + "".join(items) + "]"


def posix_to_python(pat: str, newline: bool = True) -> str:
    """Translate a POSIX extended regular expression (glibc flavour: \\w \\s \\b \\< \\>
    and back-references are understood; \\d is a plain 'd') to Python `re` syntax."""
    out = []
    i = 0
    n = len(pat)
    while i < n:
        c = pat[i]
        if c == "\\":
            i += 1
            if i >= n:
                raise re.error("trailing backslash")
            d = pat[i]
            if d in "123456789" or d in "wWsSbB":
                out.append("\\" + d)
            elif d == "<":
                out.append(r"\b(?=\w)")
            elif d == ">":
                out.append(r"\b(?<=\w)")
            elif d == "`":
                out.append(r"\A")
            elif d == "'":
                out.append(r"\Z")
            else:
                out.append(re.escape(d))
            i += 1
        elif c == "[":
            i, cls = _bracket(pat, i, newline)
            out.append(cls)
        else:
            out.append(c)
            i += 1
    return "".join(out)


@dataclass(frozen=True)
class _Subst:
    regex: re.Pattern
    repl: tuple            # str pieces and int group numbers
    global_: bool


_SUBST_CACHE: dict[str, _Subst] = {}


def _compile_subst(expr: str) -> _Subst:
    """Parse and compile `/re/repl/flags` (any separator); ValueError when invalid."""
    cached = _SUBST_CACHE.get(expr)
    if cached is not None:
        return cached
    s = expr.replace("\\{", "{").replace("\\}", "}")
    n = len(s)
    if n < 3:
        raise ValueError("expression is too short")
    sep = s[0]
    if sep == "\\":
        raise ValueError("invalid separator '\\'")
    i = 1
    while i < n and not (s[i] == sep and s[i - 1] != "\\"):
        i += 1
    if i >= n:
        raise ValueError("no separator found")
    re_text = s[1:i]
    if n < i + 2:
        raise ValueError("expression is too short")
    repl: list = []
    lit: list = []
    j = i + 1
    while True:
        if j >= n:
            raise ValueError("missing separator after the replacement")
        c = s[j]
        if c == "\\":
            j += 1
            if j >= n:
                raise ValueError("missing separator after the replacement")
            d = s[j]
            if "0" <= d <= "9":
                if lit:
                    repl.append("".join(lit))
                    lit = []
                repl.append(int(d))
            elif d == "u":
                pass            # \u (the request URI) needs the message: not supported here
            else:
                lit.append({"n": "\n", "r": "\r", "t": "\t"}.get(d, d))
        elif c == sep:
            break
        else:
            lit.append(c)
        j += 1
    if lit:
        repl.append("".join(lit))
    flags = 0
    newline = True
    global_ = False
    for f in s[j + 1:]:
        if f == "i":
            flags |= re.IGNORECASE
        elif f == "s":
            newline = False
        elif f == "g":
            global_ = True
        else:
            raise ValueError(f"unknown flag '{f}'")
    flags |= re.MULTILINE if newline else re.DOTALL
    try:
        rx = re.compile(posix_to_python(re_text, newline), flags)
    except (re.error, OverflowError, RecursionError) as e:
        raise ValueError(f"bad regular expression: {e}")
    res = _Subst(rx, tuple(repl), global_)
    if len(_SUBST_CACHE) >= 1024:
        _SUBST_CACHE.clear()
    _SUBST_CACHE[expr] = res
    return res


def _v_subst(params):
    if params and _is_const(params[0]):
        try:
            _compile_subst(_sp(params[0]))
        except ValueError as e:
            raise TransformError(f"re.subst: {e}: {params[0]!r}")


@transform("re.subst", 1, 1, validate=_v_subst)
def _re_subst(v, expr):
    s = _nstr(v)
    try:
        sub = _compile_subst(_sp(expr))
    except ValueError:
        raise _Fail
    rx = sub.regex
    out = []
    pos = 0
    last = 0
    while True:
        m = rx.search(s, pos)
        if m is None:
            break
        a, b = m.span()
        if a == b:
            raise _Fail         # an empty match is an error in OpenSIPS
        out.append(s[last:a])
        for piece in sub.repl:
            if piece.__class__ is int:
                if piece <= rx.groups:
                    g = m.group(piece)
                    if g:
                        out.append(g)
            else:
                out.append(piece)
        last = pos = b
        if not sub.global_:
            break
    if not out:
        return v                # no match: the value is left as it was
    out.append(s[last:])
    return "".join(out)


# ======================================================================================
# usage strings for the "wrong parameter count" message

_USAGE = {
    "s.substr": "s.substr,offset,length", "s.select": "s.select,index,separator",
    "s.index": "s.index,needle[,offset]", "s.rindex": "s.rindex,needle[,offset]",
    "s.fill.left": "s.fill.left,token,length", "s.fill.right": "s.fill.right,token,length",
    "s.width": "s.width,length", "s.xor": "s.xor,secret",
    "s.sha1_hmac": "s.sha1_hmac,key", "s.sha224_hmac": "s.sha224_hmac,key",
    "s.sha256_hmac": "s.sha256_hmac,key", "s.sha384_hmac": "s.sha384_hmac,key",
    "s.sha512_hmac": "s.sha512_hmac,key",
    "param.value": "param.value,name", "param.exist": "param.exist,name",
    "param.exists": "param.exists,name", "param.valueat": "param.valueat,index",
    "param.name": "param.name,index", "csv.value": "csv.value,index",
    "ip.matches": "ip.matches,ip/len", "re.subst": "re.subst,/re/repl/flags",
    "uri.param": "uri.param,name", "via.param": "via.param,name",
    "nameaddr.param": "nameaddr.param,name",
}


# ======================================================================================
# uri.* -- parts of a SIP/SIPS/TEL URI (runtime.sip.uri)

# The SIP parsers are imported on first use (they raise SIPError, a ValueError).

@functools.lru_cache(maxsize=512)
def _parse_uri(s: str):
    from .sip.uri import URI
    return URI.parse(s)


def _uri_of(v):
    try:
        return _parse_uri(_nstr(v))
    except ValueError:
        raise _Fail


def _nz(s):
    """OpenSIPS returns NULL for an empty part."""
    return s if s else None


@transform("uri.user")
def _uri_user(v):
    return _nz(_uri_of(v).user)


@transform("uri.host")
def _uri_host(v):
    return _nz(_uri_of(v).host)


_alias("uri.domain", "uri.host")


@transform("uri.passwd")
def _uri_passwd(v):
    return _nz(_uri_of(v).password)


@transform("uri.port")
def _uri_port(v):
    return _uri_of(v).port          # int, or NULL when the URI has no port


@transform("uri.params")
def _uri_params(v):
    u = _uri_of(v)
    if not u.params:
        return None
    return ";".join(k if val is None else f"{k}={val}" for k, val in u.params)


@transform("uri.param", 1, 1, validate=_v_nonempty(0))
def _uri_param(v, name):
    return _uri_of(v).param(_sp(name))   # "" for a parameter without a value


@transform("uri.headers")
def _uri_headers(v):
    return _nz(_uri_of(v).headers)


def _uri_named_param(pname: str):
    def fn(v):
        return _nz(_uri_of(v).param(pname))  # absent or without a value -> NULL
    return fn


for _t, _p in (("transport", "transport"), ("ttl", "ttl"), ("uparam", "user"),
               ("maddr", "maddr"), ("method", "method"), ("lr", "lr"), ("r2", "r2")):
    transform("uri." + _t)(_uri_named_param(_p))


@transform("uri.schema")
def _uri_schema(v):
    return _uri_of(v).scheme


# ======================================================================================
# via.* -- parts of one Via body (runtime.sip.headers.Via)

_VIA_COMMENT = re.compile(r"[ \t]*\(([^()]*)\)[ \t]*$")


@functools.lru_cache(maxsize=256)
def _parse_via(s: str):
    from .sip.headers import Via, split_commas
    if "," in s:
        s = split_commas(s)[0]
    comment = None
    if s.endswith(")"):
        m = _VIA_COMMENT.search(s)
        if m:
            comment = m.group(1)
            s = s[:m.start()]
    return Via.parse(s), comment


def _via_of(v):
    s = _nstr(v)
    if len(s) <= 2:
        raise _Fail
    try:
        return _parse_via(s)
    except ValueError:
        raise _Fail


@transform("via.name")
def _via_name(v):
    return _via_of(v)[0].protocol.split("/")[0]


@transform("via.version")
def _via_version(v):
    return _via_of(v)[0].protocol.split("/")[1]


@transform("via.transport")
def _via_transport(v):
    return _via_of(v)[0].protocol.split("/")[2]


@transform("via.host")
def _via_host(v):
    return _nz(_via_of(v)[0].host)


_alias("via.domain", "via.host")


@transform("via.port")
def _via_port(v):
    return _via_of(v)[0].port       # int, or NULL when the Via has no port


@transform("via.comment")
def _via_comment(v):
    return _nz(_via_of(v)[1])


@transform("via.params")
def _via_params(v):
    via = _via_of(v)[0]
    if not via.params:
        return None
    return ";".join(k if val is None else f"{k}={val}" for k, val in via.params)


@transform("via.param", 1, 1, validate=_v_nonempty(0))
def _via_param(v, name):
    return _via_of(v)[0].param(_sp(name))   # "" for a parameter without a value


@transform("via.branch")
def _via_branch(v):
    return _nz(_via_of(v)[0].branch)


@transform("via.received")
def _via_received(v):
    return _nz(_via_of(v)[0].received)


@transform("via.rport")
def _via_rport(v):
    return _nz(_via_of(v)[0].rport)


# ======================================================================================
# nameaddr.* -- `"display" <uri>;params` (runtime.sip.headers.NameAddr); the indexed form
# `nameaddr.N.field` picks the N-th of a comma-separated list (negative: from the end)


def _params_start(s: str) -> int:
    """Index of the ';' that starts the header parameters of one name-addr, or -1."""
    i = 0
    n = len(s)
    angle = False
    while i < n:
        c = s[i]
        if c == '"' and not angle:
            i += 1
            while i < n and s[i] != '"':
                i += 2 if s[i] == "\\" else 1
        elif c == "<":
            angle = True
        elif c == ">":
            angle = False
        elif c == ";" and not angle:
            return i
        i += 1
    return -1


@functools.lru_cache(maxsize=256)
def _parse_nameaddrs(s: str) -> tuple:
    """((NameAddr, element text), ...) for a comma-separated list of name-addrs."""
    from .sip.headers import NameAddr, split_commas
    parts = split_commas(s) if "," in s else [s.strip(" \t\r\n")]
    return tuple((NameAddr.parse(p), p) for p in parts)


def _nameaddr_of(v, idx: int = 0):
    try:
        items = _parse_nameaddrs(_nstr(v))
    except ValueError:
        raise _Fail
    if idx >= len(items) or -idx > len(items):
        raise _Fail
    return items[idx]


def _na_uri(v, idx=0):
    return _nz(_nameaddr_of(v, idx)[0].uri)


def _na_name(v, idx=0):
    na = _nameaddr_of(v, idx)[0]
    if not na.display:
        return None
    return f'"{na.display}"' if na.quoted else na.display    # as written, quotes included


def _na_len(v, idx=0):
    text = _nameaddr_of(v, idx)[1]
    semi = _params_start(text)
    body = text if semi < 0 else text[:semi]
    return len(body) if body.isascii() else len(_tob(body))


def _na_param(v, name, idx=0):
    key = _sp(name)
    for k, val in _nameaddr_of(v, idx)[0].params:
        if k == key:                # case-sensitive, as OpenSIPS
            if val and val[:1] == '"':
                val = val[1:-1]
            return _nz(val)
    return None


def _na_params(v, idx=0):
    na, text = _nameaddr_of(v, idx)
    if not na.params:
        return None
    semi = _params_start(text)
    return text[semi + 1:].strip(" \t\r\n")


_NAMEADDR_FIELDS = {
    "uri": (_na_uri, 0), "name": (_na_name, 0), "len": (_na_len, 0),
    "param": (_na_param, 1), "params": (_na_params, 0),
}

for _f, (_fn, _np) in _NAMEADDR_FIELDS.items():
    transform("nameaddr." + _f, _np, _np, validate=_v_nonempty(0) if _np else None)(_fn)

_NAMEADDR_INDEXED: dict[str, TransformSpec] = {}
_NA_INDEX = re.compile(r"nameaddr\.([-+]?\d+)\.([a-z]+)$")


def _nameaddr_indexed(key: str) -> Optional[TransformSpec]:
    spec = _NAMEADDR_INDEXED.get(key)
    if spec is not None:
        return spec
    m = _NA_INDEX.match(key)
    if m is None or m.group(2) not in _NAMEADDR_FIELDS:
        return None
    idx = int(m.group(1))
    fn, np_ = _NAMEADDR_FIELDS[m.group(2)]
    if np_:
        def bound(v, name, _fn=fn, _idx=idx):
            return _fn(v, name, _idx)
    else:
        def bound(v, _fn=fn, _idx=idx):
            return _fn(v, _idx)
    spec = TransformSpec(key, bound, np_, np_, _v_nonempty(0) if np_ else None)
    _NAMEADDR_INDEXED[key] = spec
    return spec

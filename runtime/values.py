"""Script values and the operators on them, with OpenSIPS 3.x semantics.

A value is None (NULL), an int, or a str. Conditions evaluate to 1 (true), 0 (false) or -1
(error: the `if` takes its else branch). Strings compare case-insensitively.
"""
from __future__ import annotations

import ipaddress
import re
from functools import lru_cache


class ExprError(ValueError):
    """A type error in an expression: the assignment fails, the condition is an error."""


# --- truth ---------------------------------------------------------------------------------

def truth(v) -> int:
    """A value used alone as a condition: NULL, '' and int 0 are false."""
    if v is None:
        return 0
    if v.__class__ is int:
        return 1 if v else 0
    return 1 if v else 0


def bracket_truth(v, lone_pv: bool) -> int:
    """`[ expr ]`: a lone PV is true for any non-NULL value (OpenSIPS quirk)."""
    if lone_pv:
        return 0 if v is None else 1
    return truth(v)


# --- regexes -------------------------------------------------------------------------------

_POSIX_CLASSES = {
    "[:alpha:]": "a-zA-Z", "[:digit:]": "0-9", "[:alnum:]": "a-zA-Z0-9", "[:upper:]": "A-Z",
    "[:lower:]": "a-z", "[:space:]": r" \t\r\n\v\f", "[:blank:]": r" \t", "[:punct:]":
    r"!-/:-@\[-`{-~", "[:xdigit:]": "0-9A-Fa-f", "[:print:]": r" -~", "[:graph:]": r"!-~",
    "[:cntrl:]": r"\x00-\x1f\x7f",
}
_POSIX_RE = re.compile(r"\[:[a-z]+:\]")


def ere_to_python(pattern: str) -> str:
    """POSIX ERE (as regcomp reads it) to Python `re` syntax."""
    if "[:" in pattern:
        pattern = _POSIX_RE.sub(lambda m: _POSIX_CLASSES.get(m.group(0), m.group(0)), pattern)
    return pattern


@lru_cache(maxsize=1024)
def compile_regex(pattern: str, icase: bool = True, newline: bool = False) -> re.Pattern:
    """Compile a script regex; raises re.error (a load-time error for constants).
    `newline`: ^ and $ also match at line ends (REG_NEWLINE, as module regex params)."""
    flags = (re.IGNORECASE if icase else 0) | (re.MULTILINE if newline else 0)
    return re.compile(ere_to_python(pattern), flags)


def parse_subst(text: str):
    """A sed-like `/re/repl/flags` (any delimiter, OpenSIPS's subst_parser): (compiled
    regex, Python replacement, all?). Flags: i (ignore case), s (^ and $ only at the ends
    of the text), g (every match). ValueError when it is not one."""
    text = str(text)
    if len(text) < 4:
        raise ValueError(f"bad substitution '{text}'")
    d = text[0]
    parts = re.split(r"(?<!\\)" + re.escape(d), text[1:])
    if len(parts) != 3:
        raise ValueError(f"bad substitution '{text}' (expected {d}re{d}repl{d}flags)")
    pattern, repl, flags = parts
    pattern = pattern.replace("\\" + d, d)
    flags_i = re.I if "i" in flags else 0
    try:
        rx = re.compile(ere_to_python(pattern), flags_i | (0 if "s" in flags else re.M))
    except re.error as e:
        raise ValueError(f"bad regex in '{text}': {e}")
    py_repl = re.sub(r"\\(\d)", r"\\g<\1>", repl.replace("\\" + d, d))
    return rx, py_repl, "g" in flags


# --- comparisons ---------------------------------------------------------------------------

def _str_of(v):
    return v if v.__class__ is str else (str(v) if v.__class__ is int else None)


def cmp_str(op: str, left, right: str) -> int:
    """`PV op "string"` (== != < > <= >= are case-insensitive)."""
    if left is None:
        return 1 if op in ("!=", "!~", "ne", "ine") else 0
    ls = _str_of(left)
    if ls is None:
        return -1
    if op == "==" or op == "ieq":
        return 1 if ls.lower() == right.lower() else 0
    if op == "!=" or op == "ine":
        return 0 if ls.lower() == right.lower() else 1
    if op == "eq":
        return 1 if ls == right else 0
    if op == "ne":
        return 0 if ls == right else 1
    a, b = ls.lower(), right.lower()
    if op == "<":
        return 1 if a < b else 0
    if op == ">":
        return 1 if a > b else 0
    if op == "<=":
        return 1 if a <= b else 0
    if op == ">=":
        return 1 if a >= b else 0
    raise ExprError(f"operator {op} on strings")


def cmp_regex(negate: bool, left, rx: re.Pattern) -> int:
    if left is None:
        return 1 if negate else 0
    ls = _str_of(left)
    hit = rx.search(ls) is not None
    return (0 if hit else 1) if negate else (1 if hit else 0)


def cmp_int(op: str, left, right: int) -> int:
    """`PV op number`: the left side needs an integer value."""
    if left is None:
        return 1 if op == "!=" else 0
    if left.__class__ is not int:
        if isinstance(left, StrInt):
            left = left.ival
        else:
            return -1
    if op == "==":
        return 1 if left == right else 0
    if op == "!=":
        return 1 if left != right else 0
    if op == "<":
        return 1 if left < right else 0
    if op == ">":
        return 1 if left > right else 0
    if op == "<=":
        return 1 if left <= right else 0
    if op == ">=":
        return 1 if left >= right else 0
    return -1


def cmp_values(op: str, left, right) -> int:
    """`PV op PV` and other dynamic comparisons."""
    if op in ("=~", "!~"):
        if left is None or right is None:
            return 1 if (left is None and right is None) == (op == "=~") else 0
        try:
            rx = compile_regex(_str_of(right))
        except re.error:
            return -1
        return cmp_regex(op == "!~", left, rx)
    if left is None or right is None:
        if left is None and right is None:
            return 1 if op in ("==", "<=", ">=", "eq", "ieq") else 0
        return 1 if op in ("!=", "ne", "ine") else 0
    li = left if left.__class__ is int else (left.ival if isinstance(left, StrInt) else None)
    ri = right if right.__class__ is int else (right.ival if isinstance(right, StrInt) else None)
    if li is not None and ri is not None and (left.__class__ is int or right.__class__ is int):
        return cmp_int(op, li, ri)
    rs = _str_of(right)
    return cmp_str(op, left, rs)


def cmp_null(op: str, left) -> int:
    return (1 if left is None else 0) if op == "==" else (0 if left is None else 1)


@lru_cache(maxsize=256)
def parse_net(text: str):
    """`10.0.0.0/8`, `10.0.0.0/255.0.0.0`, `::1`, `[::1]/128` -> ip_network."""
    text = text.replace("[", "").replace("]", "")
    return ipaddress.ip_network(text, strict=False)


def cmp_net(op: str, left, net) -> int:
    if left is None:
        return 1 if op == "!=" else 0
    try:
        ip = ipaddress.ip_address(_str_of(left).strip("[]"))
    except ValueError:
        return 0 if op == "==" else 1
    hit = ip.version == net.version and ip in net
    return (1 if hit else 0) if op == "==" else (0 if hit else 1)


# --- arithmetic ----------------------------------------------------------------------------

_MASK = 0xFFFFFFFF


def _wrap(v: int) -> int:
    v &= _MASK
    return v - 0x100000000 if v & 0x80000000 else v


def _int_of(v, literal_right=False):
    if v is None:
        return 0
    if v.__class__ is int:
        return v
    if isinstance(v, StrInt):
        return v.ival
    raise ExprError("invalid numeric operands")


def binop(op: str, left, right, right_is_int_literal: bool = False):
    """`+ - * / % | & ^ << >>` in assignment expressions."""
    if left.__class__ is int:
        a, b = left, _int_of(right)
        if op == "+":
            return _wrap(a + b)
        if op == "-":
            return _wrap(a - b)
        if op == "*":
            return _wrap(a * b)
        if op in ("/", "%"):
            if b == 0:
                raise ExprError("division by zero")
            q = abs(a) // abs(b) * (1 if (a >= 0) == (b >= 0) else -1)  # C truncation
            return _wrap(q) if op == "/" else _wrap(a - q * b)
        if op == "|":
            return _wrap(a | b)
        if op == "&":
            return _wrap(a & b)
        if op == "^":
            return _wrap(a ^ b)
        if op == "<<":
            return _wrap(a << (b & 31))
        if op == ">>":
            return _wrap((a & _MASK) >> (b & 31)) if a >= 0 else _wrap(a >> (b & 31))
    if left is None and right is not None and right.__class__ is not int:
        left = ""
    if left is None:
        raise ExprError("NULL operand")
    if op == "+":
        if right_is_int_literal:
            raise ExprError("cannot add a number to a string")
        return str(left) + ("" if right is None else str(right))
    if op in ("|", "&", "^") and right is not None and len(str(right)) == len(str(left)):
        fn = {"|": int.__or__, "&": int.__and__, "^": int.__xor__}[op]
        return "".join(chr(fn(ord(x), ord(y))) for x, y in zip(str(left), str(right)))
    raise ExprError(f"invalid operands for '{op}'")


def unop(op: str, v):
    if op == "-":
        return _wrap(-_int_of(v))
    if op == "~":
        if v.__class__ is not int:
            raise ExprError("'~' needs an integer")
        return _wrap(~v)
    if op == "defined":
        return 0 if v is None else 1
    raise ExprError(f"unknown operator {op}")


class StrInt(str):
    """A string that also has an integer reading (OpenSIPS 'strint' PVs: $rp, $rm codes...)."""
    __slots__ = ("ival",)

    def __new__(cls, s, ival):
        obj = str.__new__(cls, s)
        obj.ival = ival
        return obj


def to_str(v) -> str:
    """A value in a format string: NULL prints as '<null>'."""
    if v is None:
        return "<null>"
    return v if v.__class__ is str else str(v)


def to_int(v):
    """An integer argument from a value, or None when it has no integer reading."""
    if v.__class__ is int:
        return v
    if isinstance(v, StrInt):
        return v.ival
    if isinstance(v, str):
        s = v.strip()
        if s.lstrip("+-").isdigit():
            return int(s)
    return None

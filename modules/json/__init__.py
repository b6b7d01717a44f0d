"""json: the $json(id) variable, a JSON document kept per process that scripts read and
change by path, as OpenSIPS's json module (json-c) does.

    $json(obj) := "{\\"a\\": [1, 2]}";       parse (a failure deletes the target, -1)
    $json(obj/b) = "text";                   set or add a string (an int stays an int)
    $json(obj/a[]) = 3;                      append;  $json(obj/a[-1]) = NULL deletes
    $json(obj/$var(k)[$var(i)])              keys and indexes from variables
    $json(obj)          -> { "a": [ 1, 2, 3 ], "b": "text" }   (json-c's spaced form)
    $json_compact(obj)  -> {"a":[1,2,3],"b":"text"}
    $json_pretty(obj)   -> two-space indented
    for ($var(k) in $(json(obj.keys)[*])) ...      .keys / .values / an array's elements
    json_link($json(stub), $json(obj/a))           a reference, not a copy

An integer reads as an integer, a string as a string, anything else (objects, arrays, true,
false) as its JSON text; a missing path or a JSON null reads as NULL. Writing under a path
whose parent does not exist fails (-1, a log line). Variables live for the whole process,
not per message.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from modules.json import jsonc
from runtime.module import BRANCH, EVENT, FAILURE, LOCAL, ONREPLY, REQUEST, STARTUP, TIMER, \
    VAR, Arg, Func, Module, Param
from runtime.pv import PVDef

exports = Module(
    name="json",
    params=[Param("disable_escape_forward_slash", int, 0)],
    functions=[
        Func("json_link", "json_link",
             [Arg(VAR, fixup=lambda v, rt: _json_pv(v), name="destination $json"),
              Arg(VAR, fixup=lambda v, rt: _json_pv(v), name="source $json")],
             REQUEST | ONREPLY | FAILURE | BRANCH | LOCAL | STARTUP | TIMER | EVENT),
    ],
)

_MISSING = object()
_DELETE = object()


class JSONPathError(ValueError):
    pass


# --- ids -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Path:
    name: str
    tags: tuple           # ("key", str|BoundPV) ("idx", int|BoundPV) ("end", None)
    iterate: str = ""     # "", "keys" or "values"
    text: str = ""
    dynamic: bool = False  # a variable in a key or index


def _pv_end(text, i):
    """The end of the PV starting at text[i] ('$'), balancing parentheses."""
    depth = 0
    j = i + 1
    while j < len(text):
        c = text[j]
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return j + 1
        elif depth == 0 and c in "/[]":
            return j
        j += 1
    return j


def _bind(text):
    from runtime.pv import PVError, bind, parse_pv_text
    try:
        return bind(parse_pv_text(text))
    except (PVError, ValueError) as e:
        raise JSONPathError(f"bad variable '{text}' in json path: {e}") from None


@lru_cache(maxsize=4096)
def parse_id(text: str) -> Path:
    """`name(/key|/$var|[int]|[$var]|[])*[.keys|.values]` (spaces are part of keys)."""
    raw = text
    iterate = ""
    for suffix in (".keys", ".values"):
        if text.endswith(suffix) and len(text) > len(suffix):
            iterate = suffix[1:]
            text = text[:-len(suffix)]
            break
    m = re.match(r"[^/\[]*", text)
    name = m.group(0)
    if not name:
        raise JSONPathError(f"json id '{raw}' has no variable name")
    i = m.end()
    tags = []
    while i < len(text):
        c = text[i]
        if c == "/":
            i += 1
            if i < len(text) and text[i] == "$":
                end = _pv_end(text, i)
                tags.append(("key", _bind(text[i:end])))
                i = end
                if i < len(text) and text[i] not in "/[":
                    raise JSONPathError(f"bad json id '{raw}' near '{text[i:]}'")
                continue
            m = re.match(r"[^/\[]*", text[i:])
            tags.append(("key", m.group(0)))
            i += m.end()
        elif c == "[":
            close = text.find("]", i)
            if text.startswith("$", i + 1):
                end = _pv_end(text, i + 1)
                if end >= len(text) or text[end] != "]":
                    raise JSONPathError(f"bad index in json id '{raw}'")
                tags.append(("idx", _bind(text[i + 1:end])))
                i = end + 1
                continue
            if close < 0:
                raise JSONPathError(f"missing ']' in json id '{raw}'")
            inner = text[i + 1:close].strip()
            if inner == "":
                tags.append(("end", None))
            elif re.fullmatch(r"[+-]?\d+", inner):
                tags.append(("idx", int(inner)))
            else:
                raise JSONPathError(f"bad index '[{inner}]' in json id '{raw}'")
            i = close + 1
        else:
            raise JSONPathError(f"bad json id '{raw}' near '{text[i:]}'")
    dynamic = any(not isinstance(v, (str, int)) and v is not None for _, v in tags)
    return Path(name, tuple(tags), iterate, raw, dynamic)


def _fixup(text):
    try:
        return parse_id(str(text))
    except JSONPathError as e:
        from runtime.pv import PVError
        raise PVError(str(e)) from None


def _expand(ctx, path: Path):
    """The tags with the variables in them read (JSONPathError when one cannot be used)."""
    if not path.dynamic:
        return path.tags
    out = []
    for kind, v in path.tags:
        if kind == "end" or isinstance(v, (str, int)):
            out.append((kind, v))
            continue
        value = v.get(ctx)
        if kind == "idx":
            if value is None or isinstance(value, bool) or not isinstance(value, int):
                ival = getattr(value, "ival", None)
                if ival is None:
                    raise JSONPathError(f"non integer value in index {v.text}")
                value = ival
            out.append(("idx", int(value)))
        else:
            if value is None:
                raise JSONPathError(f"non string value in key {v.text}")
            out.append(("key", str(value)))
    return out


# --- the variables ----------------------------------------------------------------------

def variables(rt) -> dict:
    """The $json variables of this process (name -> document)."""
    v = getattr(rt, "json_vars", None)
    if v is None:
        v = rt.json_vars = {}
    return v


def _walk(data, tags):
    """The value at the end of the tags, or _MISSING."""
    cur = data
    for kind, v in tags:
        if kind == "key":
            if not isinstance(cur, dict) or v not in cur:
                return _MISSING
            cur = cur[v]
        else:
            if not isinstance(cur, list) or kind == "end":
                return _MISSING
            poz = v + len(cur) if v < 0 else v
            if not 0 <= poz < len(cur):
                return _MISSING
            cur = cur[poz]
    return cur


def lookup(rt, path: Path, tags=None):
    vars_ = variables(rt)
    if path.name not in vars_:
        return _MISSING
    return _walk(vars_[path.name], path.tags if tags is None else tags)


def put(rt, path: Path, tags, obj):
    """Set (or with _DELETE remove) the value at the path (JSONPathError when it cannot)."""
    vars_ = variables(rt)
    if path.name not in vars_:
        if tags:
            raise JSONPathError(f"$json({path.name}) is not initialized yet")
        vars_[path.name] = None if obj is _DELETE else obj
        return
    if not tags:
        vars_[path.name] = None if obj is _DELETE else obj
        return
    cur = vars_[path.name]
    for kind, v in tags[:-1]:
        if kind == "key":
            if not isinstance(cur, dict):
                raise JSONPathError(f"$json({path.text}): not an object before '/{v}'")
            cur = cur.get(v)
        else:
            if not isinstance(cur, list):
                raise JSONPathError(f"$json({path.text}): not an array before an index")
            poz = len(cur) if kind == "end" else (v + len(cur) if v < 0 else v)
            if poz < 0:
                raise JSONPathError(f"$json({path.text}): index {v} out of range")
            cur = cur[poz] if poz < len(cur) else None
    kind, v = tags[-1]
    if kind == "key":
        if not isinstance(cur, dict):
            raise JSONPathError(f"$json({path.text}): could not find an object with that "
                                f"path")
        if obj is _DELETE:
            cur.pop(v, None)
        else:
            cur[v] = obj
        return
    if not isinstance(cur, list):
        raise JSONPathError(f"$json({path.text}): could not find an array with that path")
    if kind == "end":
        if obj is _DELETE:
            raise JSONPathError(f"$json({path.text}): invalid parameter for deletion")
        cur.append(obj)
        return
    poz = v + len(cur) if v < 0 else v
    if not 0 <= poz < len(cur):
        raise JSONPathError(f"$json({path.text}): attempting to replace at invalid index "
                            f"{v} in array")
    if obj is _DELETE:
        del cur[poz]
    else:
        cur[poz] = obj


def _clamp_int(n):
    return max(-2 ** 31, min(2 ** 31 - 1, n))


def _script_value(obj, flags):
    """What the script reads for a JSON value."""
    if obj is None:
        return None
    if isinstance(obj, bool):
        return jsonc.dumps(obj, flags)
    if isinstance(obj, int):
        return _clamp_int(obj)
    if isinstance(obj, str):
        return obj
    return jsonc.dumps(obj, flags)


def _flags(ctx):
    p = ctx.rt.modparams.get("json") or {}
    return jsonc.SPACED | (jsonc.NOSLASHESCAPE if p.get("disable_escape_forward_slash") else 0)


def _getter(flags_of):
    def get(ctx, path):
        try:
            tags = _expand(ctx, path)
        except JSONPathError as e:
            ctx.rt.log.error(f"cannot expand variables in json path: {e}", "json")
            return None
        obj = lookup(ctx.rt, path, tags)
        if obj is _MISSING:
            return None
        return _script_value(obj, flags_of(ctx))
    return get


def _set(ctx, path, value, op, idx):
    tags = _expand(ctx, path)
    if value is None:
        obj = _DELETE
    elif op == ":=":
        text = value if isinstance(value, str) else str(value)
        try:
            obj = jsonc.loads(text)
        except jsonc.JSONError as e:
            try:
                put(ctx.rt, path, tags, _DELETE)
            except JSONPathError:
                pass
            raise JSONPathError(f"error parsing json: {e}") from None
    elif isinstance(value, int) and not isinstance(value, bool):
        obj = value
    else:
        obj = str(value)
    put(ctx.rt, path, tags, obj)


def _all(ctx, path):
    """The values a for-each walks: an object's values (or keys), an array's elements."""
    try:
        tags = _expand(ctx, path)
    except JSONPathError:
        return []
    obj = lookup(ctx.rt, path, tags)
    flags = _flags(ctx)
    if isinstance(obj, dict):
        if path.iterate == "keys":
            return list(obj.keys())
        items = list(obj.values())
    elif isinstance(obj, list):
        if path.iterate:
            return []
        items = obj
    else:
        return []
    return [jsonc.dumps(None, flags) if o is None else _script_value(o, flags) for o in items]


exports.pvs = {
    "json": PVDef("json", _getter(_flags), _set, sub="req", fixup=_fixup, all=_all),
    "json_compact": PVDef("json_compact", _getter(lambda ctx: jsonc.PLAIN), _set, sub="req",
                          fixup=_fixup),
    "json_pretty": PVDef("json_pretty", _getter(lambda ctx: jsonc.PRETTY), _set, sub="req",
                         fixup=_fixup),
}


# --- json_link ----------------------------------------------------------------------------

def _json_pv(bound):
    if getattr(getattr(bound, "d", None), "name", None) not in ("json", "json_compact",
                                                                 "json_pretty"):
        raise ValueError("json_link takes $json variables")
    return bound


def json_link(ctx, dest, src):
    try:
        spath = src._sub(ctx)
        obj = lookup(ctx.rt, spath, _expand(ctx, spath))
        if obj is _MISSING or obj is None:
            ctx.rt.log.notice(f"json_link: could not find an object at {src.text}", "json")
            return -1
        dpath = dest._sub(ctx)
        put(ctx.rt, dpath, _expand(ctx, dpath), obj)
    except JSONPathError as e:
        ctx.rt.log.error(f"json_link: {e}", "json")
        return -1
    return 1

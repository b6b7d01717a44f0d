"""avpops (OpenSIPS <= 3.4): AVP operations, and AVPs loaded from / stored to a database
(`usr_preferences`) or filled by a raw query.

Specs are written as in 1.x/2.x scripts: "$avp(name)[/flags]", "$ru/username", "i:10",
"s:text", "op/value/flags"; they are parsed when the script is loaded.
"""
import fnmatch
import re

from runtime.context import Branch
from runtime.module import ALL, STR, STR_NO_EXPAND, Arg, Func, Module, Param
from runtime.pv import PVS, PVError, bind, parse_pv_text, parse_uri, set_avp
from runtime.values import parse_subst, to_str

_SPEC = re.compile(r"^(\$[A-Za-z_][\w.]*(?:\((?:[^()]|\([^()]*\))*\))?(?:\[[^\]]*\])?)(?:/(.*))?$")
_URI_PVS = {"ru", "ruri", "fu", "from", "tu", "to", "ou", "ouri", "du", "duri", "ct"}


class Spec:
    """A parsed spec: an AVP name (`avp`), or another PV (`pv`), or a constant (`value`);
    `flags` is the text after '/'."""
    __slots__ = ("avp", "pv", "value", "flags", "name")

    def __init__(self, avp=None, pv=None, value=None, flags="", name=""):
        self.avp, self.pv, self.value, self.flags, self.name = avp, pv, value, flags, name

    def values(self, ctx) -> list:
        """Newest first; one value unless the spec is an AVP with flag 'g'."""
        if self.avp is not None:
            lst = ctx.avps.get(self.avp) or []
            return lst[::-1] if "g" in self.flags else lst[-1:]
        if self.pv is not None:
            v = self.pv.get(ctx)
            return [] if v is None else [v]
        return [self.value]


def _defs(rt):
    defs = dict(PVS)
    for mod in (rt.modules.values() if rt is not None else ()):
        defs.update(mod.pvs)
    return defs


def _avp_name(text):
    """'s:foo', 'i:5', 'foo' or '$avp(foo)' -> the AVP name; None when it is not one."""
    if text.startswith("$avp(") and text.endswith(")"):
        return text[5:-1]
    if re.fullmatch(r"[si]:\w+|\w+", text):
        return text
    return None


def spec(text, rt, constants=False):
    """Parse a spec; ValueError when it is not one (a load-time error with file:line)."""
    text = str(text).strip()
    m = _SPEC.match(text)
    if m:
        pv_text, flags = m.group(1), m.group(2) or ""
        name = _avp_name(pv_text)
        if name is not None:
            return Spec(avp=name, flags=flags, name=pv_text)
        try:
            pv = bind(parse_pv_text(pv_text), _defs(rt))
        except PVError as e:
            raise ValueError(str(e)) from None
        return Spec(pv=pv, flags=flags, name=pv_text[1:].split("(")[0])
    if constants:
        if text[:2] == "i:" and re.fullmatch(r"-?\d+", text[2:]):
            return Spec(value=int(text[2:]))
        if text[:2] == "s:":
            return Spec(value=text[2:])
        return Spec(value=int(text) if re.fullmatch(r"-?\d+", text) else text)
    name, _, flags = text.partition("/")
    if _avp_name(name) is not None:
        return Spec(avp=_avp_name(name), flags=flags, name=name)
    raise ValueError(f"'{text}' is not an AVP or pseudo-variable spec")


def _fix_avp(text, rt):
    s = spec(text, rt)
    if s.avp is None:
        raise ValueError(f"'{text}' is not an AVP")
    return s


def _fix_op(ops):
    """'op/value[/flags]' -> (op, value Spec, flags)."""
    def fix(text, rt):
        op, _, rest = str(text).partition("/")
        op = op.strip().lower()
        if op not in ops:
            raise ValueError(f"unknown operation '{op}' ({', '.join(ops)})")
        if op == "not":
            return op, None, rest
        value, flags = rest, ""
        head, sep, tail = rest.rpartition("/")
        if sep and head and re.fullmatch(r"[gidns]+", tail):
            value, flags = head, tail
        if not value:
            raise ValueError(f"'{text}': the operation needs a value")
        return op, spec(value, rt, constants=True), flags
    return fix


def _fix_subst(text, rt):
    """(regex, replacement, how many to replace: 0 for all)."""
    rx, repl, every = parse_subst(text)
    return rx, repl, 0 if every else 1


CHECK_OPS = ("eq", "ne", "lt", "le", "gt", "ge", "re", "fm", "and", "or", "xor")
ARITH_OPS = ("add", "sub", "mul", "div", "mod", "and", "or", "xor", "not")

exports = Module(
    name="avpops",
    params=[
        Param("db_url", str, multi=True), Param("avp_table", str, "usr_preferences"),
        Param("use_domain", int, 0), Param("uuid_column", str, "uuid"),
        Param("username_column", str, "username"), Param("domain_column", str, "domain"),
        Param("attribute_column", str, "attribute"), Param("value_column", str, "value"),
        Param("type_column", str, "type"), Param("db_scheme", str, multi=True),
        Param("buf_size", int, 1024),
    ],
    functions=[
        Func("avp_db_load", "avp_db_load",
             [Arg(STR_NO_EXPAND, fixup=lambda v, rt: spec(v, rt)),
              Arg(STR_NO_EXPAND, fixup=lambda v, rt: _fix_name(v, rt)),
              Arg(STR_NO_EXPAND, optional=True), Arg(STR_NO_EXPAND, optional=True)], ALL),
        Func("avp_db_store", "avp_db_store",
             [Arg(STR_NO_EXPAND, fixup=lambda v, rt: spec(v, rt)),
              Arg(STR_NO_EXPAND, fixup=lambda v, rt: _fix_name(v, rt)),
              Arg(STR_NO_EXPAND, optional=True)], ALL),
        Func("avp_db_delete", "avp_db_delete",
             [Arg(STR_NO_EXPAND, fixup=lambda v, rt: spec(v, rt)),
              Arg(STR_NO_EXPAND, fixup=lambda v, rt: _fix_name(v, rt)),
              Arg(STR_NO_EXPAND, optional=True)], ALL),
        Func("avp_db_query", "avp_db_query",
             [Arg(STR, name="query"),
              Arg(STR_NO_EXPAND, optional=True, fixup=lambda v, rt: _fix_dest(v, rt)),
              Arg(STR_NO_EXPAND, optional=True)], ALL),
        Func("avp_delete", "avp_delete", [Arg(STR_NO_EXPAND, fixup=lambda v, rt: _fix_name(v, rt))],
             ALL),
        Func("avp_pushto", "avp_pushto",
             [Arg(STR_NO_EXPAND, fixup=lambda v, rt: _fix_pushto(v, rt)),
              Arg(STR_NO_EXPAND, fixup=lambda v, rt: spec(v, rt))], ALL),
        Func("avp_check", "avp_check",
             [Arg(STR_NO_EXPAND, fixup=lambda v, rt: spec(v, rt)),
              Arg(STR_NO_EXPAND, fixup=_fix_op(CHECK_OPS))], ALL),
        Func("avp_copy", "avp_copy", [Arg(STR_NO_EXPAND, fixup=_fix_avp),
                                      Arg(STR_NO_EXPAND, fixup=_fix_avp)], ALL),
        Func("avp_op", "avp_op", [Arg(STR_NO_EXPAND, fixup=_fix_avp),
                                  Arg(STR_NO_EXPAND, fixup=_fix_op(ARITH_OPS))], ALL),
        Func("avp_subst", "avp_subst", [Arg(STR_NO_EXPAND, fixup=lambda v, rt: _fix_subst_avps(v, rt)),
                                        Arg(STR_NO_EXPAND, fixup=_fix_subst)], ALL),
        Func("avp_printf", "avp_printf", [Arg(STR_NO_EXPAND, fixup=_fix_avp),
                                          Arg(STR, name="format")], ALL),
        Func("is_avp_set", "is_avp_set", [Arg(STR_NO_EXPAND, fixup=_fix_avp)], ALL),
        Func("avp_print", "avp_print", routes=ALL),
    ],
    init="init",
    child_init="child_init",
)


def _fix_subst_avps(text, rt):
    """'$avp(src)[/$avp(dst)][/flags]' -> (src name, dst name or None, flags)."""
    parts = str(text).split("/")
    src = _fix_avp(parts[0], rt).avp
    dst, flags = None, ""
    if len(parts) > 1 and parts[1].startswith("$"):
        dst = _fix_avp(parts[1], rt).avp
        flags = "/".join(parts[2:])
    elif len(parts) > 1:
        flags = "/".join(parts[1:])
    return src, dst, flags


def _fix_name(text, rt):
    """An AVP to load/store/delete, or '*' (every attribute)."""
    t = str(text).strip()
    if t in ("*", "$avp(*)", "s:*"):
        return Spec(avp="*", name="*")
    return _fix_avp(t, rt)


def _fix_dest(text, rt):
    return [_fix_avp(p.strip(), rt) for p in str(text).split(";") if p.strip()]


def _fix_pushto(text, rt):
    t = str(text).strip()
    base, _, part = t.partition("/")
    if base.startswith("$hdr(") and base.endswith(")"):
        return ("hdr", base[5:-1])
    if base in ("$ru", "$ruri") and part in ("", "username", "domain"):
        return ("ru", part)
    if base in ("$du", "$duri", "$br") and not part:
        return (base.strip("$")[:2], "")
    raise ValueError(f"cannot push to '{t}' ($ru[/username|/domain], $du, $br, $hdr(name))")


# --- databases -----------------------------------------------------------------------------

_state: dict = {}


def init(rt):
    p = rt.modparams["avpops"]
    urls = {}
    for entry in p["db_url"]:
        head, _, rest = entry.strip().partition(" ")
        if rest and head.isdigit():
            urls[int(head)] = rest.strip()
        else:
            urls[0] = entry.strip()
    if not urls and rt.config.get("db_default_url"):
        urls[0] = rt.config["db_default_url"]
    from runtime.db import check_url
    for url in urls.values():
        err = check_url(url)
        if err:
            raise ValueError(f"avpops: {err}")
    _state.update(rt=rt, params=p, urls=urls, dbs={})
    if p["db_scheme"]:
        rt.log.warning("db_scheme is not supported: use the default table layout", "avpops")


def child_init(rt):
    from runtime import db
    _state["dbs"] = {k: db.connect(url) for k, url in _state["urls"].items()}


def _db(db_id):
    key = int(db_id) if db_id not in (None, "") else 0
    conn = _state["dbs"].get(key)
    if conn is None:
        _state["rt"].log.error(f"no db_url with id {key}", "avpops")
    return conn


def _where(ctx, source):
    """The usr_preferences columns that identify whose attributes these are."""
    p = _state["params"]
    values = source.values(ctx)
    if not values or values[0] is None:
        return None
    value = to_str(values[0])
    flag = source.flags or ("uri" if source.pv is not None and source.name in _URI_PVS
                            else "uuid")
    if flag == "uuid":
        return {p["uuid_column"]: value}
    u = parse_uri(value)
    if u is None:
        return None
    if flag == "username":
        return {p["username_column"]: u.user}
    if flag == "domain":
        return {p["domain_column"]: u.host}
    where = {p["username_column"]: u.user}
    if p["use_domain"]:
        where[p["domain_column"]] = u.host
    return where


_FAILED = object()


def _run(fn, *args):
    """fn(*args), or _FAILED (logged) on a database error."""
    from runtime.db import DBError
    try:
        return fn(*args)
    except DBError as e:
        _state["rt"].log.error(str(e), "avpops")
        return _FAILED


def avp_db_load(ctx, source, name, db_id=None, prefix=None):
    """Load the attributes of `source` (all of them for '*') as AVPs."""
    p = _state["params"]
    conn = _db(db_id)
    where = _where(ctx, source)
    if conn is None or where is None:
        return -1
    if name.avp != "*":
        where[p["attribute_column"]] = name.avp
    cols = [p["attribute_column"], p["value_column"], p["type_column"]]
    rows = _run(conn.query, p["avp_table"], where, cols)
    if rows is _FAILED or not rows:
        return -1
    for row in rows:
        value = row[cols[1]]
        if int(row[cols[2]] or 0) & 1:
            try:
                value = int(value)
            except (TypeError, ValueError):
                pass
        set_avp(ctx.avps, (prefix or "") + str(row[cols[0]]), value)
    return 1


def avp_db_store(ctx, source, name, db_id=None):
    p = _state["params"]
    conn = _db(db_id)
    where = _where(ctx, source)
    if conn is None or where is None:
        return -1
    names = list(ctx.avps) if name.avp == "*" else [name.avp]
    stored = 0
    for avp in names:
        for value in ctx.avps.get(avp, ())[::-1]:
            row = dict(where)
            row.update({p["attribute_column"]: avp, p["value_column"]: to_str(value),
                        p["type_column"]: 1 if isinstance(value, int) else 0})
            if _run(conn.insert, p["avp_table"], row) is _FAILED:
                return -1
            stored += 1
    return 1 if stored else -1


def avp_db_delete(ctx, source, name, db_id=None):
    p = _state["params"]
    conn = _db(db_id)
    where = _where(ctx, source)
    if conn is None or where is None:
        return -1
    if name.avp != "*":
        where[p["attribute_column"]] = name.avp
    n = _run(conn.delete, p["avp_table"], where)
    return 1 if n is not _FAILED and n else -1


def avp_db_query(ctx, query, dest=None, db_id=None):
    """Run a raw query; each row's columns go to the AVPs in `dest` (in row order):
    1, -2 when a query with `dest` selected nothing, -1 on error."""
    conn = _db(db_id)
    if conn is None:
        return -1
    rows = _run(conn.raw_query, query)
    if rows is _FAILED:
        return -1
    if not rows and dest:
        return -2   # nothing selected (statements without a result set succeed)
    for row in rows:
        for avp, value in zip(dest or (), row):
            if value is not None:
                set_avp(ctx.avps, avp.avp, value)
    return 1


# --- AVP operations ------------------------------------------------------------------------

def avp_delete(ctx, name):
    if name.avp == "*":
        ctx.avps.clear()
        return 1
    lst = ctx.avps.get(name.avp)
    if not lst:
        return -1
    if "g" in name.flags:
        del ctx.avps[name.avp]
    else:
        lst.pop()
        if not lst:
            del ctx.avps[name.avp]
    return 1


def avp_pushto(ctx, dest, src):
    values = src.values(ctx)
    if not values:
        return -1
    kind, part = dest
    if kind == "ru":
        v = to_str(values[0])
        if part:
            u = parse_uri(ctx.ruri)
            if u is None:
                return -1
            v = str(u.replace(user=v) if part == "username" else u.replace(host=v))
        ctx.new_ruri = v
    elif kind == "du":
        ctx.dst_uri = to_str(values[0])
    elif kind == "br":
        ctx.branches.extend(Branch(to_str(v)) for v in values)
    else:
        for v in values:
            ctx.get_edits().add_header(f"{part}: {to_str(v)}")
    return 1


def _compare(op, a, b, icase):
    if op in ("re", "fm"):
        text, pattern = to_str(a), to_str(b)
        if op == "fm":
            return fnmatch.fnmatchcase(text.lower(), pattern.lower()) if icase else \
                fnmatch.fnmatchcase(text, pattern)
        return re.search(pattern, text, re.I if icase else 0) is not None
    if op in ("and", "or", "xor"):
        try:
            x, y = int(a), int(b)
        except (TypeError, ValueError):
            return False
        return bool(x & y if op == "and" else x | y if op == "or" else x ^ y)
    if isinstance(a, int) and isinstance(b, int):
        x, y = a, b
    else:
        x, y = to_str(a), to_str(b)
        if icase:
            x, y = x.lower(), y.lower()
    return {"eq": x == y, "ne": x != y, "lt": x < y, "le": x <= y, "gt": x > y,
            "ge": x >= y}[op]


def avp_check(ctx, name, check):
    op, value, flags = check
    others = value.values(ctx)
    if not others:
        return -1
    if "g" in flags and name.avp is not None:
        mine = ctx.avps.get(name.avp, [])[::-1]
    else:
        mine = name.values(ctx)
    return 1 if any(_compare(op, v, others[0], "i" in flags) for v in mine) else -1


def avp_copy(ctx, src, dst):
    lst = ctx.avps.get(src.avp)
    if not lst:
        return -1
    values = lst[::-1] if "g" in dst.flags else lst[-1:]
    for v in reversed(values):
        if "n" in dst.flags:
            try:
                v = int(v)
            except (TypeError, ValueError):
                return -1
        elif "s" in dst.flags:
            v = to_str(v)
        set_avp(ctx.avps, dst.avp, v)
    if "d" in dst.flags:
        if "g" in dst.flags:
            ctx.avps.pop(src.avp, None)
        else:
            lst.pop()
    return 1


def avp_op(ctx, name, operation):
    op, value, flags = operation
    lst = ctx.avps.get(name.avp)
    if not lst:
        return -1
    other = None
    if op != "not":
        vals = value.values(ctx)
        if not vals:
            return -1
        try:
            other = int(vals[0])
        except (TypeError, ValueError):
            return -1
    idxs = range(len(lst)) if "g" in flags else [len(lst) - 1]
    for i in idxs:
        try:
            a = int(lst[i])
        except (TypeError, ValueError):
            return -1
        if op in ("div", "mod") and other == 0:
            return -1
        lst[i] = {"add": lambda: a + other, "sub": lambda: a - other,
                  "mul": lambda: a * other, "div": lambda: int(a / other),
                  "mod": lambda: a % other, "and": lambda: a & other,
                  "or": lambda: a | other, "xor": lambda: a ^ other,
                  "not": lambda: ~a}[op]()
    return 1


def avp_subst(ctx, avps, subst):
    """Apply a sed-like substitution to an AVP (all its values with 'g'); the result
    replaces it, or goes to a second AVP ('d' then deletes the first)."""
    src, dst, flags = avps
    rx, repl, count = subst
    lst = ctx.avps.get(src)
    if not lst:
        return -1
    idxs = list(range(len(lst))) if "g" in flags else [len(lst) - 1]
    done = 0
    for i in idxs:
        new, n = rx.subn(repl, to_str(lst[i]), count=count)
        if not n:
            continue
        done += 1
        if dst is None:
            lst[i] = new
        else:
            set_avp(ctx.avps, dst, new)
    if done and "d" in flags and dst is not None:
        ctx.avps.pop(src, None)
    return 1 if done else -1


def avp_printf(ctx, dest, text):
    """Store the expanded format string in an AVP."""
    set_avp(ctx.avps, dest.avp, text)
    return 1


def is_avp_set(ctx, name):
    lst = ctx.avps.get(name.avp)
    if not lst:
        return -1
    if "n" in name.flags:
        return 1 if isinstance(lst[-1], int) else -1
    if "s" in name.flags:
        return 1 if isinstance(lst[-1], str) else -1
    return 1


def avp_print(ctx):
    log = ctx.rt.log
    for name, values in ctx.avps.items():
        for v in values[::-1]:
            kind = "int" if isinstance(v, int) else "str"
            log.info(f"avp name={name} {kind} value={v}", "avpops")
    return 1

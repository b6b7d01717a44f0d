"""dialplan: string translations from the `dialplan` table (OpenSIPS 3.x semantics).

A rule (dpid, pr, match_op, match_exp, match_flags, subst_exp, repl_exp, timerec, disabled,
attrs) matches the input when match_op is 0 (string equality), 1 (regular expression,
searched) or 2 (shell pattern); bit 1 of match_flags makes it case-insensitive. Of the
matching rules of a dpid the one with the smallest priority wins (then the smallest id).
The output is repl_exp with \\0-\\9 replaced by the groups of subst_exp over the input
(\\u: the R-URI; $pvs: their values); with no subst_exp, repl_exp as it is; with no
repl_exp, no output (a detection rule: only the attributes).

    dp_translate(id, input[, $out[, $attrs[, partition]]])      3.x
    dp_translate(id, "$src/$dst"[, $attrs])                      1.x/2.x (and Kamailio)
    dp_match(id, input) / dp_replace(id, input, $out)            Kamailio

Returns 1 when a rule matched (and the output was written), -1 otherwise.
"""
from __future__ import annotations

import fnmatch
import re

from runtime import db
from runtime.module import (BRANCH, EVENT, FAILURE, LOCAL, ONREPLY, REQUEST, STARTUP, STR,
                            STR_NO_EXPAND, TIMER, VAR, Arg, Func, Module, Param)
from runtime.pv import PVS, Format, bind, parse_pv_text
from runtime.values import to_int, to_str

from modules.dispatcher.common import PVRef, check_partition, check_pv, mi_reload, \
    parse_partition, partition_id

_ROUTES = REQUEST | FAILURE | LOCAL | BRANCH | STARTUP | TIMER | EVENT | ONREPLY


def _id_fixup(value, rt):
    """`10`, `"10"`, `"pstn:10"` -> (partition or None, dpid)."""
    return partition_id(value, "dialplan id")


class _Input:
    """dp_translate's second argument: a format string, or the 1.x `$src/$dst` pair."""
    __slots__ = ("fmt", "src", "dst")

    def __init__(self, fmt, src=None, dst=None):
        self.fmt, self.src, self.dst = fmt, src, dst


_LEGACY = re.compile(r"^\s*(\$[^/\s]+)\s*/\s*(\$[^/\s]+)\s*$")


def _defs(rt):
    defs = dict(PVS)
    for m in rt.modules.values():
        defs.update(m.pvs)
    return defs


def _input_fixup(value, rt):
    if not isinstance(value, str) or getattr(rt, "server", None) is not None:
        return value            # the value of a PV argument, at run time
    defs = _defs(rt)
    m = _LEGACY.match(value)
    src = dst = None
    if m:
        try:
            src = bind(parse_pv_text(m.group(1)), defs)
            dst = bind(parse_pv_text(m.group(2)), defs)
            if not dst.writable:
                raise ValueError(f"'{m.group(2)}' cannot be written")
        except ValueError:
            src = dst = None
    try:
        fmt = Format(value, defs)
    except Exception as e:
        if src is None:
            raise ValueError(str(e)) from None
        fmt = None
    return _Input(fmt, src, dst)


exports = Module(
    name="dialplan",
    params=[
        Param("db_url", str, None, check=db.check_url),
        Param("table_name", str, "dialplan"),
        Param("partition", str, multi=True, check=check_partition),
        Param("dpid_col", str, "dpid"), Param("pr_col", str, "pr"),
        Param("match_op_col", str, "match_op"), Param("match_exp_col", str, "match_exp"),
        Param("match_flags_col", str, "match_flags"), Param("subst_exp_col", str, "subst_exp"),
        Param("repl_exp_col", str, "repl_exp"), Param("timerec_col", str, "timerec"),
        Param("disabled_col", str, "disabled"), Param("attrs_col", str, "attrs"),
        # OpenSIPS 1.x/2.x and Kamailio: where dp_translate("id", "$a/$b") puts the attrs
        Param("attrs_pvar", str, None, check=check_pv),
        Param("match_len_col", str, "match_len"),
        # Kamailio-only parameters (accepted, no effect here)
        Param("fetch_rows", int, 1000), Param("match_dynamic", int, 0),
        Param("append_branch", int, 0), Param("reload_delta", int, 5),
    ],
    functions=[
        Func("dp_translate", "dp_translate",
             [Arg(STR, fixup=_id_fixup, name="id"),
              Arg(STR_NO_EXPAND, fixup=_input_fixup, name="input"),
              Arg(VAR, optional=True), Arg(VAR, optional=True), Arg(STR, optional=True)],
             _ROUTES),
        Func("dp_match", "dp_match", [Arg(STR, fixup=_id_fixup), Arg(STR)], _ROUTES),
        Func("dp_replace", "dp_replace", [Arg(STR, fixup=_id_fixup), Arg(STR), Arg(VAR)],
             _ROUTES),
    ],
    mi={"dp_reload": "mi_dp_reload", "dp_translate": "mi_dp_translate"},
    init="init",
)


class Rule:
    __slots__ = ("id", "dpid", "pr", "op", "exp", "icase", "match_rx", "subst_rx", "repl",
                 "timerec", "attrs")

    def matches(self, text, now=None) -> bool:
        if self.timerec is not None and not self.timerec.matches(now):
            return False
        if self.op == 0:
            return text.lower() == self.exp.lower() if self.icase else text == self.exp
        if self.op == 1:
            return self.match_rx.search(text) is not None
        pat = self.exp
        return fnmatch.fnmatchcase(text.lower(), pat.lower()) if self.icase \
            else fnmatch.fnmatchcase(text, pat)


_REPL_TOKEN = re.compile(r"\\(\d|u|.)", re.S)


def _repl_parts(text, defs):
    """repl_exp -> [str | int (group) | 'ruri' marker | Format]."""
    parts = []
    pos = 0
    for m in _REPL_TOKEN.finditer(text):
        if m.start() > pos:
            parts.append(_literal(text[pos:m.start()], defs))
        c = m.group(1)
        parts.append(int(c) if c.isdigit() else _RURI if c == "u" else c)
        pos = m.end()
    if pos < len(text):
        parts.append(_literal(text[pos:], defs))
    return parts


_RURI = object()


def _literal(text, defs):
    if "$" not in text:
        return text
    try:
        f = Format(text, defs)
    except Exception:
        return text
    return "".join(f.parts) if f.constant else f


class Partition:
    def __init__(self, name, db_url, table):
        self.name, self.db_url, self.table = name, db_url, table
        self.rules: dict[int, list[Rule]] = {}


class State:
    def __init__(self, rt):
        self.rt = rt
        p = rt.modparams["dialplan"]
        self.p = p
        self.defs = _defs(rt)
        self.attrs_pv = PVRef(p["attrs_pvar"]) if p["attrs_pvar"] else None
        default_url = p["db_url"] or rt.config.get("db_default_url")
        self.partitions: dict[str, Partition] = {}
        aliases = {}
        for text in p["partition"]:
            name, props = parse_partition(text)
            if "" in props:
                aliases[name] = props.pop("")
            if props or name not in aliases:
                self.partitions[name] = Partition(
                    name, props.get("db_url") or default_url,
                    props.get("table_name") or p["table_name"])
        if "default" not in self.partitions and "default" not in aliases:
            self.partitions["default"] = Partition("default", default_url, p["table_name"])
        for alias, target in aliases.items():
            if target in self.partitions:
                self.partitions[alias] = self.partitions[target]

    def load(self):
        from modules.drouting.timerec import TimeRec
        p = self.p
        for part in set(self.partitions.values()):
            rules: dict[int, list[Rule]] = {}
            if not part.db_url:
                self.rt.log.warning(f"partition '{part.name}' has no db_url: no rules",
                                    "dialplan")
                part.rules = rules
                continue
            conn = db.connect(part.db_url)
            conn.create_table(part.table, _SCHEMA, 5)
            for row in conn.query(part.table):
                try:
                    r = self._rule(row, p, TimeRec)
                except (ValueError, re.error) as e:
                    self.rt.log.error(f"{part.table}: rule {row.get('id')} skipped: {e}",
                                      "dialplan")
                    continue
                if r is not None:
                    rules.setdefault(r.dpid, []).append(r)
            for lst in rules.values():
                lst.sort(key=lambda r: (r.pr, r.id))
            part.rules = rules
            self.rt.log.info(f"partition '{part.name}': "
                             f"{sum(len(v) for v in rules.values())} rule(s)", "dialplan")

    def _rule(self, row, p, TimeRec):
        if to_int(row.get(p["disabled_col"])):
            return None
        r = Rule()
        r.id = to_int(row.get("id")) or 0
        r.dpid = to_int(row.get(p["dpid_col"]))
        if r.dpid is None:
            raise ValueError("no dpid")
        r.pr = to_int(row.get(p["pr_col"])) or 0
        r.op = to_int(row.get(p["match_op_col"])) or 0
        if r.op not in (0, 1, 2):
            raise ValueError(f"unknown match_op {r.op}")
        r.exp = str(row.get(p["match_exp_col"]) or "")
        r.icase = bool((to_int(row.get(p["match_flags_col"])) or 0) & 1)
        flags = re.I if r.icase else 0
        r.match_rx = re.compile(r.exp, flags) if r.op == 1 else None
        subst = row.get(p["subst_exp_col"])
        r.subst_rx = re.compile(str(subst), flags) if subst else None
        repl = row.get(p["repl_exp_col"])
        r.repl = _repl_parts(str(repl), self.defs) if repl not in (None, "") else None
        if r.repl is not None and r.subst_rx is not None:
            top = max((x for x in r.repl if isinstance(x, int)), default=0)
            if top > r.subst_rx.groups:
                raise ValueError(f"repl_exp uses \\{top} but subst_exp has "
                                 f"{r.subst_rx.groups} group(s)")
        r.timerec = TimeRec.parse(row.get(p["timerec_col"]) or "")
        attrs = row.get(p["attrs_col"])
        r.attrs = "" if attrs is None else str(attrs)
        return r

    def translate(self, ctx, part, dpid, text):
        """(matched rule, output or None) or (None, None)."""
        rules = part.rules.get(dpid)
        if not rules or text is None or text == "":
            return None, None
        for r in rules:
            if r.matches(text):
                return r, self._output(ctx, r, text)
        return None, None

    def _output(self, ctx, r, text):
        if r.repl is None:
            return None
        m = None
        if r.subst_rx is not None:
            m = r.subst_rx.search(text)
            if m is None:
                self.rt.log.error(f"'{text}' matched the match_exp '{r.exp}' but not the "
                                  f"subst_exp '{r.subst_rx.pattern}'", "dialplan")
                return False
        out = []
        for x in r.repl:
            if isinstance(x, str):
                out.append(x)
            elif isinstance(x, int):
                if m is None:
                    out.append(f"\\{x}")
                else:
                    out.append(m.group(x) or "")
            elif x is _RURI:
                out.append(ctx.ruri if ctx.msg.is_request else "")
            else:
                out.append(x.render(ctx))
        return "".join(out)


_SCHEMA = """
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    dpid INTEGER NOT NULL, pr INTEGER DEFAULT 0 NOT NULL, match_op INTEGER NOT NULL,
    match_exp CHAR(64) NOT NULL, match_flags INTEGER DEFAULT 0 NOT NULL,
    subst_exp CHAR(64) DEFAULT NULL, repl_exp CHAR(32) DEFAULT NULL,
    timerec CHAR(255) DEFAULT NULL, disabled INTEGER DEFAULT 0 NOT NULL,
    attrs CHAR(255) DEFAULT NULL"""


def init(rt):
    state = State(rt)
    rt.apis["dialplan"] = state
    state.load()


def _state(ctx) -> State:
    return ctx.rt.apis["dialplan"]


def _do(ctx, id_, text, partition=None):
    st = _state(ctx)
    pname, dpid = id_
    part = st.partitions.get(partition or pname or "default")
    if part is None:
        ctx.rt.log.error(f"unknown dialplan partition '{partition or pname}'", "dialplan")
        return None, None
    return st.translate(ctx, part, dpid, text)


def dp_translate(ctx, id_, inp, out=None, attrs=None, partition=None):
    st = _state(ctx)
    legacy = isinstance(inp, _Input) and inp.src is not None and out is None \
        and attrs is None
    if legacy:
        value = inp.src.get(ctx)
        text = None if value is None else to_str(value)
    elif isinstance(inp, _Input):
        text = inp.fmt.render(ctx)
    else:
        text = to_str(inp) if inp is not None else None
    rule, output = _do(ctx, id_, text, partition)
    if rule is None or output is False:
        return -1
    if legacy:
        if output is not None:
            try:
                inp.dst.set(ctx, output)
            except Exception as e:
                ctx.rt.log.error(f"cannot write '{inp.dst.text}': {e}", "dialplan")
                return -1
        if st.attrs_pv is not None:
            st.attrs_pv.push(ctx, rule.attrs)
        return 1
    if out is not None and output is not None:
        out.set(ctx, output)
    if attrs is not None:
        attrs.set(ctx, rule.attrs)
    elif st.attrs_pv is not None:
        st.attrs_pv.push(ctx, rule.attrs)
    return 1


def dp_match(ctx, id_, text):
    st = _state(ctx)
    rule, output = _do(ctx, id_, text)
    if rule is None or output is False:
        return -1
    if st.attrs_pv is not None:
        st.attrs_pv.push(ctx, rule.attrs)
    return 1


def dp_replace(ctx, id_, text, out):
    st = _state(ctx)
    rule, output = _do(ctx, id_, text)
    if rule is None or output is False:
        return -1
    out.set(ctx, output if output is not None else text)
    if st.attrs_pv is not None:
        st.attrs_pv.push(ctx, rule.attrs)
    return 1


# --- MI ------------------------------------------------------------------------------------

def mi_dp_reload(rt, partition: str = None):
    """Load the rules again."""
    return mi_reload(rt.apis["dialplan"], partition)


def mi_dp_translate(rt, dpid: int, input: str, partition: str = None):
    """Translate a string with the rules of a dialplan id (no message: \\u and PVs in
    replacements are left empty)."""
    from runtime.mi import MIError
    from runtime.server import _dummy_msg
    from runtime.context import Context
    st = rt.apis["dialplan"]
    part = st.partitions.get(partition or "default")
    if part is None:
        raise MIError(400, "Unknown partition")
    rule, output = st.translate(Context(rt, _dummy_msg()), part, dpid, input)
    if rule is None or output is False:
        raise MIError(404, "No translation")
    return {"Output": output if output is not None else input, "ATTRIBUTES": rule.attrs}


__all__ = ["exports", "State", "Rule"]

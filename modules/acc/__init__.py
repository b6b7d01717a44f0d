"""acc: accounting of transactions and calls to the log and to a database.

3.x scripts mark a request with do_accounting("log|db", "cdr|missed|failed"[, table]);
1.x/2.x scripts set the flags named by log_flag, log_missed_flag, db_flag, db_missed_flag,
failed_transaction_flag. Either way the record is written when tm sends the final reply
upstream; a missed call when every branch of an INVITE has failed (before failure_route);
a CDR ("cdr") when the dialog ends.
"""
import functools
import time

from runtime import db
from runtime.module import (BRANCH, FAILURE, LOCAL, ONREPLY, REQUEST, STR, Arg, Func, Module,
                            Param)
from runtime.pv import PVDef
from runtime.sip.headers import SIPError
from runtime.sip.message import Message

from . import records as R

ROUTES = REQUEST | FAILURE | BRANCH | ONREPLY | LOCAL
FLAG = (int, str)
BACKENDS = ("log", "db")
KINDS = ("cdr", "missed", "failed")
_COLUMNS = ("method", "from_tag", "to_tag", "callid", "sip_code", "sip_reason", "time",
            "duration", "setuptime", "created")
# 1.x/2.x flag modparams -> the (backend, kind) pairs a set flag asks for
_OLD_FLAGS = {
    "log_flag": {("log", "acc")}, "log_missed_flag": {("log", "missed")},
    "db_flag": {("db", "acc")}, "db_missed_flag": {("db", "missed")},
    "failed_transaction_flag": {("log", "failed"), ("db", "failed")},
    "cdr_flag": {("log", "cdr"), ("db", "cdr")},
}
_UNSUPPORTED = ("aaa_flag", "aaa_missed_flag", "radius_flag", "radius_missed_flag",
                "diameter_flag", "diameter_missed_flag", "aaa_url", "leg_fields",
                "multi_leg_info", "multi_leg_bye_info", "aaa_extra")


def _split(value, allowed, what):
    names = {p.strip().lower() for p in str(value or "").split("|") if p.strip()}
    bad = sorted(names - set(allowed))
    if bad:
        raise ValueError(f"invalid accounting {what} '{bad[0]}' (expected "
                         f"{', '.join(allowed)})")
    return frozenset(names)


def _fix_types(value, rt):
    if str(value or "").strip().lower() in ("aaa", "evi"):
        raise ValueError(f"'{value}' accounting is not supported (use log or db)")
    types = _split(value, BACKENDS, "backend")
    if not types:
        raise ValueError("no accounting backend given")
    return types


def _fix_kinds(value, rt):
    kinds = _split(value, KINDS, "flag")
    if "cdr" in kinds and rt is not None and "dialog" not in rt.modules:
        raise ValueError("'cdr' accounting needs the dialog module (loadmodule \"dialog.so\")")
    return kinds


def _check_extra(value):
    try:
        R.parse_extra_fields([value])
    except ValueError as e:
        return str(e)
    return None


exports = Module(
    name="acc",
    params=[
        Param("early_media", int, 0), Param("report_cancels", int, 0),
        Param("report_ack", int, 0), Param("detect_direction", int, 0),
        Param("log_level", int, 2), Param("log_facility", str, "LOG_DAEMON"),
        Param("db_url", str, None, check=db.check_url), Param("db_table_acc", str, "acc"),
        Param("db_table_missed_calls", str, "missed_calls"),
        Param("log_extra", str, ""), Param("db_extra", str, ""),
        Param("extra_fields", str, multi=True, check=_check_extra),
        Param("service_type", int, 15), Param("acc_created_avp_name", str, "accX_created"),
        *[Param(f"acc_{c}_column", str, c) for c in _COLUMNS],
        *[Param(name, FLAG, None) for name in _OLD_FLAGS],
        *[Param(name, FLAG, None) for name in _UNSUPPORTED],
    ],
    functions=[
        Func("do_accounting", "do_accounting",
             [Arg(STR, fixup=_fix_types, name="type"),
              Arg(STR, optional=True, fixup=_fix_kinds, name="flags"),
              Arg(STR, optional=True, name="table")], ROUTES),
        Func("drop_accounting", "drop_accounting",
             [Arg(STR, optional=True, fixup=lambda v, rt: _split(v, BACKENDS, "backend")),
              Arg(STR, optional=True, fixup=lambda v, rt: _split(v, KINDS, "flag"))], ROUTES),
        Func("acc_log_request", "acc_log_request", [Arg(STR, name="comment")], ROUTES),
        Func("acc_db_request", "acc_db_request", [Arg(STR, name="comment"), Arg(STR, name="table")],
             ROUTES),
    ],
    depends=("tm",),
    init="init",
    child_init="child_init",
)


class State:
    """The module's settings once the script is loaded, and the transactions it watches."""

    def __init__(self, rt):
        p = rt.modparams["acc"]
        self.rt = rt
        self.params = p
        self.level = p["log_level"]
        self.columns = {c: p[f"acc_{c}_column"] for c in _COLUMNS}
        self.old_bits = {name: rt.flag_names.bit(p[name]) for name in _OLD_FLAGS
                         if p[name] not in (None, "", -1)}
        defs = _pv_defs(rt)
        self.log_extra = R.Extras(p["log_extra"], defs)
        self.db_extra = R.Extras(p["db_extra"], defs)
        self.extra_fields = R.parse_extra_fields(p["extra_fields"])
        self.db = None                   # runtime.db connection, opened in child_init
        self.tables = set()              # tables known to exist
        self.pending = {}                # id(tx) -> Tracked


_state: dict = {"s": None}


def _pv_defs(rt):
    from runtime.pv import PVS
    defs = dict(PVS)
    for mod in rt.modules.values():
        defs.update(mod.pvs)
    return defs


def init(rt):
    try:
        s = State(rt)
    except ValueError as e:
        raise ValueError(f"acc: {e}") from None
    _state["s"] = s
    for name in _UNSUPPORTED:
        if s.params[name] not in (None, ""):
            rt.log.warning(f"modparam '{name}' is not supported: ignored", "acc")


def child_init(rt):
    s = _state["s"]
    tm = rt.apis["tm"].tm
    tm.request_in.append(_request_in)
    rt.timers.append((0.5, _sweep))
    if s.params["db_url"]:
        s.db = _open_db(rt, s.params["db_url"])


def _open_db(rt, url):
    conn = db.connect(url)
    p = rt.modparams["acc"]
    conn.ensure_table(p["db_table_acc"], "acc")
    conn.ensure_table(p["db_table_missed_calls"], "missed_calls")
    return conn


# --- which records a request asks for ------------------------------------------------------

class Marks:
    """What do_accounting() asked for on one request: (backend, kind) pairs, kind 'acc' being
    the plain transaction record; the DB table; when it was first called."""
    __slots__ = ("pairs", "table", "created")

    def __init__(self):
        self.pairs = set()
        self.table = None
        self.created = time.time()


def _wanted(req) -> set:
    """The (backend, kind) pairs that apply to a request now (do_accounting and old flags)."""
    marks = req.local_data.get("acc")
    pairs = set(marks.pairs) if marks is not None else set()
    for name, bit in _state["s"].old_bits.items():
        if req.flags >> bit & 1:
            pairs |= _OLD_FLAGS[name]
    return pairs


def _reset_missed(req):
    """A missed call is reported once per failure: the script re-arms it for the next one."""
    marks = req.local_data.get("acc")
    if marks is not None:
        marks.pairs = {p for p in marks.pairs if p[1] != "missed"}
    for name in ("log_missed_flag", "db_missed_flag"):
        bit = _state["s"].old_bits.get(name)
        if bit is not None:
            req.flags &= ~(1 << bit)


def _request_ctx(ctx):
    return ctx.tx.ctx if ctx.tx is not None else ctx


# --- watching transactions -----------------------------------------------------------------

class Tracked:
    """A transaction whose final reply (and failures) acc reports."""
    __slots__ = ("tx", "req", "done", "early")

    def __init__(self, tx, req):
        self.tx = tx
        self.req = req
        self.done = False
        self.early = False


def _request_in(ctx, tx):
    s = _state["s"]
    if "acc" in ctx.local_data or (s.old_bits and (
            tx.method != "CANCEL" or s.params["report_cancels"])):
        _track(ctx, tx)


def _track(req, tx):
    s = _state["s"]
    if id(tx) in s.pending:
        return
    t = Tracked(tx, req)
    s.pending[id(tx)] = t
    tx.callbacks.append(functools.partial(_on_reply, t))
    s.rt.server.loop.call_soon(_check_final, t)


def _on_reply(t, tx, branch, reply):
    """tm: a reply came back on one branch (before tm relays it or runs failure_route)."""
    s = _state["s"]
    code = reply.status
    if code < 200:
        if s.params["early_media"] and not t.early and reply.body:
            t.early = True
            _answered(t, code, reply.reason, reply.to_tag, _wanted(t.req))
        return
    if code >= 300 and tx.method == "INVITE" and not branch.final and not tx.final_sent and \
            _kind(_wanted(t.req), "missed") and \
            all(b.final for b in tx.branches if b is not branch):
        best = _best_reply(tx, branch, reply)
        _missed(t, best[0], best[1], best[2])
    s.rt.server.loop.call_soon(_check_final, t)


def _best_reply(tx, branch, reply):
    """(code, reason, to_tag) of the reply tm will pick (RFC 3261 16.7) once `branch` ends."""
    finals = [(b.status, b.reply) for b in tx.branches if b is not branch and b.final]
    finals.append((reply.status, reply))
    six = [f for f in finals if f[0] >= 600]
    code, msg = six[0] if six else min(
        finals, key=lambda f: (f[0] // 100, 0 if f[0] in (401, 407, 415, 420, 484) else 1, f[0]))
    if msg is None:
        return code, R.reason_for(code), None
    return code, msg.reason, msg.to_tag


def _check_final(t):
    """Write the records of a transaction once its final reply went upstream."""
    s = _state["s"]
    tx = t.tx
    if t.done:
        return
    if tx.last_status < 200 or tx.last_response is None:
        if time.monotonic() - tx.created > tx.fr_inv_timeout + 64:
            s.pending.pop(id(tx), None)  # never answered: forget it
        return
    t.done = True
    s.pending.pop(id(tx), None)
    try:
        sent = Message.parse(tx.last_response)
        code, reason, to_tag = sent.status, sent.reason, sent.to_tag
    except SIPError:
        code, reason, to_tag = tx.last_status, R.reason_for(tx.last_status), None
    wanted = _wanted(t.req)
    if code >= 300 and tx.method == "INVITE" and _kind(wanted, "missed"):
        _missed(t, code, reason, to_tag)
    if code >= 300 and not _kind(wanted, "failed"):
        return
    if 200 <= code < 300 and tx.method == "INVITE" and _kind(wanted, "cdr") and \
            _start_cdr(t, code, reason, to_tag, wanted):
        return
    _answered(t, code, reason, to_tag, wanted)


def _sweep():
    """Replies tm generated itself (a 408 after fr_inv_timeout, t_reply from a failure
    route) come with no reply callback: look for them here."""
    for t in list(_state["s"].pending.values()):
        _check_final(t)


def _kind(wanted, kind) -> bool:
    return any(k == kind for _, k in wanted)


# --- writing records -----------------------------------------------------------------------

def _upstream(req) -> bool:
    s = _state["s"]
    rr = s.rt.modules.get("rr")
    if not s.params["detect_direction"] or rr is None:
        return False
    return rr.functions_by_name["is_direction"].impl(req, "upstream") > 0


def _answered(t, code, reason, to_tag, wanted):
    fields = R.core_fields(t.req.msg, to_tag, code, reason, _upstream(t.req))
    for backend in sorted(b for b, k in wanted if k == "acc"):
        _write(backend, R.ANSWERED, fields, t.req, _table(t.req))


def _missed(t, code, reason, to_tag):
    """Report a missed call with the R-URI of the last branch tried, then disarm."""
    req = t.req
    wanted = _wanted(req)
    branches = t.tx.branches
    saved = req.new_ruri
    if branches:
        req.new_ruri = branches[-1].uri
    try:
        fields = R.core_fields(req.msg, to_tag, code, reason, _upstream(req))
        for backend in sorted(b for b, k in wanted if k == "missed"):
            _write(backend, R.MISSED, fields, req, _state["s"].params["db_table_missed_calls"])
    finally:
        req.new_ruri = saved
    _reset_missed(req)


def _table(req):
    marks = req.local_data.get("acc")
    return (marks.table if marks is not None and marks.table else
            _state["s"].params["db_table_acc"])


def _write(backend, text, fields, ctx, table, ts=None, cdr=None):
    s = _state["s"]
    ts = time.time() if ts is None else ts
    if backend == "log":
        extras = s.log_extra.values(ctx) + _acc_extra_values(ctx, "log")
        if cdr is None:
            line = R.log_line(text, [*fields, *extras], ts)
        else:
            line = R.log_line(text, [*fields, *extras], prefix=[
                (k, cdr[k]) for k in ("created", "call_start_time", "duration", "ms_duration",
                                      "setuptime")])
        s.rt.log.write(s.level, line, "acc")
    elif s.db is None:
        s.rt.log.error("db accounting requested but modparam 'db_url' is not set", "acc")
    else:
        row = R.db_row(fields, s.columns, ts,
                       s.db_extra.values(ctx) + _acc_extra_values(ctx, "db"), cdr)
        try:
            if table not in s.tables:
                s.db.ensure_table(table, "acc")
                s.tables.add(table)
            s.db.insert(table, row)
        except Exception as e:  # a DB error must not stop the transaction
            s.rt.log.error(f"failed to insert into table '{table}': {e}", "acc")


def _acc_extra_values(ctx, backend):
    """The $acc_extra(tag) values the script set, for the backend's extra_fields."""
    values = ctx.local_data.get("acc_extra", {})
    return [(name, values.get(tag, "")) for tag, name in
            _state["s"].extra_fields.get(backend, ())]


def _acc_extra_get(ctx, tag):
    return _request_ctx(ctx).local_data.get("acc_extra", {}).get(tag)


def _acc_extra_set(ctx, tag, value, op, idx):
    values = _request_ctx(ctx).local_data.setdefault("acc_extra", {})
    if value is None:
        values.pop(tag, None)
    else:
        values[tag] = str(value)


exports.pvs["acc_extra"] = PVDef("acc_extra", _acc_extra_get, _acc_extra_set, sub="req")


# --- CDRs ----------------------------------------------------------------------------------

def _start_cdr(t, code, reason, to_tag, wanted) -> bool:
    """At the 2xx of an INVITE with 'cdr': the record is written when the dialog ends."""
    s = _state["s"]
    dlg_api = s.rt.apis.get("dialog")
    dlg = dlg_api.current(t.req) if dlg_api is not None else None
    if dlg is None:
        return False
    req = t.req
    fields = R.core_fields(req.msg, to_tag, code, reason, _upstream(req))
    marks = req.local_data.get("acc")
    created = marks.created if marks is not None else t.tx.created
    backends = sorted(b for b, k in wanted if k == "cdr" and (b, "acc") in wanted)
    table = _table(req)
    start = time.time()

    def ended(dlg, event, obj, direction):
        end = time.time()
        cdr = {"created": int(created), "call_start_time": int(start),
               "duration": int(end - start), "ms_duration": int((end - start) * 1000),
               "setuptime": int(start - created)}
        for backend in backends:
            _write(backend, R.ENDED, fields, req, table, ts=start, cdr=cdr)
    dlg.on("terminated", ended)
    return True


# --- script functions ----------------------------------------------------------------------

def do_accounting(ctx, types, kinds=None, table=None):
    """Mark the transaction (and with 'cdr' the dialog) for accounting."""
    s = _state["s"]
    req = _request_ctx(ctx)
    if req.msg.method == "CANCEL" and not s.params["report_cancels"]:
        s.rt.log.warning("do_accounting() called on CANCEL but 'report_cancels' is not set: "
                         "no accounting for this transaction", "acc")
        return 1
    marks = req.local_data.get("acc")
    if marks is None:
        marks = req.local_data["acc"] = Marks()
    for backend in types:
        marks.pairs.add((backend, "acc"))
        for kind in kinds or ():
            marks.pairs.add((backend, kind))
    if "db" in types and table:
        marks.table = table
    if kinds and "cdr" in kinds and req.msg.method == "INVITE" and not _has_totag(req) and \
            s.rt.apis["dialog"].current(req) is None:
        create = s.rt.modules["dialog"].functions_by_name["create_dialog"].impl
        if create(req) < 0:
            s.rt.log.error("cannot create the dialog for CDR accounting", "acc")
            return -1
    if req.tx is not None:
        _track(req, req.tx)
    return 1


def _has_totag(req):
    try:
        return bool(req.msg.to.tag)
    except SIPError:
        return False


def drop_accounting(ctx, types=None, kinds=None):
    marks = _request_ctx(ctx).local_data.get("acc")
    if marks is None:
        _state["s"].rt.log.error("drop_accounting(): do_accounting() was not called", "acc")
        return -1
    drop_kinds = kinds or {"acc", *KINDS}
    marks.pairs = {(b, k) for b, k in marks.pairs
                   if not ((not types or b in types) and k in drop_kinds)}
    return 1


def _account_request(ctx, comment, kind, table):
    req = _request_ctx(ctx)
    code, reason = R.parse_comment(comment)
    try:
        fields = R.core_fields(req.msg, req.msg.to.tag, code, reason, _upstream(req))
    except SIPError:
        return -1
    _write(kind, R.REQUEST, fields, req, table)
    return 1


def acc_log_request(ctx, comment):
    """Write a record for the request now: "ACC: request accounted: ..."."""
    return _account_request(ctx, comment, "log", None)


def acc_db_request(ctx, comment, table):
    """Insert a record for the request now into `table`."""
    s = _state["s"]
    if s.db is None:
        s.rt.log.error("acc_db_request(): modparam 'db_url' is not set", "acc")
        return -1
    return _account_request(ctx, comment, "db", table)

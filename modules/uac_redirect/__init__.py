"""uac_redirect: follow 3xx replies from a failure route.

    get_redirects("max_total[:max_branch]"[, reason])    1.x/2.x ("*" or 0: no limit)
    get_redirects(max_total[, reason])                   3.x
    set_deny_filter(regex, "reset_all|reset_default|reset_added|")
    set_accept_filter(regex, flags)

get_redirects() takes the Contacts of every 3xx reply of the transaction's latest round of
branches, keeps those the filters allow (a deny filter that matches rejects, unless an
accept filter matches; the default_filter decides for the rest), orders each reply's
contacts by q (highest first; 1.0 when absent) and appends them as new branches. With a
reason, each redirect is accounted through `acc_function` (acc's acc_log_request/
acc_db_request) with that reason. 1 when contacts were added, -1 otherwise."""
import re

from runtime.context import Branch
from runtime.module import FAILURE, STR, Arg, Func, Module, Param
from runtime.sip.headers import SIPError
from runtime.values import compile_regex

MAX_FILTERS = 6
MAX_CONTACTS_PER_REPLY = 16


def _fix_max(value, rt):
    """`"3:1"`, `"*:2"`, `"6"`, 3 -> (max_total, max_branch), 0 meaning no limit."""
    text = str(value).strip()
    total, _, branch = text.partition(":")

    def num(t):
        t = t.strip()
        if t in ("", "*"):
            return 0
        if not t.isdigit():
            raise ValueError(f"bad limit '{value}' (max_total[:max_branch], numbers or *)")
        return int(t)
    return num(total), num(branch)


def _fix_reset(value, rt):
    v = str(value or "").strip().lower()
    if v not in ("", "reset_all", "reset_default", "reset_added"):
        raise ValueError(f"unknown flag '{value}' (reset_all, reset_default, reset_added)")
    return v


exports = Module(
    name="uac_redirect",
    params=[
        Param("default_filter", str, "accept",
              check=lambda v: None if v.lower() in ("accept", "deny") else
              "must be accept or deny"),
        Param("deny_filter", str, None), Param("accept_filter", str, None),
        Param("acc_function", str, "acc_log_request"), Param("acc_db_table", str, "acc"),
    ],
    functions=[
        Func("get_redirects", "get_redirects",
             [Arg(STR, optional=True, fixup=_fix_max, name="max"),
              Arg(STR, optional=True, name="reason")], FAILURE),
        Func("set_deny_filter", "set_deny_filter",
             [Arg(STR, name="regex"), Arg(STR, optional=True, fixup=_fix_reset, name="flags")],
             FAILURE),
        Func("set_accept_filter", "set_accept_filter",
             [Arg(STR, name="regex"), Arg(STR, optional=True, fixup=_fix_reset, name="flags")],
             FAILURE),
    ],
    depends=("tm",),
    init="init",
)

_state: dict = {}


def init(rt):
    p = rt.modparams["uac_redirect"]
    defaults = {}
    for kind in ("deny", "accept"):
        text = p[f"{kind}_filter"]
        defaults[kind] = compile_regex(text) if text else None
    _state.update(rt=rt, p=p, default_accept=p["default_filter"].lower() == "accept",
                  defaults=defaults)


def _filters(ctx):
    f = ctx.local_data.get("rd_filters")
    if f is None:
        d = _state["defaults"]
        f = ctx.local_data["rd_filters"] = {"deny": [d["deny"]] if d["deny"] else [],
                                            "accept": [d["accept"]] if d["accept"] else [],
                                            "deny_default": d["deny"] is not None,
                                            "accept_default": d["accept"] is not None}
    return f


def _set_filter(ctx, kind, regex, flag):
    try:
        rx = compile_regex(regex)
    except re.error as e:
        ctx.rt.log.error(f"set_{kind}_filter: bad regex '{regex}': {e}", "uac_redirect")
        return -1
    f = _filters(ctx)
    lst = f[kind]
    has_default = f[f"{kind}_default"]
    if flag == "reset_all":
        lst.clear()
        f[f"{kind}_default"] = False
    elif flag == "reset_default" and has_default:
        lst.pop(0)
        f[f"{kind}_default"] = False
    elif flag == "reset_added":
        del lst[1 if has_default else 0:]
    if len(lst) >= MAX_FILTERS + (1 if f[f"{kind}_default"] else 0):
        ctx.rt.log.error(f"set_{kind}_filter: too many filters", "uac_redirect")
        return -1
    lst.append(rx)
    return 1


def set_deny_filter(ctx, regex, flag=""):
    return _set_filter(ctx, "deny", regex, flag or "")


def set_accept_filter(ctx, regex, flag=""):
    return _set_filter(ctx, "accept", regex, flag or "")


def allowed(uri, filters, default_accept):
    """The filters' verdict on a contact URI."""
    if any(rx.search(uri) for rx in filters["accept"]):
        return True
    if any(rx.search(uri) for rx in filters["deny"]):
        return False
    return default_accept


def _q_of(contact):
    q = contact.param("q") if hasattr(contact, "param") else None
    if q is None:
        return 1000
    try:
        v = float(q)
    except ValueError:
        return None
    return int(round(v * 1000)) if 0 <= v <= 1 else None


def contacts_of(reply, filters, default_accept):
    """[(uri, q)] of a 3xx reply that the filters allow, highest q first."""
    try:
        contacts = reply.contacts
    except (SIPError, AttributeError):
        return []
    out = []
    for c in contacts or ():
        if getattr(c, "star", False):
            continue
        uri = c.uri
        q = _q_of(c)
        if q is None or not uri:
            continue
        if not allowed(uri, filters, default_accept):
            continue
        out.append((uri, q))
    out.sort(key=lambda e: -e[1])
    return out[:MAX_CONTACTS_PER_REPLY]


def get_redirects(ctx, limits=None, reason=None):
    tx = ctx.tx
    if tx is None:
        ctx.rt.log.error("get_redirects: no transaction", "uac_redirect")
        return -1
    max_total, max_branch = limits or (0, 0)
    filters = _filters(ctx)
    first = getattr(tx, "first_branch", None)
    if first is None:       # tm keeps no round marker: the branches not looked at yet
        first = getattr(tx, "_rd_seen", 0)
    tx._rd_seen = len(tx.branches)
    added = 0
    for b in tx.branches[first:]:
        if not 300 <= b.status < 400 or b.reply is None:
            continue
        if max_total and added >= max_total:
            break
        room = max_branch or 0
        if max_total:
            left = max_total - added
            room = min(room, left) if room else left
        found = contacts_of(b.reply, filters, _state["default_accept"])
        if room:
            found = found[:room]
        for uri, q in found:
            ctx.branches.append(Branch(uri, q=q))
            added += 1
            if reason:
                _account(ctx, uri, reason)
    return 1 if added else -1


def _account(ctx, uri, reason):
    """One accounting record per redirect contact, its R-URI being the contact."""
    fname = _state["p"]["acc_function"]
    acc = ctx.rt.modules.get("acc")
    func = acc.functions_by_name.get(fname) if acc is not None else None
    if func is None:
        ctx.rt.log.warning(f"get_redirects: accounting function '{fname}' is not loaded",
                           "uac_redirect")
        return
    saved = ctx.new_ruri
    ctx.new_ruri = uri
    try:
        if fname == "acc_db_request":
            func.impl(ctx, reason, _state["p"]["acc_db_table"])
        else:
            func.impl(ctx, reason)
    except TypeError:
        func.impl(ctx, reason)
    finally:
        ctx.new_ruri = saved

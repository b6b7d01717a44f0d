"""permissions: source addresses from the `address` table (check_address,
check_source_address, get_source_group) and hosts.allow-like rule files (allow_routing,
allow_register, allow_uri)."""
import fnmatch
import ipaddress
import os
import re

from runtime import db
from runtime.module import (BRANCH, EVENT, FAILURE, INT, LOCAL, REQUEST, STARTUP, STATIC, STR,
                            TIMER, VAR, Arg, Func, Module, Param)
from runtime.pv import PVS, PVError, bind, parse_pv_text, parse_uri
from runtime.sip.headers import SIPError

ADDR_ROUTES = REQUEST | FAILURE | LOCAL | BRANCH | STARTUP | TIMER | EVENT


def _rules(basename, rt):
    p = rt.modparams["permissions"]
    return RuleFiles(_path(rt, basename + p["allow_suffix"]),
                     _path(rt, basename + p["deny_suffix"]))


exports = Module(
    name="permissions",
    params=[
        Param("db_url", str, None, check=db.check_url),
        Param("address_table", str, "address"), Param("partition", str, multi=True),
        Param("grp_col", str, "grp"), Param("ip_col", str, "ip"), Param("mask_col", str, "mask"),
        Param("port_col", str, "port"), Param("proto_col", str, "proto"),
        Param("pattern_col", str, "pattern"), Param("info_col", str, "context_info"),
        Param("default_allow_file", str, "permissions.allow"),
        Param("default_deny_file", str, "permissions.deny"),
        Param("check_all_branches", int, 1), Param("allow_suffix", str, ".allow"),
        Param("deny_suffix", str, ".deny"),
        # 1.x trusted table (allow_trusted)
        Param("db_mode", int, 0), Param("trusted_table", str, "trusted"),
        Param("source_col", str, "src_ip"), Param("from_col", str, "from_pattern"),
        Param("tag_col", str, "tag"), Param("peer_tag_avp", str, None),
    ],
    functions=[
        Func("check_address", "check_address",
             [Arg(INT, name="group_id"), Arg(STR, name="ip"), Arg(INT, name="port"),
              Arg(STR, name="proto"), Arg(VAR, optional=True, name="context_info"),
              Arg(STR, optional=True, name="pattern"),
              Arg(STR, optional=True, name="partition")], ADDR_ROUTES),
        Func("check_source_address", "check_source_address",
             [Arg(INT, name="group_id"), Arg(VAR, optional=True, name="context_info"),
              Arg(STR, optional=True, name="pattern"),
              Arg(STR, optional=True, name="partition")], ADDR_ROUTES),
        Func("get_source_group", "get_source_group",
             [Arg(VAR, name="var"), Arg(STR, optional=True, name="partition")],
             REQUEST | FAILURE | LOCAL | BRANCH),
        Func("allow_trusted", "allow_trusted",
             [Arg(STR, optional=True, name="src_ip"), Arg(STR, optional=True, name="proto")],
             REQUEST | FAILURE),
        Func("allow_routing", "allow_routing", [Arg(STATIC, optional=True, fixup=_rules)],
             REQUEST | FAILURE),
        Func("allow_register", "allow_register", [Arg(STATIC, fixup=_rules)],
             REQUEST | FAILURE),
        Func("allow_uri", "allow_uri", [Arg(STATIC, fixup=_rules), Arg(STR, name="uri")],
             REQUEST | FAILURE),
    ],
    init="init",
    child_init="child_init",
)

_state: dict = {}


def _path(rt, name):
    """Relative file names are next to the main script."""
    if os.path.isabs(name) or not rt.script_file:
        return name
    return os.path.join(os.path.dirname(os.path.abspath(rt.script_file)), name)


def _partitions(rt, p):
    """{name: (db_url, table)}: 'default' from db_url/address_table, plus each `partition`
    modparam ("name: db_url = ...; table_name = ...")."""
    parts = {}
    default_url = p["db_url"] or None
    if default_url:
        parts["default"] = (default_url, p["address_table"])
    for text in p["partition"]:
        name, sep, rest = text.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"permissions: bad partition definition '{text.strip()}'")
        opts = {}
        for item in rest.split(";"):
            key, eq, value = item.partition("=")
            if eq:
                opts[key.strip()] = value.strip()
        url = opts.get("db_url") or default_url or rt.config.get("db_default_url")
        if not url:
            raise ValueError(f"permissions: partition '{name.strip()}' has no db_url")
        parts[name.strip()] = (url, opts.get("table_name", p["address_table"]))
    return parts


def init(rt):
    p = rt.modparams["permissions"]
    peer_tag = None
    if p["peer_tag_avp"]:
        try:
            peer_tag = bind(parse_pv_text(p["peer_tag_avp"]), PVS)
        except PVError as e:
            raise ValueError(f"permissions: peer_tag_avp: {e}") from None
    _state.update(rt=rt, params=p, partitions=_partitions(rt, p), cache={}, peer_tag=peer_tag,
                  trusted=None,
                  default_rules=RuleFiles(_path(rt, p["default_allow_file"]),
                                          _path(rt, p["default_deny_file"])))


def child_init(rt):
    for name, (url, table) in _state["partitions"].items():
        _state["cache"][name] = _load(url, table)
    if _state["params"]["db_mode"] and "default" in _state["partitions"]:
        _state["trusted"] = _load_trusted()


# --- addresses -----------------------------------------------------------------------------

class Entry:
    __slots__ = ("grp", "net", "port", "proto", "pattern", "info")

    def __init__(self, grp, net, port, proto, pattern, info):
        self.grp, self.net, self.port = grp, net, port
        self.proto, self.pattern, self.info = proto, pattern, info

    def matches(self, group, ip, port, proto, pattern):
        if group and self.grp != group:
            return False
        if ip not in self.net:
            return False
        if self.port and port and self.port != port:
            return False
        if self.proto == "none" or (self.proto != "any" and proto != "any"
                                    and self.proto != proto):
            return False
        if self.pattern and pattern is not None and not fnmatch.fnmatchcase(pattern,
                                                                           self.pattern):
            return False
        return True


def _load(url, table):
    p = _state["params"]
    conn = db.connect(url)
    cols = [p[k] for k in ("grp_col", "ip_col", "mask_col", "port_col", "proto_col",
                           "pattern_col", "info_col")]
    entries = []
    for row in conn.query(table, None, cols):
        try:
            net = ipaddress.ip_network(f"{row[cols[1]]}/{row[cols[2]]}", strict=False)
        except ValueError:
            _state["rt"].log.warning(f"bad address '{row[cols[1]]}/{row[cols[2]]}' in "
                                     f"table '{table}' ignored", "permissions")
            continue
        entries.append(Entry(int(row[cols[0]] or 0), net, int(row[cols[3]] or 0),
                             str(row[cols[4]] or "any").lower(), row[cols[5]], row[cols[6]]))
    return entries


def _entries(partition):
    entries = _state["cache"].get(partition or "default")
    if entries is None:
        _state["rt"].log.error(f"unknown partition '{partition or 'default'}' (or no db_url)",
                               "permissions")
    return entries


def check_address(ctx, group, ip, port, proto, info_var=None, pattern=None, partition=None):
    """1 if (ip, port, proto) is in address group `group` (0: any group)."""
    entries = _entries(partition)
    try:
        addr = ipaddress.ip_address((ip or "").strip("[]"))
    except ValueError:
        return -1
    if entries is None:
        return -1
    proto = (proto or "any").lower()
    for e in entries:
        if e.matches(group, addr, port, proto, pattern):
            if info_var is not None and e.info is not None:
                info_var.set(ctx, str(e.info))
            return 1
    return -1


def check_source_address(ctx, group, info_var=None, pattern=None, partition=None):
    return check_address(ctx, group, ctx.src_ip, ctx.src_port, ctx.proto, info_var, pattern,
                         partition)


def get_source_group(ctx, var, partition=None):
    entries = _entries(partition)
    if entries is None:
        return -1
    addr = ipaddress.ip_address(ctx.src_ip)
    for e in entries:
        if e.matches(0, addr, ctx.src_port, ctx.proto, None):
            var.set(ctx, e.grp)
            return 1
    return -1


# --- trusted (1.x) -------------------------------------------------------------------------

def _load_trusted():
    """[(src_ip, proto, from regex or None, tag)] from the trusted table; None on error."""
    from runtime.db import DBError
    p = _state["params"]
    cols = [p["source_col"], p["proto_col"], p["from_col"], p["tag_col"]]
    try:
        rows = db.connect(_state["partitions"]["default"][0]).query(p["trusted_table"], None,
                                                                     cols)
    except DBError as e:
        _state["rt"].log.error(f"cannot read table '{p['trusted_table']}': {e}", "permissions")
        return None
    out = []
    for r in rows:
        try:
            rx = re.compile(r[cols[2]], re.I) if r[cols[2]] else None
        except re.error:
            _state["rt"].log.warning(f"bad from_pattern '{r[cols[2]]}' ignored", "permissions")
            continue
        out.append((str(r[cols[0]]), str(r[cols[1]] or "any").lower(), rx, r[cols[3]]))
    return out


def allow_trusted(ctx, src_ip=None, proto=None):
    """Is the source (or the given address) in the trusted table, with a From that matches
    the row's from_pattern? The row's tag goes to peer_tag_avp."""
    if "default" not in _state["partitions"]:
        _state["rt"].log.error("allow_trusted(): modparam db_url is not set", "permissions")
        return -1
    rows = _state["trusted"] if _state["trusted"] is not None else _load_trusted()
    frm = _from_uri(ctx) or ""
    ip = src_ip or ctx.src_ip
    proto = (proto or ctx.proto).lower()
    for row_ip, row_proto, rx, tag in rows or ():
        if row_ip == ip and row_proto in ("any", proto) and (rx is None or rx.search(frm)):
            if tag is not None and _state["peer_tag"] is not None:
                _state["peer_tag"].set(ctx, str(tag))
            return 1
    return -1


# --- rule files ----------------------------------------------------------------------------

_TOKEN = re.compile(r'\s*(?:"((?:[^"\\]|\\.)*)"|(ALL|EXCEPT)\b|(:)|(,)|([^\s,:"]+))')


class RuleFiles:
    """An allow file and a deny file: lines `left : right`, each side a list of quoted
    regular expressions (or ALL) with an optional EXCEPT list; `#` starts a comment."""

    def __init__(self, allow_path, deny_path):
        self.allow = _read_rules(allow_path)
        self.deny = _read_rules(deny_path)

    def allowed(self, pairs) -> bool:
        """All pairs allowed -> True; else any pair denied -> False; else True."""
        if pairs and all(_match(self.allow, a, b) for a, b in pairs):
            return True
        return not any(_match(self.deny, a, b) for a, b in pairs)


def _read_rules(path):
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return []   # a missing file is an empty file
    rules = []
    for n, line in enumerate(lines, 1):
        line = re.sub(r'#(?=(?:[^"]*"[^"]*")*[^"]*$).*', "", line).strip()
        if not line:
            continue
        try:
            rules.append(_parse_rule(line))
        except ValueError as e:
            raise ValueError(f"{path}:{n}: {e}") from None
    return rules


def _parse_rule(line):
    sides, current = [], ([], [])
    target = current[0]
    pos = 0
    while pos < len(line):
        m = _TOKEN.match(line, pos)
        if m is None or m.end() == pos:
            raise ValueError(f"cannot read '{line[pos:]}'")
        pos = m.end()
        quoted, word, colon, comma, bare = m.groups()
        if colon:
            sides.append(current)
            current = ([], [])
            target = current[0]
        elif word == "EXCEPT":
            target = current[1]
        elif word == "ALL":
            target.append(None)
        elif quoted is not None or bare:
            try:
                target.append(re.compile(quoted if quoted is not None else bare, re.I))
            except re.error as e:
                raise ValueError(f"bad regular expression: {e}") from None
    sides.append(current)
    if len(sides) != 2:
        raise ValueError("want 'left : right'")
    return sides


def _side_matches(side, text):
    items, exceptions = side
    hit = any(rx is None or rx.search(text) for rx in items)
    return hit and not any(rx is None or rx.search(text) for rx in exceptions)


def _match(rules, left, right):
    return any(_side_matches(l_side, left) and _side_matches(r_side, right)
               for l_side, r_side in rules)


def _from_uri(ctx):
    try:
        return ctx.msg.from_.uri
    except SIPError:
        return None


def allow_routing(ctx, rules=None):
    rules = rules or _state["default_rules"]
    frm = _from_uri(ctx)
    if frm is None:
        return -1
    uris = [ctx.ruri]
    if _state["params"]["check_all_branches"]:
        uris += [b.uri for b in ctx.branches]
    return 1 if rules.allowed([(frm, u) for u in uris]) else -1


def allow_register(ctx, rules):
    try:
        to = ctx.msg.to.uri
        contacts = [c.uri for c in ctx.msg.contacts if c.uri != "*"]
    except SIPError:
        return -1
    if not contacts:
        return 1
    return 1 if rules.allowed([(to, c) for c in contacts]) else -1


def allow_uri(ctx, rules, uri):
    frm = _from_uri(ctx)
    if frm is None or parse_uri(uri or "") is None:
        return -1
    return 1 if rules.allowed([(frm, uri)]) else -1

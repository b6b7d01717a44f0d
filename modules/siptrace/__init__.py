"""siptrace: store SIP messages in a `sip_trace` table, or send them to a capture server
(HEP, or the SIP message itself over UDP).

    3.x:  modparam("siptrace", "trace_id", "[tid]uri=mysql://...;table=sip_trace")
          modparam("siptrace", "trace_id", "[hep]uri=hep:127.0.0.1:9060")
          sip_trace("tid"[, "m"|"t"|"d"[, "sip|xlog|rest"[, attrs]]])
    1.x/2.x and Kamailio: db_url/table/trace_to_database, duplicate_uri (+ duplicate_with_hep
          / hep_mode_on, hep_version), trace_flag, trace_on; sip_trace()

Scope `m` traces the message at hand; `t` its transaction and `d` its dialog too: every
message of that Call-ID received or sent by the proxy, in both directions, for as long as
the transaction (dialog) lives. A request marked with the 1.x `trace_flag` is traced with
its transaction when tm takes it."""
import re
import socket as pysocket
import struct
import time

from runtime.module import (BRANCH, FAILURE, ONREPLY, REQUEST, STR, Arg, Func, Module,
                            Param)
from runtime.sip.headers import SIPError

_TABLE_SQL = """
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, time_stamp DATETIME NOT NULL,
    callid CHAR(255) DEFAULT '' NOT NULL, trace_attrs CHAR(255) DEFAULT NULL,
    msg TEXT NOT NULL, method CHAR(32) DEFAULT '' NOT NULL, status CHAR(255) DEFAULT NULL,
    from_proto CHAR(5) NOT NULL, from_ip CHAR(50) DEFAULT '' NOT NULL,
    from_port INTEGER NOT NULL, to_proto CHAR(5) NOT NULL, to_ip CHAR(50) DEFAULT '' NOT NULL,
    to_port INTEGER NOT NULL, fromtag CHAR(64) DEFAULT '' NOT NULL,
    direction CHAR(4) DEFAULT '' NOT NULL"""


def _scope(value, rt):
    s = str(value or "m").strip().lower()
    if s not in ("m", "t", "d"):
        raise ValueError(f"scope must be m, t or d, not '{value}'")
    return s


exports = Module(
    name="siptrace",
    params=[
        Param("trace_id", str, multi=True), Param("trace_on", int, 1),
        Param("trace_local_ip", str, None),
        # 1.x / 2.x
        Param("db_url", str, None), Param("table", str, "sip_trace"),
        Param("trace_flag", (int, str), None), Param("enable_ack_trace", int, 0),
        Param("traced_user_avp", str, None), Param("trace_table_avp", str, None),
        Param("duplicate_uri", str, None), Param("trace_to_database", int, 1),
        Param("duplicate_with_hep", int, 0), Param("hep_version", int, 3),
        Param("hep_capture_id", int, 1),
        # Kamailio
        Param("hep_mode_on", int, 0), Param("trace_mode", int, 0),
        Param("xheaders_write", int, 0), Param("xheaders_read", int, 0),
        Param("trace_sl_acks", int, 1), Param("trace_delayed", int, 0),
        Param("force_send_sock", str, None), Param("auth_key", str, None),
    ],
    functions=[
        Func("sip_trace", "sip_trace",
             [Arg(STR, optional=True, name="trace id"),
              Arg(STR, optional=True, fixup=_scope, name="scope"),
              Arg(STR, optional=True, name="type"), Arg(STR, optional=True, name="attrs")],
             REQUEST | FAILURE | ONREPLY | BRANCH),
        Func("trace_dialog", "trace_dialog", routes=REQUEST),   # 1.x
    ],
    init="init",
    child_init="child_init",
    destroy="destroy",
    mi={"sip_trace": "mi_sip_trace", "trace_to_database": "mi_trace_to_database"},
)


# --- destinations ------------------------------------------------------------------------------

class Dest:
    """Where a trace goes: ('db', url, table), ('hep', (ip, port), version) or
    ('sip', (ip, port))."""

    def __init__(self, kind, target, extra=None):
        self.kind, self.target, self.extra = kind, target, extra
        self.conn = None

    def __repr__(self):
        return f"Dest({self.kind}, {self.target}, {self.extra})"


def _hostport(text, default_port=9060):
    text = text.strip()
    for prefix in ("sip:", "udp:", "hep:"):
        if text.lower().startswith(prefix):
            text = text[len(prefix):]
    text = text.split(";")[0]
    host, _, port = text.rpartition(":") if re.search(r":\d+$", text) else (text, "", "")
    return host.strip("[]"), int(port) if port else default_port


def parse_trace_id(text):
    """`[name]uri=...;uri=...;table=...` -> (name, [Dest])."""
    m = re.match(r"^\s*\[([^\]]+)\]\s*(.*)$", text or "")
    if m is None:
        raise ValueError(f"siptrace: bad trace_id '{text}' ([name]uri=...)")
    name, rest = m.group(1).strip(), m.group(2)
    uris, table = [], "sip_trace"
    for part in rest.split(";"):
        key, eq, value = part.strip().partition("=")
        if not eq:
            continue
        key = key.strip().lower()
        if key == "uri":
            uris.append(value.strip())
        elif key == "table":
            table = value.strip()
    if not uris:
        raise ValueError(f"siptrace: trace_id '{text}' has no uri")
    dests = []
    for u in uris:
        scheme = u.partition(":")[0].lower()
        if scheme == "hep":
            dests.append(Dest("hep", u[4:], 3))        # host:port, or a proto_hep id
        elif scheme == "sip":
            dests.append(Dest("sip", _hostport(u, 5060)))
        else:
            from runtime.db import parse_url
            parse_url(u)
            dests.append(Dest("db", u, table))
    return name, dests


_state: dict = {"ids": {}, "traced": {}, "sock": None, "wrapped": False}


def _config(p, rt):
    """The trace ids: the 3.x trace_id params, and "" for the 1.x/2.x/Kamailio params."""
    ids = {}
    for text in p["trace_id"]:
        name, dests = parse_trace_id(text)
        ids.setdefault(name, []).extend(dests)
    legacy = []
    if p["db_url"] and p["trace_to_database"]:
        legacy.append(Dest("db", p["db_url"], p["table"]))
    if p["duplicate_uri"]:
        hep = p["duplicate_with_hep"] or p["hep_mode_on"]
        legacy.append(Dest("hep", _hostport(p["duplicate_uri"]), p["hep_version"]) if hep
                      else Dest("sip", _hostport(p["duplicate_uri"], 5060)))
    if legacy:
        ids[""] = legacy
    return ids


def init(rt):
    p = rt.modparams["siptrace"]
    _state.update(rt=rt, p=p, ids=_config(p, rt), on=bool(p["trace_on"]), traced={},
                  wrapped=False, sock=None)
    flag = p["trace_flag"]
    _state["flag"] = None if flag in (None, "") else rt.flag_names.bit(flag)
    for dests in _state["ids"].values():
        for d in dests:
            if d.kind == "hep" and isinstance(d.target, str):
                hp = _hostport(d.target)
                if not re.match(r"^[\d.]+$|^[0-9a-fA-F:]+$", hp[0]) and ":" not in d.target:
                    rt.log.warning(f"siptrace: HEP destination '{d.target}' names a proto_hep "
                                   f"id, which is not implemented: not traced there",
                                   "siptrace")
                    d.kind = "off"
                else:
                    d.target = hp


def child_init(rt):
    from runtime import db
    for dests in _state["ids"].values():
        for d in dests:
            if d.kind == "db":
                try:
                    d.conn = db.connect(d.target)
                    _ensure_table(d.conn, d.extra)
                except db.DBError as e:
                    rt.log.error(f"siptrace: {e}", "siptrace")
                    d.kind = "off"
    if any(d.kind in ("hep", "sip") for ds in _state["ids"].values() for d in ds):
        s = pysocket.socket(pysocket.AF_INET, pysocket.SOCK_DGRAM)
        s.setblocking(False)
        _state["sock"] = s
    if _state["flag"] is not None and "tm" in rt.apis:
        tm = rt.apis["tm"].tm
        if tm is not None:
            tm.request_in.append(_flagged_request)
    rt.timers.append((30, _expire_traced))


def destroy(rt):
    s = _state.get("sock")
    if s is not None:
        s.close()
        _state["sock"] = None


def _ensure_table(conn, table):
    from runtime import db
    if isinstance(conn, db.SQLite):
        conn.raw_query(f"CREATE TABLE IF NOT EXISTS {conn.q(table)} ({_TABLE_SQL})")


# --- writing a trace ---------------------------------------------------------------------------

def _first_line_info(data: bytes):
    """(method, status, call-id, from-tag) read from raw bytes."""
    try:
        from runtime.sip.message import Message
        m = Message.parse(data)
        method = m.method if m.is_request else m.cseq[1]
        status = "" if m.is_request else f"{m.status} {m.reason}"
        return method, status, m.call_id or "", (m.from_.tag or "")
    except (SIPError, ValueError, AttributeError, TypeError):
        return "", "", "", ""


def hep3(data: bytes, src, dst, proto="udp", capture_id=1, now=None) -> bytes:
    """A HEPv3 packet carrying one SIP message (RFC-less but documented by sipcapture)."""
    now = time.time() if now is None else now
    v6 = ":" in src[0]

    def chunk(ctype, payload):
        return struct.pack("!HHH", 0, ctype, 6 + len(payload)) + payload
    fam = pysocket.AF_INET6 if v6 else pysocket.AF_INET
    body = b"".join([
        chunk(1, bytes([10 if v6 else 2])),
        chunk(2, bytes([6 if proto == "tcp" else 17])),
        chunk(5 if v6 else 3, pysocket.inet_pton(fam, src[0])),
        chunk(6 if v6 else 4, pysocket.inet_pton(fam, dst[0])),
        chunk(7, struct.pack("!H", src[1])), chunk(8, struct.pack("!H", dst[1])),
        chunk(9, struct.pack("!I", int(now))),
        chunk(10, struct.pack("!I", int((now % 1) * 1_000_000))),
        chunk(11, bytes([1])),                       # SIP
        chunk(12, struct.pack("!I", capture_id)),
        chunk(15, data),
    ])
    return b"HEP3" + struct.pack("!H", 6 + len(body)) + body


def _write(dests, data, src, dst, proto, direction, attrs=None):
    rt = _state["rt"]
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    for d in dests:
        try:
            if d.kind == "db" and d.conn is not None:
                method, status, callid, ftag = _first_line_info(data)
                d.conn.insert(d.extra, {
                    "time_stamp": time.strftime("%Y-%m-%d %H:%M:%S"), "callid": callid,
                    "trace_attrs": attrs, "msg": data.decode("utf-8", "surrogateescape"),
                    "method": method, "status": status, "from_proto": proto,
                    "from_ip": src[0], "from_port": src[1], "to_proto": proto,
                    "to_ip": dst[0], "to_port": dst[1], "fromtag": ftag,
                    "direction": direction})
            elif d.kind == "hep" and _state["sock"] is not None:
                _state["sock"].sendto(hep3(data, src, dst, proto,
                                           _state["p"]["hep_capture_id"]), d.target)
            elif d.kind == "sip" and _state["sock"] is not None:
                _state["sock"].sendto(data, d.target)
        except Exception as e:  # a trace never breaks the call
            rt.log.error(f"siptrace: {d.kind} {d.target}: {e}", "siptrace")


def _local(sock):
    if sock is None:
        return ("0.0.0.0", 0)
    return (_state["p"]["trace_local_ip"] or sock.ip, sock.port)


def _trace_ctx(ctx, dests, attrs=None):
    msg = ctx.msg
    _write(dests, msg.raw, (ctx.src_ip, ctx.src_port), _local(ctx.socket), ctx.proto, "in",
           attrs)


# --- transactions and dialogs: every message of the Call-ID ----------------------------------

_CALLID = re.compile(rb"^(?:call-id|i)[ \t]*:[ \t]*([^\r\n]*)", re.I | re.M)


def _callid_of(data: bytes):
    m = _CALLID.search(data)
    return m.group(1).strip().decode("utf-8", "surrogateescape") if m else None


def _follow(callid, dests, seconds, attrs):
    _state["traced"][callid] = (dests, time.monotonic() + seconds, attrs)
    _wrap_server()


def _expire_traced():
    now = time.monotonic()
    for k in [k for k, v in _state["traced"].items() if v[1] <= now]:
        del _state["traced"][k]


def _wrap_server():
    """Watch what the server receives and sends for the followed Call-IDs (instance-level
    wrappers: the engine has no message hook for modules yet)."""
    server = _state["rt"].server
    if _state["wrapped"] or server is None:
        return
    _state["wrapped"] = True
    orig_send, orig_receive = server.send, server.receive

    def send(sock, addr, data):
        ok = orig_send(sock, addr, data)
        if _state["traced"]:
            t = _state["traced"].get(_callid_of(data))
            if t is not None and _state["on"]:
                _write(t[0], data, _local(sock), addr, sock.proto if sock else "udp", "out",
                       t[2])
        return ok

    def receive(data, addr, sock, proto):
        if _state["traced"] and _state["on"]:
            t = _state["traced"].get(_callid_of(data))
            if t is not None:
                _write(t[0], data, addr, _local(sock), proto, "in", t[2])
        return orig_receive(data, addr, sock, proto)

    server.send = send
    server.receive = receive


def _flagged_request(ctx, tx):
    """1.x trace_flag: a request marked for tracing is traced with its transaction."""
    bit = _state["flag"]
    if bit is None or not ctx.flags >> bit & 1 or not _state["on"]:
        return
    dests = _state["ids"].get("")
    if not dests:
        return
    if ctx.msg.method == "ACK" and not _state["p"]["enable_ack_trace"]:
        return
    callid = ctx.msg.call_id
    if callid in _state["traced"]:
        return
    _trace_ctx(ctx, dests)
    _follow(callid, dests, 64, None)


# --- script functions --------------------------------------------------------------------------

def sip_trace(ctx, trace_id=None, scope=None, types=None, attrs=None):
    if not _state["on"]:
        return -1
    dests = _state["ids"].get(trace_id or "")
    if dests is None:
        if trace_id and not _state["ids"].get(""):
            ctx.rt.log.error(f"sip_trace: unknown trace id '{trace_id}'", "siptrace")
            return -1
        dests = _state["ids"].get("", [])
    if not dests:
        return -1
    if types and "sip" not in [t.strip().lower() for t in types.split("|")]:
        return 1            # xlog/rest tracing only: nothing of ours to do
    msg = ctx.msg
    if msg.is_request and msg.method == "ACK" and not _state["p"]["enable_ack_trace"] \
            and trace_id is None:
        return 1
    if scope is None and trace_id is None and _state["flag"] is not None \
            and ctx.flags >> _state["flag"] & 1:
        scope = "t"
    try:
        callid = msg.call_id
    except SIPError:
        callid = None
    followed = callid is not None and callid in _state["traced"] and _state["wrapped"]
    if not followed:
        _trace_ctx(ctx, dests, attrs)
    if scope in ("t", "d") and callid:
        seconds = 64 if scope == "t" else 3 * 3600
        _follow(callid, dests, seconds, attrs)
        if scope == "d":
            _end_with_dialog(ctx, callid)
    return 1


def _end_with_dialog(ctx, callid):
    api = ctx.rt.apis.get("dialog")
    dlg = api.current(ctx) if api is not None else None
    if dlg is None:
        return

    def done(dlg, event, obj, direction):
        t = _state["traced"].get(callid)
        if t is not None:   # the BYE's reply still gets traced
            _state["traced"][callid] = (t[0], time.monotonic() + 5, t[2])
    dlg.on("terminated", done)
    dlg.on("failed", done)


def trace_dialog(ctx):
    return sip_trace(ctx, None, "d")


def mi_sip_trace(rt, trace_mode: str = None):
    if trace_mode is None:
        return {"global": "on" if _state["on"] else "off"}
    mode = trace_mode.strip().lower()
    if mode not in ("on", "off"):
        from runtime.mi import MIError
        raise MIError(400, "Bad parameter value")
    _state["on"] = mode == "on"
    return "OK"


def mi_trace_to_database(rt, trace_mode: str = None):
    return mi_sip_trace(rt, trace_mode)



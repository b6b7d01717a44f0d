"""uac_registrant: the proxy registers itself (bindings of its own) with remote registrars,
answering their digest challenges, and keeps the registrations fresh.

    modparam("uac_registrant", "db_url", "sqlite:///var/lib/opensips/opensips.db")
    modparam("uac_registrant", "table_name", "registrant")
    modparam("uac_registrant", "timer_interval", 100)     # seconds for one pass over the table
    modparam("uac_registrant", "hash_size", 1)            # 2^hash_size buckets, one per tick

A `registrant` row: registrar (Request-URI), proxy (outbound proxy, optional), aor (To),
third_party_registrant (From, optional), username/password (for the challenge),
binding_URI + binding_params (Contact), expiry, forced_socket, cluster_shtag, state
(1: disabled). The timer visits one bucket every timer_interval/2^hash_size seconds and
sends a REGISTER for each record not registered yet, in error, or due to expire before the
next pass; a 401/407 is answered once with the record's credentials (through uac_auth). MI:
reg_list, reg_reload, reg_enable, reg_disable (unREGISTER), reg_force_register."""
from __future__ import annotations

import hashlib
import time

from runtime import db
from runtime.forward import next_hop
from runtime.module import Module, Param
from runtime.pv import parse_uri
from runtime.sip.headers import SIPError

from .uac import RequestUAC

NOT_REGISTERED, REGISTERING, AUTHENTICATING, REGISTERED, REGISTER_TIMEOUT, INTERNAL_ERROR, \
    WRONG_CREDENTIALS, REGISTRAR_ERROR, UNREGISTERING, AUTHENTICATING_UNREGISTER = range(10)
STATE_NAMES = ["NOT_REGISTERED_STATE", "REGISTERING_STATE", "AUTHENTICATING_STATE",
               "REGISTERED_STATE", "REGISTER_TIMEOUT_STATE", "INTERNAL_ERROR_STATE",
               "WRONG_CREDENTIALS_STATE", "REGISTRAR_ERROR_STATE", "UNREGISTERING_STATE",
               "AUTHENTICATING_UNREGISTER_STATE"]

_COLUMNS = ("registrar", "proxy", "aor", "third_party_registrant", "username", "password",
            "binding_URI", "binding_params", "expiry", "forced_socket", "cluster_shtag",
            "state")

exports = Module(
    name="uac_registrant",
    params=[
        Param("db_url", str, None), Param("table_name", str, "registrant"),
        Param("timer_interval", int, 100), Param("hash_size", int, 1),
        Param("enable_clustering", int, 0), Param("failure_retry_interval", int, 0),
        *[Param(f"{c}_column", str, c) for c in _COLUMNS],
    ],
    depends=("uac_auth",),
    init="init",
    child_init="child_init",
    mi={"reg_list": "mi_reg_list", "reg_reload": "mi_reg_reload",
        "reg_enable": "mi_reg_enable", "reg_disable": "mi_reg_disable",
        "reg_force_register": "mi_reg_force_register"},
)

_TABLE_SQL = """
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, registrar CHAR(255) DEFAULT '' NOT NULL,
    proxy CHAR(255) DEFAULT NULL, aor CHAR(255) DEFAULT '' NOT NULL,
    third_party_registrant CHAR(255) DEFAULT NULL, username CHAR(64) DEFAULT NULL,
    password CHAR(64) DEFAULT NULL, binding_URI CHAR(255) DEFAULT '' NOT NULL,
    binding_params CHAR(64) DEFAULT NULL, expiry INTEGER DEFAULT NULL,
    forced_socket CHAR(64) DEFAULT NULL, cluster_shtag CHAR(64) DEFAULT NULL,
    state INTEGER DEFAULT 0 NOT NULL"""


class Record:
    """One registrant and where its registration stands."""

    def __init__(self, row, tag):
        self.registrar = row["registrar"]
        self.proxy = row.get("proxy") or None
        self.aor = row["aor"]
        self.from_uri = row.get("third_party_registrant") or self.aor
        self.username = row.get("username") or None
        self.password = row.get("password") or ""
        self.binding = row["binding_URI"]
        self.binding_params = row.get("binding_params") or ""
        self.expiry = int(row.get("expiry") or 3600)
        self.forced_socket = row.get("forced_socket") or None
        self.enabled = not int(row.get("state") or 0)
        key = f"{self.aor}|{self.registrar}|{self.binding}"
        self.call_id = hashlib.md5(key.encode()).hexdigest()[:20] + f"@{tag}"
        self.from_tag = hashlib.md5((key + tag).encode()).hexdigest()[:10]
        self.cseq = 0
        self.state = NOT_REGISTERED
        self.expires_at = 0.0          # monotonic
        self.registered_until = 0.0    # wall clock, for reg_list
        self.last_register = 0.0
        self.last_reply = None         # status of the last final reply

    @property
    def bucket_key(self):
        return self.aor


_state: dict = {"records": [], "buckets": [], "next_bucket": 0}


def init(rt):
    p = rt.modparams["uac_registrant"]
    url = db.module_url(rt, "uac_registrant")
    nbuckets = 1 << max(0, p["hash_size"])
    if p["timer_interval"] < nbuckets:
        raise ValueError(f"uac_registrant: timer_interval ({p['timer_interval']}) is lower "
                         f"than the number of hash buckets ({nbuckets})")
    _state.update(rt=rt, p=p, url=url, nbuckets=nbuckets, records=[], next_bucket=0)
    rt.timers.append((p["timer_interval"] / nbuckets, _tick))


def child_init(rt):
    conn = db.connect(_state["url"])
    if isinstance(conn, db.SQLite):
        conn.raw_query(f"CREATE TABLE IF NOT EXISTS {conn.q(_state['p']['table_name'])} "
                       f"({_TABLE_SQL})")
    _state["db"] = conn
    load()


def _col(name):
    return _state["p"][f"{name}_column"]


def load():
    """(Re)read the registrant table: records kept by their AOR/registrar/binding keep
    their state."""
    rt, p = _state["rt"], _state["p"]
    try:
        rows = _state["db"].query(p["table_name"])
    except Exception as e:
        rt.log.error(f"uac_registrant: cannot load '{p['table_name']}': {e}", "uac_registrant")
        return False
    tag = (rt.sockets[0].via_host if rt.sockets else "cfgscript")
    old = {(r.aor, r.registrar, r.binding): r for r in _state["records"]}
    records = []
    for raw in rows:
        row = {c: raw.get(_col(c)) for c in _COLUMNS}
        if not row["registrar"] or not row["aor"] or not row["binding_URI"]:
            rt.log.error(f"uac_registrant: record without registrar/aor/binding_URI skipped:"
                         f" {raw}", "uac_registrant")
            continue
        if parse_uri(row["registrar"]) is None or parse_uri(row["aor"]) is None:
            rt.log.error(f"uac_registrant: bad URI in {raw}", "uac_registrant")
            continue
        rec = Record(row, tag)
        prev = old.get((rec.aor, rec.registrar, rec.binding))
        if prev is not None:
            rec.state, rec.expires_at, rec.cseq = prev.state, prev.expires_at, prev.cseq
            rec.registered_until = prev.registered_until
        records.append(rec)
    _state["records"] = records
    n = _state["nbuckets"]
    buckets = [[] for _ in range(n)]
    for r in records:
        buckets[int(hashlib.md5(r.bucket_key.encode()).hexdigest(), 16) % n].append(r)
    _state["buckets"] = buckets
    return True


# --- the timer ----------------------------------------------------------------------------------

def _tick():
    buckets = _state["buckets"]
    if not buckets:
        return
    i = _state["next_bucket"] % len(buckets)
    _state["next_bucket"] = i + 1
    now = time.monotonic()
    for rec in buckets[i]:
        if _due(rec, now):
            register(rec)


def _due(rec, now):
    if not rec.enabled:
        return False
    if rec.state in (REGISTERING, AUTHENTICATING, UNREGISTERING, AUTHENTICATING_UNREGISTER):
        return False
    if rec.state == REGISTERED:
        return rec.expires_at <= now + _state["p"]["timer_interval"]
    retry = _state["p"]["failure_retry_interval"]
    if rec.state != NOT_REGISTERED and retry and now - rec.last_register < retry:
        return False
    return True


# --- REGISTER ----------------------------------------------------------------------------------

def _socket_for(rec, proto, ip):
    rt = _state["rt"]
    if rec.forced_socket:
        text = rec.forced_socket if ":" in rec.forced_socket else "udp:" + rec.forced_socket
        s = rt.find_socket(text)
        if s is not None:
            return s
        rt.log.error(f"uac_registrant: forced_socket '{rec.forced_socket}' is not a listening"
                     f" socket", "uac_registrant")
        return None
    import socket as pysocket
    af = pysocket.AF_INET6 if ":" in ip else pysocket.AF_INET
    return rt.socket_for(proto, af) or rt.socket_for("udp")


def build_register(rec, sock, branch, expires, auth_line=None):
    host = sock.via_host
    params = rec.binding_params
    if params and not params.startswith(";"):
        params = ";" + params
    contact = f"<{rec.binding}>{params}"
    lines = [f"REGISTER {rec.registrar} SIP/2.0",
             f"Via: SIP/2.0/{sock.proto.upper()} {host}:{sock.via_port};branch={branch};rport",
             "Max-Forwards: 70",
             f"From: <{rec.from_uri}>;tag={rec.from_tag}",
             f"To: <{rec.aor}>",
             f"Call-ID: {rec.call_id}",
             f"CSeq: {rec.cseq} REGISTER",
             f"Contact: {contact}",
             f"Expires: {expires}"]
    if auth_line:
        lines.append(auth_line)
    lines += ["User-Agent: cfgscript uac_registrant", "Content-Length: 0"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")


def register(rec, expires=None, auth_line=None):
    """Send a REGISTER for the record (expires 0: remove the binding)."""
    rt = _state["rt"]
    if rt.server is None or rt.server.loop is None:
        return False
    expires = rec.expiry if expires is None else expires
    unreg = expires == 0
    hop = next_hop(rec.proxy or rec.registrar)
    if hop is None:
        rt.log.error(f"uac_registrant: cannot resolve '{rec.proxy or rec.registrar}'",
                     "uac_registrant")
        rec.state = INTERNAL_ERROR
        return False
    proto, ip, port = hop
    sock = _socket_for(rec, proto, ip)
    if sock is None:
        rec.state = INTERNAL_ERROR
        return False
    rec.cseq += 1
    uac = RequestUAC.of(rt)
    branch = uac.new_branch()
    data = build_register(rec, sock, branch, expires, auth_line)
    if auth_line:
        rec.state = AUTHENTICATING_UNREGISTER if unreg else AUTHENTICATING
    else:
        rec.state = UNREGISTERING if unreg else REGISTERING
    rec.last_register = time.monotonic()
    timeout = float(rt.modparams.get("tm", {}).get("fr_timeout") or 5)
    return uac.send(data, sock, (ip, port), branch,
                    lambda reply: _on_reply(rec, reply, expires), timeout=timeout)


def _granted_expiry(rec, reply, asked):
    """The expiry the registrar gave our binding (its Contact's expires, else Expires)."""
    try:
        contacts = reply.contacts
    except SIPError:
        contacts = []
    mine = parse_uri(rec.binding)
    for c in contacts:
        u = parse_uri(c.uri)
        if u is not None and mine is not None and (u.user, u.host, u.port or 5060) == \
                (mine.user, mine.host, mine.port or 5060):
            v = c.param("expires")
            if v and v.strip().isdigit():
                return int(v)
    v = reply.get("expires")
    if v and v.strip().isdigit():
        return int(v)
    return asked


def _on_reply(rec, reply, expires):
    rt = _state["rt"]
    unreg = expires == 0
    if reply is None:
        rec.state = REGISTER_TIMEOUT
        rt.log.warning(f"uac_registrant: no reply from {rec.registrar} for {rec.aor}",
                       "uac_registrant")
        return
    code = reply.status
    rec.last_reply = code
    if code in (401, 407):
        if rec.state in (AUTHENTICATING, AUTHENTICATING_UNREGISTER):
            rec.state = WRONG_CREDENTIALS
            rt.log.error(f"uac_registrant: credentials for {rec.aor} rejected by "
                         f"{rec.registrar}", "uac_registrant")
            return
        api = rt.apis.get("uac_auth")
        line = None
        if api is not None and rec.username:
            line = api.authorize(reply, "REGISTER", rec.registrar,
                                 credential=(rec.username, rec.password))
        if line is None:
            rec.state = INTERNAL_ERROR
            rt.log.error(f"uac_registrant: cannot answer the {code} challenge for {rec.aor}",
                         "uac_registrant")
            return
        register(rec, expires, line)
        return
    if 200 <= code < 300:
        if unreg:
            rec.state = NOT_REGISTERED
            rec.expires_at = rec.registered_until = 0
            return
        granted = _granted_expiry(rec, reply, expires)
        rec.state = REGISTERED
        rec.expires_at = time.monotonic() + granted
        rec.registered_until = time.time() + granted
        rt.log.info(f"uac_registrant: {rec.aor} registered at {rec.registrar} for {granted}s",
                    "uac_registrant")
        return
    rec.state = REGISTRAR_ERROR
    rt.log.error(f"uac_registrant: {rec.registrar} answered {code} for {rec.aor}",
                 "uac_registrant")


# --- MI ------------------------------------------------------------------------------------------

def _find(aor, contact=None, registrar=None):
    return [r for r in _state["records"] if r.aor == aor
            and (contact is None or r.binding == contact)
            and (registrar is None or r.registrar == registrar)]


def mi_reg_list(rt):
    out = []
    for r in _state["records"]:
        item = {"AOR": r.aor, "expires": r.expiry, "state": STATE_NAMES[r.state],
                "enabled": "yes" if r.enabled else "no",
                "last_register_sent": time.strftime(
                    "%a %b %d %H:%M:%S %Y", time.localtime(time.time() - (
                        time.monotonic() - r.last_register))) if r.last_register else "",
                "registration_t_out": time.strftime("%a %b %d %H:%M:%S %Y",
                                                    time.localtime(r.registered_until))
                if r.registered_until else "",
                "dst_IP": r.proxy or r.registrar, "binding": r.binding,
                "registrar": r.registrar}
        if r.proxy:
            item["proxy"] = r.proxy
        if r.from_uri != r.aor:
            item["third_party_registrant"] = r.from_uri
        out.append(item)
    return {"Records": out}


def mi_reg_reload(rt):
    from runtime.mi import MIError
    if not load():
        raise MIError(500, "Failed to reload")
    return "OK"


def _one(aor, contact, registrar):
    from runtime.mi import MIError
    found = _find(aor, contact, registrar)
    if not found:
        raise MIError(404, "Record not found")
    return found


def mi_reg_enable(rt, aor: str, contact: str = None, registrar: str = None):
    for r in _one(aor, contact, registrar):
        r.enabled = True
        if r.state != REGISTERED:
            r.state = NOT_REGISTERED
    return "OK"


def mi_reg_disable(rt, aor: str, contact: str = None, registrar: str = None):
    for r in _one(aor, contact, registrar):
        r.enabled = False
        if r.state == REGISTERED:
            register(r, expires=0)
    return "OK"


def mi_reg_force_register(rt, aor: str, contact: str = None, registrar: str = None):
    for r in _one(aor, contact, registrar):
        if r.enabled:
            register(r)
    return "OK"

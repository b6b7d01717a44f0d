"""The location table: contacts per AOR, in memory and/or in a database, by db_mode.

| db_mode | working_mode_preset | memory | database |
|---|---|---|---|
| 0 | single-instance-no-db | every contact | not used |
| 1 | single-instance-sql-write-through | every contact | each change at once; read at start |
| 2 | single-instance-sql-write-back | every contact | by the timer and at exit; read at start |
| 3 | sql-only | nothing | every read and write |
"""
from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field, fields

from runtime.db import DBError

NO_DB, WRITE_THROUGH, WRITE_BACK, DB_ONLY = 0, 1, 2, 3
# Contact.flags (usrloc's own)
FL_MEM = 1 << 0     # kept in memory only (save's memory-only)
FL_NAT = 1 << 1     # behind NAT, as registrar's 1.x nat_flag said

# SIP methods as OpenSIPS numbers them in the `methods` column (parse_methods.h)
METHOD_BITS = {m: 1 << i for i, m in enumerate(
    "INVITE CANCEL ACK BYE INFO OPTIONS UPDATE REGISTER MESSAGE SUBSCRIBE NOTIFY PRACK REFER "
    "PUBLISH".split())}
METHOD_OTHER = 1 << 14
ALL_METHODS = 0xFFFFFFFF


def method_bit(method: str) -> int:
    return METHOD_BITS.get(method.upper(), METHOD_OTHER)


@dataclass
class Contact:
    """One binding of an AOR (OpenSIPS ucontact_t)."""
    aor: str
    uri: str                      # the Contact URI
    expires: int                  # absolute time (s); 0: never expires
    q: int | None = None          # q * 1000; None: not given
    callid: str = ""
    cseq: int = 0
    flags: int = 0                # usrloc's own flags
    cflags: int = 0               # branch flags saved from the REGISTER (NAT...)
    user_agent: str = ""
    received: str | None = None   # source of the REGISTER as a SIP URI (NAT)
    path: str | None = None       # Path header value(s)
    socket: str | None = None     # proto:ip:port it came in on
    methods: int | None = None    # bitmask of allowed methods; None: all
    instance: str | None = None   # +sip.instance
    attr: str | None = None
    last_modified: float = field(default_factory=time.time)
    contact_id: int = field(default_factory=lambda: secrets.randbits(62) + 1)

    def valid(self, now: float | None = None) -> bool:
        return self.expires == 0 or self.expires > (time.time() if now is None else now)

    def allows(self, method: str) -> bool:
        return self.methods is None or bool(self.methods & method_bit(method))


# Contact field -> the usrloc modparam naming its column (and the default name)
COLUMNS = {
    "contact_id": ("contact_id_column", "contact_id"), "uri": ("contact_column", "contact"),
    "expires": ("expires_column", "expires"), "q": ("q_column", "q"),
    "callid": ("callid_column", "callid"), "cseq": ("cseq_column", "cseq"),
    "flags": ("flags_column", "flags"), "cflags": ("cflags_column", "cflags"),
    "user_agent": ("user_agent_column", "user_agent"),
    "received": ("received_column", "received"), "path": ("path_column", "path"),
    "socket": ("socket_column", "socket"), "methods": ("methods_column", "methods"),
    "instance": ("sip_instance_column", "sip_instance"), "attr": ("attr_column", "attr"),
    "last_modified": ("last_mod_column", "last_modified"),
}
USER_COLUMN = ("user_column", "username")
DOMAIN_COLUMN = ("domain_column", "domain")


class Domain:
    """One usrloc table ("location"): AOR -> contacts, kept as db_mode says."""

    def __init__(self, name: str, *, db=None, db_mode: int = NO_DB, use_domain: bool = False,
                 desc_time_order: bool = False, columns: dict | None = None,
                 flag_names=None):
        self.name = name
        self.db = db if db_mode != NO_DB else None
        self.db_mode = db_mode if db is not None else NO_DB
        self.use_domain = use_domain
        self.desc_time_order = desc_time_order
        self.col = {f: (columns or {}).get(p, d) for f, (p, d) in COLUMNS.items()}
        self.user_col = (columns or {}).get(USER_COLUMN[0], USER_COLUMN[1])
        self.domain_col = (columns or {}).get(DOMAIN_COLUMN[0], DOMAIN_COLUMN[1])
        self.flag_names = flag_names      # runtime FlagRegistry of branch flags (cflags)
        self.records: dict[str, list[Contact]] = {}
        self.dirty: dict[int, Contact] = {}     # write-back: contact_id -> contact to store
        self.gone: set[int] = set()             # write-back: contact_ids to delete
        self.stats = {"users": 0, "contacts": 0, "expires": 0}
        if self.db is not None:
            self.db.ensure_table(name, "location")
            if self.db_mode != DB_ONLY:
                self.load()

    # --- reading -------------------------------------------------------------------------
    def get(self, aor: str) -> list[Contact]:
        """The valid contacts of an AOR: highest q first (or newest first with
        desc_time_order); equal q keep the order they registered in."""
        if self.db_mode == DB_ONLY:
            found = sorted((self._from_row(r) for r in
                            self.db.query(self.name, self._aor_where(aor))),
                           key=lambda c: c.last_modified)
        else:
            found = self.records.get(aor, [])
        now = time.time()
        return self._sorted([c for c in found if c.valid(now)])

    def _sorted(self, contacts):
        if self.desc_time_order:
            return sorted(contacts, key=lambda c: -c.last_modified)
        return sorted(contacts, key=lambda c: -(c.q if c.q is not None else -1))

    def aors(self) -> list[str]:
        if self.db_mode == DB_ONLY:
            rows = self.db.query(self.name, None, [self.user_col, self.domain_col])
            return sorted({self._row_aor(r) for r in rows})
        return list(self.records)

    def contacts(self):
        """Every valid contact of the table (for pinging and dumps)."""
        for aor in self.aors():
            yield from self.get(aor)

    # --- writing -------------------------------------------------------------------------
    def insert(self, c: Contact) -> None:
        c.last_modified = time.time()
        if self.db_mode != DB_ONLY:
            lst = self.records.setdefault(c.aor, [])
            if not lst:
                self.stats["users"] += 1
            lst.append(c)
            self.stats["contacts"] += 1
        self._store(c, new=True)

    def update(self, c: Contact) -> None:
        """Store a contact whose fields were changed."""
        c.last_modified = time.time()
        self._store(c, new=False)

    def delete(self, c: Contact) -> None:
        if self.db_mode != DB_ONLY:
            lst = self.records.get(c.aor, [])
            if c in lst:
                lst.remove(c)
                self.stats["contacts"] -= 1
            if not lst and c.aor in self.records:
                del self.records[c.aor]
                self.stats["users"] -= 1
        self._erase(c)

    def delete_aor(self, aor: str) -> None:
        for c in list(self.records.get(aor, [])) if self.db_mode != DB_ONLY else self.get(aor):
            self.delete(c)

    def expire(self, now: float | None = None) -> int:
        """Drop the contacts whose time is up (the usrloc timer); returns how many."""
        now = time.time() if now is None else now
        if self.db_mode == DB_ONLY:
            n = self.db.delete(self.name, {self.col["expires"]: [("<=", int(now)), ("!=", 0)]})
            self.stats["expires"] += n
            return n
        n = 0
        for aor in list(self.records):
            for c in list(self.records[aor]):
                if not c.valid(now):
                    self.delete(c)
                    n += 1
        self.stats["expires"] += n
        self.flush()
        return n

    def flush(self) -> None:
        """Write-back: store what changed since the last flush."""
        if self.db_mode != WRITE_BACK:
            return
        gone, self.gone = self.gone, set()
        dirty, self.dirty = self.dirty, {}
        for cid in gone:
            self._db_call(self.db.delete, self.name, {self.col["contact_id"]: cid})
        for c in dirty.values():
            self._db_call(self.db.replace, self.name, self._to_row(c), [self.col["contact_id"]])

    def _store(self, c: Contact, new: bool):
        if c.flags & FL_MEM and self.db_mode != DB_ONLY:
            if not new:
                self._erase(c)     # a binding that became memory-only leaves the database
            return
        if self.db_mode == WRITE_BACK:
            self.gone.discard(c.contact_id)
            self.dirty[c.contact_id] = c
        elif self.db_mode in (WRITE_THROUGH, DB_ONLY):
            if new:
                self._db_call(self.db.insert, self.name, self._to_row(c))
            else:
                row = self._to_row(c)
                cid = row.pop(self.col["contact_id"])
                self._db_call(self.db.update, self.name, {self.col["contact_id"]: cid}, row)

    def _erase(self, c: Contact):
        if self.db_mode == WRITE_BACK:
            self.dirty.pop(c.contact_id, None)
            self.gone.add(c.contact_id)
        elif self.db_mode in (WRITE_THROUGH, DB_ONLY):
            self._db_call(self.db.delete, self.name, {self.col["contact_id"]: c.contact_id})

    def _db_call(self, fn, *args):
        try:
            fn(*args)
        except DBError as e:
            raise DBError(f"usrloc table '{self.name}': {e}") from e

    # --- rows ------------------------------------------------------------------------------
    def load(self) -> None:
        """Read every unexpired contact of the table into memory (db_mode 1 and 2)."""
        now = time.time()
        for row in self.db.query(self.name):
            c = self._from_row(row)
            if c.valid(now):
                lst = self.records.setdefault(c.aor, [])
                if not lst:
                    self.stats["users"] += 1
                lst.append(c)
                self.stats["contacts"] += 1

    def _aor_where(self, aor):
        if self.use_domain:
            user, _, domain = aor.rpartition("@")
            return {self.user_col: user, self.domain_col: domain}
        return {self.user_col: aor}

    def _row_aor(self, row):
        user = row[self.user_col] or ""
        domain = row.get(self.domain_col)
        return f"{user}@{domain}" if self.use_domain and domain else user

    def _to_row(self, c: Contact) -> dict:
        row = {self.user_col: c.aor, self.domain_col: None}
        if self.use_domain and "@" in c.aor:
            user, _, domain = c.aor.rpartition("@")
            row = {self.user_col: user, self.domain_col: domain}
        values = {f.name: getattr(c, f.name) for f in fields(c) if f.name in COLUMNS}
        values["q"] = (c.q if c.q is not None else -1) / 1000
        values["last_modified"] = time.strftime("%Y-%m-%d %H:%M:%S",
                                                time.localtime(c.last_modified))
        values["cflags"] = ",".join(self.flag_names.names(c.cflags)) \
            if self.flag_names is not None and c.cflags else None
        for name, value in values.items():
            row[self.col[name]] = value
        return row

    def _from_row(self, row: dict) -> Contact:
        col = self.col
        q = row.get(col["q"])
        q = round(float(q) * 1000) if q is not None else None
        return Contact(
            aor=self._row_aor(row), uri=row[col["uri"]], expires=int(row[col["expires"]] or 0),
            q=None if q is None or q < 0 else q, callid=row.get(col["callid"]) or "",
            cseq=int(row.get(col["cseq"]) or 0), flags=int(row.get(col["flags"]) or 0),
            cflags=self._cflags(row.get(col["cflags"])),
            user_agent=row.get(col["user_agent"]) or "", received=row.get(col["received"]),
            path=row.get(col["path"]), socket=row.get(col["socket"]),
            methods=_int_or_none(row.get(col["methods"])),
            instance=row.get(col["instance"]), attr=row.get(col["attr"]),
            last_modified=_parse_time(row.get(col["last_modified"])),
            contact_id=int(row[col["contact_id"]]))

    def _cflags(self, text) -> int:
        if not text or self.flag_names is None:
            return 0
        mask = 0
        for name in str(text).split(","):
            if name.strip():
                mask |= 1 << self.flag_names.bit(name.strip())
        return mask


def _int_or_none(v):
    if v is None:
        return None
    v = int(v)
    return None if v & ALL_METHODS == ALL_METHODS else v


def _parse_time(v) -> float:
    if not v:
        return 0.0
    if isinstance(v, (int, float)):
        return float(v)
    try:
        return time.mktime(time.strptime(str(v)[:19], "%Y-%m-%d %H:%M:%S"))
    except ValueError:
        return 0.0

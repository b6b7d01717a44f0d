"""Where published states, subscription dialogs and watcher authorizations live.

With a `db_url`, the OpenSIPS tables are used with their OpenSIPS names and columns
(`presentity`, `active_watchers`, `watchers`; created in an embedded SQLite file when
missing), so that OpenSIPS tools and an integrated XCAP server read the same rows:

- published states go to `presentity` at once (as OpenSIPS writes them) and are read from
  there;
- subscription dialogs are kept in memory and written to `active_watchers` every
  `db_update_period` seconds (at once with `fallback2db`, which also looks a dialog up in the
  table when this process does not know it); they are read back at start-up;
- watcher authorizations (`watchers`) are written at once.

Without a `db_url` everything stays in memory (OpenSIPS would be a "library" then; here the
functions keep working, for a script run on a laptop).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from .events import ACTIVE, PENDING

# OpenSIPS 3.x table versions and columns (SQLite syntax, for an embedded file)
TABLES = {
    "presentity": (5, """
        id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
        username CHAR(64) NOT NULL, domain CHAR(64) NOT NULL, event CHAR(64) NOT NULL,
        etag CHAR(64) NOT NULL, expires INTEGER NOT NULL, received_time INTEGER NOT NULL,
        body BLOB DEFAULT NULL, extra_hdrs BLOB DEFAULT NULL, sender CHAR(255) DEFAULT NULL,
        CONSTRAINT presentity_presentity_idx UNIQUE (username, domain, event, etag)"""),
    "active_watchers": (12, """
        id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
        presentity_uri CHAR(255) NOT NULL, watcher_username CHAR(64) NOT NULL,
        watcher_domain CHAR(64) NOT NULL, to_user CHAR(64) NOT NULL,
        to_domain CHAR(64) NOT NULL, event CHAR(64) DEFAULT 'presence' NOT NULL,
        event_id CHAR(64), to_tag CHAR(64) NOT NULL, from_tag CHAR(64) NOT NULL,
        callid CHAR(64) NOT NULL, local_cseq INTEGER NOT NULL, remote_cseq INTEGER NOT NULL,
        contact CHAR(255) NOT NULL, record_route TEXT, expires INTEGER NOT NULL,
        status INTEGER DEFAULT 2 NOT NULL, reason CHAR(64), version INTEGER DEFAULT 0 NOT NULL,
        socket_info CHAR(64) NOT NULL, local_contact CHAR(255) NOT NULL,
        sharing_tag CHAR(32) DEFAULT NULL,
        CONSTRAINT active_watchers_active_watchers_idx
            UNIQUE (presentity_uri, callid, to_tag, from_tag)"""),
    "watchers": (4, """
        id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
        presentity_uri CHAR(255) NOT NULL, watcher_username CHAR(64) NOT NULL,
        watcher_domain CHAR(64) NOT NULL, event CHAR(64) DEFAULT 'presence' NOT NULL,
        status INTEGER NOT NULL, reason CHAR(64), inserted_time INTEGER NOT NULL,
        CONSTRAINT watchers_watcher_idx
            UNIQUE (presentity_uri, watcher_username, watcher_domain, event)"""),
}


def ensure_tables(conn, names: dict) -> None:
    """Create the tables (as `name -> schema name`) in an embedded SQLite database when
    they are missing; server databases are provisioned by their administrators."""
    for table, like in names.items():
        version, columns = TABLES[like]
        conn.create_table(table, columns, version)


def text(value) -> str:
    """A DB text/BLOB value as str."""
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "surrogateescape")
    return str(value)


# --- published state ---------------------------------------------------------------------------

@dataclass
class Presentity:
    user: str
    domain: str
    event: str            # the package name
    etag: str
    expires: int          # absolute (epoch seconds)
    received_time: int
    body: str = ""
    sender: str = ""
    extra_hdrs: str = ""

    @property
    def uri(self) -> str:
        return f"sip:{self.user}@{self.domain}" if self.user else f"sip:{self.domain}"


class MemoryPresentities:
    def __init__(self):
        self.by_key: dict = {}          # (user, domain, event) -> {etag: Presentity}

    def find(self, user, domain, event, etag):
        return self.by_key.get((user, domain, event), {}).get(etag)

    def insert(self, p: Presentity):
        self.by_key.setdefault((p.user, p.domain, p.event), {})[p.etag] = p

    def update(self, p: Presentity, old_etag: str):
        states = self.by_key.setdefault((p.user, p.domain, p.event), {})
        states.pop(old_etag, None)
        states[p.etag] = p

    def delete(self, p: Presentity):
        states = self.by_key.get((p.user, p.domain, p.event))
        if states is not None:
            states.pop(p.etag, None)
            if not states:
                del self.by_key[(p.user, p.domain, p.event)]

    def states(self, user, domain, event, now=None) -> list:
        now = now or int(time.time())
        found = [p for p in self.by_key.get((user, domain, event), {}).values()
                 if p.expires > now]
        return sorted(found, key=lambda p: p.received_time)

    def expired(self, now) -> list:
        return [p for states in self.by_key.values() for p in states.values()
                if p.expires <= now]

    def all(self) -> list:
        return [p for states in self.by_key.values() for p in states.values()]


class DbPresentities:
    """The `presentity` table (read and written at once, as OpenSIPS does)."""

    def __init__(self, conn, table):
        self.conn = conn
        self.table = table

    @staticmethod
    def _row(p: Presentity) -> dict:
        return {"username": p.user, "domain": p.domain, "event": p.event, "etag": p.etag,
                "expires": p.expires, "received_time": p.received_time, "body": p.body,
                "extra_hdrs": p.extra_hdrs, "sender": p.sender}

    @staticmethod
    def _from(r) -> Presentity:
        return Presentity(text(r["username"]), text(r["domain"]), text(r["event"]),
                          text(r["etag"]), int(r["expires"]), int(r["received_time"]),
                          text(r.get("body")), text(r.get("sender")), text(r.get("extra_hdrs")))

    def find(self, user, domain, event, etag):
        rows = self.conn.query(self.table, {"username": user, "domain": domain, "event": event,
                                            "etag": etag})
        return self._from(rows[0]) if rows else None

    def insert(self, p):
        self.conn.insert(self.table, self._row(p))

    def update(self, p, old_etag):
        self.conn.update(self.table, {"username": p.user, "domain": p.domain, "event": p.event,
                                      "etag": old_etag},
                         {k: v for k, v in self._row(p).items()
                          if k not in ("username", "domain", "event")})

    def delete(self, p):
        self.conn.delete(self.table, {"username": p.user, "domain": p.domain, "event": p.event,
                                      "etag": p.etag})

    def states(self, user, domain, event, now=None):
        now = now or int(time.time())
        rows = self.conn.query(self.table, {"username": user, "domain": domain, "event": event,
                                            "expires": (">", now)},
                               order_by=["received_time"])
        return [self._from(r) for r in rows]

    def expired(self, now):
        return [self._from(r) for r in self.conn.query(self.table, {"expires": ("<=", now)})]

    def all(self):
        return [self._from(r) for r in self.conn.query(self.table)]


# --- subscription dialogs ----------------------------------------------------------------------

@dataclass(eq=False)
class Subscription:
    """One subscription dialog, as the active_watchers table keeps it (we are the notifier:
    our tag is the To tag of the SUBSCRIBE, the watcher's the From tag)."""
    pres_uri: str
    event: str                      # the package name
    event_id: str | None
    to_user: str
    to_domain: str
    from_user: str                  # the watcher
    from_domain: str
    callid: str
    to_tag: str
    from_tag: str
    contact: str                    # the watcher's Contact (remote target)
    remote_cseq: int
    expires: int                    # absolute (epoch seconds)
    local_contact: str
    socket_info: str
    local_cseq: int = 1
    record_route: str = ""          # the route set, as "<uri>, <uri>"
    status: int = ACTIVE
    reason: str = ""
    version: int = 0
    sharing_tag: str | None = None
    in_db: bool = False             # written to active_watchers already
    dirty: bool = True              # changed since the last write
    pending_notify: list = field(default_factory=list, repr=False)

    @property
    def key(self):
        return (self.callid, self.to_tag, self.from_tag)

    @property
    def watcher_uri(self) -> str:
        return f"sip:{self.from_user}@{self.from_domain}" if self.from_user \
            else f"sip:{self.from_domain}"

    @property
    def to_uri(self) -> str:
        return f"sip:{self.to_user}@{self.to_domain}" if self.to_user \
            else f"sip:{self.to_domain}"

    def row(self) -> dict:
        return {"presentity_uri": self.pres_uri, "watcher_username": self.from_user,
                "watcher_domain": self.from_domain, "to_user": self.to_user,
                "to_domain": self.to_domain, "event": self.event,
                "event_id": self.event_id or "", "to_tag": self.to_tag,
                "from_tag": self.from_tag, "callid": self.callid,
                "local_cseq": self.local_cseq, "remote_cseq": self.remote_cseq,
                "contact": self.contact, "record_route": self.record_route,
                "expires": self.expires, "status": self.status, "reason": self.reason,
                "version": self.version, "socket_info": self.socket_info,
                "local_contact": self.local_contact, "sharing_tag": self.sharing_tag}

    @classmethod
    def from_row(cls, r) -> "Subscription":
        return cls(pres_uri=text(r["presentity_uri"]), event=text(r["event"]),
                   event_id=text(r.get("event_id")) or None, to_user=text(r["to_user"]),
                   to_domain=text(r["to_domain"]), from_user=text(r["watcher_username"]),
                   from_domain=text(r["watcher_domain"]), callid=text(r["callid"]),
                   to_tag=text(r["to_tag"]), from_tag=text(r["from_tag"]),
                   contact=text(r["contact"]), remote_cseq=int(r["remote_cseq"] or 0),
                   expires=int(r["expires"] or 0), local_contact=text(r["local_contact"]),
                   socket_info=text(r["socket_info"]), local_cseq=int(r["local_cseq"] or 0),
                   record_route=text(r.get("record_route")), status=int(r["status"] or 0),
                   reason=text(r.get("reason")), version=int(r.get("version") or 0),
                   sharing_tag=text(r.get("sharing_tag")) or None, in_db=True, dirty=False)


class Subscriptions:
    """The subscription dialogs of this process (in memory), synchronized with the
    active_watchers table when there is one."""

    def __init__(self, conn=None, table="active_watchers", fallback2db=False):
        self.conn = conn
        self.table = table
        self.fallback2db = bool(fallback2db) and conn is not None
        self.by_key: dict = {}
        self.by_resource: dict = {}     # (pres_uri, event) -> {key: Subscription}
        self.deleted: list = []         # rows to delete at the next synchronization

    def __len__(self):
        return len(self.by_key)

    def load(self, now=None):
        """Read back the dialogs stored by an earlier run (not the expired ones)."""
        if self.conn is None:
            return 0
        now = now or int(time.time())
        n = 0
        for r in self.conn.query(self.table, {"expires": (">", now)}):
            try:
                s = Subscription.from_row(r)
            except (KeyError, TypeError, ValueError):
                continue
            self._index(s)
            n += 1
        return n

    def _index(self, s):
        self.by_key[s.key] = s
        self.by_resource.setdefault((s.pres_uri, s.event), {})[s.key] = s

    def find(self, callid, to_tag, from_tag) -> Subscription | None:
        s = self.by_key.get((callid, to_tag, from_tag))
        if s is None and self.fallback2db:
            rows = self.conn.query(self.table, {"callid": callid, "to_tag": to_tag,
                                                "from_tag": from_tag})
            if rows:
                s = Subscription.from_row(rows[0])
                self._index(s)
        return s

    def watchers_of(self, pres_uri, event) -> list:
        subs = list(self.by_resource.get((pres_uri, event), {}).values())
        if self.fallback2db:
            known = {s.key for s in subs}
            for r in self.conn.query(self.table, {"presentity_uri": pres_uri, "event": event,
                                                  "expires": (">", int(time.time()))}):
                s = Subscription.from_row(r)
                if s.key not in known:
                    self._index(s)
                    subs.append(s)
        return subs

    def insert(self, s: Subscription):
        s.dirty, s.in_db = True, False
        self._index(s)
        if self.fallback2db:
            self._write(s)

    def changed(self, s: Subscription):
        s.dirty = True
        if self.fallback2db:
            self._write(s)

    def delete(self, s: Subscription):
        self.by_key.pop(s.key, None)
        res = self.by_resource.get((s.pres_uri, s.event))
        if res is not None:
            res.pop(s.key, None)
            if not res:
                del self.by_resource[(s.pres_uri, s.event)]
        if self.conn is not None and (s.in_db or self.fallback2db):
            if self.fallback2db:
                self._delete_row(s)
            else:
                self.deleted.append(s)

    def expired(self, now) -> list:
        return [s for s in self.by_key.values() if s.expires <= now]

    def all(self) -> list:
        return list(self.by_key.values())

    # --- the table -------------------------------------------------------------------------
    def _where(self, s):
        return {"presentity_uri": s.pres_uri, "callid": s.callid, "to_tag": s.to_tag,
                "from_tag": s.from_tag}

    def _write(self, s):
        row = s.row()
        if s.in_db:
            self.conn.update(self.table, self._where(s),
                             {k: v for k, v in row.items() if k not in self._where(s)})
        else:
            self.conn.replace(self.table, row, ["presentity_uri", "callid", "to_tag",
                                                "from_tag"])
            s.in_db = True
        s.dirty = False

    def _delete_row(self, s):
        self.conn.delete(self.table, self._where(s))

    def sync(self):
        """Write what changed since the last synchronization (db_update_period)."""
        if self.conn is None:
            return
        deleted, self.deleted = self.deleted, []
        for s in deleted:
            self._delete_row(s)
        for s in list(self.by_key.values()):
            if s.dirty:
                self._write(s)


# --- watcher authorization ---------------------------------------------------------------------

@dataclass
class WatcherAuth:
    pres_uri: str
    user: str
    domain: str
    event: str
    status: int
    reason: str
    inserted_time: int


class Watchers:
    """The `watchers` table: the authorization state of each watcher of a presentity."""

    def __init__(self, conn=None, table="watchers"):
        self.conn = conn
        self.table = table
        self.memory: dict = {}

    def get(self, pres_uri, user, domain, event) -> WatcherAuth | None:
        if self.conn is None:
            return self.memory.get((pres_uri, user, domain, event))
        rows = self.conn.query(self.table, {"presentity_uri": pres_uri,
                                            "watcher_username": user,
                                            "watcher_domain": domain, "event": event})
        if not rows:
            return None
        r = rows[0]
        return WatcherAuth(pres_uri, user, domain, event, int(r["status"]),
                           text(r.get("reason")), int(r["inserted_time"] or 0))

    def put(self, w: WatcherAuth):
        if self.conn is None:
            self.memory[(w.pres_uri, w.user, w.domain, w.event)] = w
            return
        self.conn.replace(self.table, {
            "presentity_uri": w.pres_uri, "watcher_username": w.user, "watcher_domain": w.domain,
            "event": w.event, "status": w.status, "reason": w.reason,
            "inserted_time": w.inserted_time},
            ["presentity_uri", "watcher_username", "watcher_domain", "event"])

    def of(self, pres_uri, event) -> list:
        if self.conn is None:
            return [w for w in self.memory.values()
                    if w.pres_uri == pres_uri and w.event == event]
        return [WatcherAuth(pres_uri, text(r["watcher_username"]), text(r["watcher_domain"]),
                            event, int(r["status"]), text(r.get("reason")),
                            int(r["inserted_time"] or 0))
                for r in self.conn.query(self.table, {"presentity_uri": pres_uri,
                                                      "event": event})]

    def clean_pending(self, older_than):
        """Forget pending authorizations nobody decided on (waiting_subs_daysno)."""
        if self.conn is None:
            for k, w in list(self.memory.items()):
                if w.status == PENDING and w.inserted_time < older_than:
                    del self.memory[k]
            return
        self.conn.delete(self.table, {"inserted_time": ("<", older_than), "status": PENDING})

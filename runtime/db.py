"""One database API for the `db_url`s of modules (OpenSIPS `db_func_t` in spirit).

    db = connect("sqlite:///var/lib/opensips/opensips.db")
    db.insert("location", {"username": "alice", "contact": "sip:alice@1.2.3.4", ...})
    rows = db.query("location", {"username": "alice", "expires": (">", now)})
    db.update("location", {"contact_id": 7}, {"expires": now + 3600})
    db.delete("location", {"expires": ("<", now)})

Rows are dicts keyed by column name. A `where` maps a column to a value (`=`, or `IS NULL`
for None), to `(op, value)` with op one of `= != < > <= >=`, or to a list of those (AND).

Drivers by URL scheme:

| scheme | driver | notes |
|---|---|---|
| `sqlite` | Python's sqlite3 | embedded default; `sqlite:///path` as db_sqlite writes it |
| `mysql` | PyMySQL (or mysqlclient) | registered by `modules/db_mysql` |
| `postgres`, `postgresql` | psycopg 3 (or psycopg2) | registered by `modules/db_postgres` |

A missing SQLite file is created with the OpenSIPS schema and its `version` table.

Calls block (as OpenSIPS workers block on their DB); each is one short statement.
"""
from __future__ import annotations

import importlib
import os
import re
import sqlite3
from dataclasses import dataclass
from typing import Callable
from urllib.parse import unquote

__all__ = ["DBError", "DbUrl", "Connection", "SQLite", "SCHEMA", "parse_url", "check_url",
           "dbapi_connect", "register_driver", "module_url", "connect", "close_all"]


class DBError(Exception):
    """A database that cannot be opened, or a statement that failed."""


@dataclass(frozen=True)
class DbUrl:
    """`scheme://[user[:password]@]host[:port]/database`, as OpenSIPS db_id parses it."""
    text: str
    scheme: str
    user: str | None = None
    password: str | None = None
    host: str | None = None
    port: int | None = None
    database: str = ""

    def __str__(self):  # for logs: never the password
        if self.password is None:
            return self.text
        return self.text.replace(f":{self.password}@", ":***@", 1)


_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9_+.-]*)://"
                  r"(?:(?P<user>[^:@/]*)(?::(?P<password>[^@/]*))?@)?"
                  r"(?P<host>\[[^\]]*\]|[^:/]*)(?::(?P<port>\d+))?"
                  r"(?:/(?P<database>.*))?$")


def parse_url(text: str) -> DbUrl:
    """Parse a db_url; ValueError when it is not one."""
    text = (text or "").strip()
    scheme = text.partition(":")[0].lower()
    if scheme == "sqlite" and text.lower().startswith("sqlite:/"):
        # db_sqlite opens what follows "sqlite:/": sqlite:///var/x.db -> /var/x.db
        path = "/" + text[len("sqlite:/"):].lstrip("/")
        return DbUrl(text, "sqlite", database=path)
    m = _URL.match(text)
    if m is None:
        raise ValueError(f"'{text}' is not a database URL (scheme://[user[:pass]@]host[:port]/db)")
    g = m.groupdict()
    return DbUrl(text, g["scheme"].lower(), _unq(g["user"]), _unq(g["password"]),
                 g["host"].strip("[]") or None, int(g["port"]) if g["port"] else None,
                 unquote(g["database"] or ""))


def _unq(v):
    return unquote(v) if v is not None else None


# --- the OpenSIPS schema (tables a module may need created in an embedded SQLite file) ---------

# table -> (version row OpenSIPS 3.x expects, column definitions in SQLite syntax)
SCHEMA: dict[str, tuple[int, str]] = {
    "location": (1013, """
        contact_id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
        username CHAR(64) DEFAULT '' NOT NULL, domain CHAR(64) DEFAULT NULL,
        contact CHAR(255) DEFAULT '' NOT NULL, received CHAR(255) DEFAULT NULL,
        path CHAR(255) DEFAULT NULL, expires INTEGER NOT NULL,
        q FLOAT(10,2) DEFAULT 1.0 NOT NULL, callid CHAR(255) DEFAULT 'Default-Call-ID' NOT NULL,
        cseq INTEGER DEFAULT 13 NOT NULL,
        last_modified DATETIME DEFAULT '1900-01-01 00:00:01' NOT NULL,
        flags INTEGER DEFAULT 0 NOT NULL, cflags CHAR(255) DEFAULT NULL,
        user_agent CHAR(255) DEFAULT '' NOT NULL, socket CHAR(64) DEFAULT NULL,
        methods INTEGER DEFAULT NULL, sip_instance CHAR(255) DEFAULT NULL,
        kv_store TEXT(512) DEFAULT NULL, attr CHAR(255) DEFAULT NULL"""),
    "subscriber": (8, """
        id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
        username CHAR(64) DEFAULT '' NOT NULL, domain CHAR(64) DEFAULT '' NOT NULL,
        password CHAR(25) DEFAULT '' NOT NULL, email_address CHAR(64) DEFAULT '' NOT NULL,
        ha1 CHAR(64) DEFAULT '' NOT NULL, ha1_sha256 CHAR(64) DEFAULT '' NOT NULL,
        ha1_sha512t256 CHAR(64) DEFAULT '' NOT NULL, rpid CHAR(64) DEFAULT NULL,
        CONSTRAINT subscriber_account_idx UNIQUE (username, domain)"""),
    "uri": (2, """
        id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
        username CHAR(64) DEFAULT '' NOT NULL, domain CHAR(64) DEFAULT '' NOT NULL,
        uri_user CHAR(64) DEFAULT '' NOT NULL,
        last_modified DATETIME DEFAULT '1900-01-01 00:00:01' NOT NULL,
        CONSTRAINT uri_account_idx UNIQUE (username, domain, uri_user)"""),
    "acc": (6, """
        id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
        method CHAR(16) DEFAULT '' NOT NULL, from_tag CHAR(64) DEFAULT '' NOT NULL,
        to_tag CHAR(64) DEFAULT '' NOT NULL, callid CHAR(64) DEFAULT '' NOT NULL,
        sip_code CHAR(3) DEFAULT '' NOT NULL, sip_reason CHAR(32) DEFAULT '' NOT NULL,
        time DATETIME NOT NULL, duration INTEGER DEFAULT 0 NOT NULL,
        setuptime INTEGER DEFAULT 0 NOT NULL, created DATETIME DEFAULT NULL"""),
    "missed_calls": (5, """
        id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
        method CHAR(16) DEFAULT '' NOT NULL, from_tag CHAR(64) DEFAULT '' NOT NULL,
        to_tag CHAR(64) DEFAULT '' NOT NULL, callid CHAR(64) DEFAULT '' NOT NULL,
        sip_code CHAR(3) DEFAULT '' NOT NULL, sip_reason CHAR(32) DEFAULT '' NOT NULL,
        time DATETIME NOT NULL, setuptime INTEGER DEFAULT 0 NOT NULL,
        created DATETIME DEFAULT NULL"""),
    "dbaliases": (2, """
        id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
        alias_username CHAR(64) DEFAULT '' NOT NULL, alias_domain CHAR(64) DEFAULT '' NOT NULL,
        username CHAR(64) DEFAULT '' NOT NULL, domain CHAR(64) DEFAULT '' NOT NULL,
        CONSTRAINT dbaliases_alias_idx UNIQUE (alias_username, alias_domain)"""),
    "domain": (4, """
        id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
        domain CHAR(64) DEFAULT '' NOT NULL, attrs CHAR(255) DEFAULT NULL,
        accept_subdomain INTEGER DEFAULT 0 NOT NULL,
        last_modified DATETIME DEFAULT '1900-01-01 00:00:01' NOT NULL,
        CONSTRAINT domain_domain_idx UNIQUE (domain)"""),
    "address": (5, """
        id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
        grp SMALLINT(5) DEFAULT 0 NOT NULL, ip CHAR(50) NOT NULL,
        mask SMALLINT DEFAULT 32 NOT NULL, port SMALLINT(5) DEFAULT 0 NOT NULL,
        proto CHAR(4) DEFAULT 'any' NOT NULL, pattern CHAR(64) DEFAULT NULL,
        context_info CHAR(32) DEFAULT NULL"""),
    "dialog": (10, """
        dlg_id BIGINT(10) PRIMARY KEY NOT NULL, callid CHAR(255) NOT NULL,
        from_uri CHAR(255) NOT NULL, from_tag CHAR(64) NOT NULL,
        to_uri CHAR(255) NOT NULL, to_tag CHAR(64) NOT NULL,
        mangled_from_uri CHAR(64) DEFAULT NULL, mangled_to_uri CHAR(64) DEFAULT NULL,
        caller_cseq CHAR(11) NOT NULL, callee_cseq CHAR(11) NOT NULL,
        caller_ping_cseq INTEGER NOT NULL, callee_ping_cseq INTEGER NOT NULL,
        caller_route_set TEXT(512), callee_route_set TEXT(512),
        caller_contact CHAR(255), callee_contact CHAR(255),
        caller_sock CHAR(64) NOT NULL, callee_sock CHAR(64) NOT NULL,
        state INTEGER NOT NULL, start_time INTEGER NOT NULL, timeout INTEGER NOT NULL,
        vars BLOB(4096) DEFAULT NULL, profiles TEXT(512) DEFAULT NULL,
        script_flags INTEGER DEFAULT 0 NOT NULL, module_flags INTEGER DEFAULT 0 NOT NULL,
        flags INTEGER DEFAULT 0 NOT NULL"""),
}

_OPS = {"=", "!=", "<", ">", "<=", ">="}


class Connection:
    """A connection to one database. Subclasses open the DB-API connection and say how
    their SQL spells parameters and identifiers."""

    placeholder = "?"
    quote_char = '"'

    def __init__(self, url: DbUrl):
        self.url = url
        self.conn = None

    # --- SQL building ------------------------------------------------------------------------
    def q(self, name: str) -> str:
        c = self.quote_char
        return f"{c}{name.replace(c, c + c)}{c}"

    def _where(self, where) -> tuple[str, list]:
        if not where:
            return "", []
        parts, args = [], []
        for col, cond in where.items():
            for op, value in cond if isinstance(cond, list) else [
                    cond if isinstance(cond, tuple) else ("=", cond)]:
                if op not in _OPS:
                    raise DBError(f"unsupported operator '{op}'")
                if value is None:
                    parts.append(f"{self.q(col)} IS {'NOT ' if op == '!=' else ''}NULL")
                else:
                    parts.append(f"{self.q(col)} {'<>' if op == '!=' else op} {self.placeholder}")
                    args.append(value)
        return " WHERE " + " AND ".join(parts), args

    def _execute(self, sql: str, args=()):
        try:
            cur = self.conn.cursor()
            cur.execute(sql, tuple(args))
            return cur
        except Exception as e:  # each driver has its own error classes
            self._rollback()
            raise DBError(f"{self.url}: {e}") from e

    def _rollback(self):
        try:
            self.conn.rollback()
        except Exception:
            pass

    def _commit(self):
        try:
            self.conn.commit()
        except Exception as e:
            raise DBError(f"{self.url}: {e}") from e

    # --- the API -----------------------------------------------------------------------------
    def query(self, table: str, where=None, columns=None, order_by=None) -> list[dict]:
        """SELECT: the matching rows, as dicts."""
        cols = ", ".join(self.q(c) for c in columns) if columns else "*"
        clause, args = self._where(where)
        sql = f"SELECT {cols} FROM {self.q(table)}{clause}"
        if order_by:
            sql += " ORDER BY " + ", ".join(self.q(c) for c in order_by)
        cur = self._execute(sql, args)
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, r)) for r in cur.fetchall()]
        self._commit()  # end the read transaction (other processes may write)
        return rows

    def insert(self, table: str, row: dict):
        """INSERT one row; returns the new row id where the driver tells it."""
        cols = ", ".join(self.q(c) for c in row)
        marks = ", ".join([self.placeholder] * len(row))
        cur = self._execute(f"INSERT INTO {self.q(table)} ({cols}) VALUES ({marks})",
                            list(row.values()))
        self._commit()
        return getattr(cur, "lastrowid", None)

    def update(self, table: str, where, values: dict) -> int:
        """UPDATE the matching rows; returns how many changed."""
        sets = ", ".join(f"{self.q(c)} = {self.placeholder}" for c in values)
        clause, args = self._where(where)
        cur = self._execute(f"UPDATE {self.q(table)} SET {sets}{clause}",
                            list(values.values()) + args)
        self._commit()
        return cur.rowcount

    def delete(self, table: str, where=None) -> int:
        """DELETE the matching rows (every row when `where` is empty)."""
        clause, args = self._where(where)
        cur = self._execute(f"DELETE FROM {self.q(table)}{clause}", args)
        self._commit()
        return cur.rowcount

    def replace(self, table: str, row: dict, keys) -> None:
        """Update the row whose `keys` columns match, or insert it (OpenSIPS insert_update)."""
        where = {k: row[k] for k in keys}
        if self.update(table, where, {k: v for k, v in row.items() if k not in keys}) == 0:
            self.insert(table, row)

    def raw_query(self, sql: str, args=()) -> list[tuple]:
        """A statement as written (parameters in this driver's style)."""
        cur = self._execute(sql, args)
        rows = cur.fetchall() if cur.description else []
        self._commit()
        return rows

    def table_version(self, table: str) -> int | None:
        """The `version` table's entry for `table` (None when there is none)."""
        try:
            rows = self.query("version", {"table_name": table}, ["table_version"])
        except DBError:
            return None
        return int(rows[0]["table_version"]) if rows else None

    def create_table(self, table: str, columns: str, version: int) -> None:
        """Create `table` (an OpenSIPS schema: `columns`, `version` in the version table)
        when it is missing. Server databases are provisioned by their administrators:
        nothing to do (an embedded SQLite file does it)."""

    def ensure_table(self, table: str, like: str) -> None:
        """Make sure `table` exists with the schema of `like` (one of SCHEMA)."""
        version, columns = SCHEMA[like]
        self.create_table(table, columns, version)

    def close(self):
        if self.conn is not None:
            try:
                self.conn.close()
            finally:
                self.conn = None


class SQLite(Connection):
    """An SQLite file (created with the OpenSIPS schema when missing)."""

    def __init__(self, url: DbUrl, busy_timeout_ms: int = 500):
        super().__init__(url)
        path = url.database
        if path != "/:memory:":
            folder = os.path.dirname(path)
            if folder and not os.path.isdir(folder):
                raise DBError(f"{url}: folder {folder} does not exist")
        else:
            path = ":memory:"
        try:
            self.conn = sqlite3.connect(path, timeout=busy_timeout_ms / 1000)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self._create_schema()
        except sqlite3.Error as e:
            raise DBError(f"{url}: {e}") from e

    def _create_schema(self):
        c = self.conn
        c.execute("CREATE TABLE IF NOT EXISTS version (table_name CHAR(32) NOT NULL, "
                  "table_version INTEGER DEFAULT 0 NOT NULL, "
                  "CONSTRAINT version_t_name_idx UNIQUE (table_name))")
        for table, (version, columns) in SCHEMA.items():
            self._create(table, columns, version)
        c.commit()

    def _create(self, table, columns, version):
        exists = self.conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?",
                                   (table,)).fetchone()
        if not exists:
            self.conn.execute(f"CREATE TABLE {self.q(table)} ({columns})")
            self.conn.execute("INSERT OR REPLACE INTO version (table_name, table_version) "
                              "VALUES (?, ?)", (table, version))

    def create_table(self, table: str, columns: str, version: int) -> None:
        try:
            self._create(table, columns, version)
            self.conn.commit()
        except sqlite3.Error as e:
            raise DBError(f"{self.url}: {e}") from e


# --- drivers and connections -------------------------------------------------------------------

_DRIVERS: dict[str, Callable[[DbUrl], Connection]] = {"sqlite": SQLite}
_OPEN: dict[str, Connection] = {}
_HINTS = {"mysql": "loadmodule \"db_mysql.so\" and pip install PyMySQL",
          "postgres": "loadmodule \"db_postgres.so\" and pip install psycopg[binary]",
          "postgresql": "loadmodule \"db_postgres.so\" and pip install psycopg[binary]"}


def dbapi_connect(url: DbUrl, drivers: tuple, missing: str, **kwargs):
    """`connect(**kwargs)` of the first of the DB-API modules `drivers` that is installed
    (what a db_* module's Connection opens); DBError `missing` when none is, or with the
    driver's error."""
    for name in drivers:
        try:
            driver = importlib.import_module(name)
            break
        except ImportError:
            continue
    else:
        raise DBError(f"{url}: {missing}")
    try:
        return driver.connect(**kwargs)
    except Exception as e:
        raise DBError(f"{url}: {e}") from e


def register_driver(scheme: str, factory: Callable[[DbUrl], Connection]) -> None:
    """Make `scheme://` URLs open with `factory(url)` (what a db_* module does at load)."""
    _DRIVERS[scheme.lower()] = factory


def check_url(text) -> str | None:
    """A modparam check: an error message for a db_url that cannot be read, else None."""
    if text is None or text == "":
        return None
    try:
        parse_url(str(text))
    except ValueError as e:
        return str(e)
    return None


def module_url(rt, module: str) -> str:
    """A module's `db_url` modparam, else the script's db_default_url (ValueError when there
    is neither)."""
    url = rt.modparams[module]["db_url"] or rt.config.get("db_default_url")
    if not url:
        raise ValueError(f"{module}: modparam 'db_url' is not set")
    return url


def connect(url: str, *, shared: bool = True) -> Connection:
    """A connection for a db_url; with `shared`, one per URL in this process (as OpenSIPS
    pools connections by URL)."""
    u = parse_url(url)
    if shared and u.text in _OPEN:
        return _OPEN[u.text]
    factory = _DRIVERS.get(u.scheme)
    if factory is None:
        hint = _HINTS.get(u.scheme)
        raise DBError(f"no database driver for '{u.scheme}://' URLs"
                      + (f" ({hint})" if hint else ""))
    conn = factory(u)
    if shared:
        _OPEN[u.text] = conn
    return conn


def close_all() -> None:
    """Close every shared connection (at shutdown, and between tests)."""
    while _OPEN:
        _, conn = _OPEN.popitem()
        conn.close()

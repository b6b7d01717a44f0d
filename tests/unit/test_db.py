"""runtime/db.py: db_url parsing, the embedded SQLite database and its OpenSIPS schema."""
import sqlite3

import pytest

from runtime import db


@pytest.fixture(autouse=True)
def _close_connections():
    yield
    db.close_all()


@pytest.mark.parametrize("url, expected", [
    ("sqlite:///var/lib/opensips/opensips.db", ("sqlite", None, None, None, None,
                                                 "/var/lib/opensips/opensips.db")),
    ("sqlite:////tmp/x.db", ("sqlite", None, None, None, None, "/tmp/x.db")),
    ("mysql://opensips:opensipsrw@localhost/opensips",
     ("mysql", "opensips", "opensipsrw", "localhost", None, "opensips")),
    ("postgres://u:p%40ss@db.example.com:5433/osips",
     ("postgres", "u", "p@ss", "db.example.com", 5433, "osips")),
    ("mysql://root@[::1]:3306/db", ("mysql", "root", None, "::1", 3306, "db")),
])
def test_parse_url(url, expected):
    u = db.parse_url(url)
    assert (u.scheme, u.user, u.password, u.host, u.port, u.database) == expected


def test_url_errors_and_passwords_kept_out_of_messages():
    assert db.check_url("mysql://opensips:opensipsrw@localhost/opensips") is None
    assert "not a database URL" in db.check_url("localhost/opensips")
    assert str(db.parse_url("mysql://u:secret@h/d")) == "mysql://u:***@h/d"
    with pytest.raises(db.DBError, match=r"no database driver for 'oracle://'"):
        db.connect("oracle://u@h/d")


def test_missing_sqlite_file_is_created_with_the_opensips_schema(tmp_path):
    path = tmp_path / "opensips.db"
    conn = db.connect(f"sqlite://{path}")
    assert path.is_file()
    assert conn.table_version("location") == 1013
    assert conn.table_version("subscriber") == 8
    assert conn.table_version("acc") == 6
    raw = sqlite3.connect(path)
    cols = [r[1] for r in raw.execute("PRAGMA table_info(location)")]
    assert cols == ["contact_id", "username", "domain", "contact", "received", "path",
                    "expires", "q", "callid", "cseq", "last_modified", "flags", "cflags",
                    "user_agent", "socket", "methods", "sip_instance", "kv_store", "attr"]
    tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"version", "location", "subscriber", "uri", "acc", "missed_calls", "dbaliases",
            "domain", "address", "dialog"} <= tables


def test_existing_file_keeps_its_rows_and_versions(tmp_path):
    path = tmp_path / "old.db"
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE version (table_name CHAR(32) NOT NULL, "
                "table_version INTEGER DEFAULT 0 NOT NULL)")
    raw.execute("INSERT INTO version VALUES ('subscriber', 7)")
    raw.execute("CREATE TABLE subscriber (id INTEGER PRIMARY KEY, username TEXT, domain TEXT)")
    raw.execute("INSERT INTO subscriber (username, domain) VALUES ('alice', 'example.com')")
    raw.commit()
    raw.close()
    conn = db.connect(f"sqlite://{path}")
    assert conn.table_version("subscriber") == 7
    assert conn.query("subscriber", {"username": "alice"}, ["domain"]) == [
        {"domain": "example.com"}]
    assert conn.table_version("location") == 1013     # missing tables are added


def test_insert_query_update_delete(tmp_path):
    conn = db.connect(f"sqlite://{tmp_path}/t.db")
    for user, exp in (("alice", 100), ("bob", 200), ("carol", 0)):
        conn.insert("location", {"username": user, "contact": f"sip:{user}@h", "expires": exp})
    assert [r["username"] for r in conn.query("location", {"expires": (">", 150)})] == ["bob"]
    assert [r["username"] for r in conn.query(
        "location", {"expires": [("<=", 150), ("!=", 0)]})] == ["alice"]
    assert [r["username"] for r in conn.query("location", {"domain": None},
                                              order_by=["username"])] == ["alice", "bob", "carol"]
    assert conn.update("location", {"username": "bob"}, {"expires": 300, "q": 0.5}) == 1
    row = conn.query("location", {"username": "bob"})[0]
    assert (row["expires"], row["q"], row["callid"]) == (300, 0.5, "Default-Call-ID")
    assert conn.delete("location", {"expires": ("<", 250)}) == 2
    assert [r["username"] for r in conn.query("location")] == ["bob"]
    assert conn.raw_query("SELECT count(*) FROM location WHERE username = ?", ["bob"]) == [(1,)]


def test_replace_updates_or_inserts(tmp_path):
    conn = db.connect(f"sqlite://{tmp_path}/t.db")
    row = {"contact_id": 42, "username": "alice", "contact": "sip:a@h", "expires": 10}
    conn.replace("location", row, ["contact_id"])
    conn.replace("location", dict(row, expires=20), ["contact_id"])
    assert [(r["contact_id"], r["expires"]) for r in conn.query("location")] == [(42, 20)]


def test_shared_connection_per_url_and_custom_tables(tmp_path):
    url = f"sqlite://{tmp_path}/t.db"
    conn = db.connect(url)
    assert db.connect(url) is conn
    assert db.connect(url, shared=False) is not conn
    conn.ensure_table("ALB_location", "location")
    conn.insert("ALB_location", {"username": "x", "contact": "sip:x@h", "expires": 1})
    assert conn.table_version("ALB_location") == 1013


def test_bad_statements_and_folders_raise_db_errors(tmp_path):
    conn = db.connect(f"sqlite://{tmp_path}/t.db")
    with pytest.raises(db.DBError, match="no such table"):
        conn.query("nope")
    with pytest.raises(db.DBError, match="does not exist"):
        db.connect(f"sqlite://{tmp_path}/missing/folder.db")

"""usrloc: the location table in memory and in a real SQLite file, db_mode 0 to 3."""
import sqlite3
import time

import pytest
from cfgscript import parse_text

from modules.usrloc import Contact, Domain
from modules.usrloc.store import DB_ONLY, FL_MEM, NO_DB, WRITE_BACK, WRITE_THROUGH
from runtime import db
from runtime.context import FlagRegistry
from runtime.loader import load_script


@pytest.fixture(autouse=True)
def _close_connections():
    yield
    db.close_all()


@pytest.fixture
def url(tmp_path):
    return f"sqlite://{tmp_path}/opensips.db"


def table(url, mode, **kw):
    conn = db.connect(url, shared=False) if mode != NO_DB else None
    return Domain("location", db=conn, db_mode=mode, flag_names=kw.pop("flags", None), **kw)


def contact(aor="alice", uri=None, ttl=3600, **kw):
    return Contact(aor=aor, uri=uri or f"sip:{aor}@10.0.0.1", expires=int(time.time()) + ttl,
                   **kw)


def rows(url, where=""):
    with sqlite3.connect(url[len("sqlite://"):]) as raw:
        return raw.execute(f"SELECT username, contact, expires, cflags FROM location {where} "
                           f"ORDER BY contact").fetchall()


def test_memory_table_orders_by_q_and_hides_expired_contacts():
    t = table(None, NO_DB)
    t.insert(contact(uri="sip:a@1", q=500))
    t.insert(contact(uri="sip:b@1"))                 # no q: after every q
    t.insert(contact(uri="sip:c@1", q=1000))
    t.insert(contact(uri="sip:d@1", q=500))
    t.insert(contact(uri="sip:old@1", ttl=-1))
    assert [c.uri for c in t.get("alice")] == ["sip:c@1", "sip:a@1", "sip:d@1", "sip:b@1"]
    assert t.stats == {"users": 1, "contacts": 5, "expires": 0}
    assert t.expire() == 1
    assert t.stats["contacts"] == 4 and t.stats["expires"] == 1
    t.delete_aor("alice")
    assert t.get("alice") == [] and t.aors() == [] and t.stats["users"] == 0


def test_desc_time_order_puts_the_newest_first():
    t = table(None, NO_DB, desc_time_order=True)
    first = contact(uri="sip:first@1", q=1000)
    t.insert(first)
    t.insert(contact(uri="sip:second@1", q=100))
    first.last_modified -= 10
    assert [c.uri for c in t.get("alice")] == ["sip:second@1", "sip:first@1"]


def test_write_through_writes_at_once_and_a_restart_loads_the_table(url):
    names = FlagRegistry("branch")
    nat = names.bit("NAT")
    t = table(url, WRITE_THROUGH, flags=names)
    c = contact(uri="sip:alice@192.168.1.5:5062", q=700, cflags=1 << nat, callid="cid",
                cseq=7, received="sip:1.2.3.4:40000", path="<sip:edge.example.com;lr>",
                socket="udp:127.0.0.1:5060", methods=0b101, user_agent="phone/1.0")
    t.insert(c)
    t.insert(contact(uri="sip:alice@gone", ttl=-5))
    assert rows(url, "WHERE contact LIKE '%192%'") == [
        ("alice", "sip:alice@192.168.1.5:5062", c.expires, "NAT")]
    c.expires += 60
    t.update(c)
    assert rows(url, "WHERE contact LIKE '%192%'")[0][2] == c.expires

    again = table(url, WRITE_THROUGH, flags=names)     # a restart: read back from the file
    [back] = again.get("alice")
    for field in ("uri", "expires", "q", "callid", "cseq", "cflags", "received", "path",
                  "socket", "methods", "user_agent", "contact_id"):
        assert getattr(back, field) == getattr(c, field), field
    assert "sip:alice@gone" not in [x.uri for x in again.records["alice"]]
    again.delete(back)
    assert rows(url, "WHERE contact LIKE '%192%'") == []


def test_write_back_stores_on_flush(url):
    t = table(url, WRITE_BACK)
    c = contact()
    t.insert(c)
    assert rows(url) == []
    t.flush()
    assert rows(url) == [("alice", c.uri, c.expires, None)]
    c.expires += 100
    t.update(c)
    t.flush()
    assert rows(url)[0][2] == c.expires
    t.delete(c)
    assert len(rows(url)) == 1
    t.flush()
    assert rows(url) == []


def test_db_only_reads_and_writes_the_database(url):
    t = table(url, DB_ONLY)
    t.insert(contact(uri="sip:a@1", q=100))
    t.insert(contact(uri="sip:b@1", q=900))
    assert t.records == {}
    assert [c.uri for c in t.get("alice")] == ["sip:b@1", "sip:a@1"]
    other = table(url, DB_ONLY)                        # another process sees them at once
    assert [c.uri for c in other.get("alice")] == ["sip:b@1", "sip:a@1"]
    permanent = Contact(aor="bob", uri="sip:bob@1", expires=0)
    t.insert(permanent)
    t.insert(contact(aor="carol", ttl=-1))
    assert t.expire() == 1
    assert sorted(t.aors()) == ["alice", "bob"]
    t.delete_aor("alice")
    assert [c.uri for c in other.contacts()] == ["sip:bob@1"]


def test_memory_only_contacts_stay_out_of_the_database(url):
    t = table(url, WRITE_THROUGH)
    c = contact(flags=FL_MEM)
    t.insert(c)
    assert t.get("alice") == [c] and rows(url) == []


def test_use_domain_and_custom_column_names(tmp_path):
    url = f"sqlite://{tmp_path}/custom.db"
    conn = db.connect(url, shared=False)
    conn.raw_query("CREATE TABLE loc (id INTEGER PRIMARY KEY, user TEXT, dom TEXT, "
                   "uri TEXT, exp INTEGER, q REAL, callid TEXT, cseq INTEGER, "
                   "last_modified TEXT, flags INTEGER, cflags TEXT, user_agent TEXT, "
                   "received TEXT, path TEXT, socket TEXT, methods INTEGER, "
                   "sip_instance TEXT, attr TEXT)")
    cols = {"user_column": "user", "domain_column": "dom", "contact_column": "uri",
            "expires_column": "exp", "contact_id_column": "id"}
    t = Domain("loc", db=conn, db_mode=WRITE_THROUGH, use_domain=True, columns=cols)
    t.insert(contact(aor="alice@example.com"))
    assert conn.query("loc", columns=["user", "dom"]) == [
        {"user": "alice", "dom": "example.com"}]
    again = Domain("loc", db=conn, db_mode=WRITE_THROUGH, use_domain=True, columns=cols)
    assert [c.aor for c in again.get("alice@example.com")] == ["alice@example.com"]


def _load(text):
    loaded = load_script(parse_text(text, "t.cfg"))
    return loaded, [d for d in loaded.diagnostics if d.severity == "error"]


def test_modparams_are_checked_at_load():
    _, errors = _load('loadmodule "usrloc.so"\n'
                      'modparam("usrloc", "db_mode", 5)\n'
                      'modparam("usrloc", "working_mode_preset", "single-instance-sql")\n'
                      'modparam("usrloc", "db_url", "localhost/opensips")\n'
                      'route { exit; }\n')
    assert [(e.pos.line, e.message) for e in errors] == [
        (2, "modparam usrloc.db_mode: must be 0, 1, 2 or 3"),
        (3, "modparam usrloc.working_mode_preset: unknown preset (one of single-instance-no-db, "
            "single-instance-sql-write-through, single-instance-sql-write-back, sql-only)"),
        (4, "modparam usrloc.db_url: 'localhost/opensips' is not a database URL "
            "(scheme://[user[:pass]@]host[:port]/db)")]


def test_working_mode_preset_sets_db_mode_and_the_timer_runs_expiry(url):
    loaded, errors = _load(f'loadmodule "usrloc.so"\n'
                           f'modparam("usrloc", "working_mode_preset", "sql-only")\n'
                           f'modparam("usrloc", "db_url", "{url}")\n'
                           f'modparam("usrloc", "nat_bflag", "NAT")\n'
                           f'modparam("usrloc", "timer_interval", 10)\n'
                           f'route {{ exit; }}\n')
    assert not errors
    rt = loaded.rt
    rt.modules["usrloc"].init(rt)
    api = rt.apis["usrloc"]
    assert api.db_mode == DB_ONLY and api.nat_flag == rt.bflag_names.bit("NAT")
    interval, tick = rt.timers[-1]
    assert interval == 10
    api.domain("location").insert(contact(ttl=-1))
    tick()
    assert rows(url) == []


def test_db_mode_without_url_fails_at_start():
    loaded, errors = _load('loadmodule "usrloc.so"\nmodparam("usrloc", "db_mode", 2)\n'
                           'route { exit; }\n')
    assert not errors
    with pytest.raises(ValueError, match="db_mode 2 needs a db_url"):
        loaded.rt.modules["usrloc"].init(loaded.rt)

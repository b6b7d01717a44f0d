"""runtime/db.py against real PostgreSQL / MySQL servers, when the environment names one:
CFGSCRIPT_TEST_POSTGRES_URL=postgres://user@127.0.0.1:5432/db (psycopg installed),
CFGSCRIPT_TEST_MYSQL_URL=mysql://user:pass@127.0.0.1/db (PyMySQL installed).
The database must exist; the test creates and drops its own `location` table."""
import os
import time

import pytest

from modules.usrloc import Contact, Domain
from modules.usrloc.store import DB_ONLY, WRITE_THROUGH
from runtime import db

LOCATION = """CREATE TABLE {q}location{q} (
    contact_id BIGINT PRIMARY KEY NOT NULL, username VARCHAR(64) DEFAULT '' NOT NULL,
    domain VARCHAR(64) DEFAULT NULL, contact VARCHAR(255) DEFAULT '' NOT NULL,
    received VARCHAR(255) DEFAULT NULL, path VARCHAR(255) DEFAULT NULL,
    expires BIGINT NOT NULL, q REAL DEFAULT 1.0 NOT NULL,
    callid VARCHAR(255) DEFAULT 'Default-Call-ID' NOT NULL, cseq INTEGER DEFAULT 13 NOT NULL,
    last_modified {ts} DEFAULT '1900-01-01 00:00:01' NOT NULL,
    flags INTEGER DEFAULT 0 NOT NULL, cflags VARCHAR(255) DEFAULT NULL,
    user_agent VARCHAR(255) DEFAULT '' NOT NULL, socket VARCHAR(64) DEFAULT NULL,
    methods INTEGER DEFAULT NULL, sip_instance VARCHAR(255) DEFAULT NULL,
    kv_store TEXT DEFAULT NULL, attr VARCHAR(255) DEFAULT NULL)"""

SERVERS = [pytest.param(("CFGSCRIPT_TEST_POSTGRES_URL", "db_postgres"), id="postgres"),
           pytest.param(("CFGSCRIPT_TEST_MYSQL_URL", "db_mysql"), id="mysql")]


@pytest.fixture(params=SERVERS)
def server(request):
    env, module = request.param
    url = os.environ.get(env)
    if not url:
        pytest.skip(f"{env} is not set")
    __import__(f"modules.{module}")            # loadmodule: registers the URL scheme
    conn = db.connect(url, shared=False)
    q = conn.quote_char
    conn.raw_query(f"DROP TABLE IF EXISTS {q}location{q}")
    conn.raw_query(LOCATION.format(q=q, ts="DATETIME" if q == "`" else "TIMESTAMP"))
    yield url, conn
    conn.raw_query(f"DROP TABLE IF EXISTS {q}location{q}")
    conn.close()


def test_queries_on_a_server(server):
    _, conn = server
    conn.insert("location", {"contact_id": 1, "username": "alice", "contact": "sip:a@h",
                             "expires": 100})
    conn.insert("location", {"contact_id": 2, "username": "bob", "contact": "sip:b@h",
                             "expires": 0})
    assert [r["username"] for r in conn.query("location", {"expires": [("<=", 150),
                                                                      ("!=", 0)]})] == ["alice"]
    conn.replace("location", {"contact_id": 2, "username": "bob", "contact": "sip:b2@h",
                              "expires": 5}, ["contact_id"])
    assert conn.query("location", {"contact_id": 2}, ["contact"]) == [{"contact": "sip:b2@h"}]
    assert conn.delete("location", {"domain": None}) == 2


@pytest.mark.parametrize("mode", [WRITE_THROUGH, DB_ONLY])
def test_usrloc_on_a_server(server, mode):
    url, conn = server
    t = Domain("location", db=conn, db_mode=mode)
    c = Contact(aor="alice", uri="sip:alice@10.0.0.1", expires=int(time.time()) + 60, q=500,
                callid="c1", cseq=3, received="sip:1.2.3.4:5060")
    t.insert(c)
    again = Domain("location", db=db.connect(url, shared=False), db_mode=mode)
    [back] = again.get("alice")
    assert (back.uri, back.expires, back.q, back.received, back.contact_id) == (
        c.uri, c.expires, 500, c.received, c.contact_id)
    again.delete(back)
    assert conn.query("location") == []

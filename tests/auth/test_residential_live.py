"""The official residential template (examples/templates/residential.m4) with its
authentication, multi-domain, aliases, dialog and database-accounting switches on, run
unchanged against SQLite: bob registers (401), alice calls him (407), the call is
accounted in the `acc` table."""
import re
import shutil
import subprocess
import time

import pytest

from runtime import db
from tests.conftest import CORPUS

XML = __import__("pathlib").Path(__file__).parent / "xml"
SWITCHES = ("USE_AUTH", "USE_DBACC", "USE_MULTIDOMAIN", "USE_ALIASES", "USE_DIALOG",
            "USE_DBUSRLOC")


@pytest.fixture
def residential(tmp_path):
    template = CORPUS / "official" / "examples__templates__residential.m4"
    if not template.is_file() or shutil.which("m4") is None:
        pytest.skip("needs the corpus and m4")
    dbfile = tmp_path / "opensips.db"
    text = template.read_text()
    for name in SWITCHES:
        text = re.sub(rf"define\(`{name}', `no'\)", f"define(`{name}', `yes')", text)
    text = re.sub(r"define\(`DB_URL', `[^']*'\)", f"define(`DB_URL', `sqlite://{dbfile}')",
                  text)
    cfg = subprocess.run(["m4"], input=text, capture_output=True, text=True, check=True,
                         timeout=30).stdout
    conn = db.connect(f"sqlite://{dbfile}", shared=False)
    conn.insert("domain", {"domain": "example.com"})
    for user, password in (("alice", "alicepw"), ("bob", "bobpw")):
        conn.insert("subscriber", {"username": user, "domain": "example.com",
                                   "password": password})
    conn.close()
    return cfg, dbfile


def test_register_call_and_accounting(cfgscript_proxy, sipp_scenario, residential):
    cfg, dbfile = residential
    proxy = cfgscript_proxy(cfg)
    sipp_scenario(proxy, uac=XML / "uac-register-and-call.xml", uas=XML / "uas-rr.xml",
                  keys={"domain": "example.com"})
    time.sleep(0.5)
    conn = db.connect(f"sqlite://{dbfile}", shared=False)
    try:
        rows = conn.query("acc", None, ["method", "sip_code", "sip_reason", "callid"])
    finally:
        conn.close()
    assert sorted((r["method"], r["sip_code"]) for r in rows) == [("BYE", "200"),
                                                                  ("INVITE", "200")]
    assert len({r["callid"] for r in rows}) == 1

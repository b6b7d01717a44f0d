"""auth + auth_db on a live proxy: SIPp agents authenticate against a real SQLite
`subscriber` table (401 for REGISTER, 407 for INVITE, wrong passwords refused)."""
import hashlib
from pathlib import Path

import pytest

from runtime import db

XML = Path(__file__).parent / "xml"

SCRIPT = """
log_level=3
loadmodule "proto_udp.so"
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "rr.so"
loadmodule "sipmsgops.so"
loadmodule "db_sqlite.so"
loadmodule "auth.so"
loadmodule "auth_db.so"
modparam("auth_db", "db_url", "sqlite://{db}")
{params}

route {{
    if (has_totag()) {{
        if (loose_route()) {{
            t_relay();
            exit;
        }}
        if (is_method("ACK") && t_check_trans())
            t_relay();
        exit;
    }}
    if (is_method("REGISTER")) {{
        if (!www_authorize("", "subscriber")) {{
            if ($rc == -2) {{
                append_to_reply("X-Auth: wrong password\\r\\n");
                sl_send_reply(403, "Forbidden");
                exit;
            }}
            www_challenge("", "auth");
            exit;
        }}
        if ($au != $tU) {{
            sl_send_reply(403, "Forbidden auth ID");
            exit;
        }}
        append_to_reply("X-Auth: authorized $au@$ar as $avp(rpid)\\r\\n");
        sl_send_reply(200, "OK");
        exit;
    }}
    if (!proxy_authorize("", "subscriber")) {{
        proxy_challenge("", "auth");
        exit;
    }}
    if ($au != $fU) {{
        sl_send_reply(403, "Forbidden auth ID");
        exit;
    }}
    consume_credentials();
    record_route();
    t_relay();
}}
"""


def _ha1(user, realm, password):
    return hashlib.md5(f"{user}:{realm}:{password}".encode()).hexdigest()


@pytest.fixture
def subscribers(tmp_path):
    """An SQLite file with the OpenSIPS schema and two subscribers with plain passwords."""
    path = tmp_path / "opensips.db"
    conn = db.connect(f"sqlite://{path}", shared=False)
    for user, password, rpid in (("alice", "alicepw", "sip:+4930123@example.com"),
                                 ("bob", "bobpw", None)):
        conn.insert("subscriber", {"username": user, "domain": "example.com",
                                   "password": password, "rpid": rpid})
    conn.close()
    return path


def proxy_for(cfgscript_proxy, path, params='modparam("auth_db", "calculate_ha1", 1)\n'
              'modparam("auth_db", "password_column", "password")'):
    return cfgscript_proxy(SCRIPT.format(db=path, params=params))


def test_register_challenged_then_accepted(cfgscript_proxy, sipp_scenario, subscribers):
    proxy = proxy_for(cfgscript_proxy, subscribers)
    sipp_scenario(proxy, uac=XML / "uac-register-auth.xml", uas=False, service="alice",
                  username="alice", password="alicepw", calls=3)


def test_register_wrong_password_is_refused(cfgscript_proxy, sipp_scenario, subscribers):
    proxy = proxy_for(cfgscript_proxy, subscribers)
    sipp_scenario(proxy, uac=XML / "uac-register-badpass.xml", uas=False, service="alice",
                  username="alice", password="guess")


def test_unknown_user_is_challenged_again(cfgscript_proxy, sipp_scenario, subscribers, tmp_path):
    proxy = proxy_for(cfgscript_proxy, subscribers)
    uac = tmp_path / "uac-unknown.xml"
    text = (XML / "uac-register-auth.xml").read_text()
    uac.write_text(text.replace('<recv response="200">', '<recv response="401">')
                   .replace('search_in="hdr" header="X-Auth:" check_it="true" assign_to="who"',
                            'search_in="hdr" header="WWW-Authenticate:" check_it="true" '
                            'assign_to="who"').replace("authorized [^ ]+ as [a-z]+", "nonce"))
    sipp_scenario(proxy, uac=uac, uas=False, service="mallory", username="mallory",
                  password="x")


def test_invite_challenged_then_relayed(cfgscript_proxy, sipp_scenario, subscribers):
    proxy = proxy_for(cfgscript_proxy, subscribers)
    sipp_scenario(proxy, uac=XML / "uac-invite-auth.xml", uas=XML / "uas-rr.xml",
                  username="bob", password="bobpw", keys={"caller": "bob"}, calls=3)


def test_precomputed_ha1_and_fixed_realm(cfgscript_proxy, sipp_scenario, subscribers):
    """calculate_ha1 0 (the default): the ha1 column holds MD5(user:realm:password)."""
    conn = db.connect(f"sqlite://{subscribers}", shared=False)
    conn.update("subscriber", {"username": "bob"}, {"ha1": _ha1("bob", "example.com", "bobpw")})
    conn.close()
    script = SCRIPT.format(db=subscribers, params="").replace(
        '_authorize("", "subscriber")', '_authorize("example.com", "subscriber")').replace(
        '_challenge("", "auth")', '_challenge("example.com", "auth")')
    proxy = cfgscript_proxy(script)
    sipp_scenario(proxy, uac=XML / "uac-invite-auth.xml", uas=XML / "uas-rr.xml",
                  username="bob", password="bobpw", keys={"caller": "bob"})

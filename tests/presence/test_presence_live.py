"""presence + presence_xml on a live proxy, driven by SIPp: PUBLISH (RFC 3903) stored,
refreshed with SIP-If-Match, 412 for an unknown entity tag; SUBSCRIBE (RFC 6665) answered,
NOTIFYs carrying the published PIDF; in memory and in a real SQLite database."""
import sqlite3
from pathlib import Path

import pytest

XML = Path(__file__).parent / "xml"

SCRIPT = """
log_level=3
loadmodule "sl.so"
loadmodule "sipmsgops.so"
loadmodule "tm.so"
loadmodule "signaling.so"
loadmodule "db_sqlite.so"
loadmodule "presence.so"
loadmodule "presence_xml.so"
{params}
modparam("presence", "clean_period", 1)
modparam("presence_xml", "force_active", {force_active})

route {{
    if (is_method("PUBLISH") || is_method("SUBSCRIBE")) {{
        route(handle_presence);
        exit;
    }}
    sl_send_reply(404, "Not here");
}}

route[handle_presence] {{
    if (!t_newtran()) {{
        sl_reply_error();
        exit;
    }}
    if (is_method("PUBLISH"))
        handle_publish();
    else if (is_method("SUBSCRIBE"))
        handle_subscribe();
    exit;
}}
"""


def script(params="", force_active=1):
    return SCRIPT.format(params=params, force_active=force_active)


def test_publish_subscribe_notify_in_memory(cfgscript_proxy, sipp_scenario):
    proxy = cfgscript_proxy(script())
    sipp_scenario(proxy, uac=XML / "uac-publish-subscribe.xml", uas=False, timeout=30)


def test_publish_subscribe_notify_with_sqlite(cfgscript_proxy, sipp_scenario, tmp_path):
    path = tmp_path / "presence.db"
    proxy = cfgscript_proxy(script(f'modparam("presence", "db_url", "sqlite://{path}")\n'
                                   'modparam("presence", "fallback2db", 1)'))
    sipp_scenario(proxy, uac=XML / "uac-publish-subscribe.xml", uas=False, timeout=30)
    conn = sqlite3.connect(path)
    # the state was removed at the end, the subscription ended
    assert conn.execute("SELECT COUNT(*) FROM presentity").fetchone()[0] == 0
    assert conn.execute("SELECT COUNT(*) FROM active_watchers").fetchone()[0] == 0
    versions = dict(conn.execute("SELECT table_name, table_version FROM version"))
    assert versions["presentity"] == 5 and versions["active_watchers"] == 12

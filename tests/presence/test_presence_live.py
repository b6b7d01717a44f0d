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


PENDING_SCRIPT = """
log_level=3
loadmodule "sl.so"
loadmodule "sipmsgops.so"
loadmodule "tm.so"
loadmodule "signaling.so"
loadmodule "db_sqlite.so"
loadmodule "httpd.so"
modparam("httpd", "ip", "{ip}")
modparam("httpd", "port", {http_port})
loadmodule "mi_http.so"
loadmodule "xcap.so"
loadmodule "presence.so"
loadmodule "presence_xml.so"
modparam("xcap|presence", "db_url", "sqlite://{db}")
modparam("xcap", "integrated_xcap_server", 1)
modparam("presence_xml", "force_active", 0)

route {{
    if (!t_newtran()) {{
        sl_reply_error();
        exit;
    }}
    if (is_method("PUBLISH"))
        handle_publish();
    else if (is_method("SUBSCRIBE"))
        handle_subscribe();
    else
        t_reply(404, "Not here");
}}
"""

ALLOW_BOB = """<?xml version="1.0" encoding="UTF-8"?>
<cr:ruleset xmlns="urn:ietf:params:xml:ns:pres-rules"
            xmlns:cr="urn:ietf:params:xml:ns:common-policy">
  <cr:rule id="allow-bob">
    <cr:conditions><cr:identity><cr:one id="sip:bob@{domain}"/></cr:identity></cr:conditions>
    <cr:actions><sub-handling>allow</sub-handling></cr:actions>
    <cr:transformations/>
  </cr:rule>
</cr:ruleset>
"""


def mi(url, method, params=None, timeout=5):
    import json
    import urllib.request
    req = urllib.request.Request(url, json.dumps({
        "jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}).encode(),
        {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def test_pending_until_the_rules_allow(cfgscript_proxy, sipp_scenario, tmp_path):
    """202 and a NOTIFY "pending" while alice's rules say nothing about bob; her pres-rules
    in the xcap table and refresh_watchers over MI make it active, with her PIDF."""
    import socket
    import threading
    import time

    from runtime.testing import addresses
    from runtime.testing.addresses import PROXY_PORT

    roles = addresses.allocate()
    with socket.socket() as s:
        s.bind((roles.proxy_ip, 0))
        http_port = s.getsockname()[1]
    path = tmp_path / "presence.db"
    proxy = cfgscript_proxy(PENDING_SCRIPT.format(ip=roles.proxy_ip, http_port=http_port,
                                                  db=path),
                            sockets=[f"udp:{roles.proxy_ip}:{PROXY_PORT}"])
    url = f"http://{roles.proxy_ip}:{http_port}/mi"
    domain = roles.proxy_ip
    done = {}

    def authorize():
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                subs = mi(url, "subs_phtable_list")["result"]["Subscriptions"]
            except OSError:
                subs = []
            if any(s["status"] == "pending" for s in subs):
                conn = sqlite3.connect(path)
                conn.execute("INSERT INTO xcap (username, domain, doc, doc_type, etag, source, "
                             "doc_uri, port) VALUES (?, ?, ?, 2, 'e1', 1, ?, 0)",
                             ("alice", domain, ALLOW_BOB.format(domain=domain),
                              f"/xcap-root/pres-rules/users/sip:alice@{domain}/index"))
                conn.commit()
                conn.close()
                done["reply"] = mi(url, "refresh_watchers",
                                   [f"sip:alice@{domain}", "presence", 0])
                return
            time.sleep(0.1)

    t = threading.Thread(target=authorize, daemon=True)
    t.start()
    sipp_scenario(proxy, uac=XML / "uac-subscribe-pending.xml", uas=False, timeout=30)
    t.join(5)
    assert done.get("reply", {}).get("result") == "OK", (done, proxy.log[-2000:])
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT presentity_uri, watcher_username, status FROM watchers").fetchall()
    assert rows == [(f"sip:alice@{domain}", "bob", 1)]

"""acc on a live proxy: the records OpenSIPS writes, for calls SIPp makes."""
import re
import time
from pathlib import Path

XML = Path(__file__).parent / "xml"

HEAD = """
log_level=3
loadmodule "proto_udp.so"
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "rr.so"
loadmodule "sipmsgops.so"
loadmodule "acc.so"
{extra}
route {{
    if (has_totag()) {{
        loose_route();
        {in_dialog}
        t_relay();
        exit;
    }}
    if (is_method("CANCEL")) {{
        if (t_check_trans())
            t_relay();
        exit;
    }}
    t_check_trans();
    record_route();
    {initial}
    t_relay();
}}
"""


def script(initial, in_dialog="", extra=""):
    return HEAD.format(initial=initial, in_dialog=in_dialog, extra=extra)


def records(log, kind):
    """[{field: value}] of the 'ACC: <kind>: ' lines of the log."""
    out = []
    for line in log.splitlines():
        _, sep, rest = line.partition(f"ACC: {kind}: ")
        if sep:
            out.append(dict(p.split("=", 1) for p in rest.split(";")))
    return out


def wait_for(proxy, kind, n, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        recs = records(proxy.log, kind)
        if len(recs) >= n:
            return recs
        time.sleep(0.1)
    return records(proxy.log, kind)


def test_default_script_accounting_invite_and_bye(cfgscript_proxy, sipp_scenario):
    """etc/opensips.cfg: do_accounting("log") on INVITE, ("log","failed") on BYE."""
    proxy = cfgscript_proxy(script('if (is_method("INVITE")) do_accounting("log");',
                                   'if (is_method("BYE")) do_accounting("log", "failed");'))
    sipp_scenario(proxy, calls=2)
    recs = wait_for(proxy, "transaction answered", 4)
    assert sorted(r["method"] for r in recs) == ["BYE", "BYE", "INVITE", "INVITE"]
    for r in recs:
        assert list(r) == ["timestamp", "method", "from_tag", "to_tag", "call_id", "code",
                           "reason"]
        assert (r["code"], r["reason"]) == ("200", "OK")
        assert r["from_tag"] and r["to_tag"] and r["call_id"]
        assert abs(int(r["timestamp"]) - time.time()) < 60
    invites = {r["call_id"]: r for r in recs if r["method"] == "INVITE"}
    byes = {r["call_id"]: r for r in recs if r["method"] == "BYE"}
    assert invites.keys() == byes.keys()
    assert not records(proxy.log, "call missed")


def test_missed_and_failed(cfgscript_proxy, sipp_scenario):
    proxy = cfgscript_proxy(script('do_accounting("log", "missed");'))
    sipp_scenario(proxy, uac=XML / "uac-486.xml", uas=XML / "uas-486.xml")
    missed = wait_for(proxy, "call missed", 1)
    assert [(r["method"], r["code"], r["reason"]) for r in missed] == [
        ("INVITE", "486", "Busy Here")]
    assert missed[0]["to_tag"]
    assert not records(proxy.log, "transaction answered")  # 'failed' not asked for

    proxy = cfgscript_proxy(script('do_accounting("log", "failed");'))
    sipp_scenario(proxy, uac=XML / "uac-486.xml", uas=XML / "uas-486.xml")
    answered = wait_for(proxy, "transaction answered", 1)
    assert [(r["code"], r["reason"]) for r in answered] == [("486", "Busy Here")]
    assert not records(proxy.log, "call missed")


def test_old_flags_and_extra(cfgscript_proxy, sipp_scenario):
    """1.x style: modparam log_flag/log_missed_flag, setflag(N), log_extra."""
    extra = ('modparam("acc", "log_flag", 1)\nmodparam("acc", "log_missed_flag", 2)\n'
             'modparam("acc", "log_extra", "src_ip=$si;ruser=$rU")')
    proxy = cfgscript_proxy(script('setflag(1); setflag(2);', extra=extra))
    sipp_scenario(proxy, uac=XML / "uac-486.xml", uas=XML / "uas-486.xml")
    missed = wait_for(proxy, "call missed", 1)
    assert len(missed) == 1 and missed[0]["code"] == "486"
    assert missed[0]["src_ip"].startswith("127.") and missed[0]["ruser"]
    sipp_scenario(proxy)
    answered = wait_for(proxy, "transaction answered", 1)
    assert [(r["method"], r["code"]) for r in answered] == [("INVITE", "200")]
    assert len(records(proxy.log, "call missed")) == 1


def test_acc_extra_in_the_record(cfgscript_proxy, sipp_scenario):
    extra = 'modparam("acc", "extra_fields", "log: caller; src->source_ip")'
    proxy = cfgscript_proxy(script('$acc_extra(caller) = $fU; $acc_extra(src) = $si; '
                                   'do_accounting("log");', extra=extra))
    sipp_scenario(proxy)
    r = wait_for(proxy, "transaction answered", 1)[0]
    assert list(r)[-2:] == ["caller", "source_ip"]
    assert r["caller"] == "sipp" and r["source_ip"].startswith("127.")


def test_local_408_is_a_missed_call(cfgscript_proxy, sipp_scenario):
    proxy = cfgscript_proxy(script('do_accounting("log", "missed|failed");',
                                   extra='modparam("tm", "fr_inv_timeout", 2)'))
    sipp_scenario(proxy, uac=XML / "uac-408.xml", uas=XML / "uas-ring.xml", timeout=30)
    missed = wait_for(proxy, "call missed", 1)
    answered = wait_for(proxy, "transaction answered", 1)
    assert [(r["code"], r["reason"]) for r in missed] == [("408", "Request Timeout")]
    assert [r["code"] for r in answered] == ["408"]


def test_cdr_when_the_dialog_ends(cfgscript_proxy, sipp_scenario):
    extra = 'loadmodule "dialog.so"'
    proxy = cfgscript_proxy(script('if (is_method("INVITE")) do_accounting("log", "cdr");',
                                   extra=extra))
    sipp_scenario(proxy)
    cdrs = wait_for(proxy, "call ended", 1)
    assert len(cdrs) == 1
    r = cdrs[0]
    assert list(r)[:5] == ["created", "call_start_time", "duration", "ms_duration", "setuptime"]
    assert (r["method"], r["code"]) == ("INVITE", "200")
    assert int(r["duration"]) >= 0 and int(r["created"]) <= int(r["call_start_time"])
    assert not records(proxy.log, "transaction answered")


def test_acc_log_request(cfgscript_proxy, sipp_scenario):
    proxy = cfgscript_proxy(script('acc_log_request("404 Not here"); sl_send_reply(404, "Not here");'
                                   ' exit;'))
    sipp_scenario(proxy, uac=XML / "uac-404.xml", uas=False)
    recs = wait_for(proxy, "request accounted", 1)
    assert [(r["method"], r["code"], r["reason"], r["to_tag"]) for r in recs] == [
        ("INVITE", "404", "Not here", "")]
    assert re.fullmatch(r"\d+", recs[0]["timestamp"])


def test_db_records_in_sqlite(cfgscript_proxy, sipp_scenario, tmp_path):
    import sqlite3
    from runtime import db as dbapi
    db = tmp_path / "acc.db"
    conn = dbapi.connect(f"sqlite://{db}", shared=False)  # the OpenSIPS schema, plus:
    for table in ("acc", "missed_calls"):
        conn.raw_query(f"ALTER TABLE {table} ADD COLUMN src_ip CHAR(64)")
    conn.close()
    extra = (f'loadmodule "db_sqlite.so"\nmodparam("acc", "db_url", "sqlite://{db}")\n'
             'modparam("acc", "db_extra", "src_ip=$si")')
    proxy = cfgscript_proxy(script('if ($rU == "busy") do_accounting("db", "missed", "busy_acc");'
                                   ' else do_accounting("db|log");', extra=extra))
    sipp_scenario(proxy)
    sipp_scenario(proxy, uac=XML / "uac-486.xml", uas=XML / "uas-486.xml", service="busy")
    wait_for(proxy, "transaction answered", 1)
    time.sleep(0.5)
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    acc = [dict(r) for r in con.execute("SELECT * FROM acc")]
    missed = [dict(r) for r in con.execute("SELECT * FROM missed_calls")]
    assert [(r["method"], r["sip_code"], r["sip_reason"]) for r in acc] == [
        ("INVITE", "200", "OK")]
    assert [(r["method"], r["sip_code"], r["sip_reason"]) for r in missed] == [
        ("INVITE", "486", "Busy Here")]
    assert acc[0]["callid"] and acc[0]["from_tag"] and acc[0]["to_tag"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", acc[0]["time"])
    assert acc[0]["src_ip"].startswith("127.") and missed[0]["src_ip"].startswith("127.")

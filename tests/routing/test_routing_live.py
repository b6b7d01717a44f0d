"""The routing modules through the real proxy and real SIPp agents: dispatcher failover
and round-robin, destination probing with OPTIONS, drouting prefix routing with gateway
failover, dialplan number rewriting, load_balancer failover.

Each test takes a set of loopback addresses first, writes the SQLite tables with the UAS
addresses in them (the i-th UAS listens on uas_ip:5080+i), then starts the proxy."""
from pathlib import Path

import pytest

from runtime import db
from runtime.testing import addresses
from runtime.testing.addresses import PROXY_PORT, UAC_PORT, UAS_PORT
from runtime.testing.execute import ScenarioResult, explain
from runtime.testing.scenario import MEDIA_PORT, Agent
from runtime.testing.sipp import run_agents

XML = Path(__file__).resolve().parent / "xml"

HEAD = """log_level=3
socket=udp:{proxy_ip}:5060
loadmodule "proto_udp.so"
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "rr.so"
loadmodule "maxfwd.so"
loadmodule "sipmsgops.so"
loadmodule "db_sqlite.so"
modparam("tm", "fr_timeout", 3)
"""

IN_DIALOG = """
    if (!mf_process_maxfwd_header(10)) {
        sl_send_reply(483, "Too Many Hops");
        exit;
    }
    if (has_totag()) {
        if (loose_route()) {
            t_relay();
            exit;
        }
        if (is_method("ACK") && t_check_trans())
            t_relay();
        exit;
    }
    if (is_method("CANCEL")) {
        if (t_check_trans())
            t_relay();
        exit;
    }
    t_check_trans();
    record_route();
"""


class Lab:
    """One set of loopback addresses: the proxy's, the UASes' and the UAC's."""

    def __init__(self, tmp_path):
        self.roles = addresses.allocate()
        self.tmp_path = tmp_path
        self.runs = 0
        self.db = tmp_path / "routing.db"

    @property
    def socket(self):
        return f"udp:{self.roles.proxy_ip}:{PROXY_PORT}"

    def uas_uri(self, i):
        return f"sip:{self.roles.uas_ip}:{UAS_PORT + i}"

    def cfg(self, modules, route, extra=""):
        return (HEAD.format(proxy_ip=self.roles.proxy_ip) + modules
                + "\nroute {\n" + IN_DIALOG + route + "\n}\n" + extra)

    def table(self, schema_of, table, rows):
        conn = db.connect(f"sqlite://{self.db}", shared=False)
        try:
            cols, version = schema_of
            conn.create_table(table, cols, version)
            for row in rows:
                conn.insert(table, row)
        finally:
            conn.close()

    def uas(self, xml, i=0, calls=1, expect=None):
        """A UAS; with `expect` (a regex), it fails the call unless the INVITE's R-URI user
        matches it."""
        path = XML / xml
        if expect is not None:
            path = self.tmp_path / f"uas{i}-{self.runs}-{abs(hash(expect))}.xml"
            path.write_text((XML / "uas-check-user.xml").read_text().replace(
                "EXPECTED_USER", expect.replace("&", "&amp;").replace("<", "&lt;")))
        return Agent(f"uas{i}", "uas", path, self.roles.uas_ip, UAS_PORT + i,
                     media_port=MEDIA_PORT + 4 * i, calls=calls)

    def uac(self, service, calls=1, wait=0.0, to_uas=0):
        a = Agent("uac", "uac", XML / "uac.xml", self.roles.uac_ip, UAC_PORT,
                  media_port=MEDIA_PORT + 40, calls=calls, service=service,
                  remote=(self.roles.uas_ip, UAS_PORT + to_uas),
                  proxy=(self.roles.proxy_ip, PROXY_PORT))
        a.wait = wait
        return a

    def run(self, proxy, *agents, timeout=25.0):
        self.runs += 1
        logdir = self.tmp_path / f"sipp-{self.runs}"
        logdir.mkdir()
        results, note = run_agents(list(agents), logdir, timeout, self.tmp_path)
        result = ScenarioResult("routing", self.tmp_path, logdir, agents=results,
                                passed=not note and all(a.ok for a in results), problem=note,
                                cfg=proxy.cfg, proxy_log=proxy.log_path)
        if not result.passed:
            pytest.fail(explain(result) + "\n--- proxy log (end) ---\n"
                        + "\n".join(proxy.log.splitlines()[-40:]), pytrace=False)


@pytest.fixture
def lab(tmp_path):
    yield Lab(tmp_path)
    db.close_all()


def _ds_schema():
    from modules.dispatcher import _SCHEMA
    return _SCHEMA, 9


def _ds_rows(lab, setid, states=(0, 0)):
    return [{"setid": setid, "destination": lab.uas_uri(i), "state": s, "weight": "1",
             "priority": 0} for i, s in enumerate(states)]


def test_dispatcher_failover_marks_the_failed_destination(lab, cfgscript_proxy):
    """The first destination answers 503: ds_next_dst() sends the call to the second; after
    ds_probing_threshold failures ds_mark_dst("p") takes the first out of the rotation."""
    lab.table(_ds_schema(), "dispatcher", _ds_rows(lab, 1))
    cfg = lab.cfg(f"""loadmodule "dispatcher.so"
modparam("dispatcher", "db_url", "sqlite://{lab.db}")
modparam("dispatcher", "ds_probing_threshold", 2)
""", """
    if (!ds_select_dst(1, 8, "f")) {
        sl_send_reply(503, "No destination");
        exit;
    }
    t_on_failure("ds_failover");
    if (!t_relay())
        sl_reply_error();
""", """
failure_route[ds_failover] {
    if (t_was_cancelled())
        exit;
    if (t_check_status("5[0-9][0-9]|408")) {
        ds_mark_dst("p");
        if (ds_next_dst()) {
            xlog("L_INFO", "failing over to $du\\n");
            t_on_failure("ds_failover");
            t_relay();
            exit;
        }
        t_reply(503, "No more destinations");
    }
}
""")
    proxy = cfgscript_proxy(cfg, sockets=[lab.socket])
    # 4 calls: the first two meet the 503 of uas0 (threshold 2), the others go to uas1 only
    lab.run(proxy, lab.uas("uas-503.xml", 0, calls=2), lab.uas("uas-answer.xml", 1, calls=4),
            lab.uac("1000", calls=4))
    assert "failing over to sip:" in proxy.log


def test_dispatcher_round_robin_spreads_calls(lab, cfgscript_proxy):
    lab.table(_ds_schema(), "dispatcher", _ds_rows(lab, 2))
    cfg = lab.cfg(f"""loadmodule "dispatcher.so"
modparam("dispatcher", "db_url", "sqlite://{lab.db}")
""", """
    if (!ds_select_dst(2, 4)) {
        sl_send_reply(503, "No destination");
        exit;
    }
    t_relay();
""")
    proxy = cfgscript_proxy(cfg, sockets=[lab.socket])
    # each UAS ends after 3 calls: a 7th call on either would never be answered
    lab.run(proxy, lab.uas("uas-answer.xml", 0, calls=3), lab.uas("uas-answer.xml", 1, calls=3),
            lab.uac("2000", calls=6))


def test_dispatcher_probing_reactivates_a_destination(lab, cfgscript_proxy):
    """uas0 starts in probing state: the proxy probes it with OPTIONS every second; once it
    answers it is active again and, first in the set, takes the call (uas1 does not even
    exist: a call sent there would time out)."""
    lab.table(_ds_schema(), "dispatcher", _ds_rows(lab, 3, states=(2, 0)))
    cfg = lab.cfg(f"""loadmodule "dispatcher.so"
modparam("dispatcher", "db_url", "sqlite://{lab.db}")
modparam("dispatcher", "ds_ping_interval", 1)
modparam("dispatcher", "ds_ping_from", "sip:pinger@{lab.roles.proxy_ip}")
""", """
    if (!ds_select_dst(3, 8)) {
        sl_send_reply(503, "No destination");
        exit;
    }
    t_relay();
""")
    proxy = cfgscript_proxy(cfg, sockets=[lab.socket])
    lab.run(proxy, lab.uas("uas-options-answer.xml", 0, calls=2), lab.uac("3000", wait=2.5))
    assert "is now active" in proxy.log


def _dr_schemas():
    from modules import drouting as dr
    return {"dr_gateways": (dr._GW_SCHEMA, 6), "dr_rules": (dr._RULE_SCHEMA, 4),
            "dr_carriers": (dr._CR_SCHEMA, 3), "dr_groups": (dr._GRP_SCHEMA, 2)}


def test_drouting_prefix_routing_and_gateway_failover(lab, cfgscript_proxy):
    s = _dr_schemas()
    ip = lab.roles.uas_ip
    lab.table(s["dr_gateways"], "dr_gateways", [
        {"gwid": "uk", "type": 1, "address": f"{ip}:{UAS_PORT}", "strip": 1,
         "pri_prefix": "+44"},
        {"gwid": "fr", "type": 1, "address": f"{ip}:{UAS_PORT + 1}", "strip": 1,
         "pri_prefix": "+33"},
    ])
    lab.table(s["dr_rules"], "dr_rules", [
        {"groupid": "0", "prefix": "1", "priority": 0, "gwlist": "uk"},
        {"groupid": "0", "prefix": "2", "priority": 0, "gwlist": "fr"},
        {"groupid": "0", "prefix": "3", "priority": 0, "gwlist": "uk,fr"},
    ])
    lab.table(s["dr_carriers"], "dr_carriers", [])
    lab.table(s["dr_groups"], "dr_groups", [])
    cfg = lab.cfg(f"""loadmodule "drouting.so"
modparam("drouting", "db_url", "sqlite://{lab.db}")
modparam("drouting", "probing_interval", 0)
""", """
    if (!do_routing(0)) {
        sl_send_reply(404, "No route");
        exit;
    }
    t_on_failure("gw_failover");
    t_relay();
""", """
failure_route[gw_failover] {
    if (t_was_cancelled())
        exit;
    if (t_check_status("(408)|([56][0-9][0-9])") && use_next_gw()) {
        xlog("L_INFO", "next gateway: $ru\\n");
        t_on_failure("gw_failover");
        t_relay();
        exit;
    }
}
""")
    proxy = cfgscript_proxy(cfg, sockets=[lab.socket])
    # prefix 1 -> the "uk" gateway, leading digit stripped, +44 in front
    lab.run(proxy, lab.uas("uas-answer.xml", 0, expect=r"\+44555"),
            lab.uac("1555"))
    # prefix 2 -> "fr"
    lab.run(proxy, lab.uas("uas-answer.xml", 1, expect=r"\+33777"),
            lab.uac("2777"))
    # prefix 3 -> "uk" answers 503, use_next_gw() takes "fr"
    lab.run(proxy, lab.uas("uas-503.xml", 0),
            lab.uas("uas-answer.xml", 1, expect=r"\+33999"), lab.uac("3999"))
    assert "next gateway: sip:+33999@" in proxy.log


def test_dialplan_rewrites_the_number(lab, cfgscript_proxy):
    from modules.dialplan import _SCHEMA
    lab.table((_SCHEMA, 5), "dialplan", [
        {"dpid": 0, "pr": 1, "match_op": 1, "match_exp": r"^(0040|\+40|0|40)21[0-9]+",
         "match_flags": 0, "subst_exp": r"^(0040|\+40|0|40)(.+)", "repl_exp": r"40\2",
         "attrs": "ro-bucharest"},
        {"dpid": 0, "pr": 2, "match_op": 0, "match_exp": "911", "match_flags": 0,
         "repl_exp": "112"},
    ])
    cfg = lab.cfg(f"""loadmodule "dialplan.so"
modparam("dialplan", "db_url", "sqlite://{lab.db}")
""", """
    if (dp_translate(0, $rU, $rU, $var(attrs)))
        xlog("L_INFO", "translated to $rU ($var(attrs))\\n");
    t_relay();
""")
    proxy = cfgscript_proxy(cfg, sockets=[lab.socket])
    lab.run(proxy, lab.uas("uas-answer.xml", 0, expect="40212345678"),
            lab.uac("0212345678"))
    lab.run(proxy, lab.uas("uas-answer.xml", 0, expect="112"), lab.uac("911"))
    assert "translated to 40212345678 (ro-bucharest)" in proxy.log


def test_load_balancer_failover(lab, cfgscript_proxy):
    from modules.load_balancer import _SCHEMA
    lab.table((_SCHEMA, 3), "load_balancer", [
        {"group_id": 1, "dst_uri": lab.uas_uri(0), "resources": "pstn=10", "probe_mode": 0},
        {"group_id": 1, "dst_uri": lab.uas_uri(1), "resources": "pstn=5", "probe_mode": 0},
    ])
    cfg = lab.cfg(f"""loadmodule "dialog.so"
loadmodule "load_balancer.so"
modparam("load_balancer", "db_url", "sqlite://{lab.db}")
""", """
    if (lb_start(1, "pstn") < 0) {
        sl_send_reply(503, "No capacity");
        exit;
    }
    t_on_failure("lb_failover");
    t_relay();
""", """
failure_route[lb_failover] {
    if (t_check_status("5[0-9][0-9]|408")) {
        lb_disable_dst();
        if (lb_next()) {
            xlog("L_INFO", "load balancer: next is $du\\n");
            t_on_failure("lb_failover");
            t_relay();
            exit;
        }
        t_reply(503, "No more destinations");
    }
}
""")
    proxy = cfgscript_proxy(cfg, sockets=[lab.socket])
    # uas0 has the most capacity and fails once: disabled, every call then goes to uas1
    lab.run(proxy, lab.uas("uas-503.xml", 0), lab.uas("uas-answer.xml", 1, calls=3),
            lab.uac("4000", calls=3))
    assert "load balancer: next is sip:" in proxy.log

"""registrar: save() and its replies, lookup() and the branch set, the checks, the flags.

Each test loads a small script (sl, usrloc, registrar), runs real SIP messages through its
main route and reads what the proxy would have sent; nothing goes on the network.
"""
import time

import pytest
from cfgscript import parse_text

from modules.registrar.flags import parse_lookup_flags, parse_save_flags
from runtime import db
from runtime.context import Context, ScriptExit
from runtime.loader import load_script
from runtime.sip.edits import build_request
from runtime.sip.message import Message

BASE = """
loadmodule "sl.so"
loadmodule "sipmsgops.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
modparam("usrloc", "nat_bflag", "NAT")
{params}
route {{
    {body}
}}
"""
REGISTER_ROUTE = """
    if (is_method("REGISTER")) {
        $var(rc) = save("location"SAVE_ARGS);
        exit;
    }
    $var(rc) = lookup("location"LOOKUP_ARGS);
"""


class Wire:
    """Stands in for the server's sockets: keeps what would have been sent."""

    def __init__(self):
        self.sent = []

    def send(self, sock, addr, data):
        self.sent.append(Message.parse(data))
        return True


class Proxy:
    def __init__(self, params="", body=None, save_args="", lookup_args=""):
        body = body or REGISTER_ROUTE.replace("SAVE_ARGS", save_args).replace(
            "LOOKUP_ARGS", lookup_args)
        loaded = load_script(parse_text(BASE.format(params=params, body=body), "t.cfg"))
        errors = [str(d) for d in loaded.diagnostics if d.severity == "error"]
        assert not errors, errors
        self.rt = loaded.rt
        for mod in self.rt.modules.values():
            if mod.init:
                mod.init(self.rt)
        self.wire = Wire()
        self.rt.server = self.wire
        self.cseq = 0

    def run(self, text, src=("10.0.0.9", 5062), bflags=()):
        """Run the main route on a message; returns (ctx, the reply sent or None)."""
        ctx = Context(self.rt, Message.parse(text.replace("\n", "\r\n").encode()), src=src,
                      socket=self.rt.sockets[0])
        for name in bflags:
            ctx.bflags |= 1 << self.rt.bflag_names.bit(name)
        before = len(self.wire.sent)
        try:
            self.rt.routes[("route", None)](ctx)
        except ScriptExit:
            pass
        sent = self.wire.sent[before:]
        return ctx, (sent[-1] if sent else None)

    def register(self, *contacts, user="alice", headers="", callid="reg-1", cseq=None, **kw):
        if cseq is None:
            self.cseq += 1
            cseq = self.cseq
        lines = "".join(f"Contact: {c}\n" for c in contacts)
        return self.run(f"REGISTER sip:example.com SIP/2.0\n"
                        f"Via: SIP/2.0/UDP 10.0.0.9:5062;branch=z9hG4bKr{callid}{cseq}\n"
                        f"From: <sip:{user}@example.com>;tag=f1\n"
                        f"To: <sip:{user}@example.com>\nCall-ID: {callid}\n"
                        f"CSeq: {cseq} REGISTER\n{lines}{headers}Content-Length: 0\n\n", **kw)

    def invite(self, ruri="sip:alice@example.com", method="INVITE", headers=""):
        return self.run(f"{method} {ruri} SIP/2.0\n"
                        f"Via: SIP/2.0/UDP 10.0.0.7:5060;branch=z9hG4bKi1\n"
                        f"From: <sip:bob@example.com>;tag=b1\nTo: <{ruri}>\n"
                        f"Call-ID: call-1\nCSeq: 1 {method}\n{headers}Content-Length: 0\n\n")

    def table(self):
        return self.rt.apis["usrloc"].domain("location")


@pytest.fixture(autouse=True)
def _close_connections():
    yield
    db.close_all()


def contacts_of(reply):
    return [(c.uri, c.param("expires"), c.param("q")) for c in reply.contacts]


# --- save ----------------------------------------------------------------------------------

def test_register_two_contacts_gets_200_listing_both_with_expires():
    p = Proxy()
    ctx, reply = p.register("<sip:alice@10.0.0.9:5062>;q=0.5",
                            "<sip:alice@10.0.0.9:5064>;expires=120", headers="Expires: 300\n")
    assert ctx.rt.vars["rc"] == 1
    assert (reply.status, reply.reason) == (200, "OK")
    assert contacts_of(reply) == [("sip:alice@10.0.0.9:5062", "300", "0.5"),
                                  ("sip:alice@10.0.0.9:5064", "120", None)]
    assert [c.uri for c in p.table().get("alice")] == ["sip:alice@10.0.0.9:5062",
                                                      "sip:alice@10.0.0.9:5064"]
    # a query (no Contact) lists them again
    _, reply = p.register()
    assert [c[0] for c in contacts_of(reply)] == ["sip:alice@10.0.0.9:5062",
                                                 "sip:alice@10.0.0.9:5064"]


@pytest.mark.parametrize("params, contact, headers, expected", [
    ("", "<sip:a@h>", "", "3600"),                                      # default_expires
    ('modparam("registrar", "default_expires", 1800)', "<sip:a@h>", "", "1800"),
    ("", "<sip:a@h>", "Expires: 30\n", "60"),                          # min_expires
    ('modparam("registrar", "max_expires", 120)', "<sip:a@h>;expires=500", "", "120"),
    ('modparam("registrar", "min_expires", 0)', "<sip:a@h>;expires=5", "", "5"),
])
def test_expires_rules(params, contact, headers, expected):
    _, reply = Proxy(params).register(contact, headers=headers)
    assert contacts_of(reply)[0][1] == expected


def test_expires_zero_removes_one_contact_and_star_removes_all():
    p = Proxy()
    p.register("<sip:alice@1>", "<sip:alice@2>", "<sip:alice@3>")
    _, reply = p.register("<sip:alice@2>;expires=0")
    assert [c[0] for c in contacts_of(reply)] == ["sip:alice@1", "sip:alice@3"]
    _, reply = p.register("*", headers="Expires: 0\n")
    assert reply.status == 200 and reply.contacts == [] and p.table().get("alice") == []


@pytest.mark.parametrize("contacts, headers, info", [
    (["*"], "Expires: 60\n", "* used in contact and expires is not zero"),
    (["*", "<sip:alice@1>"], "Expires: 0\n", "* used in contact and more than 1 contact"),
    (["<sip:alice@1>;expires=soon"], "", "Invalid expires param in contact"),
    (["<sip:alice@1>;q=2"], "", "Invalid q param in contact"),
    (["<sip:alice@1>"], "Expires: soon\n", "Expires parse error"),
])
def test_bad_registers_get_400_with_the_reason(contacts, headers, info):
    ctx, reply = Proxy().register(*contacts, headers=headers)
    assert ctx.rt.vars["rc"] == -1
    assert reply.status == 400 and reply.get("p-registrar-error") == info


def test_to_without_user_is_rejected():
    p = Proxy()
    ctx, reply = p.register("<sip:x@1>", user="")
    assert reply.status == 400 and reply.get("p-registrar-error") == "No username in To URI"


def test_refresh_updates_and_retransmission_changes_nothing():
    p = Proxy()
    p.register("<sip:alice@1>;expires=100", callid="c", cseq=5)
    [c] = p.table().get("alice")
    _, reply = p.register("<sip:alice@1>;expires=200", callid="c", cseq=5)   # retransmission
    assert contacts_of(reply)[0][1] == "100"
    _, reply = p.register("<sip:alice@1>;expires=200", callid="c", cseq=4)   # out of order
    assert contacts_of(reply)[0][1] == "100"
    _, reply = p.register("<sip:alice@1>;expires=200", callid="c", cseq=6)
    assert contacts_of(reply)[0][1] == "200" and p.table().get("alice") == [c]


def test_matching_mode_1_keeps_a_binding_per_call_id():
    p = Proxy('modparam("usrloc", "matching_mode", 1)')
    p.register("<sip:alice@1>", callid="a")
    p.register("<sip:alice@1>", callid="b")
    assert len(p.table().get("alice")) == 2


def test_max_contacts_503_and_force_registration_drops_the_oldest():
    p = Proxy('modparam("registrar", "max_contacts", 2)\n'
              'modparam("registrar", "retry_after", 30)')
    p.register("<sip:alice@1>", "<sip:alice@2>")
    ctx, reply = p.register("<sip:alice@3>")
    assert (reply.status, reply.reason) == (503, "Service Unavailable")
    assert reply.get("p-registrar-error") == "Too many registered contacts"
    assert reply.get("retry-after") == "30"
    assert len(p.table().get("alice")) == 2
    p = Proxy('modparam("registrar", "max_contacts", 2)', save_args=', "force-registration"')
    p.register("<sip:alice@1>")
    p.table().get("alice")[0].last_modified -= 5
    p.register("<sip:alice@2>")
    _, reply = p.register("<sip:alice@3>")
    assert reply.status == 200
    assert sorted(c[0] for c in contacts_of(reply)) == ["sip:alice@2", "sip:alice@3"]


def test_no_reply_flag_in_every_spelling():
    for args in (', "no-reply"', ', "r"', ', "0x02"'):
        p = Proxy(save_args=args)
        ctx, reply = p.register("<sip:alice@1>")
        assert reply is None and ctx.rt.vars["rc"] == 1 and p.table().get("alice")


def test_only_request_contacts():
    p = Proxy(save_args=', "only-request-contacts"')
    p.register("<sip:alice@1>")
    _, reply = p.register("<sip:alice@2>")
    assert [c[0] for c in contacts_of(reply)] == ["sip:alice@2"]


def test_aor_from_an_argument_and_case_folding():
    p = Proxy('modparam("registrar", "case_sensitive", 0)', save_args=', , "sip:Carol@x"')
    p.register("<sip:alice@1>")
    assert p.table().get("carol") and not p.table().get("alice")


def test_use_domain_keys_user_at_host():
    p = Proxy('modparam("usrloc", "use_domain", 1)')
    p.register("<sip:alice@1>")
    assert p.table().aors() == ["alice@example.com"]
    ctx, _ = p.invite("sip:alice@example.com")
    assert ctx.rt.vars["rc"] == 1
    ctx, _ = p.invite("sip:alice@other.example.com")
    assert ctx.rt.vars["rc"] == -1


# --- NAT: received and the NAT branch flag ---------------------------------------------------

def test_received_avp_and_nat_flag_are_saved_and_used_by_lookup():
    body = """
    if (is_method("REGISTER")) {
        $avp(rcv) = "sip:" + $si + ":" + $sp;
        save("location");
        exit;
    }
    $var(rc) = lookup("location");
    $var(nat) = isbflagset("NAT");
    """
    p = Proxy('modparam("registrar", "received_avp", "$avp(rcv)")', body=body)
    _, reply = p.register("<sip:alice@192.168.1.20:5060>", src=("203.0.113.5", 40000),
                          bflags=["NAT"])
    assert ';received="sip:203.0.113.5:40000"' in reply.get("contact")
    [c] = p.table().get("alice")
    assert c.received == "sip:203.0.113.5:40000"
    ctx, _ = p.invite()
    assert ctx.rt.vars["rc"] == 1 and ctx.rt.vars["nat"] == 1
    assert ctx.ruri == "sip:alice@192.168.1.20:5060"
    assert ctx.dst_uri == "sip:203.0.113.5:40000"


# --- lookup ----------------------------------------------------------------------------------

def test_lookup_sets_the_ruri_and_forks_to_the_others_by_q():
    p = Proxy()
    p.register("<sip:alice@1>;q=0.1", "<sip:alice@2>;q=0.9", "<sip:alice@3>;q=0.5")
    ctx, _ = p.invite()
    assert ctx.rt.vars["rc"] == 1
    assert ctx.ruri == "sip:alice@2" and ctx.ruri_q == 900
    assert [(b.uri, b.q) for b in ctx.branches] == [("sip:alice@3", 500), ("sip:alice@1", 100)]
    p = Proxy(lookup_args=', "no-branches"')
    p.register("<sip:alice@1>", "<sip:alice@2>")
    ctx, _ = p.invite()
    assert ctx.ruri == "sip:alice@1" and ctx.branches == []
    p = Proxy(lookup_args=', "to-branches-only"')
    p.register("<sip:alice@1>", "<sip:alice@2>")
    ctx, _ = p.invite()
    assert ctx.ruri == "sip:alice@example.com"
    assert [b.uri for b in ctx.branches] == ["sip:alice@1", "sip:alice@2"]


def test_lookup_return_codes():
    p = Proxy(lookup_args=', "method-filtering"')
    p.register("<sip:alice@1>", headers="Allow: INVITE, ACK, BYE, CANCEL\n")
    assert p.invite("sip:nobody@example.com")[0].rt.vars["rc"] == -1
    assert p.invite(method="MESSAGE")[0].rt.vars["rc"] == -2
    assert p.invite(method="INVITE")[0].rt.vars["rc"] == 1
    assert p.invite("sip:example.com")[0].rt.vars["rc"] == -3
    p = Proxy(lookup_args=', "m"')   # 2.x letter, same meaning
    p.register("<sip:alice@1>", headers="Allow: INVITE\n")
    assert p.invite(method="MESSAGE")[0].rt.vars["rc"] == -2


def test_lookup_with_an_aor_argument_and_branch_lookup():
    body = """
    if (is_method("REGISTER")) { save("location"); exit; }
    append_branch("sip:bob@example.com");
    $var(rc) = lookup("location", "branch", "sip:alice@example.com");
    """
    p = Proxy(body=body)
    p.register("<sip:alice@1>")
    p.register("<sip:bob@7>", "<sip:bob@8>", user="bob", callid="reg-bob")
    ctx, _ = p.invite("sip:someone@example.com")
    assert ctx.rt.vars["rc"] == 1 and ctx.ruri == "sip:alice@1"
    assert [b.uri for b in ctx.branches] == ["sip:bob@7", "sip:bob@8"]


def test_expired_contacts_are_not_found():
    p = Proxy()
    p.register("<sip:alice@1>")
    p.table().get("alice")[0].expires = int(time.time()) - 1
    assert p.invite()[0].rt.vars["rc"] == -1


# --- Path ------------------------------------------------------------------------------------

def test_path_is_stored_replied_and_routed():
    p = Proxy(save_args=', "path-lazy"')
    _, reply = p.register("<sip:alice@10.1.1.1>",
                          headers="Path: <sip:edge.example.net;lr>\nSupported: path\n")
    assert reply.get("path") == "<sip:edge.example.net;lr>"
    ctx, _ = p.invite()
    assert ctx.ruri == "sip:alice@10.1.1.1" and ctx.dst_uri == "sip:edge.example.net;lr"
    out = build_request(ctx.msg, _hooked_edits(ctx), ruri=ctx.ruri,
                        top_via="SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKx")
    sent = Message.parse(out)
    assert sent.get_all("route") == ["<sip:edge.example.net;lr>"]
    assert [v.host for v in sent.vias] == ["127.0.0.1", "10.0.0.7"]


def _hooked_edits(ctx):
    edits = ctx.get_edits().copy()
    for hook in ctx.rt.outgoing_hooks:
        for where, line in hook(ctx, ctx.rt.sockets[0]):
            edits.add_header(line, *where)
    return edits


def test_path_strict_without_support_is_420_and_no_path_flag_stores_none():
    p = Proxy(save_args=', "p2"')
    _, reply = p.register("<sip:alice@1>", headers="Path: <sip:edge;lr>\n")
    assert (reply.status, reply.get("unsupported")) == (420, "path")
    assert reply.get("path") == "<sip:edge;lr>"
    p = Proxy()
    _, reply = p.register("<sip:alice@1>", headers="Path: <sip:edge;lr>\n")
    assert reply.status == 200 and reply.get("path") is None
    assert p.table().get("alice")[0].path is None


def test_path_received_sets_received_and_nat():
    p = Proxy(save_args=', "path-off,path-received"')
    p.register("<sip:alice@10.1.1.1>",
               headers="Path: <sip:lb.example.net;lr;received=sip:198.51.100.1:5070>\n")
    [c] = p.table().get("alice")
    assert c.received == "sip:198.51.100.1:5070"
    assert c.cflags == 1 << p.rt.bflag_names.bit("NAT")


# --- checks and remove -----------------------------------------------------------------------

def test_is_registered_and_friends():
    body = """
    if (is_method("REGISTER")) { save("location"); exit; }
    $var(reg) = is_registered("location", "sip:alice@example.com");
    $var(from) = is_registered("location");
    $var(ct) = is_contact_registered("location", "sip:alice@example.com", "sip:alice@1");
    $var(ct2) = is_contact_registered("location", "sip:alice@example.com", "sip:alice@9");
    $var(cid) = is_contact_registered("location", "sip:alice@example.com", , "reg-1");
    $avp(ips) = "10.9.9.9";
    $avp(ips) = "1";
    $var(ip) = is_ip_registered("location", "sip:alice@example.com", $avp(ips));
    """
    p = Proxy(body=body)
    p.register("<sip:alice@1>")
    ctx, _ = p.invite()
    v = ctx.rt.vars
    assert (v["reg"], v["from"], v["ct"], v["ct2"], v["cid"], v["ip"]) == (1, -1, 1, -1, 1, 1)


def test_remove_by_contact_and_whole_aor():
    body = """
    if (is_method("REGISTER")) { save("location"); exit; }
    if ($rU == "one") { $var(rc) = remove("location", "sip:alice@example.com", "sip:alice@1"); }
    else { $var(rc) = remove("location", "sip:alice@example.com"); }
    """
    p = Proxy(body=body)
    p.register("<sip:alice@1>", "<sip:alice@2>")
    assert p.invite("sip:one@example.com")[0].rt.vars["rc"] == 1
    assert [c.uri for c in p.table().get("alice")] == ["sip:alice@2"]
    p.invite("sip:all@example.com")
    assert p.table().get("alice") == []
    assert p.invite("sip:all@example.com")[0].rt.vars["rc"] == -1


def test_db_mode_1_registrations_survive_a_restart(tmp_path):
    params = (f'modparam("usrloc", "db_mode", 1)\n'
              f'modparam("usrloc", "db_url", "sqlite://{tmp_path}/loc.db")')
    Proxy(params).register("<sip:alice@10.0.0.9:5062>;q=0.8", "<sip:alice@10.0.0.9:5064>;q=0.2",
                           bflags=["NAT"])
    db.close_all()
    ctx, _ = Proxy(params).invite()
    assert ctx.rt.vars["rc"] == 1 and ctx.ruri == "sip:alice@10.0.0.9:5062"
    assert ctx.bflags == 1 << ctx.rt.bflag_names.bit("NAT")
    assert [b.uri for b in ctx.branches] == ["sip:alice@10.0.0.9:5064"]


# --- flags -----------------------------------------------------------------------------------

def test_save_flag_spellings():
    assert parse_save_flags("memory-only,max-contacts=3,min-expires=10,path-strict,"
                            "matching-mode=<rinstance>") == parse_save_flags("mc3e10p2M<rinstance>")
    f = parse_save_flags("0x05")
    assert f.memory_only and f.socket_header and not f.no_reply
    assert parse_save_flags("p0v").path == "off" and parse_save_flags("p0v").path_received
    for bad in ("no-replies", "c", "x", "matching-mode=2"):
        with pytest.raises(ValueError):
            parse_save_flags(bad)


def test_lookup_flag_spellings():
    a = parse_lookup_flags("no-branches,method-filtering,ua-filtering=/Phone/,case-insensitive")
    b = parse_lookup_flags("bmu/Phone/i")
    assert a.no_branches and a.method_filtering and a.ua_regex.search("myphone 1")
    assert (b.no_branches, b.method_filtering, b.ua_regex.pattern) == (True, True, "Phone")
    with pytest.raises(ValueError):
        parse_lookup_flags("no-such-flag")


def test_unknown_flag_is_a_load_error_with_its_line():
    loaded = load_script(parse_text(BASE.format(
        params="", body='save("location", "no-replies");'), "t.cfg"))
    [err] = [d for d in loaded.diagnostics if d.severity == "error"]
    assert err.pos.line == 9 and "unknown save() flag 'no-replies'" in err.message


def test_1x_nat_flag_is_saved_and_restored_as_a_message_flag():
    body = """
    if (is_method("REGISTER")) { setflag(2); save("location"); exit; }
    lookup("location");
    $var(nat) = isflagset(2);
    """
    p = Proxy('modparam("registrar", "nat_flag", 2)', body=body)
    p.register("<sip:alice@192.168.0.2>")
    assert p.invite()[0].rt.vars["nat"] == 1


def test_edge_proxy_path_received_is_what_the_registrar_reads():
    edge = load_script(parse_text('loadmodule "path.so"\nroute { add_path_received("edge"); }',
                                  "edge.cfg")).rt
    edge.modules["path"].init(edge)
    text = ("REGISTER sip:example.com SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bKe\r\n"
            "From: <sip:alice@example.com>;tag=1\r\nTo: <sip:alice@example.com>\r\n"
            "Call-ID: e1\r\nCSeq: 1 REGISTER\r\nContact: <sip:alice@192.168.1.20>\r\n"
            "Content-Length: 0\r\n\r\n")
    ctx = Context(edge, Message.parse(text.encode()), src=("203.0.113.5", 40000))
    edge.routes[("route", None)](ctx)
    out = Message.parse(build_request(ctx.msg, _hooked_edits(ctx),
                                      top_via="SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKo"))
    assert out.get("path") == ("<sip:edge@127.0.0.1:5060;lr;"
                               "received=sip%3A203.0.113.5%3A40000>")
    registrar = Proxy(save_args=', "path-lazy,path-received"')
    registrar.run(out.raw.decode().replace("\r\n", "\n"), src=("127.0.0.1", 5060))
    [c] = registrar.table().get("alice")
    assert c.received == "sip:203.0.113.5:40000" and c.path == out.get("path")
    ctx, _ = registrar.invite()
    assert ctx.dst_uri == "sip:edge@127.0.0.1:5060;lr;received=sip%3A203.0.113.5%3A40000"


def test_database_failures_are_500_for_save_and_minus_3_for_lookup(tmp_path):
    p = Proxy(f'modparam("usrloc", "db_mode", 3)\n'
              f'modparam("usrloc", "db_url", "sqlite://{tmp_path}/loc.db")')
    p.register("<sip:alice@1>")
    p.rt.apis["usrloc"].db.raw_query("DROP TABLE location")
    ctx, reply = p.register("<sip:alice@2>")
    assert (reply.status, reply.get("p-registrar-error")) == (500, "usrloc_contact_insert failed")
    assert p.invite()[0].rt.vars["rc"] == -3


def test_socket_header_and_user_agent_filtering():
    p = Proxy('modparam("registrar", "sock_hdr_name", "Sock-Info")',
              save_args=', "socket-header"',
              lookup_args=', "ua-filtering=/desk/,case-insensitive"')
    p.register("<sip:alice@1>", headers="Sock-Info: udp:10.10.10.10:5060\n"
                                        "User-Agent: DeskPhone 2\n")
    p.register("<sip:alice@2>", headers="User-Agent: Softphone\n", callid="reg-2")
    by_uri = {c.uri: c for c in p.table().get("alice")}
    assert by_uri["sip:alice@1"].socket == "udp:10.10.10.10:5060"
    assert by_uri["sip:alice@2"].socket == "udp:127.0.0.1:5060"
    ctx, _ = p.invite()
    assert ctx.ruri == "sip:alice@1" and ctx.branches == []


def test_add_sock_hdr_names_the_receiving_socket():
    p = Proxy(body='add_sock_hdr("Sock-Info");')
    ctx, _ = p.invite()
    out = Message.parse(build_request(ctx.msg, ctx.edits))
    assert out.get("sock-info") == "udp:127.0.0.1:5060"

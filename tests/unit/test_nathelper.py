"""nathelper: the NAT tests and the Contact/SDP fixes on a message run through a script."""
from cfgscript import parse_text
from runtime.context import Context, ScriptExit
from runtime.loader import load_script
from runtime.sip.edits import apply
from runtime.sip.message import Message

SDP = ("v=0\r\no=- 1 1 IN IP4 192.168.1.20\r\ns=-\r\nc=IN IP4 192.168.1.20\r\nt=0 0\r\n"
       "m=audio 4000 RTP/AVP 0\r\nc=IN IP4 0.0.0.0\r\n")


def invite(via="192.168.1.20:5060", contact="<sip:alice@192.168.1.20:5062;transport=udp>",
           body=SDP):
    return Message.parse((
        f"INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP {via};branch=z9hG4bK1\r\n"
        f"From: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\n"
        f"Call-ID: c1\r\nCSeq: 1 INVITE\r\nContact: {contact}\r\n"
        f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n{body}").encode())


def run(body, msg, src=("203.0.113.7", 40000), extra=""):
    loaded = load_script(parse_text('loadmodule "nathelper.so"\n' + extra
                                    + f"route {{\n{body}\n}}\n", "t.cfg"))
    assert loaded.ok, [str(d) for d in loaded.diagnostics]
    rt = loaded.rt
    rt.modules["nathelper"].init(rt)
    ctx = Context(rt, msg, src=src)
    try:
        rt.routes[("route", None)](ctx)
    except ScriptExit:
        pass
    return rt.vars, ctx




def test_nat_uac_test_names_and_masks():
    script = "\n".join(
        f'if (nat_uac_test("{t}")) $var({n}) = 1; else $var({n}) = 0;' for n, t in (
            ("pc", "private-contact"), ("ipvia", "diff-ip-src-via"), ("pvia", "private-via"),
            ("psdp", "private-sdp"), ("portvia", "diff-port-src-via"),
            ("ipct", "diff-ip-src-contact"), ("portct", "diff-port-src-contact"),
            ("old", "19"), ("cgn", "private-contact,carrier-grade-nat")))
    v, _ = run(script, invite())
    assert v == {"pc": 1, "ipvia": 1, "pvia": 1, "psdp": 1, "portvia": 1, "ipct": 1,
                 "portct": 1, "old": 1, "cgn": 1}
    public = invite(via="203.0.113.7:40000", contact="<sip:alice@203.0.113.7:40000>",
                    body=SDP.replace("192.168.1.20", "203.0.113.7"))
    v, _ = run(script, public)
    assert set(v.values()) == {0}
    v, _ = run(script, invite(contact="<sip:alice@100.64.1.1>"))
    assert (v["pc"], v["cgn"]) == (1, 1)
    v, _ = run(script, invite(contact="<sip:alice@192.0.0.2>"))
    assert (v["pc"], v["cgn"]) == (0, 1)


def test_fix_nated_contact_changes_header_and_parsed_contact():
    v, ctx = run('fix_nated_contact(";nat=yes"); $var(ct) = $ct;', invite())
    out = apply(ctx.msg, ctx.edits)
    assert out.get("contact") == "<sip:alice@203.0.113.7:40000;transport=udp;nat=yes>"
    assert ctx.msg.contacts[0].uri == "sip:alice@203.0.113.7:40000;transport=udp;nat=yes"


def test_preserve_uri_and_restore_nated_ruri():
    _, ctx = run('fix_nated_contact("", "preserve-uri");', invite())
    contact = apply(ctx.msg, ctx.edits).get("contact")
    assert contact.startswith("<sip:alice@203.0.113.7:40000;transport=udp;org=")
    ruri = contact[1:-1]
    msg = Message.parse(invite().raw.replace(b"INVITE sip:bob@example.com",
                                                f"INVITE {ruri}".encode()))
    v, ctx = run('if (restore_nated_ruri()) $var(r) = 1; else $var(r) = -1;', msg)
    assert v["r"] == 1
    assert ctx.dst_uri == "sip:alice@203.0.113.7:40000;transport=udp"
    assert ctx.ruri == "sip:alice@192.168.1.20:5062;transport=udp"


def test_add_rcv_param_and_fix_nated_register():
    extra = 'modparam("nathelper", "received_avp", "$avp(rcv)")\n'
    v, ctx = run("add_rcv_param(); fix_nated_register();", invite(), extra=extra)
    assert apply(ctx.msg, ctx.edits).get("contact") == (
        '<sip:alice@192.168.1.20:5062;transport=udp>;received="sip:203.0.113.7:40000"')
    assert ctx.avps["rcv"] == ["sip:203.0.113.7:40000"]
    _, ctx = run("add_rcv_param(1);", invite(contact="sip:a@10.0.0.1"), src=("1.2.3.4", 5))
    assert apply(ctx.msg, ctx.edits).get("contact") == "<sip:a@10.0.0.1;received=sip:1.2.3.4:5>"


def test_fix_nated_sdp():
    _, ctx = run("fix_nated_sdp(3);", invite())
    body = apply(ctx.msg, ctx.edits).body.decode()
    assert "c=IN IP4 203.0.113.7\r\n" in body and "c=IN IP4 0.0.0.0\r\n" in body
    assert "o=- 1 1 IN IP4 192.168.1.20" in body
    assert body.endswith("a=oldcip:192.168.1.20\r\na=direction:active\r\n")
    _, named = run('fix_nated_sdp("add-dir-active,rewrite-media-ip");', invite())
    assert apply(named.msg, named.edits).body == apply(ctx.msg, ctx.edits).body
    _, ctx = run('fix_nated_sdp(0x1E, "198.51.100.1", "\\r\\na=x-test");', invite())
    body = apply(ctx.msg, ctx.edits).body.decode()
    assert "o=- 1 1 IN IP4 198.51.100.1" in body and "c=IN IP4 0.0.0.0" not in body
    assert body.endswith("a=nortpproxy:yes\r\na=x-test\r\n")


def test_load_time_errors():
    loaded = load_script(parse_text('loadmodule "nathelper.so"\n'
                                    'route { nat_uac_test("private-everything"); }', "t.cfg"))
    assert any("unknown test 'private-everything'" in d.message for d in loaded.diagnostics)

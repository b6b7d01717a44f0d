"""topology_hiding: the Call-ID and Contact encodings, what an initial request leaves with
(edits checked on the message built for a branch), $TH_callee_callid, sequential-request
matching by the Contact, load checks. (On the wire: tests/scenarios/modules2/0[23].*.)"""
import pytest

from cfgscript import parse_text
from modules import topology_hiding as th
from runtime.context import Context, ScriptExit
from runtime.engine import Socket
from runtime.loader import load_script
from runtime.sip.edits import build_request
from runtime.sip.message import Message

INVITE = (b"INVITE sip:bob@10.0.0.9 SIP/2.0\r\n"
          b"Via: SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bK1\r\n"
          b"Via: SIP/2.0/UDP 10.0.0.7;branch=z9hG4bK0\r\n"
          b"Record-Route: <sip:10.0.0.7;lr>\r\n"
          b"From: <sip:alice@example.com>;tag=ft\r\nTo: <sip:bob@example.com>\r\n"
          b"Call-ID: abc@10.0.0.1\r\nCSeq: 1 INVITE\r\n"
          b"Contact: <sip:alice@10.0.0.1:5062;ob>;+sip.instance=\"x\"\r\n"
          b"Content-Length: 0\r\n\r\n")


def test_encodings_round_trip():
    enc = th.encode_callid("abc@10.0.0.1", "pw", "DLGCH_")
    assert enc.startswith("DLGCH_") and "@" not in enc and "10.0.0.1" not in enc
    assert th.decode_callid(enc, "pw", "DLGCH_") == "abc@10.0.0.1"
    assert th.decode_callid("other", "pw", "DLGCH_") is None
    for scheme in ("base64", "base32"):
        info = th.encode_info({"c": "sip:a@b", "r": ["<sip:x;lr>"]}, "k", scheme)
        assert th.decode_info(info, "k", scheme) == {"c": "sip:a@b", "r": ["<sip:x;lr>"]}
        assert th.decode_info(info, "wrong", scheme) is None


def load(body, params=""):
    loaded = load_script(parse_text(
        'loadmodule "tm.so"\nloadmodule "sipmsgops.so"\nloadmodule "dialog.so"\n'
        f'loadmodule "topology_hiding.so"\n{params}\nroute {{\n{body}\n}}\n', "t.cfg"))
    assert loaded.ok, [str(d) for d in loaded.diagnostics]
    rt = loaded.rt
    rt.sockets[:] = [Socket("udp", "192.0.2.1", 5060)]
    for name in ("tm", "dialog", "topology_hiding"):
        rt.modules[name].init(rt)
    return rt


def run(rt, data=INVITE):
    ctx = Context(rt, Message.parse(data), src=("10.0.0.1", 5062), socket=rt.sockets[0])
    try:
        rt.routes[("route", None)](ctx)
    except ScriptExit:
        pass
    return ctx


def leaving(ctx):
    """The request as a branch would send it (the outgoing hooks applied)."""
    sock = ctx.rt.sockets[0]
    ctx.edits = ctx.get_edits().copy()
    for hook in ctx.rt.outgoing_hooks:
        for where, line in hook(ctx, sock):
            ctx.edits.add_header(line, *where)
    return Message.parse(build_request(ctx.msg, ctx.edits, top_via="SIP/2.0/UDP 192.0.2.1:5060"
                                       ";branch=z9hG4bKout", ruri=ctx.ruri))


def test_initial_request_with_a_dialog():
    rt = load('create_dialog(); topology_hiding("UC"); $var(cid) = $TH_callee_callid;',
              'modparam("topology_hiding", "th_passed_contact_params", "+sip.instance")\n'
              'modparam("topology_hiding", "th_passed_contact_uri_params", "ob")')
    ctx = run(rt)
    out = leaving(ctx)
    assert [str(v) for v in out.vias] == ["SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKout"]
    assert out.get("record-route") is None
    assert out.call_id == rt.vars["cid"] and out.call_id.startswith("DLGCH_")
    assert th.decode_callid(out.call_id, "OpenSIPS", "DLGCH_") == "abc@10.0.0.1"
    did = ctx.local_data["dialog"].did
    assert out.get("contact") == f'<sip:alice@192.0.2.1:5060;ob;did={did}>;+sip.instance="x"'
    rec = th._state["records"][str(did)]
    assert rec.caller.contact == "sip:alice@10.0.0.1:5062;ob"
    assert rec.caller.routes == ["<sip:10.0.0.7;lr>"]
    assert len(ctx.local_data["tm_callbacks"]) >= 2     # the replies get the Vias back


def test_initial_request_without_a_dialog_and_matching():
    rt = load('if (has_totag()) { if (topology_hiding_match()) $var(m) = $ru; '
              'else $var(m) = "none"; exit; } topology_hiding();')
    ctx = run(rt)
    out = leaving(ctx)
    contact = out.contacts[0]
    assert contact.uri.startswith("sip:192.0.2.1:5060;thinfo=")
    # the callee's BYE comes to that Contact: routed back to the caller
    bye = (f"BYE {contact.uri} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bK9\r\n"
           "From: <sip:bob@example.com>;tag=tt\r\nTo: <sip:alice@example.com>;tag=ft\r\n"
           "Call-ID: abc@10.0.0.1\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n").encode()
    ctx2 = run(rt, bye)
    assert rt.vars["m"] == "sip:alice@10.0.0.1:5062;ob"
    assert ctx2.dst_uri == "sip:10.0.0.7;lr"              # through the caller's route set
    out2 = leaving(ctx2)
    assert out2.get("route") == "<sip:10.0.0.7;lr>"
    assert len(out2.vias) == 1
    # a tampered Contact does not match
    run(rt, bye.replace(b"thinfo=", b"thinfo=x"))
    assert rt.vars["m"] == "none"


def test_load_checks():
    loaded = load_script(parse_text('loadmodule "tm.so"\nloadmodule "topology_hiding.so"\n'
                                    'modparam("topology_hiding", "th_contact_encode_scheme", '
                                    '"base16")\nroute { topology_hiding(); }\n'
                                    'failure_route[f] { topology_hiding_match(); }', "t.cfg"))
    msgs = [d.message for d in loaded.diagnostics]
    assert any("must be base64 or base32" in m for m in msgs)
    assert any("cannot be used in failure_route" in m for m in msgs)
    loaded = load_script(parse_text('loadmodule "tm.so"\nloadmodule "topology_hiding.so"\n'
                                    'modparam("topology_hiding", "force_dialog", 1)\n'
                                    'route { topology_hiding(); }', "t.cfg"))
    with pytest.raises(ValueError, match="needs the dialog module"):
        loaded.rt.modules["topology_hiding"].init(loaded.rt)

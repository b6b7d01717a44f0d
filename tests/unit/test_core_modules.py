"""Core functions and the small modules (sipmsgops, textops, uri, cfgutils, maxfwd) on real
parsed messages; what they change is read back from the message as it would be sent."""
import pytest

from cfgscript import parse_text
from runtime.context import Context, ScriptExit
from runtime.loader import load_script
from runtime.sip.edits import build_request
from runtime.sip.message import Message

INVITE = (b"INVITE sip:+15551234@example.com;user=phone SIP/2.0\r\n"
          b"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\r\n"
          b"Max-Forwards: 5\r\n"
          b"From: <sip:bob@biloxi.com>;tag=a1\r\nTo: <sip:alice@example.com>\r\n"
          b"Call-ID: c1\r\nCSeq: 1 INVITE\r\nX-Secret: s3\r\nX-Secret-2: s4\r\n"
          b"Supported: timer, 100rel\r\n"
          b"Content-Type: application/sdp\r\nContent-Length: 16\r\n\r\nv=0\r\no=bob 1 1\r\n")

MODULES = "\n".join(f'loadmodule "{m}.so"' for m in
                    ("sl", "maxfwd", "sipmsgops", "textops", "uri", "cfgutils"))


def run(body, extra=""):
    loaded = load_script(parse_text(f"{MODULES}\n{extra}\nroute {{\n{body}\n}}\n", "t.cfg"))
    assert loaded.ok, [str(d) for d in loaded.diagnostics if d.severity == "error"]
    for mod in loaded.rt.modules.values():
        if mod.init:
            mod.init(loaded.rt)
    ctx = Context(loaded.rt, Message.parse(INVITE), src=("10.0.0.1", 5060))
    try:
        loaded.rt.routes[("route", None)](ctx)
    except ScriptExit:
        pass
    return ctx


def sent(ctx) -> str:
    return build_request(ctx.msg, ctx.edits, ruri=ctx.new_ruri).decode()


def test_header_edits_and_tests():
    ctx = run('if (is_present_hf("X-Secret")) $var(p) = 1;'
              'if (!is_present_hf("X-None")) $var(n) = 1;'
              'append_hf("X-Added: 1\\r\\n");'
              'insert_hf("X-First: 1\\r\\n");'
              'append_hf("X-After-CSeq: 1\\r\\n", "CSeq");'
              'remove_hf("X-Secret");'
              'remove_hf_re("^X-Secret-[0-9]$");'
              'if (is_present_hf("X-Added")) $var(visible) = 1;')
    v = ctx.rt.vars
    assert (v["p"], v["n"]) == (1, 1) and "visible" not in v  # edits are not visible yet
    out = sent(ctx)
    lines = out.split("\r\n")
    assert "X-Secret" not in out
    assert lines.index("X-First: 1") < lines.index("From: <sip:bob@biloxi.com>;tag=a1")
    assert lines[lines.index("CSeq: 1 INVITE") + 1] == "X-After-CSeq: 1"
    assert "X-Added: 1" in lines


def test_methods_totag_body():
    ctx = run('if (is_method("REGISTER|INVITE")) $var(m) = 1;'
              'if (!has_totag()) $var(t) = 1;'
              'if (has_body("application/sdp")) $var(b) = 1;'
              'if (list_hdr_has_option("Supported", "100rel")) $var(o) = 1;')
    assert ctx.rt.vars == {"m": 1, "t": 1, "b": 1, "o": 1}


def test_ruri_params_and_e164():
    ctx = run('if (ruri_has_param("user", "phone")) $var(u) = 1;'
              'ruri_del_param("user"); ruri_add_param("lr");'
              'if (is_uri_user_e164("$ru")) $var(e) = 1;')
    assert ctx.rt.vars == {"u": 1, "e": 1}
    assert ctx.ruri == "sip:+15551234@example.com;lr"


def test_uri_rewriting_core_functions():
    ctx = run('strip(2); prefix("00"); sethost("gw.example.net"); setport("5070");')
    assert ctx.ruri == "sip:005551234@gw.example.net:5070;user=phone"  # "+1" stripped
    ctx = run('seturi("sip:carol@chicago.com"); revert_uri();')
    assert ctx.ruri == "sip:+15551234@example.com;user=phone"


def test_maxfwd():
    ctx = run('$var(r) = mf_process_maxfwd_header(10);'
              'if (is_maxfwd_lt(6)) $var(lt) = 1;')
    assert ctx.rt.vars == {"r": 1, "lt": 1}
    assert "Max-Forwards: 4\r\n" in sent(ctx)


def test_textops_search_replace_subst():
    ctx = run('if (search("^To:.*alice")) $var(s) = 1;'
              'if (search_body("o=bob")) $var(b) = 1;'
              'replace("alice@", "carol@");'
              'subst("/^(From:.*)bob/\\1robert/");'
              'subst_user("/^\\+1(.*)$/\\1/");'
              'replace_body("o=bob", "o=rob");')
    assert ctx.rt.vars == {"s": 1, "b": 1}
    out = sent(ctx)
    assert "To: <sip:carol@example.com>" in out and "From: <sip:robert@biloxi.com>" in out
    assert out.endswith("o=rob 1 1\r\n") and "Content-Length: 16" in out
    assert ctx.ruri.startswith("sip:5551234@")


def test_uri_module_old_names():
    ctx = run('if (uri_param("user", "phone")) $var(p) = 1; if (!has_totag()) $var(t) = 1;')
    assert ctx.rt.vars == {"p": 1, "t": 1}


def test_cfgutils_shared_vars_and_random():
    ctx = run('$shv(count) = $shv(count) + 1; $var(r) = $RANDOM;'
              'if (rand_event(100)) $var(always) = 1;'
              'if (!rand_event(0)) $var(never) = 1;'
              '$var(year) = $ctime(year);',
              'modparam("cfgutils", "shvset", "count=i:41")')
    v = ctx.rt.vars
    assert ctx.rt.shvars["count"] == 42
    assert isinstance(v["r"], int) and v["always"] == 1 and v["never"] == 1
    assert v["year"] > 2000


def test_flags_and_branch_functions():
    ctx = run('setbflag("NAT"); if (isbflagset("NAT")) $var(b) = 1;'
              'append_branch("sip:a@x.com"); append_branch("sip:b@y.com", "0.5");'
              'remove_branch(1);')
    assert ctx.rt.vars["b"] == 1
    assert [b.uri for b in ctx.branches] == ["sip:b@y.com"] and ctx.branches[0].q == 500


@pytest.mark.parametrize("call,error", [
    ('sl_send_reply(200);', "needs argument 2"),
    ('subst("/a/b");', "bad substitution"),
    ('is_present_hf("Bad Name");', "invalid header name"),
    ('setflag("A"); setflag();', "needs argument 1"),
])
def test_load_time_argument_errors(call, error):
    loaded = load_script(parse_text(f"{MODULES}\nroute {{ {call} }}\n", "t.cfg"))
    assert any(error in d.message for d in loaded.diagnostics if d.severity == "error")

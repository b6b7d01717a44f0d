"""uac: From/To replacement in the request, the Record-Route parameter that restores it, and
the load-time checks (live behaviour: tests/auth/test_uac_live.py)."""
from cfgscript import parse_text
from runtime.context import Context, ScriptExit
from runtime.loader import load_script
from runtime.sip.edits import apply
from runtime.sip.message import Message

INVITE = (b"INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n"
          b"From: \"Alice\" <sip:alice@example.com>;tag=f1\r\nTo: <sip:bob@example.com>\r\n"
          b"Call-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")


def run(body, msg=INVITE):
    loaded = load_script(parse_text('loadmodule "tm.so"\nloadmodule "rr.so"\n'
                                    'loadmodule "uac.so"\nmodparam("uac", "restore_passwd", "k")\n'
                                    f"route {{\n{body}\n}}\n", "t.cfg"))
    assert loaded.ok, [str(d) for d in loaded.diagnostics]
    rt = loaded.rt
    rt.modules["uac"].init(rt)
    ctx = Context(rt, Message.parse(msg))
    try:
        rt.routes[("route", None)](ctx)
    except ScriptExit:
        pass
    return ctx


def test_replace_from_and_to_keep_tags():
    ctx = run('record_route(); uac_replace_from("sip:anon@anonymous.invalid"); '
              'uac_replace_to("Bobby", "sip:robert@example.com");')
    out = apply(ctx.msg, ctx.edits)
    assert out.get("from") == '"Alice" <sip:anon@anonymous.invalid>;tag=f1'
    assert out.get("to") == "Bobby <sip:robert@example.com>"
    params = ctx.local_data["rr"]["params"]
    assert [p.split("=")[0] for p in params] == ["vsf", "vst"]
    assert len(ctx.local_data["tm_callbacks"]) == 2      # restore in the replies


def test_the_stored_value_gives_either_uri_back():
    from modules import uac
    run("exit;")   # init the module's key
    value = uac._encode("sip:alice@example.com", "sip:anon@anonymous.invalid")
    assert uac._decode(value, "sip:anon@anonymous.invalid") == "sip:alice@example.com"
    assert uac._decode(value, "sip:alice@example.com") == "sip:anon@anonymous.invalid"


def test_sequential_requests_restored_by_route_parameter():
    """The caller's BYE has the original From, the callee's BYE the replaced URI in To."""
    from modules import uac
    run("exit;")
    value = uac._encode("sip:alice@example.com", "sip:anon@anonymous.invalid").encode()
    route = b"Route: <sip:127.0.0.1;lr;ftag=f1;vsf=" + value + b">\r\n"
    head = (b"BYE sip:x@10.0.0.9 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK2\r\n"
            + route)
    tail = b"Call-ID: c1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    caller = (head + b"From: \"Alice\" <sip:alice@example.com>;tag=f1\r\n"
              b"To: <sip:bob@example.com>;tag=t9\r\n" + tail)
    callee = (head + b"From: <sip:bob@example.com>;tag=t9\r\n"
              b"To: \"Alice\" <sip:anon@anonymous.invalid>;tag=f1\r\n" + tail)
    body = "if (uac_restore_from()) $var(r) = 1; else $var(r) = -1;"
    ctx = run(body, caller)
    assert ctx.rt.vars["r"] == 1
    assert apply(ctx.msg, ctx.edits).get("from") == '"Alice" <sip:anon@anonymous.invalid>;tag=f1'
    ctx = run(body, callee)
    assert ctx.rt.vars["r"] == 1
    assert apply(ctx.msg, ctx.edits).get("to") == '"Alice" <sip:alice@example.com>;tag=f1'
    ctx = run("if (uac_restore_to()) $var(r) = 1; else $var(r) = -1;", caller)
    assert ctx.rt.vars["r"] == -1                      # no vst parameter


def test_load_checks():
    loaded = load_script(parse_text('loadmodule "tm.so"\nloadmodule "uac.so"\n'
                                    'modparam("uac", "restore_mode", "sometimes")\n'
                                    'route { exit; }\nfailure_route[f] { uac_auth("MD4"); }',
                                    "t.cfg"))
    msgs = [d.message for d in loaded.diagnostics if d.severity == "error"]
    assert any("must be none, manual or auto" in m for m in msgs)
    assert any("unsupported algorithm 'MD4'" in m for m in msgs)


def test_old_parameter_names():
    loaded = load_script(parse_text('loadmodule "tm.so"\nloadmodule "uac.so"\n'
                                    'modparam("uac", "from_restore_mode", 1)\n'
                                    'modparam("uac", "from_passwd", "pw")\n'
                                    'modparam("uac", "rr_store_param", "vsx")\n'
                                    'route { exit; }', "t.cfg"))
    assert loaded.ok
    rt = loaded.rt
    rt.modules["uac"].init(rt)
    p = rt.modparams["uac"]
    assert (p["restore_mode"], p["restore_passwd"], p["rr_from_store_param"]) == (
        "manual", "pw", "vsx")

"""uac_redirect: contacts of 3xx replies into branches — limits per reply and in total,
q order, deny/accept filters (module defaults and per-call ones with their reset flags),
accounting through acc, load checks. (On the wire: tests/scenarios/modules2.)"""
from types import SimpleNamespace

from cfgscript import parse_text
from runtime.context import Context, ScriptExit
from runtime.loader import load_script
from runtime.sip.message import Message

INVITE = (b"INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n"
          b"From: <sip:alice@example.com>;tag=f1\r\nTo: <sip:bob@example.com>\r\n"
          b"Call-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")


def reply(code, contacts):
    head = (f"SIP/2.0 {code} Moved\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n"
            f"From: <sip:alice@example.com>;tag=f1\r\nTo: <sip:bob@example.com>;tag=t\r\n"
            f"Call-ID: c1\r\nCSeq: 1 INVITE\r\n")
    head += "".join(f"Contact: {c}\r\n" for c in contacts)
    return Message.parse((head + "Content-Length: 0\r\n\r\n").encode())


def tx_with(*replies):
    return SimpleNamespace(branches=[SimpleNamespace(status=r.status, reply=r) for r in replies])


def run(body, tx, params=""):
    loaded = load_script(parse_text(
        'loadmodule "tm.so"\nloadmodule "acc.so"\nloadmodule "uac_redirect.so"\n'
        f'{params}\nroute {{ exit; }}\nfailure_route[r] {{\n{body}\n}}\n', "t.cfg"))
    assert loaded.ok, [str(d) for d in loaded.diagnostics]
    rt = loaded.rt
    rt.modules["uac_redirect"].init(rt)
    rt.modules["acc"].init(rt)
    import io
    from runtime.log import Logger
    rt.log = Logger(stream=io.StringIO())
    ctx = Context(rt, Message.parse(INVITE))
    ctx.tx = tx
    tx.ctx = ctx                    # tm runs failure routes on the request's context
    try:
        rt.routes[("failure_route", "r")](ctx)
    except ScriptExit:
        pass
    return ctx


TWO_REPLIES = (
    reply(302, ["<sip:low@a.example>;q=0.1", "<sip:high@a.example>;q=0.9",
                "<sip:mid@a.example>"]),
    reply(486, ["<sip:busy@b.example>"]),
    reply(301, ["<sip:x@c.example>;q=0.5, <sip:y@c.example>;q=0.7"]))


def test_all_contacts_by_q():
    ctx = run('if (get_redirects("*")) $var(r) = 1;', tx_with(*TWO_REPLIES))
    assert [(b.uri, b.q) for b in ctx.branches] == [
        ("sip:mid@a.example", 1000), ("sip:high@a.example", 900), ("sip:low@a.example", 100),
        ("sip:y@c.example", 700), ("sip:x@c.example", 500)]
    assert ctx.rt.vars["r"] == 1


def test_limits():
    ctx = run('get_redirects("3:1");', tx_with(*TWO_REPLIES))
    assert [b.uri for b in ctx.branches] == ["sip:mid@a.example", "sip:y@c.example"]
    ctx = run('get_redirects("4:*");', tx_with(*TWO_REPLIES))
    assert len(ctx.branches) == 4
    ctx = run('get_redirects(2);', tx_with(*TWO_REPLIES))          # 3.x: an integer
    assert [b.uri for b in ctx.branches] == ["sip:mid@a.example", "sip:high@a.example"]


def test_filters():
    ctx = run('set_deny_filter(".*@a\\.example", ""); get_redirects("*");',
              tx_with(*TWO_REPLIES))
    assert [b.uri for b in ctx.branches] == ["sip:y@c.example", "sip:x@c.example"]
    # default deny, an accept filter lets one through
    ctx = run('set_accept_filter("^sip:high", "reset_all"); get_redirects("*");',
              tx_with(*TWO_REPLIES), 'modparam("uac_redirect", "default_filter", "deny")')
    assert [b.uri for b in ctx.branches] == ["sip:high@a.example"]
    # the module's deny filter, reset per call
    params = 'modparam("uac_redirect", "deny_filter", "@c\\.example")'
    ctx = run('get_redirects("*");', tx_with(*TWO_REPLIES), params)
    assert {b.uri for b in ctx.branches} == {"sip:mid@a.example", "sip:high@a.example",
                                             "sip:low@a.example"}
    ctx = run('set_deny_filter("^sip:low", "reset_default"); get_redirects("*");',
              tx_with(*TWO_REPLIES), params)
    assert "sip:y@c.example" in [b.uri for b in ctx.branches]
    assert "sip:low@a.example" not in [b.uri for b in ctx.branches]


def test_nothing_to_follow():
    ctx = run('if (!get_redirects("*")) $var(r) = $rc;', tx_with(reply(486, ["<sip:a@b>"])))
    assert ctx.rt.vars["r"] == -1 and ctx.branches == []


def test_only_the_new_round_is_looked_at():
    tx = tx_with(*TWO_REPLIES)
    ctx = run('get_redirects("*");', tx)
    assert len(ctx.branches) == 5
    ctx = run('if (!get_redirects("*")) $var(r) = -1;', tx)   # nothing new since then
    assert ctx.rt.vars["r"] == -1


def test_accounting_each_redirect():
    ctx = run('get_redirects("*", "Redirected");', tx_with(TWO_REPLIES[0]))
    assert len(ctx.branches) == 3
    log = ctx.rt.log.stream.getvalue()
    assert log.count("Redirected") == 3, log
    assert ctx.ruri == "sip:bob@example.com"          # the R-URI is given back


def test_load_checks():
    loaded = load_script(parse_text(
        'loadmodule "tm.so"\nloadmodule "uac_redirect.so"\n'
        'modparam("uac_redirect", "default_filter", "maybe")\nroute { exit; }\n'
        'failure_route[r] { get_redirects("x:y"); set_deny_filter("a", "reset_some"); }',
        "t.cfg"))
    msgs = [d.message for d in loaded.diagnostics]
    assert any("must be accept or deny" in m for m in msgs)
    assert any("bad limit 'x:y'" in m for m in msgs)
    assert any("unknown flag 'reset_some'" in m for m in msgs)
    loaded = load_script(parse_text('loadmodule "tm.so"\nloadmodule "uac_redirect.so"\n'
                                    'route { get_redirects("*"); }', "t.cfg"))
    assert any("cannot be used in route" in m.message for m in loaded.diagnostics)

"""exec: real /bin/sh commands — output into variables and AVPs, stdin, the environment
(setvars, the env AVP), exit status, time_to_kill, and the 1.x exec_avp/exec_dset/exec_msg."""
import time

from cfgscript import parse_text
from runtime.context import Context, ScriptExit
from runtime.loader import load_script
from runtime.sip.message import Message

MSG = (b"INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKab\r\n"
       b"From: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\n"
       b"Call-ID: c1\r\nCSeq: 1 INVITE\r\nX-Account: 42\r\nContent-Length: 0\r\n\r\n")


def run(body, params=""):
    loaded = load_script(parse_text(f'loadmodule "exec.so"\n{params}\nroute {{\n{body}\n}}\n',
                                    "t.cfg"))
    assert loaded.ok, [str(d) for d in loaded.diagnostics]
    rt = loaded.rt
    rt.modules["exec"].init(rt)
    ctx = Context(rt, Message.parse(MSG), src=("10.0.0.1", 5060))
    try:
        rt.routes[("route", None)](ctx)
    except ScriptExit:
        pass
    return rt.vars, ctx


def test_output_stdin_env_and_status():
    v, ctx = run("""
        exec("printf 'a\\nb\\n'", , $var(out));
        $var(rc1) = $rc;
        exec("printf 'x\\ny\\n'", , $avp(lines));
        exec("tr a-z A-Z", "hello $rU", $var(up));
        $avp(env) = "first"; $avp(env) = "second";
        exec("echo $$OSIPS_EXEC_0-$$OSIPS_EXEC_1", , $var(env), , $avp(env));
        exec("echo oops >&2; exit 3", , $var(o), $var(err));
        $var(rc2) = $rc;
    """)
    assert v["out"] == "a\nb\n" and v["rc1"] == 1
    assert ctx.avps["lines"] == ["x", "y"]
    assert v["up"] == "HELLO BOB"
    assert v["env"].strip() == "second-first"      # OSIPS_EXEC_0 is the newest value
    assert v["err"] == "oops\n" and v["rc2"] == -1


def test_setvars_gives_the_request_to_the_command():
    v, _ = run('exec("echo $$SIP_HF_X_ACCOUNT $$SIP_USER $$SIP_SRCIP $$SIP_TID", , $var(e));',
               'modparam("exec", "setvars", 1)')
    assert v["e"].split() == ["42", "bob", "10.0.0.1", "z9hG4bKab"]


def test_time_to_kill():
    start = time.monotonic()
    v, _ = run('exec("sleep 5; echo late", , $var(o)); $var(rc) = $rc;',
               'modparam("exec", "time_to_kill", 1)')
    assert time.monotonic() - start < 4
    assert v["rc"] == -1


def test_no_output_wanted_does_not_wait(tmp_path):
    mark = tmp_path / "ran"
    start = time.monotonic()
    v, _ = run(f'exec("sleep 1; touch {mark}"); $var(rc) = $rc;')
    assert time.monotonic() - start < 0.9 and v["rc"] == 1
    for _ in range(40):
        if mark.exists():
            break
        time.sleep(0.1)
    assert mark.exists()


def test_old_exec_avp_dset_msg_getenv(tmp_path, monkeypatch):
    monkeypatch.setenv("CFG_TEST_VALUE", "from-env")
    dump = tmp_path / "msg"
    dset = tmp_path / "dset.sh"
    dset.write_text('#!/bin/sh\necho "sip:one@${1#*@}"\necho sip:two@b.org\n')
    dset.chmod(0o755)
    v, ctx = run(f"""
        exec_avp("printf '7\\n8\\n9\\n'", "$avp(credit) $avp(model)");
        exec_msg("cat > {dump}");
        exec_getenv("CFG_TEST_VALUE", $avp(e));
        exec_dset("{dset}");
        $var(dset) = $rc;
    """)
    assert ctx.avps["credit"] == ["7"] and ctx.avps["model"] == ["8"] and ctx.avps["3"] == ["9"]
    assert dump.read_bytes() == MSG
    assert ctx.avps["e"] == ["from-env"]
    assert v["dset"] == 1
    assert ctx.ruri == "sip:one@example.com"
    assert [b.uri for b in ctx.branches] == ["sip:two@b.org"]


def test_load_checks():
    loaded = load_script(parse_text('loadmodule "exec.so"\nroute { exec_avp("x", "$var(a)"); }',
                                    "t.cfg"))
    assert any("is not an AVP" in d.message for d in loaded.diagnostics)

"""sst: sstCheckMin() and what a flagged dialog does to the INVITE, its 2xx and the dialog's
lifetime (RFC 4028), through a script's main route; nothing goes on the network."""
import time

import pytest
from cfgscript import parse_text

from runtime.context import Context, ScriptExit
from runtime.loader import load_script
from runtime.sip.message import Message

BASE = """
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "dialog.so"
loadmodule "sst.so"
modparam("sst", "sst_flag", "SST")
modparam("sst", "min_se", 120)
{params}
route {{
    {body}
}}
"""


class Loop:
    def call_later(self, delay, fn, *args):
        return _Handle()

    def call_at(self, when, fn, *args):
        return _Handle()

    def call_soon(self, fn, *args):
        pass

    @staticmethod
    def time():
        return time.monotonic()


class _Handle:
    def cancel(self):
        pass


class Wire:
    def __init__(self):
        self.sent = []
        self.loop = Loop()
        self.reply_hook = None
        self.request_hook = None

    def send(self, sock, addr, data):
        self.sent.append((addr, Message.parse(data)))
        return True


def proxy(body, params=""):
    loaded = load_script(parse_text(BASE.format(body=body, params=params), "t.cfg"))
    errors = [str(d) for d in loaded.diagnostics if d.severity == "error"]
    assert not errors, errors
    rt = loaded.rt
    rt.server = Wire()
    for mod in rt.modules.values():
        if mod.init:
            mod.init(rt)
    for mod in rt.modules.values():
        if mod.child_init:
            mod.child_init(rt)
    return rt


def run(rt, headers="", n=[0]):
    n[0] += 1
    text = (f"INVITE sip:bob@10.0.0.2:5070 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 10.0.0.9:5062;branch=z9hG4bK-s{n[0]}\r\n"
            f"From: <sip:alice@example.com>;tag=a{n[0]}\r\nTo: <sip:bob@example.com>\r\n"
            f"Call-ID: sst-{n[0]}\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@10.0.0.9:5062>\r\n"
            f"{headers}Content-Length: 0\r\n\r\n")
    ctx = Context(rt, Message.parse(text.encode()), src=("10.0.0.9", 5062),
                  socket=rt.sockets[0])
    before = len(rt.server.sent)
    try:
        rt.routes[("route", None)](ctx)
    except ScriptExit:
        pass
    return ctx, [m for _, m in rt.server.sent[before:]]


CHECK = '$var(r) = sstCheckMin(1); if ($var(r) == 1) exit; t_relay();'


@pytest.mark.parametrize("headers,too_small", [
    ("", False),                                              # no Session-Expires
    ("Session-Expires: 60\r\n", True),
    ("Session-Expires: 1800\r\nMin-SE: 120\r\n", False),
    ("Session-Expires: 1800\r\n", True),                      # Min-SE absent: 90
    ("x: 1800;refresher=uac\r\nMin-SE: 200\r\n", False),      # compact form
    ("Session-Expires: 100\r\nMin-SE: 200\r\n", True),
])
def test_sstcheckmin(headers, too_small):
    rt = proxy(CHECK)
    ctx, sent = run(rt, headers)
    replies = [m for m in sent if not m.is_request and m.status != 100]
    if too_small:
        [r] = replies
        assert (r.status, r.reason) == (422, "Session Timer Too Small")
        assert r.get("min-se") == "120"
        assert not [m for m in sent if m.is_request]
    else:
        assert not replies
        [fwd] = [m for m in sent if m.is_request]
        assert fwd.method == "INVITE"


def test_sstcheckmin_without_reply_and_bad_header():
    rt = proxy('if (sstCheckMin(0)) { sl_send_reply(499, "x"); exit; } t_relay();')
    _, sent = run(rt, "Session-Expires: 60\r\n")
    [r] = [m for m in sent if not m.is_request and m.status != 100]
    assert r.status == 499                                    # the script's own reply
    rt = proxy('if (sstCheckMin(1)) { exit; } $var(after) = 1;')
    ctx, sent = run(rt, "Session-Expires: soon\r\n")          # unreadable: drop (0)
    assert not sent


DIALOG = 'setflag(SST); create_dialog(); t_relay();'


def test_flagged_dialog_rejects_a_small_interval_from_a_timer_capable_caller():
    rt = proxy(DIALOG)
    _, sent = run(rt, "Supported: timer\r\nSession-Expires: 60\r\nMin-SE: 60\r\n")
    [r] = [m for m in sent if not m.is_request and m.status != 100]
    assert r.status == 422 and r.get("min-se") == "120"
    assert not [m for m in sent if m.is_request]


def test_flagged_dialog_raises_min_se_for_a_caller_without_timers():
    rt = proxy(DIALOG)
    ctx, sent = run(rt, "Session-Expires: 60\r\nMin-SE: 60\r\n")
    [fwd] = [m for m in sent if m.is_request]
    assert fwd.get_all("min-se") == ["120"] and fwd.get("session-expires") == "60"
    assert ctx.local_data["dialog"].timeout == 120


def test_flagged_dialog_asks_for_timers_and_fixes_the_2xx():
    rt = proxy(DIALOG, 'modparam("sst", "sst_interval", 300)')
    ctx, sent = run(rt, "Supported: timer\r\n")
    [fwd] = [m for m in sent if m.is_request]
    assert fwd.get("session-expires") == "300"
    dlg = ctx.local_data["dialog"]
    assert dlg.timeout == 300 and dlg.vals["sst_interval"] == "300"
    # the callee answers without Session-Expires: the caller is told to refresh
    tx = ctx.tx
    [branch] = tx.branches
    ok = Message.parse((f"SIP/2.0 200 OK\r\nVia: {fwd.get_all('via')[0]}\r\n"
                        f"Via: {fwd.get_all('via')[1]}\r\n"
                        f"From: {fwd.get('from')}\r\nTo: {fwd.get('to')};tag=b1\r\n"
                        f"Call-ID: {fwd.call_id}\r\nCSeq: 1 INVITE\r\n"
                        "Contact: <sip:bob@10.0.0.2:5070>\r\nContent-Length: 0\r\n\r\n").encode())
    before = len(rt.server.sent)
    rt.server.reply_hook(Context(rt, ok, src=("10.0.0.2", 5070), socket=rt.sockets[0]))
    [(_, up)] = rt.server.sent[before:]
    assert up.status == 200
    assert up.get("session-expires") == "300;refresher=uac"
    assert up.get("require") == "timer"


def test_unflagged_and_not_invite_untouched():
    rt = proxy('create_dialog(); t_relay();')
    _, sent = run(rt, "Supported: timer\r\nSession-Expires: 60\r\n")
    [fwd] = [m for m in sent if m.is_request]
    assert fwd.get("session-expires") == "60" and fwd.get("min-se") is None


def test_sst_flag_is_required():
    loaded = load_script(parse_text('loadmodule "tm.so"\nloadmodule "dialog.so"\n'
                                    'loadmodule "sst.so"\nroute { exit; }', "t.cfg"))
    assert loaded.ok                       # -C cannot know; the start-up refuses it
    with pytest.raises(ValueError, match="sst_flag"):
        loaded.rt.modules["sst"].init(loaded.rt)
    loaded = load_script(parse_text('loadmodule "sst.so"\nroute { exit; }', "t.cfg"))
    assert any("needs module 'dialog'" in str(d) for d in loaded.diagnostics)

"""nat_traversal keepalives on real sockets: a NATed UA registers (or calls) through the
proxy, and the proxy pings its public address every keepalive_interval while the
registration (or the dialog) lasts; the table survives a restart in the state file."""
import re
import socket
import time
import uuid

from runtime.testing import addresses

SCRIPT = r"""
log_level=3
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "rr.so"
loadmodule "sipmsgops.so"
loadmodule "dialog.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "nat_traversal.so"
modparam("registrar", "min_expires", 1)
modparam("nat_traversal", "keepalive_interval", 1)
modparam("nat_traversal", "keepalive_method", "{method}")
modparam("nat_traversal", "keepalive_from", "sip:pinger@example.net")
modparam("nat_traversal", "keepalive_extra_headers", "User-Agent: cfgscript-test\r\n")
modparam("nat_traversal", "keepalive_state_file", "{state}")
route {{
    if (client_nat_test(7)) {{
        force_rport();
        if (is_method("REGISTER") || (is_method("INVITE") && !has_totag()))
            nat_keepalive();
        fix_contact();
        xlog("L_NOTICE", "natted $rm from $source_uri, contact now $ct\n");
    }}
    if (is_method("REGISTER")) {{
        xlog("L_NOTICE", "REGISTER: kept alive through $keepalive.socket($source_uri)\n");
        save("location");
        exit;
    }}
    if (has_totag()) {{
        if (loose_route()) {{ t_relay(); exit; }}
        if (is_method("ACK")) {{ if (t_check_trans()) t_relay(); exit; }}
        sl_send_reply(404, "Not here");
        exit;
    }}
    record_route();
    t_relay();
}}
"""


class UA:
    """A SIP endpoint on a plain UDP socket, pretending to sit behind a NAT (private
    addresses in its Via and Contact)."""

    def __init__(self, ip):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ip, 0))
        self.ip, self.port = self.sock.getsockname()
        self.backlog = []

    def send(self, text, to):
        self.sock.sendto(text.replace("\n", "\r\n").encode(), to)

    def recv(self, timeout=3.0, want=None):
        """The next message (matching `want`, a regex on the first line), or None."""
        for i, m in enumerate(self.backlog):
            if want is None or re.match(want, m):
                return self.backlog.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65535).decode()
            except socket.timeout:
                return None
            if want is None or re.match(want, data):
                return data
            self.backlog.append(data)

    def answer(self, request, code=200, extra=""):
        hdrs = [line for line in request.split("\r\n")
                if re.match(r"(?i)(via|from|to|call-id|cseq|record-route):", line)]
        out = [f"SIP/2.0 {code} OK"]
        for h in hdrs:
            if h.lower().startswith("to:") and ";tag=" not in h:
                h += ";tag=callee1"
            out.append(h)
        out += [f"Contact: <sip:bob@{self.ip}:{self.port}>", "Content-Length: 0", "", ""]
        self.sock.sendto(("\r\n".join(out) + extra).encode(), _source(request))


def _source(request):
    """Where a request came from: its top Via (our proxy)."""
    m = re.search(r"(?im)^via: SIP/2.0/UDP ([^:;\s]+):(\d+)", request)
    return m.group(1), int(m.group(2))


def header(msg, name):
    m = re.search(rf"(?im)^{name}:\s*(.*?)\r?$", msg)
    return m.group(1) if m else None


def register(ua, proxy, expires=60):
    call_id = uuid.uuid4().hex
    ua.send(f"""REGISTER sip:{proxy.address} SIP/2.0
Via: SIP/2.0/UDP 10.9.8.7:5999;rport;branch=z9hG4bK{uuid.uuid4().hex[:10]}
From: <sip:alice@example.com>;tag=a1
To: <sip:alice@example.com>
Call-ID: {call_id}
CSeq: 1 REGISTER
Contact: <sip:alice@10.9.8.7:5999>
Expires: {expires}
Max-Forwards: 70
Content-Length: 0

""", (proxy.address, proxy.port))
    return ua.recv(want=r"SIP/2.0 ")


def pings(ua, method, n, timeout=4.0):
    got = []
    for _ in range(n):
        m = ua.recv(timeout, want=rf"{method} ")
        if m is None:
            break
        got.append(m)
        ua.answer(m)
    return got


def check_ping(msg, ua, proxy, method):
    assert msg.startswith(f"{method} sip:{ua.ip}:{ua.port} SIP/2.0\r\n"), msg
    assert header(msg, "From").startswith("sip:pinger@example.net;tag=")
    assert header(msg, "To") == f"sip:{ua.ip}:{ua.port}"
    assert header(msg, "CSeq") == f"1 {method}"
    assert header(msg, "User-Agent") == "cfgscript-test"
    assert header(msg, "Via") == f"SIP/2.0/UDP {proxy.address}:{proxy.port};branch=0"
    assert (header(msg, "Event") == "keep-alive") == (method == "NOTIFY")


def test_registered_endpoint_is_pinged_and_restored(cfgscript_proxy, tmp_path):
    state = tmp_path / "keepalive_state"
    proxy = cfgscript_proxy(SCRIPT.format(method="OPTIONS", state=state))
    ua = UA(addresses.allocate().uac_ip)
    reply = register(ua, proxy)
    assert reply is not None and reply.startswith("SIP/2.0 200"), reply
    # the binding stored is the public address (fix_contact)
    assert f"sip:alice@{ua.ip}:{ua.port}" in header(reply, "Contact")
    got = pings(ua, "OPTIONS", 2)
    assert len(got) == 2, proxy.log[-2000:]
    for m in got:
        check_ping(m, ua, proxy, "OPTIONS")
    assert f"natted REGISTER from sip:{ua.ip}:{ua.port}" in proxy.log
    assert "REGISTER: kept alive through <null>" in proxy.log   # not yet
    assert register(ua, proxy).startswith("SIP/2.0 200")           # a refresh: known now
    assert f"kept alive through udp:{proxy.address}:{proxy.port}" in proxy.log
    assert proxy.stop() == 0
    lines = state.read_text().splitlines()
    assert lines[0].startswith("# Automatically generated file")
    uri, sock, rtime, stime = lines[1].split()
    assert (uri, sock, stime) == (f"sip:{ua.ip}:{ua.port}", f"udp:{proxy.address}:"
                                  f"{proxy.port}", "0")
    assert 50 < int(rtime) - time.time() <= 61
    # a restart on the same socket keeps pinging without a new REGISTER
    again = cfgscript_proxy(SCRIPT.format(method="OPTIONS", state=state),
                            sockets=proxy.sockets)
    got = pings(ua, "OPTIONS", 1)
    assert len(got) == 1, again.log[-2000:]


def test_expired_registration_stops_the_pings(cfgscript_proxy, tmp_path):
    proxy = cfgscript_proxy(SCRIPT.format(method="NOTIFY", state=tmp_path / "ka"))
    ua = UA(addresses.allocate().uac_ip)
    reply = register(ua, proxy, expires=2)
    assert reply.startswith("SIP/2.0 200")
    got = pings(ua, "NOTIFY", 1)
    assert got and header(got[0], "Event") == "keep-alive"
    check_ping(got[0], ua, proxy, "NOTIFY")
    time.sleep(2.5)
    ua.backlog.clear()
    pings(ua, "NOTIFY", 3, timeout=0.5)   # drain what was on its way
    assert pings(ua, "NOTIFY", 1, timeout=2.5) == []


def test_caller_is_pinged_while_the_dialog_lasts(cfgscript_proxy, tmp_path):
    proxy = cfgscript_proxy(SCRIPT.format(method="NOTIFY", state=tmp_path / "ka"))
    roles = addresses.allocate()
    caller, callee = UA(roles.uac_ip), UA(roles.uas_ip)
    call_id = uuid.uuid4().hex
    to = (proxy.address, proxy.port)
    caller.send(f"""INVITE sip:bob@{callee.ip}:{callee.port} SIP/2.0
Via: SIP/2.0/UDP 10.9.8.7:5999;rport;branch=z9hG4bKinv{call_id[:8]}
From: <sip:alice@example.com>;tag=a1
To: <sip:bob@example.com>
Call-ID: {call_id}
CSeq: 1 INVITE
Contact: <sip:alice@10.9.8.7:5999>
Max-Forwards: 70
Content-Length: 0

""", to)
    invite = callee.recv(want="INVITE ")
    assert invite is not None, proxy.log[-2000:]
    callee.answer(invite)
    ok = caller.recv(want=r"SIP/2.0 200")
    assert ok is not None, proxy.log[-2000:]
    route = header(ok, "Record-Route")
    totag = re.search(r";tag=([^;>\s]+)", header(ok, "To")).group(1)

    def in_dialog(method, cseq):
        caller.send(f"""{method} sip:bob@{callee.ip}:{callee.port} SIP/2.0
Via: SIP/2.0/UDP 10.9.8.7:5999;rport;branch=z9hG4bK{method}{call_id[:8]}
From: <sip:alice@example.com>;tag=a1
To: <sip:bob@example.com>;tag={totag}
Call-ID: {call_id}
CSeq: {cseq} {method}
Route: {route}
Max-Forwards: 70
Content-Length: 0

""", to)
    in_dialog("ACK", 1)
    got = pings(caller, "NOTIFY", 2)
    assert len(got) == 2, proxy.log[-2000:]
    check_ping(got[0], caller, proxy, "NOTIFY")
    in_dialog("BYE", 2)
    bye = callee.recv(want="BYE ")
    assert bye is not None
    callee.answer(bye)
    assert caller.recv(want=r"SIP/2.0 200") is not None
    time.sleep(1.2)
    caller.backlog.clear()
    pings(caller, "NOTIFY", 3, timeout=0.3)
    assert pings(caller, "NOTIFY", 1, timeout=2.5) == []

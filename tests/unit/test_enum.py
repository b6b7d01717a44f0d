"""enum: the NAPTR regexp rewriting and record choice, the DNS wire format, and lookups
against a real DNS server on loopback (dnsmasq serving NAPTR records; skipped when Debian's
dnsmasq-base is not installed)."""
import os
import shutil
import struct
import subprocess
import time

import pytest

from cfgscript import parse_text
from modules.enum import apply_regexp, best_uri, enum_domain, service_matches, split_regexp
from modules.enum import dns
from modules.enum.dns import NAPTR
from runtime.context import Context, ScriptExit
from runtime.loader import load_script
from runtime.sip.message import Message
from runtime.testing import addresses


def test_regexp_rewriting():
    assert apply_regexp("!^.*$!sip:info@example.com!", "+4930123") == "sip:info@example.com"
    assert apply_regexp(r"!^\+49(.*)$!sip:\1@de.example!", "+4930123") == "sip:30123@de.example"
    assert apply_regexp(r"/^\+(([0-9])*)$/sip:\1@x.org/", "+12") == "sip:12@x.org"
    assert apply_regexp(r"!^\+1!sip:us@x!", "+4930") is None
    assert apply_regexp(r"!^\+(.*)$!sip:\\\1@x!i", "+1") == r"sip:\1@x"
    assert split_regexp(r"!a\!b!c!") == ("a!b", "c", "")
    with pytest.raises(ValueError):
        split_regexp("!only-one!")
    with pytest.raises(ValueError):
        apply_regexp(r"!^(.*)$!sip:\2@x!", "+1")


def test_record_choice():
    recs = [NAPTR(100, 20, "u", "E2U+sip", "!^.*$!sip:second@x!", "."),
            NAPTR(100, 10, "u", "E2U+sip", "!^.*$!sip:first@x!", "."),
            NAPTR(10, 10, "u", "E2U+mailto", "!^.*$!mailto:a@x!", "."),
            NAPTR(10, 10, "", "E2U+sip", "!^.*$!sip:nonterminal@x!", "."),
            NAPTR(5, 10, "u", "E2U+sip", "!^\\+44!sip:uk@x!", ".")]
    assert best_uri(recs, "+4930", "e2u+sip") == "sip:first@x"
    assert best_uri(recs, "+4930", "e2u+mailto") == "mailto:a@x"
    assert service_matches("sip+E2U", None) and service_matches("E2U+voice:sip", "e2u+sip")
    assert not service_matches("E2U+sms", "e2u+sip")
    assert enum_domain("+4930123", "e164.org") == "3.2.1.0.3.9.4.e164.org."


def test_dns_wire_format():
    q = dns.build_query("1.2.e164.arpa.", qid=0x1234)
    assert q[:12] == struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
    assert q[12:] == b"\x011\x012\x04e164\x04arpa\x00" + struct.pack("!HH", 35, 1)
    # an answer with a compressed owner name and one NAPTR
    rdata = (struct.pack("!HH", 100, 10) + b"\x01U" + b"\x07E2U+sip" +
             b"\x12!^.*$!sip:a@b.org!" + b"\x00")
    answer = (q[:2] + struct.pack("!HHHHH", 0x8180, 1, 1, 0, 0) + q[12:] +
              b"\xc0\x0c" + struct.pack("!HHIH", 35, 1, 60, len(rdata)) + rdata)
    rcode, tc, recs = dns.parse_response(answer, 0x1234)
    assert (rcode, tc) == (0, False)
    assert recs == [NAPTR(100, 10, "U", "E2U+sip", "!^.*$!sip:a@b.org!", ".")]
    with pytest.raises(dns.DNSError):
        dns.parse_response(answer, 0x9999)


def test_servers_from_the_environment(monkeypatch):
    monkeypatch.setenv("CFGSCRIPT_DNS_SERVERS", "127.0.0.5:5353, [::1]:53, 10.1.1.1")
    assert dns.servers() == [("127.0.0.5", 5353), ("::1", 53), ("10.1.1.1", 53)]


# --- against a real name server -------------------------------------------------------------

RECORDS = [
    r"3.2.1.0.3.9.4.e164.arpa,100,10,U,E2U+sip,!^\+(.*)$!sip:\1@gw.example.com!",
    r"3.2.1.0.3.9.4.e164.arpa,50,10,U,E2U+mailto,!^.*$!mailto:x@example.com!",
    r"5.5.5.1.e164.arpa,10,10,U,E2U+sip,!^.*$!sip:home@127.0.0.1!",
    r"4.3.2.1.256.freenum.org,10,10,U,E2U+sip,!^.*$!sip:isn@isn.example!",
]


@pytest.fixture
def nameserver(monkeypatch, tmp_path):
    exe = shutil.which("dnsmasq") or ("/usr/sbin/dnsmasq" if os.path.exists("/usr/sbin/dnsmasq")
                                      else None)
    if exe is None:
        pytest.skip("dnsmasq is not installed (Debian: apt-get install dnsmasq-base)")
    ip = addresses.allocate().proxy_ip
    port = 5353
    cmd = [exe, "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
           "--bind-interfaces", f"--listen-address={ip}", f"--port={port}",
           f"--pid-file={tmp_path / 'dnsmasq.pid'}"]
    if os.geteuid() == 0:
        cmd.append("--user=root")
    cmd += [f"--naptr-record={r}" for r in RECORDS]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(50):
            if (ip, port) in addresses.bound_sockets() or proc.poll() is not None:
                break
            time.sleep(0.1)
        if proc.poll() is not None:
            pytest.skip(f"dnsmasq did not start: {proc.stderr.read().decode()[:200]}")
        monkeypatch.setenv("CFGSCRIPT_DNS_SERVERS", f"{ip}:{port}")
        yield ip
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


SCRIPT = """
loadmodule "enum.so"
modparam("enum", "domain_suffix", "e164.arpa.")
route {
    if (enum_query()) $var(q) = $ru; else $var(q) = "none";
    $ru = "sip:+4930123@example.com";
    if (enum_query("e164.arpa.", "e2u+mailto")) $var(mail) = $ru; else $var(mail) = "none";
    if (enum_pv_query("+4930123")) $var(pv) = $ru; else $var(pv) = "none";
    if (is_from_user_enum()) $var(from) = "ours"; else $var(from) = $rc;
    $ru = "sip:1234*256@example.com";
    if (isn_query()) $var(isn) = $ru; else $var(isn) = "none";
}
"""


def run(ruri, from_user):
    loaded = load_script(parse_text(SCRIPT, "t.cfg"))
    assert loaded.ok, [str(d) for d in loaded.diagnostics]
    rt = loaded.rt
    from runtime.engine import Socket
    rt.sockets.append(Socket("udp", "127.0.0.1", 5060))
    rt.modules["enum"].init(rt)
    msg = Message.parse((
        f"INVITE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n"
        f"From: <sip:{from_user}@example.com>;tag=1\r\nTo: <{ruri}>\r\n"
        f"Call-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n").encode())
    ctx = Context(rt, msg)
    try:
        rt.routes[("route", None)](ctx)
    except ScriptExit:
        pass
    return rt.vars


def test_lookups_against_dnsmasq(nameserver):
    v = run("sip:+4930123@example.com", "+1555")
    assert v["q"] == "sip:4930123@gw.example.com"
    assert v["mail"] == "mailto:x@example.com"
    assert v["pv"] == "sip:4930123@gw.example.com"
    assert v["from"] == "ours"                  # +1555's ENUM points at 127.0.0.1 (us)
    assert v["isn"] == "sip:isn@isn.example"
    v = run("sip:alice@example.com", "bob")
    assert v["q"] == "none" and v["from"] == -3     # no E.164 user at all
    v = run("sip:+999@example.com", "+4930123")
    assert v["q"] == "none" and v["from"] == -1     # no record / not pointing at us

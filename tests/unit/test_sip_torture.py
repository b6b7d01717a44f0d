"""RFC 4475 torture messages (tests/unit/data/sip/rfc4475/, see its README).

Valid messages must parse and every accessor a proxy uses must work on them. Invalid
messages must produce SIPError -- from ``Message.parse`` when the framing or the start line
is broken, otherwise from the accessor / check that reads the broken part (parsing is lazy
by design: a proxy that never reads a header never fails on it, as in OpenSIPS). Status 400
when a request line was readable, None (drop) for replies.

Where we are deliberately lenient (the message parses and a proxy may relay it) the test
says so and why; each of those still has a precise check that fails:

* baddate -- parses; only ``msg.date`` rejects the non-GMT zone (a proxy ignores Date);
* bcast   -- a well-formed 200 OK; ``reply_destination`` refuses the broadcast Via;
* bext01  -- well formed; ``check_proxy_require`` gives the 420 (semantics, not syntax).

Everything else in RFC 4475 3.1.2 is rejected, including the cases the RFC only calls
"acceptable to reject" (lwsstart, trws, escruri, badaspec, regbadct, mismatch02 as 400
rather than 501).
"""
import pathlib

import pytest

from runtime.sip import Message, SIPError, reply_destination

DATA = pathlib.Path(__file__).parent / "data" / "sip" / "rfc4475"


def load(name: str) -> bytes:
    return (DATA / f"{name}.sip").read_bytes()


def read_everything(m: Message):
    """Every typed accessor, as a proxy (and a registrar) would."""
    m.check_mandatory()
    m.vias
    m.contacts
    m.routes
    m.record_routes
    m.max_forwards
    m.content_type
    m.date
    if m.is_request:
        m.parsed_ruri
    for h in m.headers:
        assert m.raw[h.start:h.end].endswith(b"\n")


VALID = ["wsinv", "intmeth", "esc01", "escnull", "esc02", "lwsdisp", "longreq", "dblreq",
         "semiuri", "transports", "mpart01", "unreason", "noreason"]


@pytest.mark.parametrize("name", VALID)
def test_valid_messages_parse(name):
    m = Message.parse(load(name))
    read_everything(m)


def test_wsinv_details():
    m = Message.parse(load("wsinv"))
    assert m.method == "INVITE"
    assert m.ruri == "sip:vivekg@chair-dnrc.example.com;unknownparam"
    assert m.parsed_ruri.params == [("unknownparam", None)]
    assert m.to.uri == "sip:vivekg@chair-dnrc.example.com"
    assert m.to.tag == "1918181833n"
    assert m.from_.display == 'J Rosenberg \\\\\\"'
    assert m.from_.tag == "98asjd8"
    assert m.max_forwards == 68
    assert m.call_id == "wsinv.ndaksdj@192.0.2.1"
    assert m.content_length == 150 and len(m.body) == 150
    assert m.cseq == (9, "INVITE")
    assert [(v.transport, v.host, v.branch) for v in m.vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239")]
    assert all(v.protocol.startswith("SIP/2.0/") for v in m.vias)
    assert m.get("s") == "" and m.get("subject") == ""
    assert m.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert m.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    assert m.routes[0].parsed_uri.param("lr") == ""
    assert m.routes[0].parsed_uri.param("unknown-no-value") == ""
    c = m.contacts[0]
    assert c.display == 'Quoted string \\"\\"'
    assert c.param("newparam") == "newvalue" and c.param("secondparam") == ""
    assert c.param("q") == "0.33"
    assert m.count("via") == 2  # two header lines, three values


def test_intmeth_details():
    m = Message.parse(load("intmeth"))
    assert m.method == "!interesting-Method0123456789_*+`.%indeed'~"
    u = m.parsed_ruri
    assert u.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert u.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert u.host == "example.com"
    assert m.via1.branch == "z9hG4bK-.!%66*_+`'~"
    assert m.to.display == "BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f"
    assert m.from_.display == "token1~` token2'+_ token3*%!.-"
    assert m.from_.param("fromParam''~+*_!.-%") == "работающий"
    assert m.from_.tag == "_token~1'+`*%!-."
    assert m.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert m.cseq == (139122385, m.method)
    assert m.get("extensionHeader-!.%*+_`'~") == "\ufeff大停電"


def test_escapes_are_kept_as_written():
    m = Message.parse(load("esc01"))
    assert m.parsed_ruri.user == "sips%3Auser%40example.com"
    assert m.to.parsed_uri.user == "%75se%72"
    c = m.contacts[0].parsed_uri
    assert c.params == [("%6C%72", None), ("n%61me", "v%61lue%25%34%31")]
    m = Message.parse(load("escnull"))
    assert [c.parsed_uri.user for c in m.contacts] == ["%00", "%00%00"]
    m = Message.parse(load("esc02"))
    assert m.method == "RE%47IST%45R" and m.cseq[1] == "RE%47IST%45R"
    assert m.to.display == "%Z%45"
    assert [c.uri for c in m.contacts] == ["sip:alias1@host1.example.com",
                                           "sip:alias3@host3.example.com"]
    assert m.get("C%6Fntact") == "<sip:alias2@host2.example.com>"


def test_other_valid_details():
    assert Message.parse(load("lwsdisp")).from_.display == "caller"
    m = Message.parse(load("longreq"))
    assert len(m.vias) == 34 and m.vias[0].host == "sip33.example.com"
    assert m.vias[-1].received == "192.0.2.5"
    assert m.to.parsed_uri.port == 6000
    m = Message.parse(load("dblreq"))
    assert m.method == "REGISTER" and m.body == b""
    assert b"INVITE" not in m.raw  # the trailing octets are not part of the message
    assert Message.parse(load("semiuri")).parsed_ruri.user == "user;par=u%40example.net"
    m = Message.parse(load("transports"))
    assert [v.transport for v in m.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    m = Message.parse(load("mpart01"))
    assert len(m.body) == 553 and b"\x00" in m.body and m.via1.rport == ""
    m = Message.parse(load("unreason"))
    assert m.status == 200 and m.reason.startswith("= 2**3 * 5**2 но сто")
    m = Message.parse(load("noreason"))
    assert (m.status, m.reason, m.method) == (100, "", "INVITE")


# --------------------------------------------------------------------------- invalid


def parse_error(name):
    with pytest.raises(SIPError) as ei:
        Message.parse(load(name))
    return ei.value


def access_error(name, fn):
    m = Message.parse(load(name))
    with pytest.raises(SIPError) as ei:
        fn(m)
    return ei.value


@pytest.mark.parametrize("name, status", [
    ("clerr", 400),      # Content-Length 9999 on a datagram
    ("ncl", 400),        # Content-Length -999
    ("ltgtruri", 400),   # <sip:...> as Request-URI
    ("lwsruri", 400),    # blank inside the Request-URI
    ("lwsstart", 400),   # two SP between start-line elements (RFC: "acceptable to reject";
                         # a liberal element may skip them -- we are strict: the start line
                         # is the one thing we must read exactly)
    ("trws", 400),       # SP after SIP-Version (same reasoning as lwsstart)
    ("badvers", 505),    # SIP/7.0
])
def test_invalid_framing_or_start_line(name, status):
    assert parse_error(name).status == status


@pytest.mark.parametrize("name, check, reason", [
    ("badinv01", Message.check_mandatory, "Empty list element"),  # Via ';;,;,,'
    ("quotbal", Message.check_mandatory, "Unterminated quoted display name"),
    ("escruri", Message.check_mandatory, "Request-URI with headers"),
    ("baddn", Message.check_mandatory, "Bad display name"),       # Bell, Alexander <...>
    ("badaspec", Message.check_mandatory, "Bad URI"),             # < sip:... >
    ("mismatch01", Message.check_mandatory, "CSeq method does not match request method"),
    ("mismatch02", Message.check_mandatory, "CSeq method does not match request method"),
    ("insuf", Message.check_mandatory, "Missing From"),
    ("scalar02", Message.check_mandatory, "Bad CSeq"),            # CSeq > 2**32-1
    ("regbadct", lambda m: m.contacts, "URI with headers or commas must be in <>"),
])
def test_invalid_requests_fail_their_check(name, check, reason):
    e = access_error(name, check)
    assert e.status == 400
    assert e.reason == reason


def test_badinv01_contact_too():
    e = access_error("badinv01", lambda m: m.contacts)  # "Joe" <sip:joe@example.org>;;;;
    assert e.status == 400


def test_scalar02_max_forwards():
    # Max-Forwards: 300 -- out of range. RFC 4475 allows treating it as absent; we reject it
    # (the CSeq of this message is out of range too, so it is a 400 either way)
    assert access_error("scalar02", lambda m: m.max_forwards).status == 400


def test_scalarlg_reply_is_dropped():
    # a reply with CSeq > 2**32-1: nothing to answer, status None = drop
    e = access_error("scalarlg", Message.check_mandatory)
    assert e.status is None


def test_baddate_lenient_parse_strict_accessor():
    # Deliberately lenient: the message parses and passes check_mandatory, because RFC 4475
    # says an element should not reject it unless the Date matters to it, and a proxy does
    # not use Date. Reading the Date (msg.date) is strict: only GMT is allowed.
    m = Message.parse(load("baddate"))
    m.check_mandatory()
    with pytest.raises(SIPError) as ei:
        m.date
    assert ei.value.status == 400
    assert Message.parse(load("mpart01")).date.year == 2005


def test_bcast_reply_routing():
    # Deliberately lenient at parse time: the 200 OK is well formed. A proxy forwarding it
    # removes its own Via and routes by the next one, whose sent-by is 255.255.255.255:
    # reply_destination refuses that (status None: drop), so it is never sent.
    m = Message.parse(load("bcast"))
    read_everything(m)
    with pytest.raises(SIPError) as ei:
        reply_destination(m.vias[1])
    assert ei.value.status is None
    assert reply_destination(m.vias[0]) == ("192.0.2.198", 5060)


def test_bext01_proxy_require():
    # Syntactically valid; the error is semantic (RFC 3261 16.3 step 5): a proxy that does
    # not support the Proxy-Require options answers 420 with Unsupported. Parsing is lenient
    # (the message is well formed); whether to enforce it is the runtime's choice.
    m = Message.parse(load("bext01"))
    read_everything(m)
    with pytest.raises(SIPError) as ei:
        m.check_proxy_require(supported=["timer"])
    e = ei.value
    assert (e.status, e.reason) == (420, "Bad Extension")
    assert e.headers == ["Unsupported: noProxiesSupportThis, norDoAnyProxiesSupportThis"]
    m.check_proxy_require(supported=["noProxiesSupportThis", "norDoAnyProxiesSupportThis"])

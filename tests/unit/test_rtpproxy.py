"""rtpproxy module: the commands sent per stream and the SDP rewritten from the answers
(the exchange is a stand-in that records the wire commands and answers as RTPProxy does;
tests/rtp/ runs the same code against a real RTPProxy)."""
import pytest

from modules.rtpproxy import sdp
from modules.rtpproxy.nodes import parse_sets

BODY = ("v=0\r\n"
        "o=alice 1 1 IN IP4 10.0.0.5\r\n"
        "s=-\r\n"
        "c=IN IP4 10.0.0.5\r\n"
        "t=0 0\r\n"
        "m=audio 6000 RTP/AVP 0 8 101\r\n"
        "a=rtcp:6001\r\n"
        "m=video 0 RTP/AVP 96\r\n"
        "m=image 6002 udptl t38\r\n"
        "m=application 9 TCP/BFCP *\r\n")


class Fake:
    def __init__(self, replies=None):
        self.sent = []
        self.replies = list(replies or [])

    def __call__(self, cmd, lookup):
        self.sent.append(cmd)
        return self.replies.pop(0) if self.replies else "35000 192.0.2.1"


def args(**kw):
    base = dict(flags="", call_id="cid", from_tag="ft", to_tag="", offer=True,
                is_request=True, src_ip="203.0.113.7", local_ip="192.0.2.99")
    base.update(kw)
    return sdp.Args(**base)


def test_offer_commands_and_rewrite():
    ex = Fake(["35000 192.0.2.1", "35002 192.0.2.1"])
    out = sdp.rewrite(BODY, args(flags="co", caps={sdp.CAP_CODECS}), ex)
    # one U per proxied stream, the source address (not the SDP's), codecs, medianum
    assert ex.sent == ["Uc0,8,101 cid 203.0.113.7 6000 ft;1",
                       "U cid 203.0.113.7 6002 ft;3"]
    assert out.splitlines() == [
        "v=0", "o=alice 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "t=0 0",
        "m=audio 35000 RTP/AVP 0 8 101", "a=rtcp:35001 IN IP4 192.0.2.1",
        "m=video 0 RTP/AVP 96", "m=image 35002 udptl t38", "m=application 9 TCP/BFCP *",
        "a=nortpproxy:yes"]
    assert out.endswith("\r\n")


def test_trusted_address_asymmetric_and_ip_argument():
    ex = Fake()
    out = sdp.rewrite(BODY, args(flags="ra", ip="198.51.100.9"), ex)
    assert ex.sent[0] == "UA cid 10.0.0.5 6000 ft;1"
    assert "c=IN IP4 198.51.100.9" in out
    assert "o=alice 1 1 IN IP4 10.0.0.5" in out        # no 'o' flag


def test_answer_on_a_reply_and_on_ack():
    ex = Fake()
    sdp.rewrite(BODY, args(offer=False, is_request=False, to_tag="tt"), ex)
    assert ex.sent[0] == "L cid 203.0.113.7 6000 ft;1 tt;1"
    ex = Fake()
    sdp.rewrite(BODY, args(offer=False, is_request=True, to_tag="tt"), ex)   # ACK
    assert ex.sent[0] == "L cid 203.0.113.7 6000 tt;1 ft;1"
    with pytest.raises(sdp.RtppError):
        sdp.rewrite(BODY, args(offer=False, is_request=True), Fake())          # no To tag


def test_lookup_flag_and_symmetric_bridge_flags():
    ex = Fake()
    sdp.rewrite(BODY, args(flags="lie", to_tag=""), ex)
    assert ex.sent[0] == "LIE cid 203.0.113.7 6000 dummy;1 ft;1"


def test_already_proxied_unless_forced():
    marked = BODY + "a=nortpproxy:yes\r\n"
    with pytest.raises(sdp.RtppError):
        sdp.rewrite(marked, args(), Fake())
    out = sdp.rewrite(marked, args(flags="f"), Fake())
    assert out.count("a=nortpproxy:yes") == 1


def test_hold_keeps_the_null_address_and_errors_fail():
    held = BODY.replace("c=IN IP4 10.0.0.5", "c=IN IP4 0.0.0.0")
    out = sdp.rewrite(held, args(), Fake())
    assert "c=IN IP4 0.0.0.0" in out and "m=audio 35000" in out
    with pytest.raises(sdp.RtppError, match="error: 8"):
        sdp.rewrite(BODY, args(), Fake(["E8"]))
    with pytest.raises(sdp.RtppError):
        sdp.rewrite(BODY, args(), lambda cmd, lookup: None)


def test_ipv6_answer_and_keep_body():
    out = sdp.rewrite(BODY, args(), Fake(["35000 2001:db8::1 6", "35002 2001:db8::1 6"]))
    assert "c=IN IP6 2001:db8::1" in out and "a=rtcp:35001 IN IP6 2001:db8::1" in out
    ex = Fake()
    assert sdp.rewrite(BODY, args(flags="k"), ex) == BODY and len(ex.sent) == 2


def test_flag_letters():
    o = sdp.parse_flags("aIeLkFrCOnswz20t30x")
    assert o.opts == "AIESSx" and o.asymmetric and o.real and o.lookup and o.keep_body
    assert o.force and o.commip and o.orgip and o.notify
    assert o.repacketize == "Z20" and o.ttl == "t30" and o.unknown == ["x"]


def test_sets_with_advertised_address():
    sets = parse_sets(["udp:127.0.0.1:7722|203.0.113.1=2 unix:/var/run/rtpp.sock",
                       "2 == udp:10.0.0.2:22222"])
    a, b = sets[0]
    assert (a.url, a.adv_address, a.weight) == ("udp:127.0.0.1:7722", "203.0.113.1", 2)
    assert (b.mode, b.address) == ("unix", "/var/run/rtpp.sock")
    assert sets[2][0].host_port() == ("10.0.0.2", 22222)

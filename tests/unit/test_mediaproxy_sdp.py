"""SDP vectors V1-V10 and edge cases of reference §7 (mediaproxy.md)."""

import pytest

from modules.mediaproxy import sdp
from modules.mediaproxy.dispatcher_client import MediaProxyError, parse_update_reply

RELAY = b"203.0.113.5"
HEAD = "v=0|o=- 1 1 IN IP4 192.168.1.10|s=-|"


def crlf(text: str) -> bytes:
    return text.replace("|", "\r\n").encode()


def run(body: bytes, reply: bytes, *, request=True, priority=None):
    """The module's path: parse, media line, reply check, rewrite, apply."""
    session = sdp.parse(body)
    ip, ports = parse_update_reply(reply, session.supported_count, request)
    edits = sdp.rewrite(session, ip, ports, priority)
    return sdp.media_line(session), sdp.apply_edits(body, edits)


V1_IN = crlf("v=0|o=alice 2890844526 2890844526 IN IP4 192.168.1.10|s=-|c=IN IP4 192.168.1.10|"
             "t=0 0|m=audio 49170 RTP/AVP 0 8 101|a=rtpmap:101 telephone-event/8000|a=sendrecv|")


def test_v1_basic_offer():
    media, out = run(V1_IN, b"203.0.113.5 40002\r\n")
    assert media == b"media: audio:192.168.1.10:49170:sendrecv:ice=no\r\n"
    assert out == V1_IN.replace(b"c=IN IP4 192.168.1.10", b"c=IN IP4 203.0.113.5").replace(
        b"m=audio 49170 ", b"m=audio 40002 ")


def test_v2_mixed_supported_unsupported():
    body = crlf(HEAD + "c=IN IP4 192.168.1.10|t=0 0|m=audio 49170 RTP/AVP 0|"
                "m=message 2855 TCP/TLS/MSRP *|a=path:msrps://192.168.1.10:2855/abc;tcp|")
    media, out = run(body, b"203.0.113.5 40002")
    assert media == b"media: audio:192.168.1.10:49170:sendrecv:ice=no\r\n"
    assert out == crlf(HEAD + "t=0 0|m=audio 40002 RTP/AVP 0|c=IN IP4 203.0.113.5|"
                       "m=message 2855 TCP/TLS/MSRP *|c=IN IP4 192.168.1.10|"
                       "a=path:msrps://192.168.1.10:2855/abc;tcp|")


def test_v3_port_zero_stream():
    body = crlf(HEAD + "c=IN IP4 192.168.1.10|t=0 0|m=audio 49170 RTP/AVP 0|m=video 0 RTP/AVP 31|")
    media, out = run(body, b"203.0.113.5 40002 0")
    assert media == (b"media: audio:192.168.1.10:49170:sendrecv:ice=no,"
                     b"video:192.168.1.10:0:sendrecv:ice=no\r\n")
    assert out == crlf(HEAD + "c=IN IP4 203.0.113.5|t=0 0|m=audio 40002 RTP/AVP 0|"
                       "m=video 0 RTP/AVP 31|")


def test_v4_old_style_hold():
    body = crlf(HEAD + "c=IN IP4 0.0.0.0|t=0 0|m=audio 49170 RTP/AVP 0|")
    media, out = run(body, b"203.0.113.5 40002")
    assert media == b"media: audio:0.0.0.0:49170:sendrecv:ice=no\r\n"
    assert out == crlf(HEAD + "c=IN IP4 0.0.0.0|t=0 0|m=audio 40002 RTP/AVP 0|")


def test_v5_session_direction_rtcp_with_address_local_c():
    body = crlf("v=0|o=- 1 2 IN IP4 192.168.1.10|s=-|c=IN IP4 192.168.1.10|t=0 0|a=sendonly|"
                "m=audio 49170 RTP/AVP 0|a=rtcp:49171 IN IP4 192.168.1.10|"
                "m=video 51372 RTP/AVP 31|c=IN IP4 192.168.1.11|a=inactive|")
    media, out = run(body, b"203.0.113.5 40002 40006")
    assert media == (b"media: audio:192.168.1.10:49170:sendonly:ice=no,"
                     b"video:192.168.1.11:51372:inactive:ice=no\r\n")
    assert out == crlf("v=0|o=- 1 2 IN IP4 192.168.1.10|s=-|c=IN IP4 203.0.113.5|t=0 0|a=sendonly|"
                       "m=audio 40002 RTP/AVP 0|a=rtcp:40003 IN IP4 203.0.113.5|"
                       "m=video 40006 RTP/AVP 31|c=IN IP4 203.0.113.5|a=inactive|")


V6_IN = crlf("v=0|o=- 1 1 IN IP4 192.168.1.10|s=-|c=IN IP4 192.168.1.10|t=0 0|a=ice-ufrag:8hhY|"
             "a=ice-pwd:asd88fgpdd777uzjYhagZg|m=audio 49170 RTP/AVP 0|a=rtcp:49171|"
             "a=candidate:1 1 UDP 2130706431 192.168.1.10 49170 typ host|"
             "a=candidate:1 2 UDP 2130706430 192.168.1.10 49171 typ host|"
             "a=candidate:2 1 UDP 1694498815 198.51.100.7 31245 typ srflx raddr 192.168.1.10 "
             "rport 49170|")
V6_CANDIDATES = ("a=candidate:1 1 UDP 2130706431 192.168.1.10 49170 typ host|"
                 "a=candidate:1 2 UDP 2130706430 192.168.1.10 49171 typ host|"
                 "a=candidate:2 1 UDP 1694498815 198.51.100.7 31245 typ srflx raddr 192.168.1.10 "
                 "rport 49170|")
V6_HEAD = ("v=0|o=- 1 1 IN IP4 192.168.1.10|s=-|c=IN IP4 203.0.113.5|t=0 0|a=ice-ufrag:8hhY|"
           "a=ice-pwd:asd88fgpdd777uzjYhagZg|m=audio 40002 RTP/AVP 0|a=rtcp:40003|")


def v6_relay(rtp_priority, rtcp_priority):
    return ("a=candidate:R57100cb 1 UDP %d 203.0.113.5 40002 typ relay raddr 203.0.113.5 "
            "rport 40002|a=candidate:R57100cb 2 UDP %d 203.0.113.5 40003 typ relay "
            "raddr 203.0.113.5 rport 40003|" % (rtp_priority, rtcp_priority))


@pytest.mark.parametrize("setting, engage, candidates", [
    ("high-priority", False, v6_relay(2197815295, 2197815294)),
    ("low-priority", False, v6_relay(16777215, 16777214)),
    ("HIGH-PRIORITY", False, v6_relay(2197815295, 2197815294)),       # E18
    ("none", False, ""),
    ("medium", False, v6_relay(4294967295, 4294967294)),               # §3.9 script mode
    ("medium", True, ""),                                               # engage mode
])
def test_v6_ice_relay_candidates(setting, engage, candidates):
    media, out = run(V6_IN, b"203.0.113.5 40002",
                     priority=sdp.ice_priority(setting, engage=engage))
    assert media == b"media: audio:192.168.1.10:49170:sendrecv:ice=yes\r\n"
    assert out == crlf(V6_HEAD + candidates + V6_CANDIDATES)


def test_v7_lf_body_port_slash_one_udptl():
    body = (b"v=0\no=- 1 1 IN IP4 192.168.1.10\ns=-\nt=0 0\nm=audio 49170/1 RTP/AVP 0\n"
            b"c=IN IP4 192.168.1.10\nm=image 0 udptl t38\nc=IN IP4 192.168.1.10\n")
    media, out = run(body, b"203.0.113.5 40002 0")
    assert media == (b"media: audio:192.168.1.10:49170:sendrecv:ice=no,"
                     b"image:192.168.1.10:0:sendrecv:ice=no\r\n")
    assert out == (b"v=0\no=- 1 1 IN IP4 192.168.1.10\ns=-\nt=0 0\nm=audio 40002/1 RTP/AVP 0\n"
                   b"c=IN IP4 203.0.113.5\nm=image 0 udptl t38\nc=IN IP4 203.0.113.5\n")


def test_v8_same_offset_ordering():
    body = crlf(HEAD + "c=IN IP4 192.168.1.10|t=0 0|m=audio 49170 RTP/AVP 0|a=ice-ufrag:x|"
                "a=ice-pwd:y|a=candidate:1 1 UDP 2130706431 192.168.1.10 49170 typ host|"
                "m=message 2855 TCP/MSRP *|")
    # the inserted c= goes before the candidates only when they directly follow m=
    body2 = crlf(HEAD + "c=IN IP4 192.168.1.10|t=0 0|m=audio 49170 RTP/AVP 0|"
                 "a=candidate:1 1 UDP 2130706431 192.168.1.10 49170 typ host|a=ice-ufrag:x|"
                 "a=ice-pwd:y|m=message 2855 TCP/MSRP *|")
    low = sdp.ice_priority("low-priority")
    relay_candidate = ("a=candidate:R57100cb 1 UDP 16777215 203.0.113.5 40002 typ relay "
                       "raddr 203.0.113.5 rport 40002|")
    _, out = run(body, b"203.0.113.5 40002", priority=low)
    assert out == crlf(HEAD + "t=0 0|m=audio 40002 RTP/AVP 0|c=IN IP4 203.0.113.5|a=ice-ufrag:x|"
                       "a=ice-pwd:y|" + relay_candidate +
                       "a=candidate:1 1 UDP 2130706431 192.168.1.10 49170 typ host|"
                       "m=message 2855 TCP/MSRP *|c=IN IP4 192.168.1.10|")
    _, out2 = run(body2, b"203.0.113.5 40002", priority=low)
    assert out2 == crlf(HEAD + "t=0 0|m=audio 40002 RTP/AVP 0|c=IN IP4 203.0.113.5|" +
                        relay_candidate +
                        "a=candidate:1 1 UDP 2130706431 192.168.1.10 49170 typ host|"
                        "a=ice-ufrag:x|a=ice-pwd:y|m=message 2855 TCP/MSRP *|"
                        "c=IN IP4 192.168.1.10|")


V9_IN = crlf(HEAD + "c=IN IP4 192.168.1.10|t=0 0|m=audio 49170 RTP/AVP 0|m=video 51372 RTP/AVP 31|")


def test_v9_reply_with_too_few_ports(caplog):
    _, out = run(V9_IN, b"203.0.113.5 40000", request=False)
    assert out == crlf(HEAD + "c=IN IP4 203.0.113.5|t=0 0|m=audio 40000 RTP/AVP 0|"
                       "m=video 51372 RTP/AVP 31|")
    assert "broken client. Called UA added extra media stream(s) in the OK reply" in caplog.text


def test_v9_request_with_too_few_ports_fails():
    with pytest.raises(MediaProxyError, match="insufficient ports returned from mediaproxy: "
                                              "got 1, expected 2"):
        run(V9_IN, b"203.0.113.5 40000", request=True)


def test_v10_error_reply():
    for request in (True, False):
        with pytest.raises(MediaProxyError, match="mediaproxy returned error"):
            run(V1_IN, b"error\r\n", request=request)
    with pytest.raises(MediaProxyError, match="empty response"):
        run(V1_IN, b"\r\n")


# -- edge cases ---------------------------------------------------------------------


def test_e2_content_type():
    assert sdp.is_sdp_content_type("application/sdp")
    assert sdp.is_sdp_content_type(" Application/SDP;charset=x ")
    assert sdp.is_sdp_content_type(None)  # missing header: processed
    assert not sdp.is_sdp_content_type("application/sdpx")
    assert not sdp.is_sdp_content_type("multipart/mixed;boundary=x")


@pytest.mark.parametrize("body, message", [
    (crlf("v=0|v=0|c=IN IP4 1.2.3.4|m=audio 1 RTP/AVP 0|"), "more than 1 media session"),
    (crlf("o=- 1 1 IN IP4 1.2.3.4|c=IN IP4 1.2.3.4|m=audio 1 RTP/AVP 0|"), "more than 1 media"),
    (crlf("v=0|c=IN IP4 1.2.3.4|" + "m=audio 1 RTP/AVP 0|" * 33), "more than 32 media streams"),
    (crlf("v=0|c=IN IP4 1.2.3.4|m=audio 1|"), "invalid `m=' line"),
])
def test_e3_structure_errors(body, message):
    with pytest.raises(sdp.SDPError, match=message):
        sdp.parse(body)


def test_e3_thirty_two_streams_are_fine():
    session = sdp.parse(crlf("v=0|c=IN IP4 1.2.3.4|" + "m=audio 1 RTP/AVP 0|" * 32))
    assert session.supported_count == 32


@pytest.mark.parametrize("body", [
    crlf("v=0|t=0 0|m=audio 1 RTP/AVP 0|"),
    crlf("v=0|c=IN IP4 224.2.1.1/127|t=0 0|m=audio 1 RTP/AVP 0|"),
    crlf("v=0|t=0 0|m=audio 1 RTP/AVP 0|c=IN IP4 224.2.1.1/127|"),
    crlf("v=0|c=IN IP4|m=audio 1 RTP/AVP 0|"),
])
def test_e4_address_errors(body):
    with pytest.raises(sdp.SDPError):
        sdp.parse(body)


def test_e4_multicast_on_unsupported_stream_is_allowed():
    session = sdp.parse(crlf("v=0|c=IN IP4 1.2.3.4|m=audio 1 RTP/AVP 0|"
                             "m=message 2 TCP/MSRP *|c=IN IP4 224.2.1.1/127|"))
    assert [s.supported for s in session.streams] == [True, False]


@pytest.mark.parametrize("port", ["49170/2", "49170/"])
def test_e5_port_counts(port):
    with pytest.raises(sdp.SDPError):
        sdp.parse(crlf("v=0|c=IN IP4 1.2.3.4|m=audio %s RTP/AVP 0|" % port))
    session = sdp.parse(crlf("v=0|c=IN IP4 1.2.3.4|m=message %s TCP/MSRP *|" % port))
    assert session.supported_count == 0


def test_e6_nothing_supported_means_no_media_line():
    for body in (crlf("v=0|c=IN IP4 1.2.3.4|m=message 2 TCP/MSRP *|"), crlf("v=0|o=x|s=-|")):
        session = sdp.parse(body)
        assert session.supported_count == 0
        assert sdp.media_line(session) == b""


def test_e7_direction_quirks():
    session = sdp.parse(crlf("v=0|c=IN IP4 1.2.3.4|a=sendonly |m=audio 1 RTP/AVP 0|"
                             "m=audio 2 RTP/AVP 0|a=SendOnly|"))
    assert [s.direction for s in session.streams] == [b"sendrecv", b"SendOnly"]


def test_e8_rtcp_lines():
    body = crlf("v=0|c=IN IP4 192.168.1.10|m=audio 1000 RTP/AVP 0|a=rtcp:0|"
                "m=audio 2000 RTP/AVP 0|a=rtcp:9 IN IP4 0.0.0.0|"
                "m=audio 3000 RTP/AVP 0|a=rtcp-mux|a=rtcp-fb:* nack|")
    _, out = run(body, b"203.0.113.5 40002 40006 40010")
    assert out == crlf("v=0|c=IN IP4 203.0.113.5|m=audio 40002 RTP/AVP 0|a=rtcp:0|"
                       "m=audio 40006 RTP/AVP 0|a=rtcp:40007 IN IP4 203.0.113.5|"
                       "m=audio 40010 RTP/AVP 0|a=rtcp-mux|a=rtcp-fb:* nack|")


@pytest.mark.parametrize("attributes", [
    "a=ice-ufrag:x|m=audio 1 RTP/AVP 0|a=ice-pwd:y|",   # split between levels
    "m=audio 1 RTP/AVP 0|",                              # no ufrag/pwd at all
])
def test_e9_incomplete_ice_is_not_ice(attributes):
    body = crlf("v=0|c=IN IP4 1.2.3.4|" + attributes +
                "a=candidate:1 1 UDP 2130706431 1.2.3.4 1 typ host|")
    media, out = run(body, b"203.0.113.5 40002", priority=sdp.ICE_HIGH_PRIORITY)
    assert media.endswith(b"ice=no\r\n")
    assert b"typ relay" not in out


def test_e10_remote_candidates():
    assert sdp.has_remote_candidates(crlf("v=0|m=audio 1 RTP/AVP 0|a=remote-candidates:1 1.2.3.4 5|"))
    assert not sdp.has_remote_candidates(crlf("v=0|m=audio 1 RTP/AVP 0|x=a=remote-candidates|"))


def test_e12_unsupported_streams_after_the_cut_keep_no_c_line():
    body = crlf("v=0|c=IN IP4 192.168.1.10|m=audio 1 RTP/AVP 0|m=video 2 RTP/AVP 31|"
                "m=message 3 TCP/MSRP *|")
    _, out = run(body, b"203.0.113.5 40000", request=False)
    assert out == crlf("v=0|m=audio 40000 RTP/AVP 0|c=IN IP4 203.0.113.5|m=video 2 RTP/AVP 31|"
                       "m=message 3 TCP/MSRP *|")


def test_e13_none_reply_on_a_reply_is_written_as_an_address():
    body = crlf("v=0|c=IN IP4 192.168.1.10|m=audio 1 RTP/AVP 0|")
    with pytest.raises(MediaProxyError):
        run(body, b"None\r\n", request=True)
    _, out = run(body, b"None\r\n", request=False)
    assert out == crlf("v=0|c=IN IP4 None|m=audio 1 RTP/AVP 0|")


def test_e15_ipv6():
    body = crlf("v=0|c=IN IP6 2001:db8::1|m=audio 49170 RTP/AVP 0|")
    media, out = run(body, b"203.0.113.5 40002", request=False)
    assert media == b"media: audio:2001:db8::1:49170:sendrecv:ice=no\r\n"
    assert out == crlf("v=0|c=IN IP6 203.0.113.5|m=audio 40002 RTP/AVP 0|")


def test_e16_processing_twice_rewrites_twice():
    _, once = run(V1_IN, b"203.0.113.5 40002")
    _, twice = run(once, b"198.51.100.1 40010")
    assert b"c=IN IP4 198.51.100.1" in twice and b"m=audio 40010 " in twice


def test_e17_no_final_line_break_glues_the_c_line():
    body = b"v=0\r\nc=IN IP4 192.168.1.10\r\nm=message 2 TCP/MSRP *\r\nm=audio 1 RTP/AVP 0"
    _, out = run(body, b"203.0.113.5 40002")
    assert out == (b"v=0\r\nm=message 2 TCP/MSRP *\r\nc=IN IP4 192.168.1.10\r\n"
                   b"m=audio 40002 RTP/AVP 0c=IN IP4 203.0.113.5\r\n")


def test_foundation_is_host_endian():
    assert sdp._foundation(b"1.2.3.4") == b"R4030201"
    assert sdp._foundation(b"10.0.0.1") == b"R100000a"


def test_rtcp_candidate_only_with_component_two():
    body = crlf("v=0|c=IN IP4 1.2.3.4|a=ice-ufrag:u|a=ice-pwd:p|m=audio 1 RTP/AVP 0|"
                "a=candidate:1 1 UDP 5 1.2.3.4 1 typ host|")
    session = sdp.parse(body)
    assert not session.streams[0].has_rtcp_ice
    edits = sdp.rewrite(session, RELAY, [b"40002"], sdp.ICE_LOW_PRIORITY)
    assert sum(b"typ relay" in e.text for e in edits) == 1


def test_edits_are_byte_ranges_against_the_original():
    session = sdp.parse(V1_IN)
    edits = sdp.rewrite(session, RELAY, [b"40002"])
    assert all(isinstance(e, tuple) and len(e) == 3 for e in edits)
    for start, end, _text in edits:
        assert V1_IN[start:end] in (b"192.168.1.10", b"49170")
    # unchanged text gives no edit (replace_element's no-op)
    assert sdp.rewrite(session, b"192.168.1.10", [b"49170"]) == []


def test_apply_edits_rejects_overlaps():
    with pytest.raises(ValueError):
        sdp.apply_edits(b"abcdef", [sdp.Edit(0, 3, b"x"), sdp.Edit(2, 4, b"y")])


def test_separator_is_taken_after_v_line():
    assert sdp.parse(b"v=0\nc=IN IP4 1.2.3.4\r\nm=audio 1 RTP/AVP 0\r\n").separator == b"\n"
    assert sdp.parse(V1_IN).separator == b"\r\n"

"""rtpengine module: bencode, the ng command built from OpenSIPS flags, sets and selection."""
import pytest

from modules.rtpengine import bencode, ng
from runtime.nodesets import ConfigError, Control, parse_sets
from modules.rtpengine import stat_line, stat_value


def test_bencode_roundtrip():
    d = {"command": "offer", "sdp": b"v=0\r\n", "flags": ["trust-address"], "n": 12,
         "nested": {"a": [1, b"x"]}}
    data = bencode.encode(d)
    assert data.startswith(b"d7:command5:offer3:sdp5:v=0\r\n")
    back = bencode.decode(data)
    assert back == {"command": b"offer", "sdp": b"v=0\r\n", "flags": [b"trust-address"],
                    "n": 12, "nested": {"a": [1, b"x"]}}


@pytest.mark.parametrize("bad", [b"d3:abc", b"i12", b"5:ab", b"x", b"d1:ai1ee1"])
def test_bencode_rejects_broken_input(bad):
    with pytest.raises(bencode.BencodeError):
        bencode.decode(bad)


def build(op, flags, **kw):
    args = dict(is_request=True, call_id="cid", from_tag="ft", to_tag="", src_ip="10.0.0.1",
                sdp=b"v=0\r\n")
    args.update(kw)
    return ng.build(op, flags, **args)


def test_offer_dictionary_as_opensips_builds_it():
    d, op = build(ng.OFFER, "trust-address replace-origin replace-session-connection "
                            "ICE=remove RTP/AVP in-iface=ext out-iface=int "
                            "rtcp-mux-demux media-address=1.2.3.4 record-call=yes "
                            "codec-mask=all codec-transcode=PCMA,PCMU")
    assert op == "offer"
    assert list(d) == ["sdp", "ICE", "media-address", "record-call", "direction", "flags",
                       "replace", "transport-protocol", "rtcp-mux", "codec", "call-id",
                       "received-from", "from-tag", "command"]
    assert d["flags"] == ["trust-address"]
    assert d["replace"] == ["origin", "session-connection"]
    assert d["direction"] == ["ext", "int"]
    assert d["transport-protocol"] == "RTP/AVP"
    assert d["rtcp-mux"] == ["demux"]
    assert d["codec"] == {"mask": ["all"], "transcode": ["PCMA", "PCMU"]}
    assert d["received-from"] == ["IP4", "10.0.0.1"]
    assert d["from-tag"] == "ft" and "to-tag" not in d


def test_transport_flags_combine():
    assert build(ng.OFFER, "SRTP AVPF")[0]["transport-protocol"] == "RTP/SAVPF"
    assert build(ng.OFFER, "RTP AVP")[0]["transport-protocol"] == "RTP/AVP"
    assert build(ng.OFFER, "UDP/TLS/RTP/SAVPF")[0]["transport-protocol"] == \
        "UDP/TLS/RTP/SAVPF"
    assert "transport-protocol" not in build(ng.OFFER, "")[0]


def test_answer_on_a_reply_keeps_the_tags_answer_on_ack_swaps_them():
    d, _ = build(ng.ANSWER, None, is_request=False, to_tag="tt")
    assert (d["from-tag"], d["to-tag"]) == ("ft", "tt")
    d, _ = build(ng.ANSWER, None, is_request=True, to_tag="tt")
    assert (d["from-tag"], d["to-tag"]) == ("tt", "ft")
    d, _ = build(ng.OFFER, None, is_request=False, to_tag="tt")   # late offer in a 200
    assert (d["from-tag"], d["to-tag"]) == ("tt", "ft")


def test_delete_sends_the_to_tag_only_when_asked():
    assert "to-tag" not in build(ng.DELETE, None, to_tag="tt", sdp=None)[0]
    assert build(ng.DELETE, "to-tag", to_tag="tt", sdp=None)[0]["to-tag"] == "tt"
    assert "sdp" not in build(ng.DELETE, None, sdp=None)[0]


def test_overrides_and_force_answer():
    d, op = build(ng.OFFER, "force-answer call-id=other from-tag=f2 to-tag=t2")
    assert op == "answer" and d["command"] == "answer"
    assert d["call-id"] == "other"
    assert (d["from-tag"], d["to-tag"]) == ("t2", "f2")      # answer on a request swaps


def test_via_branch():
    d, _ = build(ng.OFFER, "via-branch=auto", via_branch=lambda n: f"z9hG4bK{n}")
    assert d["via-branch"] == "z9hG4bK1"
    d, _ = build(ng.OFFER, "via-branch=auto", is_request=False, to_tag="t",
                 via_branch=lambda n: f"z9hG4bK{n}")
    assert d["via-branch"] == "z9hG4bK2"


@pytest.mark.parametrize("flags, error", [
    ("ICE=bogus", "invalid value"), ("ICE", "missing value"), ("in-iface=a", "without"),
    ("via-branch=9", "invalid value"), ("address-family=IP5", "invalid value"),
    ("repacketize=x", "invalid value"), ("delete-delay=0", "invalid value")])
def test_bad_flags(flags, error):
    with pytest.raises(ng.FlagError, match=error):
        build(ng.OFFER, flags)


def test_force_answer_only_in_offer():
    with pytest.raises(ng.FlagError, match="non-offer"):
        build(ng.ANSWER, "force-answer", is_request=False, to_tag="t")


def test_sets():
    sets = parse_sets(["udp:127.0.0.1:2222 udp:127.0.0.1:2223=3",
                       "1 == udp:10.0.0.1:22222 unix:/run/rtpe.sock",
                       "2 == udp6:[::1]:5555=0"])
    assert [(n.url, n.weight, n.mode) for n in sets[0]] == [
        ("udp:127.0.0.1:2222", 1, "udp"), ("udp:127.0.0.1:2223", 3, "udp")]
    assert [n.mode for n in sets[1]] == ["udp", "unix"]
    assert sets[1][1].address == "/run/rtpe.sock"
    assert sets[2][0].host_port() == ("::1", 5555) and sets[2][0].weight == 0
    with pytest.raises(ConfigError):
        parse_sets(["x == udp:1.2.3.4:5"])
    with pytest.raises(ConfigError):
        parse_sets(["1 == "])


def test_selection_is_stable_per_call_and_skips_disabled_nodes():
    sets = parse_sets(["udp:127.0.0.1:1 udp:127.0.0.1:2 udp:127.0.0.1:3"])
    c = Control(sets)
    c.probe = lambda node: False
    nodes = sets[0]
    picks = {c.select(f"call-{i}", nodes).url for i in range(50)}
    assert len(picks) == 3
    first = c.select("abc", nodes)
    assert c.select("abc", nodes) is first
    c.disable(first)
    other = c.select("abc", nodes)
    assert other is not first and not other.disabled


def test_stats():
    resp = {"created": 100,
            "totals": {"RTP": {"bytes": 10, "packets": 2, "errors": 0},
                       "RTCP": {"bytes": 0, "packets": 0, "errors": 0}},
            "SSRC": {"11": {"average MOS": {"MOS": 40}, "lowest MOS": {"MOS": 30,
                                                                    "reported at": 105}},
                     "22": {"average MOS": {"MOS": 44}, "lowest MOS": {"MOS": 35,
                                                                    "reported at": 103}}},
            "tags": {"ft": {"medias": [{"streams": [{"SSRC": 22}]}]}}}
    assert stat_line(resp) == ("RTP: 10 bytes, 2 packets, 0 errors; "
                               "RTCP: 0 bytes, 0 packets, 0 errors")
    assert stat_value(resp, "MOS-average") == 42
    assert stat_value(resp, "MOS-min") == 30
    assert stat_value(resp, "MOS-min-at") == 5
    assert stat_value(resp, "MOS-average", "ft") == 44
    assert stat_value(resp, "jitter-average") is None

"""The embedded dispatcher + relay over its UNIX socket: replies, ports, §7 E21 scenarios."""

import json
import socket

from tests.mediaproxy.mp_helpers import audio, free_tcp_port, wait_for

CALLER_SDP = ("192.168.1.10", 49170)
CALLEE_SDP = ("192.0.2.20", 5004)


def offer_answer(d, call_id="c1", callee_port=5004):
    offer = d.update(call_id, media=[audio(*CALLER_SDP)])
    answer = d.update(call_id, type="reply", to_tag="callee", media=[audio("192.0.2.20", callee_port)])
    return offer, answer


def streams(d, call_id):
    return next(s for s in d.sessions() if s["call_id"] == call_id)["streams"]


def test_raw_wire_exchange(start_dispatcher):
    handle, d, _ = start_dispatcher(port_range=(43000, 43100))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(handle.socket_path)
        s.sendall(b"update\r\ntype: request\r\ndialog_id: \r\ncall_id: raw-1\r\ncseq: 314159\r\n"
                  b"from_uri: alice@example.com\r\nto_uri: bob@example.org\r\n"
                  b"from_tag: 1928301774\r\nto_tag: \r\nuser_agent: ExamplePhone/1.0\r\n"
                  b"signaling_ip: 198.51.100.7\r\nmedia_relay: \r\n"
                  b"media: audio:192.168.1.10:49170:sendrecv:ice=no\r\n\r\n")
        assert s.recv(100) == b"127.0.0.1 43002\r\n"
        s.sendall(b"\r\nremove\r\ncall_id: raw-1\r\nfrom_tag: 1928301774\r\nto_tag: \r\n\r\n")
        assert s.recv(100) == b"removed\r\n"
        s.sendall(b"version\r\n")
        assert s.recv(100) == b"4.1.2\r\n"


def test_replies_and_port_allocation(start_dispatcher):
    _, d, _ = start_dispatcher(port_range=(43200, 43300))
    # two streams: caller pairs 43200/43204, callee pairs 43202/43206
    assert d.update("c1", media=[audio(*CALLER_SDP), audio("192.168.1.10", 51372, kind="video")]) \
        == "127.0.0.1 43202 43206"
    assert d.update("c1", type="reply", to_tag="callee",
                    media=[audio(*CALLEE_SDP), audio("192.0.2.20", 5006, kind="video")]) \
        == "127.0.0.1 43200 43204"
    assert d.update("c2", media=[audio(*CALLER_SDP)]) == "127.0.0.1 43210"
    [c1] = [s for s in d.sessions() if s["call_id"] == "c1"]
    assert c1["to_tag"] == "callee" and c1["caller_ua"] == "test-ua"
    assert [(s["media_type"], s["caller_local"], s["callee_local"]) for s in c1["streams"]] == [
        ("audio", "127.0.0.1:43200", "127.0.0.1:43202"),
        ("video", "127.0.0.1:43204", "127.0.0.1:43206")]
    assert d.summary()[0]["session_count"] == 2
    assert d.summary()[0]["stream_count"] == {"audio": 2, "video": 1}
    assert d.remove("c1") == "removed"
    assert d.remove("c1") == "error"                     # E19: unknown session
    assert [s["call_id"] for s in d.sessions()] == ["c2"]
    # freed pairs go to the back of the pool
    assert d.update("c3", media=[audio(*CALLER_SDP)]) == "127.0.0.1 43214"


def test_advertised_ip(start_dispatcher):
    _, d, _ = start_dispatcher(advertised_ip="203.0.113.5")
    assert d.update("c1", media=[audio(*CALLER_SDP)]).startswith("203.0.113.5 ")


def test_bad_commands(start_dispatcher):
    _, d, _ = start_dispatcher()
    assert d.command(b"update\r\ntype: request\r\nno header here\r\n\r\n") == "error"
    assert d.command(b"update\r\ntype: request\r\ncseq: 1\r\n\r\n") == "error"   # no call_id
    assert d.command(b"update\r\ncall_id: x\r\ncseq: 1\r\n\r\n") == "error"      # relay: missing
    assert d.command(b"remove\r\ncall_id: nope\r\nfrom_tag: a\r\n\r\n") == "error"
    assert d.command(b"bogus\r\ncall_id: x\r\n\r\n") == "error"
    # a reply without media for an unknown session
    assert d.update("c9", type="reply", to_tag="callee") == "None"
    assert d.update("c9", media=["audio:2001:db8::1:49170:sendrecv:ice=no"]) == "None"  # E15


def test_late_offer(start_dispatcher):
    _, d, _ = start_dispatcher(port_range=(43400, 43500))
    # INVITE without SDP: no update. The 200 OK carries the offer, the ACK the answer.
    assert d.update("c1", type="reply", to_tag="callee", media=[audio(*CALLEE_SDP)]) \
        == "127.0.0.1 43400"
    assert d.update("c1", type="request", to_tag="callee", media=[audio(*CALLER_SDP)]) \
        == "127.0.0.1 43402"
    [stream] = streams(d, "c1")
    assert stream["status"] == "active"


def test_callee_rejects_streams(start_dispatcher):
    _, d, _ = start_dispatcher(port_range=(43600, 43700))
    d.update("c1", media=[audio(*CALLER_SDP), audio("192.168.1.10", 6000, kind="video"),
                          audio("192.168.1.10", 6002, kind="video")])
    assert d.update("c1", type="reply", to_tag="callee",
                    media=[audio(*CALLEE_SDP), audio("192.0.2.20", 0, kind="video")]) \
        == "127.0.0.1 43600 0 0"
    assert [s["status"] for s in streams(d, "c1")] == ["active", "rejected", "rejected"]


def test_callee_reinvite_with_new_port_gets_new_relay_ports(start_dispatcher):
    _, d, _ = start_dispatcher(port_range=(43800, 43900))
    assert offer_answer(d) == ("127.0.0.1 43802", "127.0.0.1 43800")
    # re-INVITE from the callee: its From tag is the callee's, found through the To tag
    assert d.update("c1", from_tag="callee", to_tag="caller", cseq=1,
                    media=[audio("192.0.2.20", 6000)]) == "127.0.0.1 43804"
    assert d.update("c1", type="reply", from_tag="callee", to_tag="caller", cseq=1,
                    media=[audio(*CALLER_SDP)]) == "127.0.0.1 43806"
    statuses = [s["status"] for s in streams(d, "c1")]
    assert statuses == ["closed", "active"]


def test_hold_keeps_the_stream(start_dispatcher):
    _, d, _ = start_dispatcher(port_range=(43800, 43900))
    offer_answer(d)
    assert d.update("c1", cseq=2, media=[audio(*CALLER_SDP, direction="sendonly")]) == "127.0.0.1 43802"
    assert d.update("c1", type="reply", to_tag="callee", cseq=2,
                    media=[audio(*CALLEE_SDP, direction="recvonly")]) == "127.0.0.1 43800"
    assert [s["status"] for s in streams(d, "c1")] == ["on hold"]
    assert d.update("c1", cseq=3, media=[audio("0.0.0.0", 49170)]) == "127.0.0.1 43802"
    d.update("c1", type="reply", to_tag="callee", cseq=3, media=[audio(*CALLEE_SDP)])
    assert [s["status"] for s in streams(d, "c1")] == ["on hold"]
    assert d.update("c1", cseq=4, media=[audio(*CALLER_SDP)]) == "127.0.0.1 43802"
    d.update("c1", type="reply", to_tag="callee", cseq=4, media=[audio(*CALLEE_SDP)])
    assert [s["status"] for s in streams(d, "c1")] == ["active"]


def test_video_removed_and_added_again(start_dispatcher):
    _, d, _ = start_dispatcher(port_range=(42600, 42700))
    video = audio("192.168.1.10", 6000, kind="video")
    d.update("c1", media=[audio(*CALLER_SDP), video])
    d.update("c1", type="reply", to_tag="callee",
             media=[audio(*CALLEE_SDP), audio("192.0.2.20", 6000, kind="video")])
    assert d.update("c1", cseq=2, media=[audio(*CALLER_SDP), audio("192.168.1.10", 0, kind="video")]) \
        == "127.0.0.1 42602 0"
    assert d.update("c1", type="reply", to_tag="callee", cseq=2,
                    media=[audio(*CALLEE_SDP), audio("192.0.2.20", 0, kind="video")]) \
        == "127.0.0.1 42600 0"
    reply = d.update("c1", cseq=3, media=[audio(*CALLER_SDP), audio("192.168.1.10", 6004, kind="video")])
    ip, audio_port, video_port = reply.split()
    assert audio_port == "42602" and video_port not in ("0", "42606")
    summary = d.summary()[0]
    assert summary["stream_count"] == {"audio": 1, "video": 1}


def test_e22_remove_with_the_callees_tags(start_dispatcher):
    _, d, _ = start_dispatcher()
    offer_answer(d)
    assert d.remove("c1", from_tag="callee", to_tag="caller") == "removed"
    assert d.sessions() == []


def test_no_traffic_timeout_ends_the_dialog(start_dispatcher, tmp_path):
    mi_path = str(tmp_path / "opensips.sock")
    mi = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    mi.bind(mi_path)
    mi.settimeout(5)
    _, d, log = start_dispatcher(stream_timeout=0.3, mi_socket=mi_path,
                                 extra_args=["--tick", "0.05"])
    d.update("c1", dialog_id="5299989648942", media=[audio(*CALLER_SDP)])
    d.update("c1", dialog_id="5299989648942", type="reply", to_tag="callee",
             media=[audio(*CALLEE_SDP)])
    request = json.loads(mi.recv(4096))
    assert request["method"] == "dlg_end_dlg" and request["params"] == ["5299989648942"]
    assert request["jsonrpc"] == "2.0" and len(request["id"]) == 8
    assert d.sessions() == []
    assert "expired: no-traffic timeout" in log.read_text()
    assert d.remove("c1") == "removed"       # the remove that follows dlg_end_dlg
    assert d.remove("c1") == "error"
    mi.close()


def test_unselected_ice_candidate_does_not_end_the_dialog(start_dispatcher):
    _, d, log = start_dispatcher(stream_timeout=0.3, extra_args=["--tick", "0.05"])
    d.update("c1", dialog_id="77", media=[audio(*CALLER_SDP, ice="yes")])
    d.update("c1", dialog_id="77", type="reply", to_tag="callee", media=[audio(*CALLEE_SDP, ice="yes")])
    wait_for(lambda: d.sessions() == [])
    text = log.read_text()
    assert "expired: unselected ICE candidate" in text
    assert "dialog 77 timed out" not in text
    assert d.remove("c1") == "error"


def test_tcp_management(start_dispatcher):
    port = free_tcp_port()
    _, d, _ = start_dispatcher(management="127.0.0.1:%d" % port)
    d.update("c1", media=[audio(*CALLER_SDP)])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        f = s.makefile("rb")
        s.sendall(b"summary\r\n")
        [relay] = json.loads(f.readline())
        assert relay["ip"] == "127.0.0.1" and relay["session_count"] == 1
        assert set(relay) == {"ip", "version", "status", "uptime", "session_count",
                              "stream_count", "bps_relayed"}
        s.sendall(b"sessions\r\n")
        assert [x["call_id"] for x in json.loads(f.readline())] == ["c1"]
        s.sendall(b"version\r\nnonsense\r\nquit\r\n")
        assert f.readline() == b"4.1.2\r\n"
        assert f.readline() == b"error\r\n"
        assert f.readline() == b""

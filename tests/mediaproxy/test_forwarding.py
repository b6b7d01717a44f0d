"""Media through the embedded relay with real UDP peers on 127.0.0.x."""

import pytest

from tests.mediaproxy.mp_helpers import Peer, audio, wait_for


@pytest.fixture
def peers():
    made = []

    def make(ip):
        made.append(Peer(ip))
        return made[-1]

    yield make
    for peer in made:
        peer.close()


def call(d, caller, callee, call_id="c1"):
    """Offer/answer; returns (relay ip, caller-facing port, callee-facing port)."""
    ip, to_callee = d.update(call_id, media=[audio(caller.ip, caller.port)]).split()
    ip2, to_caller = d.update(call_id, type="reply", to_tag="callee",
                              media=[audio(callee.ip, callee.port)]).split()
    assert ip == ip2
    return ip, int(to_caller), int(to_callee)


def test_latching_both_ways_and_counters(start_dispatcher, peers):
    _, d, _ = start_dispatcher(routable_private=False)
    caller, callee, intruder = peers("127.0.0.10"), peers("127.0.0.11"), peers("127.0.0.12")
    relay, a, b = call(d, caller, callee)

    caller.send(relay, a, 5)                 # callee unknown and not routable: dropped
    assert callee.nothing()
    callee.send(relay, b, 5, pt=8)           # caller is latched: delivered from port a
    got = caller.receive(5)
    assert len(got) == 5 and {addr for _, addr in got} == {(relay, a)}
    caller.send(relay, a, 5)                 # now the callee is latched too
    got = callee.receive(5)
    assert len(got) == 5 and {addr for _, addr in got} == {(relay, b)}
    assert got[0][0] == Peer.packet(0)

    caller.send(relay, a, 1, rtcp=True)      # RTCP never goes to an unlearnt side
    assert callee.nothing(rtcp=True)
    callee.send(relay, b, 1, rtcp=True)
    assert len(caller.receive(1, rtcp=True)) == 1
    caller.send(relay, a, 1, rtcp=True)
    assert len(callee.receive(1, rtcp=True)) == 1

    intruder.send(relay, a, 3)               # latched: another source is dropped
    assert callee.nothing()

    [stream] = d.sessions()[0]["streams"]
    assert (stream["caller_packets"], stream["callee_packets"]) == (6, 6)
    assert (stream["caller_bytes"], stream["callee_bytes"]) == (6 * 172, 6 * 172)
    assert (stream["caller_codec"], stream["callee_codec"]) == ("G711u", "G711a")
    assert stream["caller_remote"] == "127.0.0.10:%d" % caller.port
    assert stream["callee_remote"] == "127.0.0.11:%d" % callee.port
    assert stream["post_dial_delay"] is not None

    assert d.remove("c1") == "removed"
    assert d.sessions() == []
    caller.send(relay, a, 2)                 # ports are closed
    assert callee.nothing()


def test_routable_sdp_address_gets_media_before_latching(start_dispatcher, peers):
    _, d, _ = start_dispatcher(routable_private=True)
    caller, callee = peers("127.0.0.20"), peers("127.0.0.21")
    relay, a, b = call(d, caller, callee)
    caller.send(relay, a, 3)
    got = callee.receive(3)
    assert len(got) == 3 and got[0][1] == (relay, b)
    caller.send(relay, a, 1, rtcp=True)      # but never RTCP
    assert callee.nothing(rtcp=True)


def test_new_answer_address_resets_latching(start_dispatcher, peers):
    _, d, _ = start_dispatcher()
    caller, early, final = peers("127.0.0.30"), peers("127.0.0.31"), peers("127.0.0.32")
    relay, to_callee = d.update("c1", media=[audio(caller.ip, caller.port)]).split()
    b = int(to_callee)
    a = int(d.update("c1", type="reply", to_tag="t1", media=[audio(early.ip, early.port)]).split()[1])
    caller.send(relay, a, 1)                 # latches the caller side
    early.send(relay, b, 2)
    assert len(caller.receive(2)) == 2
    caller.send(relay, a, 1)
    assert len(early.receive(1)) == 1
    # a 200 OK from another branch with a new address: the callee side learns again
    assert d.update("c1", type="reply", to_tag="t2",
                    media=[audio(final.ip, final.port)]).split()[1] == str(a)
    final.send(relay, b, 2)
    assert len(caller.receive(2)) == 2
    caller.send(relay, a, 1)
    assert len(final.receive(1)) == 1 and early.nothing()
    early.send(relay, b, 1)                  # the obsolete address is ignored
    assert caller.nothing()
    assert d.sessions()[0]["to_tag"] == "t1"


def test_stun_is_held_until_the_other_side_is_known(start_dispatcher, peers):
    _, d, _ = start_dispatcher()
    caller, callee = peers("127.0.0.40"), peers("127.0.0.41")
    relay, a, b = call(d, caller, callee)
    stun = bytes([0, 1, 0, 0]) + b"\x21\x12\xa4\x42" + b"t" * 12
    caller.rtp.sendto(stun, (relay, a))
    assert callee.nothing()
    callee.send(relay, b, 1)
    assert callee.receive(1)[0][0] == stun


def test_idle_streams_expire(start_dispatcher, peers):
    _, d, log = start_dispatcher(idle_timeout=0.3, extra_args=["--tick", "0.05"])
    caller, callee = peers("127.0.0.50"), peers("127.0.0.51")
    relay, a, b = call(d, caller, callee)
    callee.send(relay, b, 1)
    caller.send(relay, a, 1)
    assert len(callee.receive(1)) == 1
    wait_for(lambda: d.sessions() == [])
    assert "expired: idle timeout" in log.read_text()

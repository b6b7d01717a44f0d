"""Two cfgscript-relay processes (127.0.0.2, 127.0.0.3) behind one dispatcher."""

from collections import Counter

from tests.mediaproxy.mp_helpers import Peer, audio, free_tcp_port, wait_for

RELAYS = ["127.0.0.2", "127.0.0.3"]


def test_sessions_spread_and_media_relay_hint(start_dispatcher, start_relay):
    port = free_tcp_port()
    _, d, log = start_dispatcher(relay_listen="127.0.0.1:%d" % port, local_relay=False)
    relays = {ip: start_relay(ip, "127.0.0.1:%d" % port) for ip in RELAYS}
    wait_for(lambda: sorted(r["ip"] for r in d.summary()) == RELAYS)

    spread = Counter(d.update("s%d" % i, media=[audio("192.168.1.10", 4000 + 2 * i)]).split()[0]
                     for i in range(24))
    assert set(spread) == set(RELAYS) and sum(spread.values()) == 24
    assert len(d.sessions()) == 24
    # later commands for a session go to the relay that has it
    for i in range(24):
        assert d.remove("s%d" % i, to_tag="") == "removed"
    assert d.sessions() == []

    for i in range(8):
        reply = d.update("h%d" % i, media_relay="127.0.0.3", media=[audio("192.168.1.10", 5000)])
        assert reply.split()[0] == "127.0.0.3"
    assert d.update("x1", media_relay="127.0.0.9", media=[audio("192.168.1.10", 5000)]) \
        .split()[0] in RELAYS
    assert "user requested media_relay 127.0.0.9 for session x1 not available" in log.read_text()

    # media through a remote relay
    caller, callee = Peer("127.0.0.60"), Peer("127.0.0.61")
    try:
        ip, b = d.update("m1", media_relay="127.0.0.2", media=[audio(caller.ip, caller.port)]).split()
        _, a = d.update("m1", type="reply", to_tag="callee",
                        media=[audio(callee.ip, callee.port)]).split()
        assert ip == "127.0.0.2"
        caller.send(ip, int(a), 1)
        callee.send(ip, int(b), 3)
        assert len(caller.receive(3)) == 3
        caller.send(ip, int(a), 3)
        assert len(callee.receive(3)) == 3
    finally:
        caller.close()
        callee.close()
    [m1] = [s for s in d.sessions() if s["call_id"] == "m1"]
    assert (m1["streams"][0]["caller_packets"], m1["streams"][0]["callee_packets"]) == (3, 3)

    # a relay that stops cleanly reports its sessions expired and leaves the pool
    relays["127.0.0.2"].terminate()
    assert relays["127.0.0.2"].wait(10) == 0
    wait_for(lambda: [r["ip"] for r in d.summary()] == ["127.0.0.3"])
    assert all(s["call_id"] != "m1" for s in d.sessions())
    assert d.update("m1", media=[audio("192.168.1.10", 5000)]).split()[0] == "127.0.0.3"

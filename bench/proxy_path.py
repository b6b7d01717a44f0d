"""In-process cost of the proxy path: CPU microseconds per message, best of N rounds.

    .venv/bin/python bench/proxy_path.py [--script stateless|stateful|both] [--calls N]
                                         [--rounds N] [--profile]

Runs the calls of bench/proxy_load.py (INVITE, 180, 200, ACK, BYE, 200 through one
proxy; record-routed for the stateful script) through ``Server.receive`` of the loaded
bench/load/<script>.cfg, with a transport that keeps what the proxy sends instead of
writing it to a socket: parse, script, tm, edits, build and send, without the socket calls
and the event loop. A small UAC and UAS answer from what the proxy sent (outside the
timed part). Only the ``receive`` calls are timed, with the thread's CPU clock. The event
loop runs one iteration every 50 calls (so cancelled timers are closed); timers never come
due (transactions stay, as during the first 32 s of a load run).

Prints CPU microseconds per received message and per call (6 messages in, 6 or 7 out),
and the part of it spent in the garbage collector (gc.callbacks).
``--profile`` runs one more round under cProfile and prints the top functions.
"""
import argparse
import asyncio
import gc
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cfgscript import parse_file  # noqa: E402
from runtime.loader import load_script  # noqa: E402
from runtime.server import Server, settle_gc  # noqa: E402

UAC = ("127.0.0.3", 5070)
UAS = ("127.0.0.2", 5080)
SDP = (b"v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.3\r\ns=-\r\nc=IN IP4 127.0.0.3\r\n"
       b"t=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")


class Capture:
    """A UDP transport that keeps the datagrams."""

    def __init__(self):
        self.sent = []

    def sendto(self, data, addr):
        self.sent.append((data, addr))


def _lines(data: bytes, name: bytes):
    return re.findall(rb"(?im)^" + name + rb":[^\r\n]*", data)


def _one(data: bytes, name: bytes) -> bytes:
    return _lines(data, name)[0]


def uas_reply(req: bytes, status: bytes, totag: bytes, sdp: bool, rr: bool) -> bytes:
    """SIPp's uas-rr.xml: [last_Via:] [last_From:] [last_To:];tag [last_Call-ID:] ..."""
    out = [b"SIP/2.0 " + status]
    out += _lines(req, b"Via")
    out.append(_one(req, b"From"))
    to = _one(req, b"To")
    out.append(to if b";tag=" in to else to + b";tag=" + totag)
    out.append(_one(req, b"Call-ID"))
    out.append(_one(req, b"CSeq"))
    if rr:
        out += _lines(req, b"Record-Route")
        out.append(b"Contact: <sip:%s:%d;transport=UDP>" % (UAS[0].encode(), UAS[1]))
    body = SDP if sdp else b""
    if sdp:
        out.append(b"Content-Type: application/sdp")
    out.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(out) + b"\r\n\r\n" + body


def uac_invite(n: int) -> bytes:
    return (b"INVITE sip:service@127.0.0.2:5080 SIP/2.0\r\n"
            b"Via: SIP/2.0/UDP 127.0.0.3:5070;branch=z9hG4bK-4242-%d-0\r\n"
            b"From: sipp <sip:sipp@127.0.0.3:5070>;tag=4242SIPpTag00%d\r\n"
            b"To: service <sip:service@127.0.0.2:5080>\r\n"
            b"Call-ID: %d-4242@127.0.0.3\r\n"
            b"CSeq: 1 INVITE\r\n"
            b"Contact: sip:sipp@127.0.0.3:5070\r\n"
            b"Max-Forwards: 70\r\n"
            b"Content-Type: application/sdp\r\n"
            b"Content-Length: %d\r\n\r\n" % (n, n, n, len(SDP))) + SDP


def uac_in_dialog(n: int, method: bytes, cseq: int, ok200: bytes) -> bytes:
    """ACK/BYE as uac-rr.xml sends them: [next_url], [routes], [peer_tag_param]."""
    contact = re.search(rb"(?im)^Contact:\s*<([^>]*)>", ok200).group(1)
    to = _one(ok200, b"To")
    rrs = [v.split(b":", 1)[1].strip() for v in _lines(ok200, b"Record-Route")]
    routes = [b"Route: " + b", ".join(reversed(rrs))] if rrs else []
    lines = [method + b" " + contact + b" SIP/2.0",
             b"Via: SIP/2.0/UDP 127.0.0.3:5070;branch=z9hG4bK-4242-%d-%d" % (n, cseq * 10),
             b"From: sipp <sip:sipp@127.0.0.3:5070>;tag=4242SIPpTag00%d" % n,
             to] + routes + [
             b"Call-ID: %d-4242@127.0.0.3" % n,
             b"CSeq: %d %s" % (cseq, method),
             b"Contact: sip:sipp@127.0.0.3:5070",
             b"Max-Forwards: 70",
             b"Content-Length: 0"]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def setup(script: str):
    loaded = load_script(parse_file(str(ROOT / "bench" / "load" / f"{script}.cfg")))
    rt = loaded.rt
    for mod in rt.modules.values():
        if mod.init:
            mod.init(rt)
    srv = Server(rt)
    try:
        import uvloop
        srv.loop = uvloop.new_event_loop()
    except ImportError:
        srv.loop = asyncio.new_event_loop()
    rt.compiled.ns["_hit"] = srv.hit
    cap = Capture()
    for sock in rt.sockets:
        sock.transport = cap
    for mod in rt.modules.values():
        if mod.child_init:
            mod.child_init(rt)
    settle_gc()  # as Server.start() does
    return rt, srv, cap


class GCClock:
    """CPU time spent in the garbage collector (gc.callbacks), per generation."""

    def __init__(self):
        self.spent = [0, 0, 0]
        self.count = [0, 0, 0]
        self._t = 0
        gc.callbacks.append(self)

    def __call__(self, phase, info):
        if phase == "start":
            self._t = time.thread_time_ns()
        else:
            g = info["generation"]
            self.spent[g] += time.thread_time_ns() - self._t
            self.count[g] += 1

    def reset(self):
        self.spent = [0, 0, 0]
        self.count = [0, 0, 0]


def run_calls(srv, rt, cap, first: int, calls: int, rr: bool):
    """Run `calls` calls; return (CPU ns in receive, messages received, ns per kind of
    message: INVITE, 180, 200, ACK, BYE, 200 to the BYE)."""
    sock = rt.sockets[0]
    clock = time.thread_time_ns
    receive = srv.receive
    kinds = [0] * 6
    msgs = 0

    def feed(data, src):
        nonlocal msgs
        cap.sent.clear()
        t = clock()
        receive(data, src, sock, "udp")
        kinds[msgs % 6] += clock() - t
        msgs += 1
        return list(cap.sent)

    def to(out, addr):
        for data, a in out:
            if a == addr:
                return data
        raise RuntimeError(f"nothing sent to {addr}: {out!r}")

    loop = srv.loop
    for n in range(first, first + calls):
        if n % 50 == 0:
            loop.run_until_complete(asyncio.sleep(0))  # let the loop close cancelled timers
        inv = to(feed(uac_invite(n), UAC), UAS)
        tag = b"4343SIPpTag01%d" % n
        feed(uas_reply(inv, b"180 Ringing", tag, False, True), UAS)
        ok = to(feed(uas_reply(inv, b"200 OK", tag, True, True), UAS), UAC)
        ack = to(feed(uac_in_dialog(n, b"ACK", 1, ok), UAC), UAS)
        assert ack.startswith(b"ACK ")
        bye = to(feed(uac_in_dialog(n, b"BYE", 2, ok), UAC), UAS)
        to(feed(uas_reply(bye, b"200 OK", tag, False, False), UAS), UAC)
    return sum(kinds), msgs, kinds


def bench(script: str, calls: int, rounds: int, profile: bool):
    rt, srv, cap = setup(script)
    rr = script == "stateful"
    run_calls(srv, rt, cap, 0, 200, rr)  # warm up (caches, code paths)
    runs = []
    first = 1000
    gcc = GCClock()
    for _ in range(rounds):
        gc.collect()
        gcc.reset()
        spent, msgs, kinds = run_calls(srv, rt, cap, first, calls, rr)
        first += calls
        runs.append((spent, msgs, sum(gcc.spent), list(gcc.count), kinds))
    runs.sort()
    spent, msgs, in_gc, counts, kinds = runs[0]
    per_msg = spent / msgs / 1000
    median = runs[len(runs) // 2][0] / runs[len(runs) // 2][1] / 1000
    print(f"{script:9}: {per_msg:6.1f} us per message, {spent / calls / 1000:7.1f} us per call"
          f"  (best of {rounds} x {calls} calls, CPU time in receive; median {median:.1f} us"
          f" per message; in the collector {in_gc / msgs / 1000:.1f} us per message,"
          f" collections {counts})", flush=True)
    print("           " + ", ".join(f"{name} {ns / calls / 1000:.1f}" for name, ns in zip(
        ("INVITE", "180", "200", "ACK", "BYE", "200/BYE"), kinds)) + " us", flush=True)
    if profile:
        import cProfile
        import pstats
        prof = cProfile.Profile()
        prof.enable()
        run_calls(srv, rt, cap, first, calls, rr)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(30)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--script", choices=("stateless", "stateful", "both"), default="both")
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    scripts = ("stateless", "stateful") if args.script == "both" else (args.script,)
    for script in scripts:
        bench(script, args.calls, args.rounds, args.profile)


if __name__ == "__main__":
    sys.exit(main())

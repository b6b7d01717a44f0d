"""Micro-benchmark of the sans-IO SIP layer: microseconds per message, best of N runs.

    .venv/bin/python bench/sip_parse.py [--rounds N] [--loops N] [--cpu N] [--no-gc]

Figures (one core, garbage collector on unless --no-gc; the "machine reference" line makes
figures from different machines comparable -- it is about 0.5 us on a current desktop):
  parse        Message.parse() of a typical INVITE with SDP (13 headers, 1 KB)
  parse+5      parse, then read via1, from_, to, call_id, cseq (what every proxy reads)
  parse+all    parse+5, then check_mandatory(), vias, contacts, routes, max_forwards
  build        build_request() of that INVITE with a new top Via, a Record-Route added,
               Max-Forwards replaced and one Route dropped
  reply        make_reply(req, 200, 'OK') with a generated To tag
  200 OK       parse of a 200 OK reply + via1/cseq/to (the reply path)
"""
import argparse
import gc
import os
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runtime.sip import Edits, Message, build_request, make_reply  # noqa: E402

SDP = (b"v=0\r\no=alice 2890844526 2890844526 IN IP4 client.atlanta.example.com\r\n"
       b"s=-\r\nc=IN IP4 192.0.2.101\r\nt=0 0\r\nm=audio 49172 RTP/AVP 0 8 101\r\n"
       b"a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
       b"a=fmtp:101 0-16\r\na=sendrecv\r\n")
INVITE = (
    b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP client.atlanta.example.com:5060;branch=z9hG4bK74bf9;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"Route: <sip:proxy.atlanta.example.com;lr>\r\n"
    b"From: \"Alice\" <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n"
    b"To: \"Bob\" <sip:bob@biloxi.example.com>\r\n"
    b"Call-ID: 3848276298220188511@atlanta.example.com\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:alice@client.atlanta.example.com;transport=udp>\r\n"
    b"Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, SUBSCRIBE, INFO\r\n"
    b"Supported: replaces, timer\r\n"
    b"User-Agent: SIPp/Linux\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: " + str(len(SDP)).encode() + b"\r\n\r\n" + SDP)
OK200 = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKcfg.1;rport=5060\r\n"
    b"Via: SIP/2.0/UDP client.atlanta.example.com:5060;branch=z9hG4bK74bf9;received=192.0.2.101;rport=5060\r\n"
    b"Record-Route: <sip:192.0.2.1;lr>\r\n"
    b"From: \"Alice\" <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n"
    b"To: \"Bob\" <sip:bob@biloxi.example.com>;tag=8321234356\r\n"
    b"Call-ID: 3848276298220188511@atlanta.example.com\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:bob@client.biloxi.example.com>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: " + str(len(SDP)).encode() + b"\r\n\r\n" + SDP)


def parse_only():
    Message.parse(INVITE)


def parse5():
    m = Message.parse(INVITE)
    m.via1
    m.from_
    m.to
    m.call_id
    m.cseq


def parse_all():
    m = Message.parse(INVITE)
    m.via1
    m.from_
    m.to
    m.call_id
    m.cseq
    m.check_mandatory()
    m.vias
    m.contacts
    m.routes
    m.max_forwards


_REQ = Message.parse(INVITE)


def build():
    e = Edits(_REQ)
    e.add_header("Record-Route: <sip:192.0.2.1;lr>", "top")
    e.replace_header(_REQ.get_header("max-forwards"), "Max-Forwards: 69")
    build_request(_REQ, e, top_via="SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKcfg.1",
                  drop_route_count=1)


def reply():
    make_reply(_REQ, 200, "OK")


def reply_path():
    m = Message.parse(OK200)
    m.via1
    m.cseq
    m.to


CASES = [("parse", parse_only), ("parse+5", parse5), ("parse+all", parse_all),
         ("build", build), ("reply", reply), ("200 OK", reply_path)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=60, help="interleaved rounds (best is kept)")
    ap.add_argument("--loops", type=int, default=1000, help="calls per case per round")
    ap.add_argument("--cpu", type=int, default=None, help="pin to this CPU (default: the first)")
    ap.add_argument("--no-gc", action="store_true", help="disable the garbage collector")
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        cpu = args.cpu if args.cpu is not None else min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
    if args.no_gc:
        gc.disable()
    # Many short rounds, cases interleaved, best round kept: on a shared or throttled
    # machine this filters out interference far better than a few long runs.
    best = {name: float("inf") for name, _ in CASES}
    timer = time.perf_counter
    for _ in range(args.rounds):
        for name, fn in CASES:
            loops = range(args.loops)
            t0 = timer()
            for _ in loops:
                fn()
            best[name] = min(best[name], timer() - t0)
    t0 = timer()
    for _ in range(args.loops):
        sum(range(100))
    ref = timer() - t0
    print(f"Python {sys.version.split()[0]}, INVITE of {len(INVITE)} bytes; "
          f"machine reference sum(range(100)) = {ref / args.loops * 1e6:.2f} us")
    for name, _ in CASES:
        print(f"{name:10} {best[name] / args.loops * 1e6:7.2f} us")


if __name__ == "__main__":
    main()

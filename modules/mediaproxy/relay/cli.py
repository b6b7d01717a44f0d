"""``cfgscript-relay``: a media relay on this host that serves remote dispatchers.

    cfgscript-relay --relay-ip 10.0.0.7 --dispatcher 10.0.0.1:25060

It connects to every ``--dispatcher`` (the dispatcher side is
``python -m modules.mediaproxy.relay --listen HOST:PORT``, or AG MediaProxy's
dispatcher with TLS disabled) and relays media on ``--relay-ip``.  SIGTERM or
SIGINT expire all sessions and exit 0.  The relay options here are shared with
the embedded dispatcher's command line.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from .link import DispatcherLink
from .media import PRIVATE_RANGES, Relay, RelayConfig
from .protocol import DEFAULT_RELAY_PORT, parse_address

log = logging.getLogger("cfgscript.mediaproxy.relay")


def add_relay_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("media relay")
    g.add_argument("--relay-ip", "--listen-ip", default="127.0.0.1",
                   help="IPv4 address the relay's UDP ports bind to (default %(default)s)")
    g.add_argument("--advertised-ip", help="address put in the SDP instead of --relay-ip")
    g.add_argument("--port-range", default="40000:60000",
                   help="even START:END port range for RTP/RTCP pairs (default %(default)s)")
    g.add_argument("--routable-private", action="store_true",
                   help="count private and loopback addresses as routable, so RTP is sent to "
                        "an SDP address in them before that side has sent anything")
    g.add_argument("--routable-private-ranges", default="",
                   help="comma-separated CIDR ranges counted as routable (MediaProxy's "
                        "routable_private_ranges)")
    g.add_argument("--stream-timeout", type=float, default=90.0,
                   help="seconds a side may stay silent at start (default %(default)s)")
    g.add_argument("--on-hold-timeout", type=float, default=7200.0,
                   help="seconds a stream may stay on hold (default %(default)s)")
    g.add_argument("--idle-timeout", type=float, default=180.0,
                   help="seconds without packets after which a latched stream expires "
                        "(default %(default)s)")
    g.add_argument("--tick", type=float, default=1.0, help=argparse.SUPPRESS)
    g.add_argument("--log-level", default="INFO", help="logging level (default %(default)s)")


def relay_config(args) -> RelayConfig:
    start, end = (int(p) for p in args.port_range.split(":", 1))
    ranges = [r for r in args.routable_private_ranges.split(",") if r.strip()]
    if args.routable_private:
        ranges.extend(PRIVATE_RANGES)
    return RelayConfig(relay_ip=args.relay_ip, advertised_ip=args.advertised_ip,
                       port_range=(start, end), stream_timeout=args.stream_timeout,
                       on_hold_timeout=args.on_hold_timeout, idle_timeout=args.idle_timeout,
                       routable_ranges=tuple(ranges), tick=args.tick)


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(),
                        format="%(asctime)s %(name)s[%(process)d] %(levelname)s: %(message)s")


def run(main) -> None:
    """Run ``main(stop_event)`` on uvloop when available; SIGTERM/SIGINT set the event."""
    async def wrapper():
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    try:
        import uvloop
    except ImportError:
        asyncio.run(wrapper())
    else:
        uvloop.run(wrapper())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="cfgscript-relay",
        description="MediaProxy-compatible media relay that connects to dispatchers.")
    parser.add_argument("--dispatcher", action="append", required=True, metavar="HOST[:PORT]",
                        help="dispatcher to serve (repeatable; default port %d)"
                        % DEFAULT_RELAY_PORT)
    parser.add_argument("--keepalive-interval", type=float, default=10.0)
    parser.add_argument("--reconnect-delay", type=float, default=10.0)
    add_relay_arguments(parser)
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    config = relay_config(args)

    async def serve(stop):
        relay = Relay(config, on_expired=lambda owner, stats: owner.expired(stats))
        relay.start()
        links = [DispatcherLink(relay, *parse_address(d, DEFAULT_RELAY_PORT),
                                source_ip=config.relay_ip,
                                keepalive_interval=args.keepalive_interval,
                                reconnect_delay=args.reconnect_delay)
                 for d in args.dispatcher]
        tasks = [asyncio.create_task(link.run()) for link in links]
        log.info("relay on %s, ports %d:%d", config.relay_ip, *config.port_range)
        await stop.wait()
        relay.shutdown()
        await asyncio.sleep(0)  # let the expired reports reach the sockets
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    run(serve)
    return 0


if __name__ == "__main__":
    sys.exit(main())

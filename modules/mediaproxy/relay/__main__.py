"""``python -m modules.mediaproxy.relay``: dispatcher + in-process media relay.

    python -m modules.mediaproxy.relay --socket /run/mediaproxy/dispatcher.sock

OpenSIPS (or cfgscript's mediaproxy module) talks to ``--socket``.  With
``--listen HOST:PORT`` remote relays (``cfgscript-relay``) may connect and share
the sessions; ``--no-local-relay`` leaves only those.  ``--management HOST:PORT``
opens the TCP management port (AG's default is 25061); the UNIX socket answers
the same ``summary``/``sessions``/``version`` commands.  SIGTERM exits 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from .cli import add_relay_arguments, relay_config, run, setup_logging
from .dispatcher import Dispatcher
from .media import Relay
from .protocol import DEFAULT_RELAY_PORT, DEFAULT_SOCKET, parse_address

log = logging.getLogger("cfgscript.mediaproxy.dispatcher")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m modules.mediaproxy.relay",
        description="MediaProxy-compatible dispatcher with an embedded media relay.")
    parser.add_argument("--socket", default=DEFAULT_SOCKET,
                        help="UNIX socket for OpenSIPS (default %(default)s)")
    parser.add_argument("--listen", metavar="HOST[:PORT]",
                        help="accept relays (cfgscript-relay) on this TCP address "
                             "(default port %d); off by default" % DEFAULT_RELAY_PORT)
    parser.add_argument("--management", metavar="HOST:PORT",
                        help="TCP management interface (summary/sessions/version); off by default")
    parser.add_argument("--no-local-relay", action="store_true",
                        help="relay nothing here, only through connected relays")
    parser.add_argument("--relay-timeout", type=float, default=5.0,
                        help="seconds to wait for a remote relay's answer (default %(default)s)")
    parser.add_argument("--mi-socket",
                        help="OpenSIPS mi_datagram socket for dlg_end_dlg on expired calls")
    add_relay_arguments(parser)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    config = relay_config(args)
    failed = []

    async def serve(stop):
        dispatcher = Dispatcher(relay_timeout=args.relay_timeout, mi_socket=args.mi_socket)
        relay = None
        if not args.no_local_relay:
            relay = Relay(config)
            relay.start()
            dispatcher.add_local_relay(relay)
        try:
            if args.listen:
                await dispatcher.listen_relays(*parse_address(args.listen, DEFAULT_RELAY_PORT))
            if args.management:
                await dispatcher.listen_management(*parse_address(args.management, 25061))
            await dispatcher.listen_opensips(args.socket)
        except OSError as e:
            log.error("cannot start: %s", e)
            failed.append(e)
            stop.set()
        else:
            log.info("MediaProxy dispatcher ready on %s (local relay %s, ports %d:%d)",
                     args.socket, "off" if relay is None else config.relay_ip,
                     *config.port_range)
        await stop.wait()
        log.info("shutting down")
        if relay is not None:
            relay.shutdown()
        await dispatcher.close()
        if not failed:
            try:
                os.unlink(args.socket)
            except OSError:
                pass

    run(serve)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

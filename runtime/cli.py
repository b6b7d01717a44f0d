"""The `cfgscript` command, with OpenSIPS's flags.

    cfgscript -f opensips.cfg [-l udp:127.0.0.1:5060] [-F] [-E]   run the script as a proxy
    cfgscript -f opensips.cfg -C [--syntax-only]                    check it and exit
    cfgscript test DIR...                                           run SIPp scenario folders
"""
from __future__ import annotations

import argparse
import sys

import cfgscript
from cfgscript import CfgError
from cfgscript.parser import parse_file

DEFAULT_CFG = "/etc/opensips/opensips.cfg"


def build_argparser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="cfgscript", add_help=False,
        description="Run an OpenSIPS (or Kamailio) routing script unchanged, as a SIP proxy.")
    ap.add_argument("-h", "--help", action="help", help="show this help and exit")
    ap.add_argument("-f", dest="cfg", default=DEFAULT_CFG, metavar="FILE",
                    help=f"the routing script (default {DEFAULT_CFG})")
    ap.add_argument("-C", dest="check", action="store_true",
                    help="check the script (syntax, modules, functions, parameters) and exit")
    ap.add_argument("-c", dest="check", action="store_true", help="same as -C")
    ap.add_argument("--syntax-only", action="store_true",
                    help="with -C: parse only (missing include files are warnings)")
    ap.add_argument("-p", dest="pipe", metavar="CMD",
                    help="pipe the script through a preprocessor first (e.g. 'm4')")
    ap.add_argument("-l", dest="listen", action="append", default=[], metavar="proto:ip:port",
                    help="listen on this socket (repeatable; replaces the script's sockets)")
    ap.add_argument("-A", dest="defines", action="append", default=[], metavar="NAME[=VAL]",
                    help="Kamailio: #!define NAME before the script")
    ap.add_argument("-o", dest="argv_vars", action="append", default=[], metavar="NAME=VAL",
                    help="a value for $argv(NAME)")
    ap.add_argument("-F", dest="foreground", action="store_true", help="stay in the foreground (always)")
    ap.add_argument("-E", dest="stderr", action="store_true", help="log to stderr (the default)")
    ap.add_argument("-D", dest="no_daemon", action="store_true", help="do not fork (always)")
    ap.add_argument("-d", dest="debug", action="count", default=0, help="raise the log level")
    ap.add_argument("-P", dest="pidfile", metavar="FILE", help="write the pid to FILE")
    ap.add_argument("-m", "-M", dest="ignored_mem", metavar="MB", help="ignored (memory sizes)")
    ap.add_argument("-u", "-g", dest="ignored_user", metavar="ID", help="ignored (user/group)")
    ap.add_argument("-w", dest="workdir", metavar="DIR", help="working directory")
    ap.add_argument("--trace", action="store_true",
                    help="log, for each message, the routes entered and the script lines run")
    ap.add_argument("--cov-data", metavar="FILE",
                    help="count the script lines and branches run; write them to FILE at exit")
    ap.add_argument("--no-embedded-mediaproxy", action="store_true",
                    help="never start the embedded MediaProxy dispatcher and relay")
    ap.add_argument("--relay-ports", metavar="LO:HI", default="40000:60000",
                    help="RTP port range of the embedded media relay (default 40000:60000)")
    ap.add_argument("--relay-routable-private", action="store_true",
                    help="embedded relay: private and loopback SDP addresses count as routable "
                         "(MediaProxy's routable_private_ranges); for labs and tests")
    ap.add_argument("-V", "--version", action="store_true", help="print the version and exit")
    return ap


def _defines(items):
    out = {}
    for item in items:
        name, _, value = item.partition("=")
        out[name] = value
    return out


def check(args) -> int:
    """`-C`: print every diagnostic; 0 iff the script would start."""
    try:
        script = parse_file(args.cfg, pipe=args.pipe, defines=_defines(args.defines),
                            lenient_includes=args.syntax_only)
    except CfgError as e:
        for d in e.diagnostics:
            print(d.render(), file=sys.stderr)
        return 255
    except OSError as e:
        print(f"{args.cfg}: error: {e.strerror}", file=sys.stderr)
        return 255
    if args.syntax_only:
        print(f"{args.cfg}: syntax ok ({script.dialect})", file=sys.stderr)
        return 0
    from runtime.loader import load_script
    diags = load_script(script, listen=args.listen, check_only=True).diagnostics
    for d in diags:
        print(d.render(), file=sys.stderr)
    if any(d.severity == "error" for d in diags):
        n = sum(d.severity == "error" for d in diags)
        print(f"{args.cfg}: {n} error{'s' if n > 1 else ''}", file=sys.stderr)
        return 255
    print(f"{args.cfg}: config ok", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "test":
        from runtime.testing.runner import main as test_main
        return test_main(argv[1:])
    args = build_argparser().parse_args(argv)
    if args.version:
        print(f"cfgscript {cfgscript.__version__} (OpenSIPS 3.6 script language)")
        return 0
    if args.check:
        return check(args)
    from runtime.server import run
    return run(args)


if __name__ == "__main__":
    sys.exit(main())

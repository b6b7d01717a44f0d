"""CPU cost per call of cfgscript and of Kamailio running the same script, under SIPp load.

    .venv/bin/python bench/proxy_load.py [--script stateless|stateful] [--rates 2000,4000]
                                         [--seconds 5] [--no-kamailio]

For each proxy and rate: a SIPp UAS, then a SIPp UAC (record-route aware XML, no pause: one
INVITE/180/200/ACK/BYE/200 call) at that rate for --seconds; the proxy's CPU time (user +
system, all its processes) is read from /proc before and after. Prints CPU-seconds per 1000
completed calls and the cfgscript/Kamailio ratio. Kamailio (Debian's, `apt-get install -y
kamailio`) runs with one worker and its TLSF allocator (-x tlsf -X tlsf). Loopback only;
every run is bounded by call count and time.
"""
import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TICK = os.sysconf("SC_CLK_TCK")
PROXY = ("127.0.0.1", 5060)
UAS = ("127.0.0.2", 5080)
UAC = ("127.0.0.3", 5070)


def tree_cpu(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of pid and its descendants (read from /proc)."""
    children = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                fields = open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append((int(d), fields))
    user = system = 0
    todo = [pid]
    try:
        own = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    user, system = int(own[11]), int(own[12])
    while todo:
        for child, fields in children.get(todo.pop(), []):
            user += int(fields[11])
            system += int(fields[12])
            todo.append(child)
    return user / TICK, system / TICK


def wait_udp(addr, timeout=10.0):
    """Wait until the proxy has bound its UDP port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind(addr)
        except OSError:
            return True  # bound by the proxy
        finally:
            s.close()
        time.sleep(0.05)
    return False


def start_proxy(kind, script, logdir):
    log = open(logdir / f"{kind}.log", "w")
    if kind == "cfgscript":
        cmd = [str(ROOT / ".venv/bin/cfgscript"), "-f", str(HERE / "load" / f"{script}.cfg"),
               "-l", f"udp:{PROXY[0]}:{PROXY[1]}"]
    else:
        cmd = ["kamailio", "-f", str(HERE / "load" / f"{script}-kamailio.cfg"), "-DD", "-E",
               "-x", "tlsf", "-X", "tlsf", "-m", "256", "-M", "32"]
    p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    if not wait_udp(PROXY):
        p.kill()
        raise RuntimeError(f"{kind} did not start; see {logdir}/{kind}.log")
    time.sleep(0.5)
    return p


def run_load(rate, seconds, logdir):
    calls = rate * seconds
    uas = subprocess.Popen(
        ["sipp", "-sf", str(HERE / "load/uas-rr.xml"), "-i", UAS[0], "-p", str(UAS[1]),
         "-m", str(calls), "-nostdin", "-timeout", f"{seconds + 30}s"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=logdir)
    time.sleep(0.3)
    uac = subprocess.run(
        ["sipp", "-sf", str(HERE / "load/uac-rr.xml"), f"{UAS[0]}:{UAS[1]}",
         "-rsa", f"{PROXY[0]}:{PROXY[1]}", "-i", UAC[0], "-p", str(UAC[1]), "-m", str(calls),
         "-r", str(rate), "-l", str(rate * 4), "-recv_timeout", "5000", "-nostdin",
         "-timeout", f"{seconds + 30}s", "-trace_stat", "-fd", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=logdir, timeout=seconds + 60)
    try:
        uas.wait(10)
    except subprocess.TimeoutExpired:
        uas.kill()
        uas.wait()
    ok, failed = 0, calls
    stats = sorted(logdir.glob("uac-rr_*_.csv"), key=os.path.getmtime)
    if stats:
        last = stats[-1].read_text().strip().splitlines()
        head, row = last[0].split(";"), last[-1].split(";")
        cols = dict(zip(head, row))
        ok = int(cols.get("SuccessfulCall(C)", 0))
        failed = int(cols.get("FailedCall(C)", 0))
        stats[-1].unlink()
    return ok, failed, uac.returncode


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--script", choices=("stateless", "stateful"), default="stateless")
    ap.add_argument("--rates", default="2000,4000")
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--no-kamailio", action="store_true")
    args = ap.parse_args()
    kinds = ["cfgscript"] + ([] if args.no_kamailio or not shutil.which("kamailio") else ["kamailio"])
    rates = [int(r) for r in args.rates.split(",")]
    logdir = Path(tempfile.mkdtemp(prefix="cfgscript-bench-"))
    results = {}
    for kind in kinds:
        for rate in rates:
            p = start_proxy(kind, args.script, logdir)
            try:
                u0, s0 = tree_cpu(p.pid)
                ok, failed, rc = run_load(rate, args.seconds, logdir)
                u1, s1 = tree_cpu(p.pid)
                user, system = u1 - u0, s1 - s0
                cpu = user + system
            finally:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(15)
            per_k = cpu / ok * 1000 if ok else float("nan")
            results[(kind, rate)] = per_k
            print(f"{args.script:9} {kind:9} {rate:5} calls/s: {ok:6} ok {failed:5} failed  "
                  f"proxy CPU {cpu:6.2f} s (user {user:.2f}, sys {system:.2f})  = {per_k:.3f} CPU-s "
                  f"per 1000 calls", flush=True)
    if "kamailio" in kinds:
        for rate in rates:
            ratio = results[("cfgscript", rate)] / results[("kamailio", rate)]
            print(f"{args.script} at {rate} calls/s: cfgscript / kamailio = {ratio:.1f}x")
    print(f"logs: {logdir}")


if __name__ == "__main__":
    sys.exit(main())

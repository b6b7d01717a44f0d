"""`cfgscript test DIR...`: run SIPp scenario folders against the real proxy.

A DIR is a scenario folder or a folder of them (a test set), searched recursively.
Scenarios run in parallel (-j), each on its own loopback addresses. Exit status: 0 if all
passed, 1 if any failed, 2 on bad usage.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from . import coverage
from .execute import run_scenario
from .scenario import is_scenario_dir

DEFAULT_LOGS = "cfgscript-test-logs"


def build_argparser():
    ap = argparse.ArgumentParser(prog="cfgscript test",
                                 description="Run SIPp scenario folders against the proxy.")
    ap.add_argument("dirs", nargs="+", metavar="DIR", help="scenario folders or test sets")
    ap.add_argument("-j", "--jobs", type=int, default=min(4, os.cpu_count() or 2),
                    help="scenarios run at once (default: CPUs, at most 4)")
    ap.add_argument("--logs", default=DEFAULT_LOGS, metavar="DIR",
                    help=f"where each scenario's logs go, in DIR/<scenario>/ "
                         f"(default {DEFAULT_LOGS})")
    ap.add_argument("--coverage", action="store_true",
                    help="report the script lines and if/switch branches that ran")
    ap.add_argument("--cov-html", metavar="DIR", default="htmlcov-cfg",
                    help="where the coverage HTML and JSON go (default htmlcov-cfg)")
    return ap


def find_scenarios(dirs) -> list[Path]:
    """Scenario folders in `dirs` (each a scenario or a tree of them), in name order."""
    found = []
    for d in map(Path, dirs):
        if is_scenario_dir(d):
            found.append(d.resolve())
            continue
        for root, subdirs, _files in os.walk(d):
            subdirs.sort()
            if is_scenario_dir(Path(root)):
                found.append(Path(root).resolve())
                subdirs.clear()
    return list(dict.fromkeys(found))


def log_names(paths) -> dict[Path, str]:
    """A log folder name per scenario: its folder name, with its parent's if two clash."""
    counts = {}
    for p in paths:
        counts[p.name] = counts.get(p.name, 0) + 1
    return {p: p.name if counts[p.name] == 1 else f"{p.parent.name}.{p.name}" for p in paths}


def main(argv=None) -> int:
    args = build_argparser().parse_args(argv)
    scenarios = find_scenarios(args.dirs)
    missing = [d for d in args.dirs if not Path(d).is_dir()]
    if missing or not scenarios:
        print(f"cfgscript test: no scenario folders in {', '.join(missing or args.dirs)}",
              file=sys.stderr)
        return 2
    logs = Path(args.logs)
    names = log_names(scenarios)
    started = time.monotonic()
    results = []
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [pool.submit(run_scenario, p, logs / names[p], coverage=args.coverage)
                   for p in scenarios]
        for future in as_completed(futures):
            result = future.result()
            results.append(result)
            print(f"{result.status} {names[result.path]} ({result.seconds:.1f}s)", flush=True)
            if not result.passed:
                print("  " + result.report.replace("\n", "\n  "), flush=True)
    passed = sum(r.passed for r in results)
    failed = len(results) - passed
    if args.coverage:
        files = coverage.merge(r.cov_data for r in results if r.cov_data)
        print("\n" + coverage.summary_text(files, Path.cwd()), end="")
        index = coverage.write_html(files, args.cov_html, Path.cwd())
        print(f"coverage report: {index}")
    print(f"{passed} passed, {failed} failed in {time.monotonic() - started:.1f}s")
    return 0 if failed == 0 else 1

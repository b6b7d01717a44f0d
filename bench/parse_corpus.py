"""Parse time of the whole script corpus (../shared/corpus), total and per KB.

    .venv/bin/python bench/parse_corpus.py [--runs N] [--pure]

Preprocessing (includes, Kamailio #!, the m4 pipe) is timed apart from parsing; the figure
that matters is parse time on one core, best of N runs. --pure disables lark-cython.
"""
import argparse
import os
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def corpus_files(corpus):
    for sub in ("real", "official", "official/menuconfig"):
        d = corpus / sub
        if d.is_dir():
            yield from sorted(p for p in d.iterdir() if p.is_file() and p.suffix not in (".tsv", ".md"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--pure", action="store_true", help="plain Lark, without lark-cython")
    ap.add_argument("--corpus", default=os.environ.get("CFGSCRIPT_CORPUS", ROOT.parent / "shared" / "corpus"))
    args = ap.parse_args()
    if args.pure:
        sys.modules["lark_cython"] = None  # makes the optional import fail
    from cfgscript.diagnostics import CfgError
    from cfgscript.parser import _get_parser, parse_source
    from cfgscript.preprocess import load

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    t0 = time.process_time()
    _get_parser()
    t_grammar = time.process_time() - t0
    files = list(corpus_files(pathlib.Path(args.corpus)))
    t0 = time.process_time()
    sources = [load(str(f), pipe="m4" if f.suffix == ".m4" else None, lenient_includes=True) for f in files]
    t_pre = time.process_time() - t0
    size_kb = sum(len(s.text.encode("utf-8", "surrogateescape")) for s in sources) / 1024
    best = None
    for _ in range(args.runs):
        t0 = time.process_time()
        invalid = 0
        for s in sources:
            try:
                parse_source(s)
            except CfgError:
                invalid += 1
        dt = time.process_time() - t0
        best = dt if best is None else min(best, dt)
    engine = "plain Lark" if args.pure else "Lark + lark-cython"
    print(f"{len(files)} files, {size_kb:.0f} KB ({invalid} invalid upstream), {engine}, one core")
    print(f"grammar load {t_grammar * 1000:.0f} ms, preprocess {t_pre * 1000:.0f} ms (m4 included)")
    print(f"parse: {best:.3f} s CPU-s, best of {args.runs}  ({best * 1000 / size_kb:.2f} ms/KB)")


if __name__ == "__main__":
    main()

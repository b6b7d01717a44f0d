"""Script coverage: merge the proxy's --cov-data files, summarise them, write HTML and JSON.

A data file is `{"points": [[file, line, kind], ...], "hits": [count, ...]}` with kind
`line` (a statement), `then`/`else` (a branch of the `if` on that line) or `case` (a
switch case body). Counts of the same cfg file add up across runs. A line is
- `run`      its statements ran and, if it holds an `if`, both branches were taken;
- `partial`  it ran, but a branch of its `if` was never taken;
- `miss`     none of its statements (or its case) ever ran.
"""
from __future__ import annotations

import html
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

BRANCH_KINDS = ("then", "else", "case")


@dataclass
class FileCoverage:
    path: str
    lines: dict[int, int] = field(default_factory=dict)                  # line -> hits
    branches: dict[tuple[int, str], int] = field(default_factory=dict)   # (line, kind) -> hits

    def state(self, line: int) -> str | None:
        """'run', 'partial', 'miss', or None for a line with no statement."""
        own = [h for (ln, _), h in self.branches.items() if ln == line]
        if line not in self.lines:
            if not own:
                return None
            return "run" if all(own) else ("partial" if any(own) else "miss")
        if not self.lines[line]:
            return "miss"
        return "partial" if not all(own) else "run"

    def untaken(self, line: int) -> list[str]:
        return [kind for (ln, kind), h in sorted(self.branches.items()) if ln == line and not h]

    def statement_lines(self) -> list[int]:
        return sorted(set(self.lines) | {ln for ln, _ in self.branches})

    def summary(self) -> dict:
        states = [self.state(ln) for ln in self.statement_lines()]
        return {
            "lines": len(states),
            "lines_run": sum(s != "miss" for s in states),
            "branches": len(self.branches),
            "branches_taken": sum(1 for h in self.branches.values() if h),
            "missing": [ln for ln in self.statement_lines() if self.state(ln) == "miss"],
            "untaken": [f"{ln}:{kind}" for (ln, kind), h in sorted(self.branches.items())
                        if not h and self.state(ln) == "partial"],
        }


def merge(paths) -> dict[str, FileCoverage]:
    """Add up the data files (missing ones are skipped); keyed by cfg file path."""
    files: dict[str, FileCoverage] = {}
    for path in paths:
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            continue
        run: dict[tuple, int] = defaultdict(int)
        for (name, line, kind), hits in zip(data["points"], data["hits"]):
            key = (name, line, kind)
            run[key] = max(run[key], hits)            # several statements on one line
        for (name, line, kind), hits in run.items():
            fc = files.setdefault(name, FileCoverage(name))
            table, key = (fc.lines, line) if kind == "line" else (fc.branches, (line, kind))
            table[key] = table.get(key, 0) + hits
    return dict(sorted(files.items()))


def _ranges(numbers):
    out, start, prev = [], None, None
    for n in numbers:
        if start is None:
            start = prev = n
        elif n == prev + 1:
            prev = n
        else:
            out.append(f"{start}-{prev}" if prev != start else str(start))
            start = prev = n
    if start is not None:
        out.append(f"{start}-{prev}" if prev != start else str(start))
    return ", ".join(out)


def _pct(part, whole):
    return f"{100 * part // whole:3d}%" if whole else "  -"


def summary_text(files: dict[str, FileCoverage], relative_to=None) -> str:
    """A terminal table per cfg file: lines and branches covered, the lines never run and
    the branches never taken on lines that ran (13:then: the then-branch of the if at 13)."""
    rows = [("cfg file", "lines", "", "branches", "", "never run; branches never taken")]
    for path, fc in files.items():
        s = fc.summary()
        rows.append((_display(path, relative_to), f"{s['lines_run']}/{s['lines']}",
                     _pct(s["lines_run"], s["lines"]),
                     f"{s['branches_taken']}/{s['branches']}",
                     _pct(s["branches_taken"], s["branches"]),
                     "; ".join(filter(None, [_ranges(s["missing"]), ", ".join(s["untaken"])]))))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[5]
                     for r in rows).rstrip() + "\n"


def _display(path, relative_to):
    if relative_to:
        try:
            return str(Path(path).relative_to(relative_to))
        except ValueError:
            pass
    return path


def to_json(files: dict[str, FileCoverage]) -> dict:
    out = {}
    for path, fc in files.items():
        out[path] = {
            "summary": fc.summary(),
            "lines": {str(ln): fc.state(ln) for ln in fc.statement_lines()},
            "hits": {str(ln): h for ln, h in sorted(fc.lines.items())},
            "branches": [{"line": ln, "kind": kind, "hits": h}
                         for (ln, kind), h in sorted(fc.branches.items())],
        }
    return {"files": out}


_CSS = """
body { font-family: sans-serif; margin: 1.5em; }
table.src { border-collapse: collapse; font-family: monospace; font-size: 13px; }
table.src td { padding: 0 .6em; white-space: pre; vertical-align: top; }
td.no, td.hits { text-align: right; color: #777; }
tr.run td.code { background: #d7f5d7; }
tr.miss td.code { background: #f8d0d0; }
tr.partial td.code { background: #fbeab0; }
table.sum td, table.sum th { padding: .2em .8em; text-align: left; }
.legend span { padding: 0 .5em; margin-right: 1em; font-family: monospace; }
"""


def write_html(files: dict[str, FileCoverage], outdir, relative_to=None) -> Path:
    """Write outdir/index.html (every cfg file, lines coloured) and outdir/coverage.json."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "coverage.json").write_text(json.dumps(to_json(files), indent=1))
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>cfg coverage</title>"
             f"<style>{_CSS}</style></head><body><h1>Script coverage</h1>",
             "<p class='legend'><span style='background:#d7f5d7'>ran</span>"
             "<span style='background:#fbeab0'>partly: a branch of its if never taken</span>"
             "<span style='background:#f8d0d0'>never ran</span></p>",
             "<table class='sum'><tr><th>cfg file</th><th>lines</th><th>branches</th></tr>"]
    for n, (path, fc) in enumerate(files.items()):
        s = fc.summary()
        parts.append(f"<tr><td><a href='#f{n}'>{html.escape(_display(path, relative_to))}"
                     f"</a></td><td>{s['lines_run']}/{s['lines']}</td>"
                     f"<td>{s['branches_taken']}/{s['branches']}</td></tr>")
    parts.append("</table>")
    for n, (path, fc) in enumerate(files.items()):
        parts.append(f"<h2 id='f{n}'>{html.escape(_display(path, relative_to))}</h2>"
                     "<table class='src'>")
        try:
            source = Path(path).read_text(errors="replace").splitlines()
        except OSError:
            source = [""] * max(fc.statement_lines(), default=0)
        for ln, text in enumerate(source, 1):
            state = fc.state(ln)
            title = ""
            if state == "partial":
                title = f" title='never taken: {', '.join(fc.untaken(ln))}'"
            hits = fc.lines.get(ln, "")
            parts.append(f"<tr id='f{n}-l{ln}' class='{state or 'none'}'{title}>"
                         f"<td class='no'>{ln}</td><td class='hits'>{hits}</td>"
                         f"<td class='code'>{html.escape(text)}</td></tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    index = outdir / "index.html"
    index.write_text("\n".join(parts))
    return index

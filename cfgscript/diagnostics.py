"""Diagnostics a user can act on: `file:line:col: error: message`, the line and a caret."""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from .ast import Pos


@dataclass
class Diagnostic:
    severity: str  # "error", "warning" or "note"
    message: str
    pos: Pos
    notes: list = field(default_factory=list)  # extra lines printed under the caret

    def render(self, with_source: bool = True) -> str:
        out = [f"{self.pos}: {self.severity}: {self.message}"]
        if with_source:
            line = source_line(self.pos)
            if line is not None:
                out.append("  " + line.rstrip("\n").expandtabs(1))
                out.append("  " + " " * max(self.pos.col - 1, 0) + "^")
        out.extend("  " + n for n in self.notes)
        return "\n".join(out)

    def __str__(self) -> str:
        return self.render(False)


class CfgError(Exception):
    """One or more errors that stop a script from loading."""

    def __init__(self, diagnostics):
        self.diagnostics = list(diagnostics)
        super().__init__("\n".join(str(d) for d in self.diagnostics))


_line_cache: dict = {}


def source_line(pos: Pos):
    """The text of line `pos.line` in `pos.file`, or None when it cannot be read."""
    lines = _line_cache.get(pos.file)
    if lines is None:
        try:
            with open(pos.file, encoding="utf-8", errors="replace") as f:
                lines = f.read().split("\n")
        except OSError:
            lines = []
        _line_cache[pos.file] = lines
    if 1 <= pos.line <= len(lines):
        return lines[pos.line - 1]
    return None


def _edit_distance(a: str, b: str) -> int:
    """Edits (insert, delete, substitute, swap two neighbours) from a to b."""
    prev2, prev = None, list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[-1]


def did_you_mean(word: str, choices) -> str:
    """` (did you mean 'x'?)` when a close match exists, else ''."""
    candidates = difflib.get_close_matches(word, list(choices), n=8, cutoff=0.6)
    if not candidates:
        return ""
    best = min(candidates, key=lambda c: (_edit_distance(word.lower(), c.lower()),
                                          candidates.index(c)))
    if _edit_distance(word.lower(), best.lower()) > max(2, len(word) // 3):
        return ""
    return f" (did you mean '{best}'?)"

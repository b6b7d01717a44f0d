"""Text before the grammar: includes, the Kamailio `#!` preprocessor, the `-p CMD` pipe.

The result is one text plus a line map, so that every diagnostic points at the original
file and line, through includes and `#!define` substitutions.
"""
from __future__ import annotations

import ast as pyast
import operator
import os
import re
import shlex
import subprocess
from dataclasses import dataclass, field

from .diagnostics import CfgError, Diagnostic
from .ast import Pos

MAX_INCLUDE_DEPTH = 50

_INCLUDE_RE = re.compile(r"""^\s*(?:(?:#!|!!))?(include_file|import_file)\s+(["'])(.*?)\2""")
_DIRECTIVE_RE = re.compile(r"^\s*(?:#!|!!)([A-Za-z_]+)\b[ \t]*(.*)$")
_KAMAILIO_MARKERS = {"KAMAILIO", "OPENSER", "SER", "MAXCOMPAT", "ALL"}
_KAMAILIO_DIRECTIVES = {
    "define", "def", "trydef", "trydefine", "redefine", "redef", "undef", "undefine",
    "tryundef", "ifdef", "ifndef", "ifexp", "else", "endif", "subst", "substdef", "substdefs",
    "defenv", "defenvs", "trydefenv", "trydefenvs", "defexp", "defexps",
}
_KAMAILIO_HINT_RE = re.compile(
    r"^\s*(?:(?:#!|!!)(?:KAMAILIO|OPENSER|SER|MAXCOMPAT|ALL|define|def|trydef|ifdef|ifndef|"
    r"substdef|subst|redefine)\b|request_route\b|reply_route\b|"
    r"loadmodule\s+\"(?:[^\"]*/)?(?:pv|kex|tmx|corex|siputils|sanity|xhttp|htable|textopsx|ctl|"
    r"jsonrpcs|sdpops|kemix|rtimer|ipops)(?:\.so)?\")", re.M)
# Tokens the Kamailio substitution must step over: strings, comments, PVs; and IDs.
_KTOKEN_RE = re.compile(
    r"""(?P<dq>"(?:[^"\\]|\\.)*"?)|(?P<sq>'[^']*'?)|(?P<lc>\#.*|//.*)|(?P<bc>/\*)"""
    r"""|(?P<pv>\$\((?:[^()]|\([^()]*\))*\)|\$[A-Za-z_][\w.]*(?:\((?:[^()]|\([^()]*\))*\))?)"""
    r"""|(?P<id>[A-Za-z_][A-Za-z0-9_]*)""")


@dataclass
class Source:
    """Preprocessed text; `lines[i]` is (file, line, colmap) for output line i+1."""
    text: str
    lines: list
    dialect: str = "opensips"
    files: list = field(default_factory=list)
    warnings: list = field(default_factory=list)

    def pos(self, line: int, col: int) -> Pos:
        """Map a 1-based position in `text` back to the original file."""
        if 0 < line <= len(self.lines):
            fname, oline, colmap = self.lines[line - 1]
            return Pos(fname, oline, _map_col(colmap, col) if colmap else col)
        if self.lines:
            fname, oline, _ = self.lines[-1]
            return Pos(fname, oline, col)
        return Pos("<input>", line, col)


def _map_col(colmap, col):
    if not colmap:
        return col
    orig = col
    for out_start, orig_start in colmap:
        if out_start <= col:
            orig = orig_start + (col - out_start)
    return orig


def load(path: str, *, pipe: str | None = None, defines: dict | None = None,
         lenient_includes: bool = False) -> Source:
    """Read a script and everything it includes, ready for the parser."""
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        text = f.read()
    return preprocess(text, path, pipe=pipe, defines=defines,
                      lenient_includes=lenient_includes)


def preprocess(text: str, filename: str = "<input>", *, pipe: str | None = None,
               defines: dict | None = None, lenient_includes: bool = False) -> Source:
    dialect = "kamailio" if _KAMAILIO_HINT_RE.search(text) else "opensips"
    pp = _Preprocessor(dialect, dict(defines or {}), lenient_includes)
    pp.feed(text, filename, 0)
    if pp.cond_stack:
        raise CfgError([Diagnostic("error", "missing '#!endif' for this '#!ifdef'",
                                   pp.cond_stack[-1][1])])
    src = Source("".join(t for t, _ in pp.out), [m for _, m in pp.out], dialect,
                 pp.files, pp.warnings)
    if pipe:
        src = _pipe(src, pipe)
    return src


class _Preprocessor:
    def __init__(self, dialect, defines, lenient_includes):
        self.dialect = dialect
        self.defines = defines
        self.lenient = lenient_includes
        self.substs = []          # (compiled regex, replacement, global) for string literals
        self.cond_stack = []      # [(active, pos, else_seen)]
        self.out = []             # [(line text with newline, (file, line, colmap))]
        self.files = []
        self.warnings = []
        self.in_block_comment = False

    @property
    def active(self):
        return all(c[0] for c in self.cond_stack)

    def feed(self, text, filename, depth):
        self.files.append(filename)
        kam = self.dialect == "kamailio"
        lines = text.split("\n")
        i = 0
        while i < len(lines):
            line = lines[i]
            lineno = i + 1
            i += 1
            if kam:
                m = _DIRECTIVE_RE.match(line)
                if m and (m.group(1) in _KAMAILIO_DIRECTIVES or m.group(1) in _KAMAILIO_MARKERS):
                    rest = m.group(2)
                    start = lineno
                    while rest.endswith("\\") and i < len(lines):  # continued directive
                        rest = rest[:-1] + "\n" + lines[i]
                        i += 1
                    self.directive(m.group(1), rest.strip(), Pos(filename, start, 1))
                    for n in range(start, i + 1):
                        self.emit("", filename, n)
                    continue
                if not self.active:
                    self.emit("", filename, lineno)
                    continue
            m = _INCLUDE_RE.match(line)
            if m and not self.in_block_comment:
                self.include(m.group(1), m.group(3), Pos(filename, lineno, m.start(1) + 1), depth)
                self.emit("", filename, lineno)
                continue
            if kam:
                line, colmap = self.substitute(line)
                self.emit(line, filename, lineno, colmap)
            else:
                self.emit(line, filename, lineno)

    def emit(self, line, filename, lineno, colmap=None):
        self.out.append((line + "\n", (filename, lineno, colmap)))

    def include(self, kind, target, pos, depth):
        if depth >= MAX_INCLUDE_DEPTH:
            raise CfgError([Diagnostic("error", f"includes nested deeper than {MAX_INCLUDE_DEPTH}", pos)])
        candidates = [target] if os.path.isabs(target) else [
            target, os.path.join(os.path.dirname(pos.file), target)]
        for cand in candidates:
            if os.path.isfile(cand):
                with open(cand, encoding="utf-8", errors="surrogateescape") as f:
                    self.feed(f.read(), cand, depth + 1)
                return
        if kind == "import_file" and self.dialect == "kamailio":
            return  # Kamailio (and OpenSIPS <= 2.4) ignore a missing import_file
        msg = f"{kind}: cannot open '{target}'"
        if self.lenient:
            self.warnings.append(Diagnostic("warning", msg + " (not checked)", pos))
            return
        raise CfgError([Diagnostic("error", msg, pos)])

    # --- Kamailio directives ---------------------------------------------------------

    def directive(self, name, rest, pos):
        if name in _KAMAILIO_MARKERS:
            return
        if name in ("ifdef", "ifndef"):
            key = rest.split()[0] if rest else ""
            hit = key in self.defines
            self.cond_stack.append([hit if name == "ifdef" else not hit, pos, False])
            return
        if name == "ifexp":
            self.cond_stack.append([self.eval_exp(rest), pos, False])
            return
        if name == "else":
            if not self.cond_stack or self.cond_stack[-1][2]:
                raise CfgError([Diagnostic("error", "'#!else' without '#!ifdef'", pos)])
            self.cond_stack[-1][0] = not self.cond_stack[-1][0]
            self.cond_stack[-1][2] = True
            return
        if name == "endif":
            if not self.cond_stack:
                raise CfgError([Diagnostic("error", "'#!endif' without '#!ifdef'", pos)])
            self.cond_stack.pop()
            return
        if not self.active:
            return
        if name in ("define", "def", "trydef", "trydefine", "redefine", "redef"):
            m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)\s*(.*)$", rest, re.S)
            if not m:
                raise CfgError([Diagnostic("error", f"'#!{name}' needs a name", pos)])
            key, value = m.group(1), m.group(2).replace("\n", " ").strip()
            if name in ("trydef", "trydefine") and key in self.defines:
                return
            if name in ("define", "def") and key in self.defines:
                self.warnings.append(Diagnostic("warning", f"'{key}' redefined", pos))
            self.defines[key] = value
        elif name in ("undef", "undefine", "tryundef"):
            self.defines.pop(rest.split()[0] if rest else "", None)
        elif name in ("defenv", "defenvs", "trydefenv", "trydefenvs"):
            key, _, env = rest.partition("=")
            key, env = key.strip(), (env or key).strip()
            if name.startswith("try") and key in self.defines:
                return
            val = os.environ.get(env, "")
            self.defines[key] = f'"{val}"' if name.endswith("s") else val
        elif name in ("defexp", "defexps"):
            key, _, expr = rest.partition(" ")
            val = str(self.eval_exp(expr))
            self.defines[key.strip()] = f'"{val}"' if name == "defexps" else val
        elif name in ("subst", "substdef", "substdefs"):
            self.subst_directive(name, rest, pos)

    def subst_directive(self, name, rest, pos):
        expr = rest.strip()
        if len(expr) >= 2 and expr[0] == expr[-1] and expr[0] in "\"'":
            expr = expr[1:-1]
        if len(expr) < 4:
            raise CfgError([Diagnostic("error", f"bad '#!{name}' expression", pos)])
        delim = expr[0]
        parts = _split_unescaped(expr[1:], delim)
        if len(parts) < 2:
            raise CfgError([Diagnostic("error", f"bad '#!{name}' expression", pos)])
        pattern, repl = parts[0], parts[1]
        flags = parts[2] if len(parts) > 2 else ""
        try:
            rx = re.compile(pattern, re.I if "i" in flags else 0)
        except re.error as e:
            raise CfgError([Diagnostic("error", f"bad regex in '#!{name}': {e}", pos)])
        self.substs.append((rx, re.sub(r"\\(\d)", r"\\g<\1>", repl), "g" in flags))
        if name in ("substdef", "substdefs"):
            self.defines[pattern] = f'"{repl}"' if name == "substdefs" else repl

    def eval_exp(self, expr):
        """`#!ifexp`/`#!defexp`: arithmetic and comparisons over numbers and defined names."""
        def value(name):
            v = self.defines.get(name, "").strip().strip('"')
            return int(v) if v.lstrip("-").isdigit() else v
        py = re.sub(r"[A-Za-z_]\w*", lambda m: repr(value(m.group(0))), expr)
        py = py.replace("&&", " and ").replace("||", " or ").replace("!", " not ")
        py = py.replace(" not =", "!=")
        try:
            return _safe_eval(pyast.parse(py.strip(), mode="eval").body)
        except Exception:
            return 0

    def substitute(self, line):
        """Replace defined IDs (outside strings, comments and PVs); apply #!subst to strings;
        drop `//` comments. Returns the new line and its column map."""
        if not self.defines and not self.substs and "//" not in line and not self.in_block_comment:
            return line, None
        out = []
        colmap = []
        pos = 0
        changed = False
        if self.in_block_comment:
            end = line.find("*/")
            if end < 0:
                return line, None
            pos = end + 2
            self.in_block_comment = False
            out.append(line[:pos])
        while True:
            m = _KTOKEN_RE.search(line, pos)
            if not m:
                out.append(line[pos:])
                break
            out.append(line[pos:m.start()])
            kind = m.lastgroup
            tok = m.group(0)
            if kind == "bc":
                end = line.find("*/", m.end())
                if end < 0:
                    self.in_block_comment = True
                    out.append(line[m.start():])
                    break
                out.append(line[m.start():end + 2])
                pos = end + 2
                continue
            if kind == "lc" and tok.startswith("//"):
                changed = True
                break
            new = tok
            if kind == "id" and tok in self.defines:
                new = self.expand(tok, 0)
            elif kind == "dq" and self.substs:
                new = self.apply_substs(tok)
            if new != tok:
                changed = True
                colmap.append((sum(map(len, out)) + 1, m.start() + 1))
                out.append(new)
                colmap.append((sum(map(len, out)) + 1, m.end() + 1))
            else:
                out.append(tok)
            pos = m.end()
        if not changed:
            return line, None
        return "".join(out), colmap

    def expand(self, name, depth):
        value = self.defines[name]
        if depth > 10:
            return value
        return _KTOKEN_RE.sub(
            lambda m: self.expand(m.group(0), depth + 1)
            if m.lastgroup == "id" and m.group(0) in self.defines and m.group(0) != name
            else m.group(0), value)

    def apply_substs(self, s):
        for rx, repl, glob in self.substs:
            s = rx.sub(repl, s, count=0 if glob else 1)
        return s


_SAFE_OPS = {
    pyast.Add: operator.add, pyast.Sub: operator.sub, pyast.Mult: operator.mul,
    pyast.FloorDiv: operator.floordiv, pyast.Div: operator.floordiv, pyast.Mod: operator.mod,
    pyast.Eq: operator.eq, pyast.NotEq: operator.ne, pyast.Lt: operator.lt,
    pyast.LtE: operator.le, pyast.Gt: operator.gt, pyast.GtE: operator.ge,
    pyast.USub: operator.neg, pyast.Not: operator.not_,
}


def _safe_eval(node):
    """Evaluate constants, arithmetic, comparisons and boolean logic; nothing else."""
    if isinstance(node, pyast.Constant):
        return node.value
    if isinstance(node, pyast.BinOp):
        return _SAFE_OPS[type(node.op)](_safe_eval(node.left), _safe_eval(node.right))
    if isinstance(node, pyast.UnaryOp):
        return _SAFE_OPS[type(node.op)](_safe_eval(node.operand))
    if isinstance(node, pyast.Compare) and len(node.ops) == 1:
        return _SAFE_OPS[type(node.ops[0])](_safe_eval(node.left), _safe_eval(node.comparators[0]))
    if isinstance(node, pyast.BoolOp):
        vals = [_safe_eval(v) for v in node.values]
        return all(vals) if isinstance(node.op, pyast.And) else any(vals)
    raise ValueError("unsupported expression")


def _split_unescaped(s, delim):
    parts, cur, i = [], [], 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s) and s[i + 1] == delim:
            cur.append(delim)
            i += 2
            continue
        if c == delim:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    if cur:
        parts.append("".join(cur))
    return parts


def _pipe(src: Source, cmd: str) -> Source:
    """Run the flattened text through an external preprocessor (`-p m4`)."""
    try:
        res = subprocess.run(shlex.split(cmd), input=src.text.encode("utf-8", "surrogateescape"),
                             capture_output=True, timeout=60)
    except FileNotFoundError:
        raise CfgError([Diagnostic("error", f"preprocessor '{cmd}' not found",
                                   Pos(src.files[0] if src.files else "<input>", 0, 0))])
    if res.returncode != 0:
        err = res.stderr.decode(errors="replace").strip()
        raise CfgError([Diagnostic("error", f"preprocessor '{cmd}' failed: {err}",
                                   Pos(src.files[0] if src.files else "<input>", 0, 0))])
    text = res.stdout.decode("utf-8", "surrogateescape")
    label = f"{src.files[0]}(-p {cmd})" if src.files else f"<-p {cmd}>"
    lines = [(label, n + 1, None) for n in range(text.count("\n") + 1)]
    return Source(text, lines, "kamailio" if _KAMAILIO_HINT_RE.search(text) else src.dialect,
                  src.files, src.warnings)

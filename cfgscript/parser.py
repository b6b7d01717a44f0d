"""Script text to AST: Lark LALR with the contextual lexer, one Transformer method per rule.

`parse_file()` is the entry point: preprocess (includes, Kamailio `#!`, `-p`), parse, and
return a `Script`, or raise `CfgError` with every diagnostic found.
"""
from __future__ import annotations

import codecs
import os
import re
import threading

from lark import Lark, Token, Transformer, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from . import ast as A
from .diagnostics import CfgError, Diagnostic
from .preprocess import Source, load, preprocess
from .pvspec import PVSyntaxError, parse_pv

_GRAMMAR = os.path.join(os.path.dirname(__file__), "grammar.lark")

LEGACY_NAMES = frozenset({
    "method", "uri", "from_uri", "to_uri", "src_ip", "dst_ip", "src_port", "dst_port",
    "proto", "af", "status", "snd_ip", "snd_port", "to_ip", "to_port", "snd_proto", "snd_af",
    "rcv_ip", "rcv_port",
})
BOOL_WORDS = {"yes": 1, "true": 1, "on": 1, "enable": 1,
              "no": 0, "false": 0, "off": 0, "disable": 0}
TRANSPORTS = frozenset({"udp", "tcp", "tls", "ws", "wss", "sctp", "hep_udp", "hep_tcp", "bin",
                        "bins", "smpp", "msrp", "msrps", "ipsec"})

# Operator precedence per dialect, lowest level first; operators on one level are left-assoc.
_LOGIC_LEVELS = {"opensips": (("||", "&&"),), "kamailio": (("||",), ("&&",))}
_ARITH_LEVELS = {
    "opensips": (("|", "&", "^", "<<", ">>"), ("+", "-", "*", "/", "%")),
    "kamailio": (("|",), ("&",), ("^",), ("<<", ">>"), ("+", "-"), ("*", "/", "%")),
}
_WORD_OPS = {"or": "||", "and": "&&"}

_ESCAPE_RE = re.compile(r"\\(x[0-9a-fA-F]{1,2}|[0-7]{2,3}|\n|.)", re.S)
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "a": "\a", '"': '"', "\\": "\\", "\n": ""}


def unquote(tok: str) -> str:
    """The value of a STRING token: escapes as OpenSIPS's lexer does them."""
    if tok[0] == "'":
        return tok[1:-1]
    body = tok[1:-1]
    if "\\" not in body:
        return body

    def esc(m):
        e = m.group(1)
        if e in _ESCAPES:
            return _ESCAPES[e]
        if e[0] == "x":
            return chr(int(e[1:], 16))
        if e[0] in "01234567" and len(e) >= 2:
            return chr(int(e, 8) & 0xFF)
        return "\\" + e  # unknown escapes are kept verbatim (regexes rely on it)
    return _ESCAPE_RE.sub(esc, body)


def _number(text: str) -> int:
    if text[:2] in ("0x", "0X"):
        return int(text, 16)
    if len(text) > 1 and text[0] == "0" and text.isdigit() and set(text) <= set("01234567"):
        return int(text, 8)
    return int(text)


class _Builder(Transformer):
    """Builds AST nodes while the LALR parser reduces (no parse tree is kept)."""

    def __init__(self):
        super().__init__(visit_tokens=False)
        self.src: Source | None = None
        self.dialect = "opensips"
        self.errors: list = []

    # --- helpers -------------------------------------------------------------------
    def pos(self, x) -> A.Pos:
        if _is_token(x):
            return self.src.pos(x.line, x.column)
        return getattr(x, "pos", A.NOPOS)

    def error(self, msg, pos):
        self.errors.append(Diagnostic("error", msg, pos))

    def _chain(self, items, levels, make):
        """Fold `a op b op c` using the dialect's precedence levels."""
        operands = items[0::2]
        ops = [_WORD_OPS.get(t.value, t.value) for t in items[1::2]]
        positions = [self.pos(t) for t in items[1::2]]

        def build(lo, hi, level):
            if lo == hi:
                return operands[lo]
            if level >= len(levels):
                level = len(levels) - 1
            split = [k for k in range(lo, hi) if ops[k] in levels[level]]
            if not split:
                return build(lo, hi, level + 1)
            node = build(lo, split[0], level + 1)
            for n, k in enumerate(split):
                end = split[n + 1] if n + 1 < len(split) else hi
                node = make(ops[k], node, build(k + 1, end, level + 1), positions[k])
            return node
        return build(0, len(operands) - 1, 0)

    # --- top level -----------------------------------------------------------------
    def start(self, items):
        return [i for i in items if not isinstance(i, (Tree, str)) and not _is_token(i)]

    def top(self, c):  # a stray ';'
        return Tree("top", [])

    def stmt(self, c):  # a stray ';'
        return None

    def gparam(self, c):
        name, raw = c  # (GNAME, value) or (DECL, value)
        pos = self.pos(name)
        text = raw.value.rstrip()
        try:
            value = parse_param_value(name.value, text, self.pos(raw))
        except ValueError as e:
            self.error(f"bad value for '{name}': {e}", self.pos(raw))
            value = A.Str(text, pos)
        return A.GlobalParam(name.value, value, text, pos)

    def loadmodule(self, c):
        return A.LoadModule(unquote(c[1].value), self.pos(c[0]))

    def loadpath(self, c):
        return A.GlobalParam("mpath", A.Str(unquote(c[0].value), self.pos(c[0])), c[0].value,
                             self.pos(c[0]))

    def modparam(self, c):
        kw, mod, param, value = c
        return A.ModParam(mod.value, param.value, value, self.pos(kw))

    def route_def(self, c):
        kind_tok = c[0]
        names = [x for x in c[1:-1]]
        kind = kind_tok.value
        kind = {"request_route": "route", "reply_route": "onreply_route"}.get(kind, kind)
        name = names[0] if names else None
        if kind == "route" and name == "0":
            name = None  # route[0] is the main route's slot
        return A.Route(kind, name, c[-1], tuple(names[1:]), self.pos(kind_tok))

    def route_name(self, c):
        t = c[0]
        return unquote(t.value) if t.type == "STRING" else t.value

    # --- statements ----------------------------------------------------------------
    def block(self, c):
        return A.Block(tuple(s for s in c[1:] if s is not None), self.pos(c[0]))

    route_body = block

    def call_stmt(self, c):
        return A.ExprStmt(c[0], c[0].pos)

    def assign(self, c):
        target = self.pv([c[0]])
        return A.Assign(target, c[1].value, c[2], self.pos(c[0]))

    def return_stmt(self, c):
        pos = self.pos(c[0])
        vals = c[1:]
        if not vals:
            return A.Return(None, (), pos)
        return A.Return(vals[0], tuple(vals[1:]), pos)

    def exit_stmt(self, c):
        return A.Exit(self.pos(c[0]))

    def drop_stmt(self, c):
        return A.Drop(self.pos(c[0]))

    def break_stmt(self, c):
        return A.Break(self.pos(c[0]))

    def if_stmt(self, c):
        orelse = c[4] if len(c) > 3 else None
        return A.If(c[1], c[2] or A.Block((), self.pos(c[0])), orelse, self.pos(c[0]))

    def while_stmt(self, c):
        return A.While(c[1], c[2], self.pos(c[0]))

    def foreach_stmt(self, c):
        return A.ForEach(self.pv([c[1]]), self.pv([c[2]]), c[3], self.pos(c[0]))

    def switch_stmt(self, c):
        cases = tuple(x for x in c[2:] if isinstance(x, A.Case))
        return A.Switch(c[1], cases, self.pos(c[0]))

    def case(self, c):
        if c[0].type == "DEFAULT":
            return A.Case(None, tuple(s for s in c[1:] if s is not None), self.pos(c[0]))
        return A.Case(c[1], tuple(s for s in c[2:] if s is not None), self.pos(c[0]))

    # --- expressions ---------------------------------------------------------------
    def logic(self, c):
        return self._chain(c, _LOGIC_LEVELS[self.dialect],
                           lambda op, l, r, p: A.Logic(op, l, r, l.pos))

    def arith(self, c):
        return self._chain(c, _ARITH_LEVELS[self.dialect],
                           lambda op, l, r, p: A.BinOp(op, l, r, l.pos))

    def compare(self, c):
        left, op, right = c
        return A.Compare(op.value, _legacy(left), _legacy(right), getattr(left, "pos", self.pos(op)))

    def not_(self, c):
        return A.Not(c[1], self.pos(c[0]))

    def unary_op(self, c):
        op, operand = c[0].value, c[1]
        if op == "-" and isinstance(operand, A.Num):
            return A.Num(-operand.value, self.pos(c[0]))
        return A.Unary(op, operand, self.pos(c[0]))

    def bracket(self, c):
        return A.Bracket(c[0], getattr(c[0], "pos", A.NOPOS))

    def pv(self, c):
        tok = c[0]
        pos = self.pos(tok)
        try:
            return parse_pv(tok.value, pos, self.dialect)
        except PVSyntaxError as e:
            self.error(f"bad pseudo-variable '{tok}': {e}", pos)
            return A.PV("", text=tok.value, pos=pos)

    def strings(self, c):
        return A.Str("".join(unquote(t.value) for t in c), self.pos(c[0]))

    def number(self, c):
        return A.Num(_number(c[0].value), self.pos(c[0]))

    def snumber(self, c):
        if len(c) == 2:
            return A.Num(-_number(c[1].value), self.pos(c[0]))
        return A.Num(_number(c[0].value), self.pos(c[0]))

    def ipnet(self, c):
        return A.IPNet(c[0].value, self.pos(c[0]))

    def null(self, c):
        return A.Null(self.pos(c[0]))

    def name(self, c):
        word = c[0].value
        if word in BOOL_WORDS:
            return A.Num(BOOL_WORDS[word], self.pos(c[0]))
        return A.Name(word, self.pos(c[0]))

    def sockaddr(self, c):
        return A.Str(c[0].value, self.pos(c[0]))

    def select(self, c):
        text = c[0].value
        return A.PV("sel", text[1:], text=text, pos=self.pos(c[0]))

    def legacy(self, c):
        return A.LegacyTest(c[0].value, self.pos(c[0]))

    def empty(self, c):
        return A.Empty()

    def call(self, c):
        args = tuple(c[1:])
        if len(args) == 1 and isinstance(args[0], A.Empty):
            args = ()
        return A.Call(c[0].value, args, self.pos(c[0]))

    def route_call(self, c):
        target = c[1]
        if _is_token(target):
            target = self.pv([target]) if target.type == "PVAR" else target.value
        elif isinstance(target, A.Str) and "$" not in target.value:
            target = target.value
        return A.RouteCall(target, tuple(c[2:]), self.pos(c[0]))

    def async_call(self, c):
        kw = c[0]
        call = c[1]
        route = c[2] if len(c) > 2 else None
        extra = c[3] if len(c) > 3 else None
        if kw.type == "ASYNC":
            return A.Async(call, route, extra, self.pos(kw))
        return A.Launch(call, route, extra, self.pos(kw))


def _is_token(x) -> bool:
    return hasattr(x, "start_pos")  # lark's Token, or lark_cython's (not a str subclass)


def _legacy(x):
    if isinstance(x, A.Name) and x.name in LEGACY_NAMES:
        return A.LegacyTest(x.name, x.pos)
    return x


# --- global parameter values ---------------------------------------------------------------

_VALUE_TOKEN_RE = re.compile(r'''\s*("(?:[^"\\]|\\.|\\\n)*"|'[^']*'|\{[^}]*\}|[^\s"']+)''', re.S)
_IPNET_RE = re.compile(r"^(\d{1,3}(\.\d{1,3}){3}|\[?[0-9a-fA-F:]*:[0-9a-fA-F:.]*\]?)(/[\d.]+)?$")
_SOCKET_RE = re.compile(
    r"^(?:(?P<proto>[A-Za-z_]+):(?=.))?(?P<host>\[[^\]]+\]|\"[^\"]*\"|[^:\s]+)"
    r"(?::(?P<port>[\d,\-]+))?$")
_SOCKET_PARAMS_WITH_VALUE = {"as", "use_workers", "use_children", "tos", "tag",
                             "use_auto_scaling_profile", "advertise", "name"}


def parse_param_value(name: str, raw: str, pos: A.Pos):
    """The typed value of `name = raw` (a Num, Str, Name, IPNet, SocketDef or a tuple)."""
    words = [m.group(1) for m in _VALUE_TOKEN_RE.finditer(raw)]
    if not words:
        raise ValueError("missing value")
    if name in ("socket", "listen"):
        return parse_socket(words, pos)
    items = tuple(_scalar(w, pos) for w in words)
    return items[0] if len(items) == 1 else items


def _scalar(word: str, pos: A.Pos):
    if word[0] in "\"'":
        return A.Str(unquote(word), pos)
    if word in BOOL_WORDS:
        return A.Num(BOOL_WORDS[word], pos)
    if re.fullmatch(r"[-+]?(0[xX][0-9a-fA-F]+|\d+)", word):
        sign = -1 if word[0] == "-" else 1
        return A.Num(sign * _number(word.lstrip("+-")), pos)
    if _IPNET_RE.match(word):
        return A.IPNet(word, pos)
    return A.Name(word, pos)


def parse_socket(words, pos: A.Pos) -> A.SocketDef:
    """`proto:host:port [as ip:port] [use_workers N] ...` (also the 1.x `host[:port]`)."""
    m = _SOCKET_RE.match(words[0])
    proto = m and m.group("proto")
    if m and proto and proto.lower() not in TRANSPORTS:
        # `myhost:5060` has no protocol: read it again as host:port
        m = _SOCKET_RE.match("udp:" + words[0]) if re.fullmatch(r"[^:]+:[\d,\-]+", words[0]) else None
        proto = None
    if not m:  # e.g. made of undefined Kamailio names: kept for the runtime to judge
        return A.SocketDef(None, words[0], None, tuple((w, None) for w in words[1:]), pos)
    host = m.group("host").strip('"')
    params = []
    i = 1
    while i < len(words):
        w = words[i]
        key = w.lower()
        if key in _SOCKET_PARAMS_WITH_VALUE and i + 1 < len(words):
            params.append((key, words[i + 1].strip('"')))
            i += 2
        else:
            params.append((key, None))
            i += 1
    return A.SocketDef(proto.lower() if proto else None, host, m.group("port"), tuple(params), pos)


# --- the parser ----------------------------------------------------------------------------

_lock = threading.Lock()
_parser = None
_builder = None


def _get_parser():
    global _parser, _builder
    if _parser is None:
        _builder = _Builder()
        kwargs = dict(parser="lalr", lexer="contextual", transformer=_builder,
                      maybe_placeholders=False, cache=True)
        try:
            import lark_cython  # optional: a faster lexer/parser core
            kwargs["_plugins"] = lark_cython.plugins
        except ImportError:
            pass
        with open(_GRAMMAR) as f:
            _parser = Lark(f.read(), **kwargs)
    return _parser, _builder


_FRIENDLY = {
    "ID": "a name", "GNAME": "a parameter name", "RNAME": "a route name", "PVAR": "a $variable",
    "STRING": "a string", "NUMBER": "a number", "IPNET": "an IP address",
    "PARAM_VALUE": "a value", "ASSIGNOP": "'='", "CMPOP": "a comparison",
    "LOGOP": "'&&' or '||'", "ARITHOP": "an operator", "SHIFTOP": "an operator",
    "ROUTE_KIND": "a route block", "LOADMODULE": "'loadmodule'", "MODPARAM": "'modparam'",
    "NOT": "'!'", "LEGACY": "a core test", "$END": "end of file", "DECL": "'flags'",
    "SOCKADDR": "a socket", "LBRACE": "'{'",
}


def _describe(term: str, parser) -> str:
    if term in _FRIENDLY:
        return _FRIENDLY[term]
    try:
        pattern = parser.get_terminal(term).pattern
        if pattern.type == "str":
            return f"'{pattern.value}'"
    except (KeyError, AttributeError):
        pass
    return term.lower()


def _syntax_diagnostic(e: UnexpectedInput, src: Source, parser) -> Diagnostic:
    expected = sorted({_describe(t, parser) for t in getattr(e, "expected", None)
                       or getattr(e, "allowed", None) or ()})
    if isinstance(e, UnexpectedToken) and e.token.type == "$END":
        last = src.lines[-1] if src.lines else ("<input>", 1, None)
        pos = A.Pos(last[0], last[1], 1)
        msg = "unexpected end of file"
    elif isinstance(e, UnexpectedToken):
        pos = src.pos(e.token.line, e.token.column)
        tok = e.token.value
        if e.token.type not in (e.expected or ()):  # a token of the root lexer: show a word
            tok = re.match(r"\s*(\w+|\S+?(?=[\s;,()]|$)|\S)", tok).group(1)
        tok = tok.split("\n")[0][:40]
        msg = f"unexpected '{tok}'"
        if expected == ["'('"]:
            word = _previous_word(src.text, e.token.start_pos)
            msg = f"bare word '{word}' found: a function call needs '()'"
            if word in ("if", "while", "switch", "for"):
                msg = f"'{word}' needs a condition in parentheses"
    elif isinstance(e, UnexpectedCharacters):
        pos = src.pos(e.line, e.column)
        ch = src.text[e.pos_in_stream] if e.pos_in_stream < len(src.text) else "?"
        msg = f"unexpected character '{ch}'"
    else:
        pos = src.pos(getattr(e, "line", 1), getattr(e, "column", 1))
        msg = "syntax error"
    start = getattr(getattr(e, "token", None), "start_pos", getattr(e, "pos_in_stream", 0)) or 0
    missing = _missing_closer(e, src, expected)
    if src.text.startswith("//", start) and src.dialect == "opensips":
        msg = "'//' is not a comment in OpenSIPS scripts (use '#')"
    elif missing:
        msg, pos = missing
    elif expected == ["'='"] and isinstance(e, UnexpectedToken):
        word = _previous_word(src.text, e.token.start_pos)
        msg, pos = _outside_route(word, src, e.token.start_pos)
    diag = Diagnostic("error", msg, pos)
    if expected and len(expected) <= 12 and not missing:
        diag.notes.append("expected " + ", ".join(expected))
    line = src.text.split("\n")[max(getattr(e, "line", 1) - 1, 0)]
    if re.search(r"<%|\{\{|\{%|<#", line):
        diag.notes.append("this looks like a template (ERB, Jinja, GPP...): render it first, "
                          "or name the renderer with -p")
    return diag


def _previous_word(text, end):
    m = re.search(r"([A-Za-z_][\w.\-]*)\s*$", text[:end])
    return m.group(1) if m else ""


def _outside_route(word, src: Source, offset):
    """A statement after its route block was already closed: say where the block ended."""
    start = src.text.rfind(word, 0, offset)
    line = src.text.count("\n", 0, start) + 1
    col = start - src.text.rfind("\n", 0, start)
    here = src.pos(line, col)
    code = re.sub(r"""("(?:[^"\\]|\\.)*"|'[^']*')|#[^\n]*|/\*.*?\*/""",
                  lambda m: re.sub(r"[^\n]", " ", m.group(0)), src.text[:start], flags=re.S)
    close = code.rfind("}")
    if close < 0:
        return (f"'{word}' outside a route block: expected a global parameter "
                f"('name = value'), loadmodule, modparam or a route", here)
    cline = code.count("\n", 0, close) + 1
    cpos = src.pos(cline, close - code.rfind("\n", 0, close))
    return (f"'{word}' outside a route block: the block was closed by the '}}' at line "
            f"{cpos.line} (unbalanced braces?)", here)


def _missing_closer(e, src: Source, expected):
    """`missing ')'` at the end of the previous line, when the error token starts a new line
    and a closer was expected (the usual forgotten ')' or ';')."""
    closers = [c for c in ("')'", "';'", "'}'") if c in expected]
    if "'loadmodule'" in expected:  # at top level a ';' is optional, never missing
        closers = [c for c in closers if c != "';'"]
    if not closers or not isinstance(e, UnexpectedToken) or e.token.type == "$END":
        return None
    lines = src.text.split("\n")
    n = e.token.line - 1
    before = lines[n][:e.token.column - 1]
    if before.strip():
        return None
    while n > 0:
        n -= 1
        code = re.sub(r"""("(?:[^"\\]|\\.)*"|'[^']*')|#.*""", lambda m: m.group(1) or "", lines[n])
        if code.strip():
            col = len(code.rstrip()) + 1
            return f"missing {closers[0]} at end of line", src.pos(n + 1, col)
    return None


def parse_source(src: Source) -> A.Script:
    """Parse preprocessed text; raises CfgError with every diagnostic found."""
    with _lock:
        parser, builder = _get_parser()
        builder.src = src
        builder.dialect = src.dialect
        builder.errors = []
        try:
            items = parser.parse(src.text)
        except UnexpectedInput as e:
            raise CfgError(builder.errors + [_syntax_diagnostic(e, src, parser)])
        errors = builder.errors
    if errors:
        raise CfgError(errors)
    return A.Script(tuple(items), src.dialect, tuple(src.files))


def parse_file(path: str, *, pipe: str | None = None, defines: dict | None = None,
               lenient_includes: bool = False) -> A.Script:
    """Read, preprocess and parse a script file."""
    return parse_source(load(path, pipe=pipe, defines=defines, lenient_includes=lenient_includes))


def parse_text(text: str, filename: str = "<input>", **kw) -> A.Script:
    return parse_source(preprocess(text, filename, **kw))

"""The YAML subset that SIPssert scenario files use, without a YAML dependency.

Supported: block mappings and sequences (a sequence may sit at its key's indentation),
`- key: value` items, plain, 'single' and "double" quoted scalars, one-line flow lists and
maps of scalars (`[a, b]`, `{a: 1}`), `#` comments, a leading `---`. Plain scalars are
typed as PyYAML (which SIPssert uses) types them: null/~, true/false/yes/no/on/off,
decimal integers, floats with a dot, else strings.
Anything else (anchors, tags, block scalars `|`/`>`, several documents) is an error with
the line number, never a silent misreading.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass


class YamlError(ValueError):
    pass


@dataclass
class _Line:
    indent: int
    text: str
    number: int


_BOOLS = {form: value for value, words in ((True, "true yes on"), (False, "false no off"))
          for word in words.split() for form in (word, word.title(), word.upper())}
_INT = re.compile(r"[-+]?[0-9]+$")
_FLOAT = re.compile(r"[-+]?([0-9]+\.[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$")


def loads(text: str, name: str = "<yaml>"):
    """Parse `text`; errors name `name` and the line."""
    lines = _lines(text, name)
    if not lines:
        return None
    parser = _Parser(lines, name)
    value = parser.node(0, lines[0].indent)
    if parser.i < len(lines):
        parser.fail(lines[parser.i], "unexpected indentation")
    return value


def _lines(text, name):
    out = []
    for number, raw in enumerate(text.splitlines(), 1):
        body = _strip_comment(raw).rstrip()
        stripped = body.lstrip(" ")
        if not stripped:
            continue
        if stripped.startswith("\t") or "\t" in body[: len(body) - len(stripped)]:
            raise YamlError(f"{name}:{number}: tabs are not allowed in indentation")
        if stripped in ("---", "...") and body == stripped:
            if out and stripped == "---":
                raise YamlError(f"{name}:{number}: only one document is supported")
            continue
        out.append(_Line(len(body) - len(stripped), stripped, number))
    return out


def _strip_comment(raw):
    quote = None
    for i, c in enumerate(raw):
        if quote:
            if c == quote:
                quote = None
        elif c in "'\"" and (i == 0 or raw[i - 1] in " \t[{,:-"):
            quote = c
        elif c == "#" and (i == 0 or raw[i - 1] in " \t"):
            return raw[:i]
    return raw


def _is_item(text):
    return text == "-" or text.startswith("- ")


def _split_key(text):
    """'key: rest' -> ('key', 'rest'); None if text is not a mapping entry."""
    if text[:1] in "'\"":
        end = text.find(text[0], 1)
        if end > 0 and text[end + 1:end + 2] == ":" and text[end + 2:end + 3] in ("", " "):
            return _scalar(text[: end + 1], None), text[end + 2:].strip()
        return None
    m = re.match(r"([^\s:][^:]*?)\s*:(\s|$)", text)
    if not m or m.group(1).startswith(("[", "{")):
        return None
    return m.group(1), text[m.end():].strip()


class _Parser:
    def __init__(self, lines, name):
        self.lines, self.name, self.i = lines, name, 0

    def fail(self, line, message):
        raise YamlError(f"{self.name}:{line.number}: {message}")

    def node(self, i, indent):
        self.i = i
        if _is_item(self.lines[i].text):
            return self.sequence(indent)
        return self.mapping(indent)

    def sequence(self, indent):
        items = []
        while self.i < len(self.lines):
            line = self.lines[self.i]
            if line.indent != indent or not _is_item(line.text):
                break
            rest = line.text[1:].lstrip(" ")
            if not rest:
                items.append(self.nested(line, indent))
            elif _is_item(rest) or _split_key(rest):
                # the item's content starts on the dash line: re-read it at its own column
                self.lines[self.i] = _Line(line.indent + len(line.text) - len(rest), rest,
                                           line.number)
                items.append(self.node(self.i, self.lines[self.i].indent))
            else:
                items.append(self.value(rest, line))
                self.i += 1
        return items

    def mapping(self, indent):
        result = {}
        while self.i < len(self.lines):
            line = self.lines[self.i]
            if line.indent != indent or _is_item(line.text):
                break
            entry = _split_key(line.text)
            if entry is None:
                self.fail(line, f"expected 'key: value', got {line.text!r}")
            key, rest = entry
            if key in result:
                self.fail(line, f"duplicate key {key!r}")
            if rest:
                result[key] = self.value(rest, line)
                self.i += 1
            else:
                nxt = self.lines[self.i + 1] if self.i + 1 < len(self.lines) else None
                if nxt and nxt.indent == indent and _is_item(nxt.text):
                    self.i += 1
                    result[key] = self.sequence(indent)
                else:
                    result[key] = self.nested(line, indent)
        if self.i < len(self.lines) and self.lines[self.i].indent > indent:
            self.fail(self.lines[self.i], "unexpected indentation")
        return result

    def nested(self, line, indent):
        """The block under `line` (None if there is none)."""
        self.i += 1
        if self.i < len(self.lines) and self.lines[self.i].indent > indent:
            return self.node(self.i, self.lines[self.i].indent)
        return None

    def value(self, text, line):
        if text[0] in "&*!|>%@`":
            self.fail(line, f"unsupported YAML ({text[0]!r}): {text!r}")
        if text[0] == "[" or text[0] == "{":
            return self.flow(text, line)
        try:
            return _scalar(text, line)
        except YamlError as e:
            self.fail(line, str(e))

    def flow(self, text, line):
        closing = "]" if text[0] == "[" else "}"
        if not text.endswith(closing):
            self.fail(line, f"a flow collection must end on its line with {closing!r}")
        inner = text[1:-1].strip()
        parts = [p.strip() for p in _split_commas(inner)] if inner else []
        if any(p[:1] in "[{" for p in parts):
            self.fail(line, "nested flow collections are not supported")
        if closing == "]":
            return [self.value(p, line) for p in parts]
        out = {}
        for p in parts:
            entry = _split_key(p)
            if entry is None:
                self.fail(line, f"expected 'key: value' in {text!r}")
            out[entry[0]] = self.value(entry[1], line) if entry[1] else None
        return out


def _split_commas(text):
    parts, quote, start = [], None, 0
    for i, c in enumerate(text):
        if quote:
            if c == quote:
                quote = None
        elif c in "'\"":
            quote = c
        elif c == ",":
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _scalar(text, line):
    if text[0] == '"':
        if len(text) < 2 or not text.endswith('"'):
            raise YamlError(f"unterminated string {text!r}")
        return json.loads(text)
    if text[0] == "'":
        if len(text) < 2 or not text.endswith("'"):
            raise YamlError(f"unterminated string {text!r}")
        return text[1:-1].replace("''", "'")
    if text in ("~", "null", "Null", "NULL"):
        return None
    if text in _BOOLS:
        return _BOOLS[text]
    if _INT.match(text):
        return int(text)
    if _FLOAT.match(text):
        return float(text)
    return text

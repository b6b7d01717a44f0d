"""bencode, as the rtpengine "ng" control protocol carries it.

Strings decode to bytes; dictionary keys decode to str (they are ASCII in the protocol).
Dictionaries are encoded in insertion order (the daemon does not need sorted keys).
"""
from __future__ import annotations


class BencodeError(ValueError):
    pass


def encode(obj) -> bytes:
    out: list[bytes] = []
    _enc(obj, out)
    return b"".join(out)


def _enc(obj, out):
    if isinstance(obj, bytes):
        out.append(b"%d:" % len(obj))
        out.append(obj)
    elif isinstance(obj, str):
        _enc(obj.encode("utf-8", "surrogateescape"), out)
    elif isinstance(obj, bool):
        out.append(b"i%de" % int(obj))
    elif isinstance(obj, int):
        out.append(b"i%de" % obj)
    elif isinstance(obj, (list, tuple)):
        out.append(b"l")
        for x in obj:
            _enc(x, out)
        out.append(b"e")
    elif isinstance(obj, dict):
        out.append(b"d")
        for k, v in obj.items():
            _enc(k, out)
            _enc(v, out)
        out.append(b"e")
    else:
        raise BencodeError(f"cannot bencode {type(obj).__name__}")


def decode(data: bytes):
    """The one value in `data` (trailing bytes are an error)."""
    value, end = _dec(data, 0)
    if end != len(data):
        raise BencodeError(f"trailing data at offset {end}")
    return value


def _dec(data: bytes, i: int):
    if i >= len(data):
        raise BencodeError("truncated")
    c = data[i:i + 1]
    if c == b"i":
        end = data.find(b"e", i)
        if end < 0:
            raise BencodeError("unterminated integer")
        try:
            return int(data[i + 1:end]), end + 1
        except ValueError:
            raise BencodeError(f"bad integer at offset {i}") from None
    if c == b"l":
        i += 1
        items = []
        while data[i:i + 1] != b"e":
            v, i = _dec(data, i)
            items.append(v)
        return items, i + 1
    if c == b"d":
        i += 1
        d = {}
        while data[i:i + 1] != b"e":
            k, i = _dec(data, i)
            if not isinstance(k, bytes):
                raise BencodeError("dictionary key is not a string")
            v, i = _dec(data, i)
            d[k.decode("utf-8", "replace")] = v
        return d, i + 1
    if c.isdigit():
        colon = data.find(b":", i)
        if colon < 0:
            raise BencodeError("string without ':'")
        try:
            n = int(data[i:colon])
        except ValueError:
            raise BencodeError(f"bad string length at offset {i}") from None
        start = colon + 1
        if start + n > len(data):
            raise BencodeError("truncated string")
        return data[start:start + n], start + n
    raise BencodeError(f"unexpected {c!r} at offset {i}")


def text(value, default=None):
    """A decoded string value as str."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return default if value is None else str(value)

"""Digest authentication arithmetic (RFC 2617, RFC 7616, RFC 8760) and the server's nonces."""
from __future__ import annotations

import hashlib
import hmac
import itertools
import os
import time

# algorithm name (as written in headers) -> (hashlib name, is a -sess variant)
ALGORITHMS = {
    "MD5": ("md5", False), "MD5-sess": ("md5", True),
    "SHA-256": ("sha256", False), "SHA-256-sess": ("sha256", True),
    "SHA-512-256": ("sha512_256", False), "SHA-512-256-sess": ("sha512_256", True),
}
_BY_LOWER = {k.lower(): k for k in ALGORITHMS}


def algorithm(name: str | None) -> str | None:
    """The canonical spelling of an algorithm name (None: absent means MD5), or None when it
    is not one we support."""
    if not name:
        return "MD5"
    alg = _BY_LOWER.get(name.strip().lower())
    if alg is None:
        return None
    try:
        hashlib.new(ALGORITHMS[alg][0])
    except ValueError:  # SHA-512/256 needs an OpenSSL that has it
        return None
    return alg


def base(alg: str) -> str:
    """The algorithm whose HA1 a subscriber row stores: 'SHA-256-sess' -> 'SHA-256'."""
    return alg[:-5] if alg.endswith("-sess") else alg


def h(alg: str, text: str) -> str:
    return hashlib.new(ALGORITHMS[alg][0], text.encode("utf-8", "surrogateescape")).hexdigest()


def ha1(alg: str, username: str, realm: str, password: str) -> str:
    return h(alg, f"{username}:{realm}:{password}")


def response(alg: str, ha1_value: str, nonce: str, method: str, uri: str, *, qop=None,
             nc=None, cnonce=None, body: bytes = b"") -> str:
    """The `response` a UA holding `ha1_value` (of the base algorithm) must send."""
    if ALGORITHMS[alg][1]:
        ha1_value = h(alg, f"{ha1_value}:{nonce}:{cnonce}")
    a2 = f"{method}:{uri}"
    if qop == "auth-int":
        a2 += ":" + hashlib.new(ALGORITHMS[alg][0], body).hexdigest()
    ha2 = h(alg, a2)
    if qop:
        return h(alg, f"{ha1_value}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return h(alg, f"{ha1_value}:{nonce}:{ha2}")


class Nonces:
    """Nonces this server gives out: `<expiry><index>` in hex, signed with the secret.

    A nonce is accepted until it expires. Unless replay checks are off, a nonce answered
    without qop is good for one request, and with qop each request must bring a higher nc.
    """

    def __init__(self, secret: str | None, expire: int, check_replay: bool = True):
        self.secret = (secret or os.urandom(16).hex()).encode()
        self.expire = expire
        self.check_replay = check_replay
        self.index = itertools.count(int.from_bytes(os.urandom(3), "big"))
        self.used: dict[str, tuple[float, int]] = {}   # nonce -> (expiry, last nc; -1 none)

    def _sign(self, head: str) -> str:
        return hmac.new(self.secret, head.encode(), hashlib.md5).hexdigest()

    def new(self, now: float | None = None) -> str:
        expiry = int((time.time() if now is None else now) + self.expire)
        head = f"{expiry & 0xFFFFFFFF:08x}{next(self.index) & 0xFFFFFFFF:08x}"
        return head + self._sign(head)

    def check(self, nonce: str, now: float | None = None) -> str:
        """'ok', or 'stale' (expired, or not from us: the UA retries without asking the
        user, as after a restart with a new secret)."""
        if len(nonce) != 48 or not hmac.compare_digest(self._sign(nonce[:16]), nonce[16:]):
            return "stale"
        try:
            expiry = int(nonce[:8], 16)
        except ValueError:
            return "stale"
        return "ok" if expiry >= (time.time() if now is None else now) else "stale"

    def consume(self, nonce: str, nc: str | None, now: float | None = None) -> bool:
        """Record a successful use; False when it replays an earlier one."""
        if not self.check_replay:
            return True
        now = time.time() if now is None else now
        try:
            count = int(nc, 16) if nc else -1
        except ValueError:
            return False
        last = self.used.get(nonce)
        if last is not None and (count < 0 or count <= last[1]):
            return False
        self.used[nonce] = (int(nonce[:8], 16), count)
        if len(self.used) > 1024:
            self.used = {k: v for k, v in self.used.items() if v[0] >= now}
        return True

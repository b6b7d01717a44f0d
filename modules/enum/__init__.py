"""enum: ENUM (RFC 3761) lookups — an E.164 number to a SIP URI through DNS NAPTR records.

    enum_query(["e164.arpa."[, "e2u+sip"]])     R-URI user +<digits> -> the NAPTR's URI
    enum_pv_query($var(n)[, suffix[, service]])  the number from a variable
    i_enum_query([suffix[, service]])            infrastructure ENUM (branch label)
    isn_query([suffix[, service]])               ISN 1234*256 -> 4.3.2.1.256.freenum.org.
    is_from_user_enum([suffix[, service]])       does the From user's ENUM point at us?

The records come from the name servers of the system resolver (/etc/resolv.conf, or the
CFGSCRIPT_DNS_SERVERS environment variable), see dns.py. The usable records are those with
flag "u" and a service matching the asked one (E2U+sip, the RFC 2916 sip+E2U, E2U+x:sip);
the one of lowest order, then preference, gives the new URI through its regexp
(`!pattern!replacement!flags`, POSIX ERE, \\1..\\9 in the replacement) applied to the
number with its leading '+'. 1 when the R-URI was rewritten, -1 otherwise."""
import re

from runtime.module import FAILURE, REQUEST, STR, Arg, Func, Module, Param
from runtime.pv import parse_uri
from runtime.sip.headers import SIPError
from runtime.values import ere_to_python

from . import dns

_ARGS = [Arg(STR, optional=True, name="suffix"), Arg(STR, optional=True, name="service")]

exports = Module(
    name="enum",
    params=[
        Param("domain_suffix", str, "e164.arpa."), Param("tel_uri_params", str, ""),
        Param("i_enum_suffix", str, "e164.arpa."), Param("isn_suffix", str, "freenum.org."),
        Param("branchlabel", str, "i"), Param("bl_algorithm", str, "cc"),
    ],
    functions=[
        Func("enum_query", "enum_query", _ARGS, REQUEST | FAILURE),
        Func("enum_pv_query", "enum_pv_query", [Arg(STR, name="number"), *_ARGS],
             REQUEST | FAILURE),
        Func("enum_fquery", "enum_fquery", _ARGS, REQUEST | FAILURE),
        Func("i_enum_query", "i_enum_query", _ARGS, REQUEST | FAILURE),
        Func("isn_query", "isn_query", _ARGS, REQUEST | FAILURE),
        Func("is_from_user_enum", "is_from_user_enum", _ARGS, REQUEST),
    ],
    init="init",
)

_state: dict = {"lookup": dns.naptr}
_E164 = re.compile(r"^\+\d{2,15}$")


def init(rt):
    _state["p"] = rt.modparams["enum"]


def _params():
    return _state.get("p") or {"domain_suffix": "e164.arpa.", "tel_uri_params": "",
                               "i_enum_suffix": "e164.arpa.", "isn_suffix": "freenum.org.",
                               "branchlabel": "i", "bl_algorithm": "cc"}


# --- the NAPTR regexp ----------------------------------------------------------------------------

def split_regexp(text):
    """`!pattern!replacement!flags` (any delimiter; a backslash escapes it) -> the parts."""
    if not text or len(text) < 3:
        raise ValueError(f"bad NAPTR regexp '{text}'")
    delim = text[0]
    parts, cur, i = [], "", 1
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text) and text[i + 1] == delim:
            cur += delim
            i += 2
            continue
        if c == delim:
            parts.append(cur)
            cur = ""
        else:
            cur += c
        i += 1
    parts.append(cur)
    if len(parts) != 3:
        raise ValueError(f"bad NAPTR regexp '{text}'")
    return parts[0], parts[1], parts[2]


def apply_regexp(text, aus):
    """The NAPTR substitution applied to the Application Unique String; None when the
    pattern does not match."""
    pattern, repl, flags = split_regexp(text)
    rx = re.compile(ere_to_python(pattern), re.I if "i" in flags else 0)
    m = rx.search(aus)
    if m is None:
        return None
    out, i = [], 0
    while i < len(repl):
        c = repl[i]
        if c == "\\" and i + 1 < len(repl):
            d = repl[i + 1]
            if d.isdigit():
                n = int(d)
                if n > (rx.groups or 0):
                    raise ValueError(f"NAPTR regexp '{text}' refers to group {n}")
                out.append(m.group(n) or "" if n else m.group(0))
            else:
                out.append(d)
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def service_matches(record_services, wanted):
    have = (record_services or "").strip().lower()
    want = (wanted or "e2u+sip").strip().lower()
    if have == want:
        return True
    if want == "e2u+sip":
        return have in ("sip+e2u",) or (have.startswith("e2u+") and
                                         have.split(":")[-1] == "sip" and "+" in have)
    return False


def best_uri(records, aus, service):
    """The URI of the first usable record (order, then preference)."""
    usable = [r for r in records if r.flags.lower() == "u" and service_matches(r.services,
                                                                               service)]
    for r in sorted(usable, key=lambda r: (r.order, r.pref)):
        try:
            uri = apply_regexp(r.regexp, aus)
        except (ValueError, re.error):
            continue
        if uri:
            return uri
    return None


def enum_domain(number, suffix):
    digits = [c for c in number if c.isdigit()]
    suffix = suffix or "e164.arpa."
    if not suffix.endswith("."):
        suffix += "."
    return ".".join(reversed(digits)) + "." + suffix


# --- lookups -----------------------------------------------------------------------------------

def _lookup(ctx, name):
    records = _state["lookup"](name)
    if records is None:
        ctx.rt.log.warning(f"enum: no answer from the name servers for {name}", "enum")
    return records


def _resolve(ctx, number, suffix, service):
    """The URI for an E.164 number, or a negative code."""
    if not _E164.match(number or ""):
        return -1
    records = _lookup(ctx, enum_domain(number, suffix or _params()["domain_suffix"]))
    if not records:
        return -1
    uri = best_uri(records, number, service)
    return uri if uri else -1


def _rewrite(ctx, uri):
    """The new R-URI (a tel: URI gets the tel_uri_params)."""
    params = _params()["tel_uri_params"]
    if params and uri.lower().startswith("tel:"):
        uri += params if params.startswith(";") else ";" + params
    ctx.new_ruri = uri
    return 1


def _ruri_user(ctx):
    u = parse_uri(ctx.ruri)
    if u is None:
        return None
    user = u.user or ""
    return user.split(";")[0]


def enum_query(ctx, suffix=None, service=None):
    r = _resolve(ctx, _ruri_user(ctx), suffix, service)
    return r if isinstance(r, int) else _rewrite(ctx, r)


def enum_fquery(ctx, suffix=None, service=None):
    """enum_query on the From user (1.x)."""
    try:
        u = parse_uri(ctx.msg.from_.uri)
    except SIPError:
        return -1
    r = _resolve(ctx, (u.user or "") if u else "", suffix, service)
    return r if isinstance(r, int) else _rewrite(ctx, r)


def enum_pv_query(ctx, number, suffix=None, service=None):
    r = _resolve(ctx, (number or "").strip(), suffix, service)
    return r if isinstance(r, int) else _rewrite(ctx, r)


def i_enum_query(ctx, suffix=None, service=None):
    """Infrastructure ENUM: the branch label after the country code (bl_algorithm "cc":
    the country code's length from its first digits, as ITU E.164 allots them)."""
    number = _ruri_user(ctx)
    if not _E164.match(number or ""):
        return -1
    p = _params()
    digits = number[1:]
    cc = _cc_len(digits)
    label = p["branchlabel"] or "i"
    rev = ".".join(reversed(digits[cc:]))
    ccrev = ".".join(reversed(digits[:cc]))
    sfx = suffix or p["i_enum_suffix"]
    if not sfx.endswith("."):
        sfx += "."
    records = _lookup(ctx, f"{rev}.{label}.{ccrev}.{sfx}")
    if not records:
        return enum_query(ctx, suffix, service)
    uri = best_uri(records, number, service)
    return _rewrite(ctx, uri) if uri else -1


def _cc_len(digits):
    one = "1", "7"
    two = ("20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45",
           "46", "47", "48", "49", "51", "52", "53", "54", "55", "56", "57", "58", "60", "61",
           "62", "63", "64", "65", "66", "81", "82", "84", "86", "90", "91", "92", "93", "94",
           "95", "98")
    if digits[:1] in one:
        return 1
    if digits[:2] in two:
        return 2
    return 3


def isn_query(ctx, suffix=None, service=None):
    """ISN: `1234*256` -> 4.3.2.1.256.<isn_suffix>, the AUS being the ISN itself."""
    user = _ruri_user(ctx) or ""
    m = re.match(r"^(\d+)\*(\d+)$", user)
    if m is None:
        return -1
    sfx = suffix or _params()["isn_suffix"]
    if not sfx.endswith("."):
        sfx += "."
    name = ".".join(reversed(m.group(1))) + f".{m.group(2)}.{sfx}"
    records = _lookup(ctx, name)
    if not records:
        return -1
    uri = best_uri(records, user, service)
    return _rewrite(ctx, uri) if uri else -1


def is_from_user_enum(ctx, suffix=None, service=None):
    """1 when the From user is an E.164 number whose ENUM URI points at this proxy; -1 when
    it points elsewhere or has none, -2 on a lookup failure, -3 for a From user that is no
    E.164 number."""
    try:
        u = parse_uri(ctx.msg.from_.uri)
    except SIPError:
        return -1
    user = ((u.user or "") if u else "").split(";")[0]
    if not _E164.match(user):
        return -3
    records = _state["lookup"](enum_domain(user, suffix or _params()["domain_suffix"]))
    if records is None:
        return -2
    uri = best_uri(records, user, service)
    if not uri:
        return -1
    target = parse_uri(uri)
    if target is None or not target.host:
        return -1
    return 1 if ctx.rt.is_myself(target.host, target.port or 0) else -1

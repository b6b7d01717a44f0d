"""Helpers the routing modules share (dispatcher, load_balancer, drouting, dialplan):
PV holders named by modparams, OpenSIPS partition strings, destination addresses, probing
reply codes, the MI reload."""
from __future__ import annotations

import re

from runtime.forward import next_hop
from runtime.pv import PVS, bind, parse_pv_text
from runtime.values import to_int

from .probe import parse_reply_codes


class PVRef:
    """A PV named by a modparam (`"$avp(271)"`, `"$var(setid)"`). AVPs are handled as the
    stacks they are (push, pop the newest, clear); other PVs are simply written."""

    def __init__(self, text, defs=None):
        self.text = text
        self.bound = bind(parse_pv_text(text), defs or PVS)
        self.avp = self.bound.d.name == "avp" and self.bound.dyn_sub is None \
            and self.bound.index is None
        self.name = self.bound.sub if self.avp else None

    def push(self, ctx, value):
        if self.avp:
            ctx.avps.setdefault(self.name, []).append(value)
        else:
            self.bound.set(ctx, value)

    def push_last(self, ctx, value):
        """Add as the oldest value (OpenSIPS add_avp_last): read after the others."""
        if self.avp:
            ctx.avps.setdefault(self.name, []).insert(0, value)
        else:
            self.bound.set(ctx, value)

    def get(self, ctx):
        if self.avp:
            lst = ctx.avps.get(self.name)
            return lst[-1] if lst else None
        return self.bound.get(ctx)

    def values(self, ctx) -> list:
        """Newest first."""
        if self.avp:
            return list(reversed(ctx.avps.get(self.name) or []))
        v = self.bound.get(ctx)
        return [] if v is None else [v]

    def pop(self, ctx):
        """Remove the newest value; returns it (None when there was none)."""
        if self.avp:
            lst = ctx.avps.get(self.name)
            if not lst:
                return None
            v = lst.pop()
            if not lst:
                del ctx.avps[self.name]
            return v
        v = self.bound.get(ctx)
        try:
            self.bound.set(ctx, None)
        except Exception:
            pass
        return v

    def clear(self, ctx):
        if self.avp:
            ctx.avps.pop(self.name, None)
        else:
            try:
                self.bound.set(ctx, None)
            except Exception:
                pass


def pv_ref(text, what):
    """A PVRef for a modparam value; ValueError with the parameter name when it is no PV."""
    if text in (None, ""):
        return None
    try:
        return PVRef(str(text))
    except Exception as e:
        raise ValueError(f"{what}: bad pseudo-variable '{text}': {e}") from None


def check_pv(text):
    """A modparam check: None when `text` is a PV spec (or empty)."""
    if text in (None, ""):
        return None
    try:
        PVRef(str(text))
    except Exception as e:
        return f"'{text}' is not a pseudo-variable: {e}"
    return None


def parse_partition(text) -> tuple[str, dict]:
    """`"name: key1 = v1; key2 = v2"` -> (name, {key: value}). A value may hold '=' (a
    blacklist `list = 1,2`) and ':' (a db_url). `"default: pstn"` (an alias) gives
    (`default`, {"": "pstn"})."""
    text = str(text).strip()
    m = re.match(r"^\s*([A-Za-z0-9_\-.]+)\s*:(.*)$", text, re.S)
    if not m:
        raise ValueError(f"bad partition definition '{text}' (expected 'name: key=value; ...')")
    name, rest = m.group(1), m.group(2)
    props = {}
    for part in rest.split(";"):
        part = part.strip()
        if not part:
            continue
        key, eq, value = part.partition("=")
        if not eq:
            props[""] = part
            continue
        props[key.strip()] = value.strip()
    return name, props


def check_partition(text):
    try:
        parse_partition(text)
    except ValueError as e:
        return str(e)
    return None


def partition_id(value, what, optional=False):
    """A fixup's `1`, `"1"`, `"part:1"`, `"part : 1"` -> (partition or None, id); ValueError
    "'value' is not a `what`". With `optional`, no id (None, `"part:"`) is the id None."""
    if value is None and optional:
        return None, None
    if isinstance(value, int):
        return None, value
    text = str(value).strip()
    part = None
    if ":" in text:
        part, _, text = text.partition(":")
        part, text = part.strip(), text.strip()
    if optional and text == "":
        return part or None, None
    n = to_int(text)
    if n is None:
        raise ValueError(f"'{value}' is not a {what}")
    return part or None, n


def check_reply_codes(text):
    """A modparam check of a probing reply code list."""
    try:
        parse_reply_codes(text)
    except ValueError as e:
        return str(e)
    return None


def mi_reload(state, partition=None):
    """An MI reload command: state.load() again; `partition`, when given, must be one of
    state.partitions."""
    from runtime.mi import OK, MIError
    if partition is not None and partition not in state.partitions:
        raise MIError(400, "Unknown partition")
    try:
        state.load()
    except Exception as e:
        raise MIError(500, f"Failed to reload: {e}")
    return OK


def resolve_dest(uri):
    """(proto, ip, port) of a destination URI, None when it cannot be resolved."""
    try:
        return next_hop(str(uri))
    except Exception:
        return None


def split_host_port(text):
    """`host[:port]` (or a SIP URI) -> (host, port or 0)."""
    text = str(text).strip()
    if text[:4].lower() in ("sip:", "sips"):
        from runtime.pv import parse_uri
        u = parse_uri(text)
        return (u.host.strip("[]"), u.port or 0) if u else (text, 0)
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else 0
    host, _, port = text.partition(":") if text.count(":") == 1 else (text, "", "")
    return host, int(port) if port.isdigit() else 0


def is_ip(text) -> bool:
    import ipaddress
    try:
        ipaddress.ip_address(str(text).strip("[]"))
        return True
    except ValueError:
        return False


def same_ip(a, b) -> bool:
    import ipaddress
    try:
        return ipaddress.ip_address(str(a).strip("[]")) == ipaddress.ip_address(str(b).strip("[]"))
    except ValueError:
        return False


def flag_letters(text) -> str:
    return "" if text is None else str(text)

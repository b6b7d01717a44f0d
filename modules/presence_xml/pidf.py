"""PIDF documents (RFC 3863) and presence authorization rules (RFC 4745 common policy,
RFC 5025 pres-rules), with the standard library's XML parsers (no entity expansion from
outside the document: expat does not fetch external entities).

- aggregate(): one <presence> out of the states several devices published: the newest
  document's root (its namespace declarations, plus those of the others), `entity` set to
  the presentity, then every <tuple> (newest first, one per id) and every other element
  (<person>, <device>, <note>...; newest first, one per element name and id);
- offline(): the state to notify when a publication ends: its tuples, each reduced to
  <status><basic>closed</basic></status>;
- sub_handling(): the `sub-handling` action of the rules that apply to a watcher (the most
  permissive one, RFC 4745 10.2): identity (one/many/except) and validity conditions; a rule
  with a condition it does not know does not apply.
"""
from __future__ import annotations

import datetime
import xml.etree.ElementTree as ET
from xml.dom import minidom
from xml.parsers.expat import ExpatError

PIDF_NS = "urn:ietf:params:xml:ns:pidf"


def parse(body: str):
    """A minidom Document, or None when the body is not well-formed XML."""
    try:
        return minidom.parseString(body.encode("utf-8", "surrogateescape"))
    except (ExpatError, ValueError):
        return None


def well_formed(body: str) -> bool:
    return parse(body) is not None


def _elements(node):
    return [c for c in node.childNodes if c.nodeType == c.ELEMENT_NODE]


def _local(node) -> str:
    return (node.localName or node.tagName.split(":")[-1]).lower()


def _xml(doc) -> str:
    text = doc.documentElement.toxml()
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + text + "\n"


def aggregate(entity: str, bodies: list) -> str | None:
    """One PIDF document for every published state of a presentity (oldest first in
    `bodies`). A single state is notified as it was published."""
    bodies = [b for b in bodies if b and b.strip()]
    if not bodies:
        return None
    if len(bodies) == 1:
        return bodies[0]
    docs = [d for d in (parse(b) for b in reversed(bodies)) if d is not None]
    if not docs:
        return None
    if len(docs) == 1:
        return docs[0].documentElement.toxml()
    out = minidom.Document()
    first = docs[0].documentElement
    root = out.createElement(first.tagName)
    for doc in docs:
        for name, value in doc.documentElement.attributes.items():
            if (name == "xmlns" or name.startswith("xmlns:")) and not root.hasAttribute(name):
                root.setAttribute(name, value)
    if not root.hasAttribute("xmlns") and ":" not in first.tagName:
        root.setAttribute("xmlns", PIDF_NS)
    root.setAttribute("entity", entity)
    out.appendChild(root)
    seen_tuples, seen_other = set(), set()
    for doc in docs:
        for el in _elements(doc.documentElement):
            if _local(el) == "tuple":
                key = el.getAttribute("id") or id(el)
                if key in seen_tuples:
                    continue
                seen_tuples.add(key)
                root.appendChild(out.importNode(el, True))
    for doc in docs:
        for el in _elements(doc.documentElement):
            if _local(el) == "tuple":
                continue
            key = (el.tagName, el.getAttribute("id")) if el.getAttribute("id") else id(el)
            if key in seen_other:
                continue
            seen_other.add(key)
            root.appendChild(out.importNode(el, True))
    return _xml(out)


def offline(body: str, entity: str | None = None) -> str | None:
    """The published document with every tuple closed (and nothing else)."""
    doc = parse(body)
    if doc is None:
        return None
    root = doc.documentElement
    if entity:
        root.setAttribute("entity", entity)
    tuples = 0
    for el in _elements(root):
        if _local(el) != "tuple":
            root.removeChild(el)
            continue
        tuples += 1
        prefix = el.prefix + ":" if el.prefix else ""
        status = None
        for c in _elements(el):
            if _local(c) == "status" and status is None:
                status = c
            else:
                el.removeChild(c)
        if status is None:
            status = doc.createElement(prefix + "status")
            el.appendChild(status)
        for c in list(status.childNodes):
            status.removeChild(c)
        basic = doc.createElement(prefix + "basic")
        basic.appendChild(doc.createTextNode("closed"))
        status.appendChild(basic)
    for c in list(root.childNodes):
        if c.nodeType == c.TEXT_NODE:
            root.removeChild(c)
    if not tuples:
        return None
    return _xml(doc)


def closed(entity: str, tuple_id: str = "0") -> str:
    """A PIDF document saying the presentity is offline (notify_offline_body)."""
    from xml.sax.saxutils import quoteattr
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<presence xmlns="{PIDF_NS}" entity={quoteattr(entity)}>\n'
            f'  <tuple id={quoteattr(tuple_id)}>\n'
            '    <status><basic>closed</basic></status>\n'
            '  </tuple>\n'
            '</presence>\n')


# --- authorization rules --------------------------------------------------------------------

# RFC 5025 3.2.1: block < confirm < polite-block < allow
SUB_HANDLING = {"block": 0, "confirm": 10, "polite-block": 20, "allow": 30}


def _lname(tag: str) -> str:
    return tag.rsplit("}", 1)[-1].lower()


def _children(el, name):
    return [c for c in el if _lname(c.tag) == name]


def _norm(uri: str):
    """(user, domain) of a SIP URI, for comparing identities."""
    u = uri.strip().strip("<>")
    if ":" in u and u.split(":", 1)[0].lower() in ("sip", "sips", "pres", "tel"):
        u = u.split(":", 1)[1]
    u = u.split(";", 1)[0].split("?", 1)[0]
    user, _, domain = u.rpartition("@")
    return user, domain.lower()


def _identity_matches(identity, watcher: str) -> bool:
    w_user, w_domain = _norm(watcher)
    for one in _children(identity, "one"):
        if _norm(one.get("id", "")) == (w_user, w_domain):
            return True
    for many in _children(identity, "many"):
        dom = (many.get("domain") or "").lower()
        if dom and dom != w_domain:
            continue
        excluded = False
        for exc in _children(many, "except"):
            if exc.get("id") and _norm(exc.get("id")) == (w_user, w_domain):
                excluded = True
            if exc.get("domain") and exc.get("domain").lower() == w_domain:
                excluded = True
        if not excluded:
            return True
    return False


def _when(text):
    try:
        t = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=datetime.timezone.utc)
    return t


def _validity_matches(validity, now) -> bool:
    froms, untils = _children(validity, "from"), _children(validity, "until")
    for f, u in zip(froms, untils):
        start, end = _when(f.text or ""), _when(u.text or "")
        if start is not None and end is not None and start <= now <= end:
            return True
    return False


def _conditions_match(conditions, watcher, now) -> bool:
    for cond in conditions:
        name = _lname(cond.tag)
        if name == "identity":
            if not _identity_matches(cond, watcher):
                return False
        elif name == "validity":
            if not _validity_matches(cond, now):
                return False
        elif name == "sphere":
            continue       # needs the presentity's published sphere (enable_sphere_check)
        else:
            return False
    return True


def sub_handling(rules_doc: str, watcher: str, now=None) -> str | None:
    """The sub-handling action the rules give this watcher, or None when no rule applies
    (or the document cannot be read)."""
    try:
        root = ET.fromstring(rules_doc.encode("utf-8", "surrogateescape"))
    except ET.ParseError:
        return None
    now = now or datetime.datetime.now(datetime.timezone.utc)
    best = None
    for rule in root.iter():
        if _lname(rule.tag) != "rule":
            continue
        conds = _children(rule, "conditions")
        if conds and not _conditions_match(list(conds[0]), watcher, now):
            continue
        for actions in _children(rule, "actions"):
            for act in actions:
                if _lname(act.tag) != "sub-handling":
                    continue
                value = (act.text or "").strip().lower()
                if value in SUB_HANDLING and (best is None or
                                              SUB_HANDLING[value] > SUB_HANDLING[best]):
                    best = value
    return best

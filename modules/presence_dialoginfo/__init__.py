"""presence_dialoginfo: the `dialog` event package (RFC 4235 dialog-info, busy lamp fields)
for the presence module.

    loadmodule "presence_dialoginfo.so"
    modparam("presence_dialoginfo", "force_single_dialog", 1)

PUBLISH bodies (`application/dialog-info+xml`, from pua_dialoginfo or a PBX) must be
well-formed XML (else 415). The states of several publishers are merged into one
dialog-info document (`state="full"`, the presentity as entity, every <dialog>; with
force_single_dialog only the most interesting one: confirmed > early > trying >
proceeding > terminated); each watcher's document gets its own `version` (RFC 4235 4.1).
With force_dummy_dialog, a watcher of a resource nobody published gets an empty document.
"""
from __future__ import annotations

from xml.dom import minidom
from xml.parsers.expat import ExpatError
from xml.sax.saxutils import quoteattr

from runtime.module import Module, Param

exports = Module(
    name="presence_dialoginfo",
    params=[Param("force_single_dialog", int, 0), Param("force_dummy_dialog", int, 0)],
    depends=("presence",),
    init="init",
)

NS = "urn:ietf:params:xml:ns:dialog-info"
_RANK = {"confirmed": 5, "early": 4, "trying": 3, "proceeding": 2, "terminated": 1}


def _parse(body):
    try:
        return minidom.parseString(body.encode("utf-8", "surrogateescape"))
    except (ExpatError, ValueError):
        return None


def _local(node):
    return (node.localName or node.tagName.split(":")[-1]).lower()


def _state(dialog):
    for c in dialog.childNodes:
        if c.nodeType == c.ELEMENT_NODE and _local(c) == "state":
            return "".join(t.data for t in c.childNodes if t.nodeType == t.TEXT_NODE).strip()
    return ""


def aggregate(entity, bodies, single=False):
    """One dialog-info document out of several (oldest first)."""
    docs = [d for d in (_parse(b) for b in bodies if b) if d is not None]
    if not docs:
        return None
    dialogs = []
    for doc in docs:
        dialogs += [c for c in doc.documentElement.childNodes
                    if c.nodeType == c.ELEMENT_NODE and _local(c) == "dialog"]
    if single and dialogs:
        dialogs = [max(reversed(dialogs), key=lambda d: _RANK.get(_state(d).lower(), 0))]
    out = minidom.Document()
    root = out.createElement("dialog-info")
    root.setAttribute("xmlns", NS)
    root.setAttribute("version", "0")
    root.setAttribute("state", "full")
    root.setAttribute("entity", entity)
    out.appendChild(root)
    for d in dialogs:
        root.appendChild(out.importNode(d, True))
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + root.toxml() + "\n"


def set_version(body, version):
    doc = _parse(body)
    if doc is None:
        return body
    doc.documentElement.setAttribute("version", str(version))
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + doc.documentElement.toxml() + "\n"


def empty(entity):
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<dialog-info xmlns="{NS}" version="0" state="full" entity={quoteattr(entity)}/>\n')


def init(rt):
    p = rt.modparams["presence_dialoginfo"]
    api = rt.apis["presence"]

    def publ_handl(ctx, body):
        return None if _parse(body) is not None else (415, "Unsupported media type")

    def uri(user, domain):
        return f"sip:{user}@{domain}" if user else f"sip:{domain}"

    api.add_event(rt, api.EventPackage(
        "dialog", "application/dialog-info+xml", 3600, publ_handl=publ_handl,
        agg_nbody=lambda user, domain, bodies: aggregate(uri(user, domain), bodies,
                                                         bool(p["force_single_dialog"])),
        aux_body_processing=lambda subs, body: set_version(body, subs.version),
        # an empty document merged with whatever was published (or notified alone)
        extra_bodies=(lambda user, domain: [empty(uri(user, domain))])
        if p["force_dummy_dialog"] else None))

"""Event packages (RFC 6665 section 7): what the presence core knows about each one.

Other modules (presence_xml, presence_mwi, presence_dialoginfo) register their packages
through the presence API, as OpenSIPS modules do with `pres_add_event`:

    api = rt.apis["presence"]
    api.add_event(rt, EventPackage("message-summary", "application/simple-message-summary",
                                   publ_handl=check_summary))

An `Event:` header value names a package by its token and, for the few packages OpenSIPS
knows with a parameter (`dialog;sla`), by that parameter too; `id` is the subscription's own
identifier (RFC 6665 8.2.1) and is kept apart.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

PUBL_TYPE = 1      # the package's state is published (PUBLISH) and notified
WINFO_TYPE = 2     # a watcher-information package (state made by the server itself)

# subscription states, with the numbers OpenSIPS stores in active_watchers.status
ACTIVE, PENDING, TERMINATED, WAITING = 1, 2, 3, 4
STATUS_NAMES = {ACTIVE: "active", PENDING: "pending", TERMINATED: "terminated",
                WAITING: "waiting"}


@dataclass(eq=False)
class EventPackage:
    """One event package. Callbacks (all optional):

    publ_handl(ctx, body: str) -> None | (code, reason)
        checks a PUBLISH body; an error tuple is the reply to send
    subs_handl(ctx) -> None | (code, reason)
        event-specific checks of a SUBSCRIBE
    get_rules_doc(user, domain) -> str | None
        the presentity's authorization document (with req_auth)
    get_auth_status(subs, rules_doc) -> (status, reason)
        the state a new watcher gets (with req_auth)
    apply_auth_nbody(body, subs, rules_doc) -> str | None
        the body as this watcher may see it
    agg_nbody(user, domain, bodies: list[str]) -> str | None
        one body out of several published states (None: the newest is used)
    aux_body_processing(subs, body) -> str
        a per-watcher touch to the body (the version of a dialog-info document)
    offline_body(body) -> str | None
        the body notified when a state is removed or expires (generate_offline_body)
    dummy_body(user, domain) -> str | None
        what watchers get when nothing is published (notify_offline_body)
    extra_bodies(user, domain) -> list[str]
        state kept elsewhere, notified with the published one (pidf-manipulation)
    """
    name: str
    content_type: str
    default_expires: int = 3600
    type: int = PUBL_TYPE
    etag_not_new: bool = False
    req_auth: bool = False
    publ_handl: Optional[Callable] = None
    subs_handl: Optional[Callable] = None
    get_rules_doc: Optional[Callable] = None
    get_auth_status: Optional[Callable] = None
    apply_auth_nbody: Optional[Callable] = None
    agg_nbody: Optional[Callable] = None
    aux_body_processing: Optional[Callable] = None
    offline_body: Optional[Callable] = None
    dummy_body: Optional[Callable] = None
    extra_bodies: Optional[Callable] = None
    mandatory_timeout_notification: bool = True
    wipeer: Optional["EventPackage"] = field(default=None, repr=False)

    @property
    def token(self) -> str:
        return self.name.split(";", 1)[0].strip().lower()

    @property
    def params(self) -> frozenset:
        return _params_of(self.name)


def _params_of(text: str) -> frozenset:
    parts = text.split(";")[1:]
    return frozenset(p.strip().lower() for p in parts if p.strip() and
                     p.split("=", 1)[0].strip().lower() != "id")


@dataclass(frozen=True)
class ParsedEvent:
    token: str            # the package name, lowercase
    params: frozenset     # parameters other than id, lowercase
    id: Optional[str]     # the id parameter (RFC 6665), as written
    text: str             # the header value as written


def parse_event(value: str | None) -> ParsedEvent | None:
    """An Event header value, or None when it is missing or empty."""
    if value is None:
        return None
    text = value.strip()
    token = text.split(";", 1)[0].strip().lower()
    if not token:
        return None
    ev_id = None
    for p in text.split(";")[1:]:
        name, _, val = p.partition("=")
        if name.strip().lower() == "id":
            ev_id = val.strip().strip('"') or None
    return ParsedEvent(token, _params_of(text), ev_id, text)


class EventList:
    """The packages registered in this process, in the order they were added."""

    def __init__(self):
        self.events: list[EventPackage] = []

    def add(self, ev: EventPackage) -> None:
        if self.find(ev.name) is not None:
            raise ValueError(f"event '{ev.name}' is already registered")
        self.events.append(ev)
        # a package and its watcher-information package know each other
        if ev.type & WINFO_TYPE:
            base = self.find(ev.token.rsplit(".winfo", 1)[0])
            if base is not None:
                base.wipeer, ev.wipeer = ev, base
        else:
            winfo = self.find(ev.token + ".winfo")
            if winfo is not None:
                ev.wipeer, winfo.wipeer = winfo, ev

    def find(self, name: str) -> EventPackage | None:
        """The package registered under exactly this name (token and parameters)."""
        parsed = parse_event(name)
        return self.search(parsed) if parsed is not None else None

    def search(self, parsed: ParsedEvent) -> EventPackage | None:
        """The package an Event header names: the token and every non-id parameter the
        package was registered with ("dialog;sla" is not "dialog")."""
        best = None
        for ev in self.events:
            if ev.token != parsed.token:
                continue
            if ev.params and ev.params <= parsed.params:
                return ev
            if not ev.params and best is None:
                best = ev
        return best

    def names(self) -> str:
        """For Allow-Events."""
        return ", ".join(ev.name for ev in self.events)

    def __iter__(self):
        return iter(self.events)

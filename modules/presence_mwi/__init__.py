"""presence_mwi: the `message-summary` event package (RFC 3842, message waiting indication)
for the presence module.

    loadmodule "presence_mwi.so"

A voicemail server PUBLISHes its summary (`application/simple-message-summary`), phones
SUBSCRIBE to it; no authorization, no aggregation (the newest published summary is
notified). A PUBLISH body must start with `Messages-Waiting: yes|no` and consist of lines
of printable characters, else it is answered 400.
"""
from __future__ import annotations

import re

from runtime.module import Module

exports = Module(name="presence_mwi", depends=("presence",), init="init")

_STATUS = re.compile(r"^messages-waiting[ \t]*:[ \t]+(yes|no)[ \t]*$", re.I)
_PRINTABLE = re.compile(r"^[\t\x20-\x7e]*$")


def check_summary(body: str) -> bool:
    """Is this a simple-message-summary body (RFC 3842 5.2)?"""
    lines = body.split("\r\n") if "\r\n" in body else body.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines or not _STATUS.match(lines[0]):
        return False
    return all(_PRINTABLE.match(line) for line in lines[1:])


def init(rt):
    api = rt.apis["presence"]

    def publ_handl(ctx, body):
        return None if check_summary(body) else (400, "Bad request")

    api.add_event(rt, api.EventPackage("message-summary", "application/simple-message-summary",
                                       3600, publ_handl=publ_handl))

"""RFC 3261 section 17 transactions, sans-IO: four state machines written as tables.

Rule 1 (as in h11): everything that moves a transaction from one state to another is in
the TABLES below. A machine is fed events (`"request"`, `"1xx"`, `"2xx"`, `"300-699"`,
`"ACK"`, `"timer_A"`... `"transport_error"`) and answers with actions for its owner to
carry out: ("send_request" | "send_response" | "send_ack" | "to_tu" | "start" | "stop" |
"timeout" | "transport_error" | "terminated", arg). Timers are named as in the RFC.

    Fig. 5  INVITE client      calling -> proceeding -> completed -> terminated
    Fig. 6  non-INVITE client  trying -> proceeding -> completed -> terminated
    Fig. 7  INVITE server      proceeding -> completed -> confirmed -> terminated
    Fig. 8  non-INVITE server  trying -> proceeding -> completed -> terminated
"""
from __future__ import annotations

from functools import lru_cache

T1, T2, T4 = 0.5, 4.0, 5.0


def response_class(code: int) -> str:
    """The event name for a response code."""
    if code < 200:
        return "1xx"
    if code < 300:
        return "2xx"
    return "300-699"


# state -> event -> (next state, actions). An action is a name or (name, argument);
# "retransmit" re-sends the last message the machine sent; "double" doubles a timer's
# interval (capped at T2 for E and G). Events missing from a state are ignored.
INVITE_CLIENT = {
    "calling": {
        "1xx": ("proceeding", [("stop", "A"), ("stop", "B"), "to_tu"]),
        "2xx": ("terminated", [("stop", "A"), ("stop", "B"), "to_tu"]),
        "300-699": ("completed", [("stop", "A"), ("stop", "B"), "send_ack", "to_tu",
                                  ("start", "D")]),
        "timer_A": ("calling", ["retransmit", ("double", "A")]),
        "timer_B": ("terminated", ["timeout"]),
        "transport_error": ("terminated", ["transport_error"]),
    },
    "proceeding": {  # no timer here: a proxy bounds this state itself (timer C)
        "1xx": ("proceeding", ["to_tu"]),
        "2xx": ("terminated", ["to_tu"]),
        "300-699": ("completed", ["send_ack", "to_tu", ("start", "D")]),
    },
    "completed": {
        "300-699": ("completed", ["send_ack"]),
        "timer_D": ("terminated", []),
        "transport_error": ("terminated", ["transport_error"]),
    },
    "terminated": {},
}

NON_INVITE_CLIENT = {
    "trying": {
        "1xx": ("proceeding", ["to_tu"]),
        "2xx": ("completed", [("stop", "E"), ("stop", "F"), "to_tu", ("start", "K")]),
        "300-699": ("completed", [("stop", "E"), ("stop", "F"), "to_tu", ("start", "K")]),
        "timer_E": ("trying", ["retransmit", ("double", "E")]),
        "timer_F": ("terminated", ["timeout"]),
        "transport_error": ("terminated", ["transport_error"]),
    },
    "proceeding": {
        "1xx": ("proceeding", ["to_tu"]),
        "2xx": ("completed", [("stop", "E"), ("stop", "F"), "to_tu", ("start", "K")]),
        "300-699": ("completed", [("stop", "E"), ("stop", "F"), "to_tu", ("start", "K")]),
        "timer_E": ("proceeding", ["retransmit", ("interval", "E", T2)]),
        "timer_F": ("terminated", ["timeout"]),
        "transport_error": ("terminated", ["transport_error"]),
    },
    "completed": {
        "timer_K": ("terminated", []),
    },
    "terminated": {},
}

INVITE_SERVER = {
    "proceeding": {
        "request": ("proceeding", ["retransmit"]),
        "send_1xx": ("proceeding", ["send_response"]),
        "send_2xx": ("terminated", ["send_response"]),
        "send_300-699": ("completed", ["send_response", ("start", "G"), ("start", "H")]),
        "transport_error": ("terminated", ["transport_error"]),
    },
    "completed": {
        "request": ("completed", ["retransmit"]),
        "ACK": ("confirmed", [("stop", "G"), ("stop", "H"), ("start", "I")]),
        "timer_G": ("completed", ["retransmit", ("double", "G")]),
        "timer_H": ("terminated", ["timeout"]),
        "transport_error": ("terminated", ["transport_error"]),
    },
    "confirmed": {
        "ACK": ("confirmed", []),
        "timer_I": ("terminated", []),
    },
    "terminated": {},
}

NON_INVITE_SERVER = {
    "trying": {
        "send_1xx": ("proceeding", ["send_response"]),
        "send_2xx": ("completed", ["send_response", ("start", "J")]),
        "send_300-699": ("completed", ["send_response", ("start", "J")]),
        "transport_error": ("terminated", ["transport_error"]),
    },
    "proceeding": {
        "request": ("proceeding", ["retransmit"]),
        "send_1xx": ("proceeding", ["send_response"]),
        "send_2xx": ("completed", ["send_response", ("start", "J")]),
        "send_300-699": ("completed", ["send_response", ("start", "J")]),
        "transport_error": ("terminated", ["transport_error"]),
    },
    "completed": {
        "request": ("completed", ["retransmit"]),
        "timer_J": ("terminated", []),
        "transport_error": ("terminated", ["transport_error"]),
    },
    "terminated": {},
}


def timer_values(reliable: bool) -> dict:
    """Initial intervals (seconds) per RFC 3261 Table 4; reliable transports neither
    retransmit nor linger. (Shared: callers must not change it.)"""
    return _timer_values(reliable, T1, T2, T4)


@lru_cache(maxsize=8)
def _timer_values(reliable, t1, t2, t4) -> dict:
    return {
        "A": None if reliable else t1, "B": 64 * t1, "D": 0 if reliable else 32.0,
        "E": None if reliable else t1, "F": 64 * t1, "K": 0 if reliable else t4,
        "G": None if reliable else t1, "H": 64 * t1, "I": 0 if reliable else t4,
        "J": 0 if reliable else 64 * t1,
    }


class Machine:
    """One transaction's state machine. `feed(event)` returns the actions to carry out
    (retransmissions and timer arithmetic already resolved)."""

    INITIAL = {id(INVITE_CLIENT): "calling", id(NON_INVITE_CLIENT): "trying",
               id(INVITE_SERVER): "proceeding", id(NON_INVITE_SERVER): "trying"}

    def __init__(self, table: dict, reliable: bool = False, **overrides):
        self.table = table
        self.state = self.INITIAL[id(table)]
        self.reliable = reliable
        base = timer_values(reliable)
        self.intervals = {**base, **overrides} if overrides else base  # B/F from fr_timeout
        self.running = {}                 # armed timer name -> its interval
        self.current = {}                 # timer name -> the interval it last ran with

    def start_actions(self) -> list:
        """What a client transaction does on creation: send, arm its timers."""
        if self.table is INVITE_CLIENT:
            return self._expand([("start", "A"), ("start", "B")])
        if self.table is NON_INVITE_CLIENT:
            return self._expand([("start", "E"), ("start", "F")])
        return []

    def feed(self, event: str) -> list:
        row = self.table[self.state].get(event)
        if row is None:
            return []
        if event.startswith("timer_") and event[6:] not in self.running:
            return []  # a timer that was stopped meanwhile
        if event.startswith("timer_"):
            self.running.pop(event[6:], None)
        self.state, actions = row
        out = self._expand(actions, event)
        if self.state == "terminated":
            self.running.clear()
            out.append(("stop_all", None))
            out.append(("terminated", None))
        return out

    def _expand(self, actions, event=None) -> list:
        out = []
        for a in actions:
            name, arg = (a, None) if isinstance(a, str) else (a[0], a[1])
            if name in ("start", "double", "interval"):
                if name == "start":
                    interval = self.intervals[arg]
                    if interval is None:
                        continue  # no retransmissions on reliable transports
                elif name == "double":  # A doubles freely; E and G are capped at T2
                    interval = 2 * self.current[arg]
                    if arg in ("E", "G"):
                        interval = min(interval, T2)
                else:
                    interval = a[2]
                self.current[arg] = self.running[arg] = interval
                out.append(("start", (arg, interval)))
            elif name == "stop":
                if self.running.pop(arg, None) is not None:
                    out.append(("stop", arg))
            else:
                out.append((name, arg))
        return out

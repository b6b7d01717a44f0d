"""Time recurrences as drouting rules and dialplan rules carry them (RFC 2445 subset).

OpenSIPS 3.x (as check_time_rec() reads them):

    [timezone|]dtstart|dtend|duration|freq|until|interval|byday|bymday|byyday|byweekno|bymonth

e.g. `20240101T080000||PT10H|weekly|||MO,TU,WE,TH,FR` (office hours), and the 1.x/2.x form
without dtend: `dtstart|duration|freq|until|...` (told apart by what the second and third
fields hold). dtstart/dtend/until are `YYYYMMDDTHHMMSS` in the timezone (local time when
none; a trailing `Z`: UTC); dtend is not inclusive; duration is `P[nW][nD][T[nH][nM][nS]]`
(the P and T may be left out: `8H`). Several recurrences may be combined as in 3.x:
`A & B`, `A / B` (or), `!A`, with parentheses.

    rec = TimeRec.parse(text)       # ValueError when malformed; None when empty
    rec.matches(datetime.now())
"""
from __future__ import annotations

import calendar
import re
from datetime import date, datetime, timedelta, timezone

_DAYS = {"MO": 0, "TU": 1, "WE": 2, "TH": 3, "FR": 4, "SA": 5, "SU": 6}
_FREQS = ("daily", "weekly", "monthly", "yearly")
_DUR = re.compile(r"^([+-]?)P?(?:(\d+)W)?(?:(\d+)D)?T?(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?$",
                  re.I)
_DT = re.compile(r"^\d{8}(T\d{6})?Z?$", re.I)


def _dt(text, tz=None):
    text = text.strip()
    utc = text.upper().endswith("Z")
    text = text.rstrip("Zz")
    for fmt in ("%Y%m%dT%H%M%S", "%Y%m%d"):
        try:
            d = datetime.strptime(text, fmt)
            break
        except ValueError:
            continue
    else:
        raise ValueError(f"bad date-time '{text}'")
    if utc:
        d = d.replace(tzinfo=timezone.utc).astimezone(tz).replace(tzinfo=None)
    return d


def _duration(text):
    m = _DUR.match(text.strip())
    if not m or not any(m.groups()[1:]):
        raise ValueError(f"bad duration '{text}'")
    w, d, h, mi, s = (int(x) if x else 0 for x in m.groups()[1:])
    return timedelta(weeks=w, days=d, hours=h, minutes=mi, seconds=s)


def _ints(text, what):
    out = []
    for part in text.split(","):
        part = part.strip()
        if part:
            try:
                out.append(int(part))
            except ValueError:
                raise ValueError(f"bad {what} '{part}'") from None
    return out


class TimeRec:
    __slots__ = ("dtstart", "duration", "freq", "until", "interval", "byday", "bymonthday",
                 "byyearday", "byweekno", "bymonth", "tz")

    @classmethod
    def parse(cls, text):
        """A TimeRec, an expression of them (`&`, ` / `, `!`, parentheses), or None for an
        empty recurrence (always valid)."""
        text = (text or "").strip()
        if not text:
            return None
        if re.search(r"[&!()]|\s/\s", text):
            return _Expr.parse(text)
        return cls.parse_one(text)

    @classmethod
    def parse_one(cls, text) -> "TimeRec":
        f = [x.strip() for x in text.split("|")]
        self = cls()
        self.tz = None
        if f and f[0] and not _DT.match(f[0]):
            try:
                from zoneinfo import ZoneInfo
                self.tz = ZoneInfo(f[0])
            except Exception:
                raise ValueError(f"bad timezone or dtstart '{f[0]}'") from None
            f = f[1:]
        f = (f + [""] * 12)[:12]
        old_form = not _DT.match(f[1] or "x") and (
            f[1] != "" or f[2].lower() in _FREQS or f[2] == "")
        if old_form and f[1] and not _DUR.match(f[1]):
            raise ValueError(f"bad duration or dtend '{f[1]}'")
        if old_form:                 # dtstart|duration|freq|... (OpenSIPS 1.x/2.x)
            f = [f[0], ""] + f[1:11]
        self.dtstart = _dt(f[0], self.tz) if f[0] else None
        if self.dtstart is None:
            raise ValueError(f"time recurrence '{text}' has no dtstart")
        dtend = _dt(f[1], self.tz) if f[1] else None
        self.duration = _duration(f[2]) if f[2] else None
        if self.duration is None and dtend is not None:
            if dtend <= self.dtstart:
                raise ValueError(f"dtend before dtstart in '{text}'")
            self.duration = dtend - self.dtstart
        freq = f[3].lower()
        if freq and freq not in _FREQS:
            raise ValueError(f"bad frequency '{f[3]}'")
        self.freq = freq or None
        self.until = _dt(f[4], self.tz) if f[4] else None
        self.interval = max(1, int(f[5])) if f[5] else 1
        self.byday = []
        for part in f[6].split(","):
            part = part.strip().upper()
            if not part:
                continue
            m = re.match(r"^([+-]?\d+)?([A-Z]{2})$", part)
            if not m or m.group(2) not in _DAYS:
                raise ValueError(f"bad byday '{part}'")
            self.byday.append((int(m.group(1)) if m.group(1) else 0, _DAYS[m.group(2)]))
        self.bymonthday = _ints(f[7], "bymonthday")
        self.byyearday = _ints(f[8], "byyearday")
        self.byweekno = _ints(f[9], "byweekno")
        self.bymonth = _ints(f[10], "bymonth")
        return self

    # --- matching ----------------------------------------------------------------------------
    def matches(self, now: datetime | None = None) -> bool:
        if now is None:
            now = datetime.now(self.tz).replace(tzinfo=None) if self.tz else datetime.now()
        if now < self.dtstart or (self.until is not None and now > self.until):
            return False
        if self.freq is None:
            return self.duration is None or now < self.dtstart + self.duration
        span = self.duration or timedelta(days=1)
        tod = self.dtstart - datetime.combine(self.dtstart.date(), datetime.min.time())
        day = now.date()
        for back in range(span.days + 2):
            d = day - timedelta(days=back)
            start = datetime.combine(d, datetime.min.time()) + tod
            if start < self.dtstart or start > now:
                continue
            if now < start + span and self._day_ok(d):
                return True
        return False

    def _day_ok(self, d: date) -> bool:
        s = self.dtstart.date()
        if self.freq == "daily":
            if (d - s).days % self.interval:
                return False
        elif self.freq == "weekly":
            monday, first_monday = d - timedelta(days=d.weekday()), s - timedelta(days=s.weekday())
            weeks = (monday - first_monday).days // 7
            if weeks % self.interval:
                return False
            if not self.byday and d.weekday() != s.weekday():
                return False
        elif self.freq == "monthly":
            months = (d.year - s.year) * 12 + d.month - s.month
            if months % self.interval:
                return False
            if not (self.byday or self.bymonthday) and d.day != s.day:
                return False
        elif self.freq == "yearly":
            if (d.year - s.year) % self.interval:
                return False
            if not (self.byday or self.bymonthday or self.byyearday or self.byweekno
                    or self.bymonth) and (d.month, d.day) != (s.month, s.day):
                return False
            if self.bymonth and not (self.byday or self.bymonthday) and d.day != s.day:
                return False
        if self.bymonth and d.month not in self.bymonth:
            return False
        if self.bymonthday:
            last = calendar.monthrange(d.year, d.month)[1]
            if not any(d.day == (n if n > 0 else last + 1 + n) for n in self.bymonthday):
                return False
        if self.byyearday:
            yday = d.timetuple().tm_yday
            ylen = 366 if calendar.isleap(d.year) else 365
            if not any(yday == (n if n > 0 else ylen + 1 + n) for n in self.byyearday):
                return False
        if self.byweekno:
            wk = d.isocalendar()[1]
            if wk not in self.byweekno:
                return False
        if self.byday:
            ok = False
            for nth, wd in self.byday:
                if d.weekday() != wd:
                    continue
                if nth == 0:
                    ok = True
                    break
                if self.freq == "yearly" and not self.bymonth:
                    first = date(d.year, 1, 1)
                    last = date(d.year, 12, 31)
                else:
                    first = d.replace(day=1)
                    last = d.replace(day=calendar.monthrange(d.year, d.month)[1])
                pos = (d - first).days // 7 + 1
                neg = -((last - d).days // 7 + 1)
                if nth in (pos, neg):
                    ok = True
                    break
            if not ok:
                return False
        return True


class _Expr:
    """`A & B`, `A / B`, `!A` and parentheses over recurrences ('&' binds tighter)."""

    def __init__(self, op, items):
        self.op, self.items = op, items

    @classmethod
    def parse(cls, text):
        tokens, buf, i = [], "", 0
        while i < len(text):
            c = text[i]
            slash = c == "/" and i > 0 and text[i - 1].isspace() and \
                i + 1 < len(text) and text[i + 1].isspace()
            if c in "()&!" or slash:
                if buf.strip():
                    tokens.append(buf.strip())
                buf = ""
                tokens.append(c)
            else:
                buf += c
            i += 1
        if buf.strip():
            tokens.append(buf.strip())
        pos = [0]

        def peek():
            return tokens[pos[0]] if pos[0] < len(tokens) else None

        def take():
            pos[0] += 1
            return tokens[pos[0] - 1]

        def atom():
            t = take() if peek() is not None else None
            if t is None:
                raise ValueError(f"bad time recurrence expression '{text}'")
            if t == "!":
                return cls("!", [atom()])
            if t == "(":
                e = alt()
                if take() != ")" if peek() is not None else True:
                    raise ValueError(f"missing ')' in '{text}'")
                return e
            if t in (")", "&", "/"):
                raise ValueError(f"bad time recurrence expression '{text}'")
            return TimeRec.parse_one(t)

        def conj():
            items = [atom()]
            while peek() == "&":
                take()
                items.append(atom())
            return items[0] if len(items) == 1 else cls("&", items)

        def alt():
            items = [conj()]
            while peek() == "/":
                take()
                items.append(conj())
            return items[0] if len(items) == 1 else cls("/", items)

        e = alt()
        if peek() is not None:
            raise ValueError(f"bad time recurrence expression '{text}'")
        return e

    def matches(self, now=None) -> bool:
        if self.op == "!":
            return not self.items[0].matches(now)
        if self.op == "&":
            return all(i.matches(now) for i in self.items)
        return any(i.matches(now) for i in self.items)


def check(text):
    """A modparam/DB check: an error message or None."""
    try:
        TimeRec.parse(text)
    except ValueError as e:
        return str(e)
    return None

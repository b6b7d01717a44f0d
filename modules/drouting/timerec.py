"""Time recurrences as drouting rules and dialplan rules carry them (RFC 2445 subset):

    dtstart|duration|freq|until|interval|byday|bymonthday|byyearday|byweekno|bymonth

e.g. `20240101T080000|PT10H|weekly|||MO,TU,WE,TH,FR` (office hours). dtstart/until are
local times `YYYYMMDDTHHMMSS` (a trailing `Z` means UTC); duration is `P[nW][nD][T[nH][nM]
[nS]]`. OpenSIPS 3.x also accepts several recurrences joined with `&`, `|`... as in
check_time_rec(); here `!` (not), `&` (and) and `/` (or) over parenthesised groups are not
supported: a rule holds one recurrence.

    rec = TimeRec.parse(text)       # ValueError when malformed
    rec.matches(datetime.now())
"""
from __future__ import annotations

import calendar
import re
from datetime import date, datetime, timedelta, timezone

_DAYS = {"MO": 0, "TU": 1, "WE": 2, "TH": 3, "FR": 4, "SA": 5, "SU": 6}
_FREQS = ("daily", "weekly", "monthly", "yearly")
_DUR = re.compile(r"^([+-]?)P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$",
                  re.I)


def _dt(text):
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
        d = d.replace(tzinfo=timezone.utc).astimezone().replace(tzinfo=None)
    return d


def _duration(text):
    m = _DUR.match(text.strip())
    if not m or text.strip().upper() in ("P", "PT"):
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
                 "byyearday", "byweekno", "bymonth")

    @classmethod
    def parse(cls, text) -> "TimeRec | None":
        """None for an empty recurrence (always valid)."""
        text = (text or "").strip()
        if not text:
            return None
        f = (text.split("|") + [""] * 10)[:10]
        self = cls()
        self.dtstart = _dt(f[0]) if f[0].strip() else None
        if self.dtstart is None:
            raise ValueError(f"time recurrence '{text}' has no dtstart")
        self.duration = _duration(f[1]) if f[1].strip() else None
        freq = f[2].strip().lower()
        if freq and freq not in _FREQS:
            raise ValueError(f"bad frequency '{f[2]}'")
        self.freq = freq or None
        self.until = _dt(f[3]) if f[3].strip() else None
        self.interval = max(1, int(f[4])) if f[4].strip() else 1
        self.byday = []
        for part in f[5].split(","):
            part = part.strip().upper()
            if not part:
                continue
            m = re.match(r"^([+-]?\d+)?([A-Z]{2})$", part)
            if not m or m.group(2) not in _DAYS:
                raise ValueError(f"bad byday '{part}'")
            self.byday.append((int(m.group(1)) if m.group(1) else 0, _DAYS[m.group(2)]))
        self.bymonthday = _ints(f[6], "bymonthday")
        self.byyearday = _ints(f[7], "byyearday")
        self.byweekno = _ints(f[8], "byweekno")
        self.bymonth = _ints(f[9], "bymonth")
        return self

    # --- matching ----------------------------------------------------------------------------
    def matches(self, now: datetime | None = None) -> bool:
        now = now or datetime.now()
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
            weeks = ((d - timedelta(days=d.weekday())) - (s - timedelta(days=s.weekday()))).days // 7
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


def check(text):
    """A modparam/DB check: an error message or None."""
    try:
        TimeRec.parse(text)
    except ValueError as e:
        return str(e)
    return None

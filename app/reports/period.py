"""The date range of a report and the period it is compared with.

Query args (every report, page and API alike):

* ``from`` / ``to`` — ``YYYY-MM-DD``, both ends included; either may be left out
  (open on that side); neither → all dates;
* ``year`` — the old filter, kept: ``year=2025`` means ``from=2025-01-01&to=2025-12-31``
  (``from``/``to`` win when given as well);
* ``compare`` — ``previous`` (the period of the same length just before: the same
  number of whole months when the range is whole calendar months, else the same
  number of days) or ``last_year`` (the same dates one year earlier; 29 February
  → 28 February). A comparison needs both ``from`` and ``to``.

Rules: ``from`` not after ``to``; at most 10 years (3 653 days); anything else
given is a 400 with a Chinese message naming the field.
"""
import calendar
from dataclasses import dataclass
from datetime import date, timedelta

from flask_babel import lazy_gettext as _l

from ..workflows.dates import parse_ymd
from ..workflows.errors import ValidationError

MAX_DAYS = 3653  # 10 years (with their leap days)
COMPARE_CHOICES = {"previous": _l("上一期"), "last_year": _l("去年同期")}
PRESETS = (("month", _l("本月")), ("quarter", _l("本季度")), ("year", _l("本年")),
           ("last_year", _l("去年")))


@dataclass(frozen=True)
class Period:
    start: date = None   # first day (included); None = open
    end: date = None     # last day (included); None = open

    @property
    def stop(self):
        """The day after ``end`` (exclusive end, for SQL ``<``)."""
        return self.end + timedelta(days=1) if self.end else None

    @property
    def bounded(self):
        return self.start is not None and self.end is not None

    def label(self):
        if self.bounded:
            return str(_l("%(start)s 至 %(end)s", start=self.start.isoformat(),
                          end=self.end.isoformat()))
        if self.start:
            return str(_l("%(start)s 起", start=self.start.isoformat()))
        if self.end:
            return str(_l("至 %(end)s", end=self.end.isoformat()))
        return str(_l("全部日期"))

    def to_json(self):
        return {"from": self.start.isoformat() if self.start else None,
                "to": self.end.isoformat() if self.end else None}


def _last_day(year, month):
    return date(year, month, calendar.monthrange(year, month)[1])


def _add_months(d, months):
    m = d.year * 12 + d.month - 1 + months
    y, m = divmod(m, 12)
    return date(y, m + 1, min(d.day, calendar.monthrange(y, m + 1)[1]))


def _minus_year(d):
    return _add_months(d, -12)


def whole_months(period):
    """Number of calendar months when ``period`` is whole months, else None."""
    s, e = period.start, period.end
    if s.day != 1 or e != _last_day(e.year, e.month):
        return None
    return (e.year - s.year) * 12 + e.month - s.month + 1


def compare_period(period, kind):
    if kind == "last_year":
        return Period(_minus_year(period.start), _minus_year(period.end))
    months = whole_months(period)
    if months:
        start = _add_months(period.start, -months)
        end = period.start - timedelta(days=1)
        return Period(start, end)
    days = (period.end - period.start).days + 1
    end = period.start - timedelta(days=1)
    return Period(end - timedelta(days=days - 1), end)


def preset(kind, today=None):
    """The Period of a preset (本月 / 本季度 / 本年 / 去年) as of ``today``."""
    t = today or date.today()
    if kind == "month":
        return Period(t.replace(day=1), _last_day(t.year, t.month))
    if kind == "quarter":
        first = (t.month - 1) // 3 * 3 + 1
        return Period(date(t.year, first, 1), _last_day(t.year, first + 2))
    if kind == "year":
        return Period(date(t.year, 1, 1), date(t.year, 12, 31))
    if kind == "last_year":
        return Period(date(t.year - 1, 1, 1), date(t.year - 1, 12, 31))
    raise ValueError(kind)


def presets(today=None):
    """[(key, label, Period)] for the page's buttons."""
    return [(k, label, preset(k, today)) for k, label in PRESETS]


def parse_year(args):
    raw = (args.get("year") or "").strip()
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) == 4 and 1900 <= int(raw) <= 2100):
        raise ValidationError(_l("年份必须是 1900 到 2100 之间的四位数字，例如 2025。"),
                              field="year")
    return int(raw)


def parse_period(args):
    """(Period, compare kind or None, compare Period or None) from the query args."""
    year = parse_year(args)
    start = parse_ymd(args.get("from"), _l("开始日期 from"), "from", required=False)
    end = parse_ymd(args.get("to"), _l("结束日期 to"), "to", required=False)
    if year and start is None and end is None:
        start, end = date(year, 1, 1), date(year, 12, 31)
    for d, key in ((start, "from"), (end, "to")):
        if d is not None and not (1900 <= d.year <= 2100):
            raise ValidationError(_l("日期必须在 1900 年到 2100 年之间。"), field=key)
    if start and end:
        if start > end:
            raise ValidationError(
                _l("开始日期 %(start)s 晚于结束日期 %(end)s：请把开始日期改为不晚于结束日期。",
                   start=start.isoformat(), end=end.isoformat()), field="from")
        if (end - start).days + 1 > MAX_DAYS:
            raise ValidationError(_l("日期范围最长 10 年：请缩短开始日期到结束日期的范围。"),
                                  field="to")
    period = Period(start, end)
    kind = (args.get("compare") or "").strip() or None
    if kind is not None and kind not in COMPARE_CHOICES:
        raise ValidationError(
            _l("对比方式 compare 只能是 previous（上一期）或 last_year（去年同期）。"),
            field="compare")
    if kind and not period.bounded:
        raise ValidationError(_l("对比需要完整的日期范围：请同时填写开始日期和结束日期。"),
                              field="compare")
    return period, kind, (compare_period(period, kind) if kind else None)

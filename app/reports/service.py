"""客户服务分析: service tickets created in the date range (tickets of every status).

Main table — by 服务类型 (every type listed, also with 0): 服务数量, 超时数量 (handled
after the response deadline or still unhandled past it, archived after the
resolution deadline or still open past it) and 按时率 (the share of the tickets
*with* deadlines that missed none; tickets from before the deadlines existed count in
服务数量 only; no such ticket → empty).

Service figures (issue 22.4), same date range. Two reads of the tickets in all: one
GROUP BY (type, priority) gives the main table (summed per type), 类型 × 优先级 and
未结服务 (conditional sums), :func:`run` hands it to :func:`figures` (see there); one
GROUP BY month gives 满意度. Averages are Σ / count of the non-null values, so the
totals come from the same rows (docs/modules/reports.md, 性能).

* 类型 × 优先级: 平均首次响应（小时）= created → first 服务处理, 平均解决（小时）=
  created → archived, 时限内解决率 = archived tickets with a resolution deadline
  archived by it / archived tickets with a resolution deadline;
* 满意度（按月）: the tickets rated (服务反馈) by month of creation: count and average;
* 未结服务（按时长）: tickets not yet archived by their age now (<1 天 … >30 天).
"""
from datetime import datetime, time, timedelta
from urllib.parse import urlencode

import pandas as pd
from flask_babel import lazy_gettext as _l
from sqlalchemy import DateTime, and_, case, func, or_, select
from sqlalchemy.sql import operators
from sqlalchemy.sql.expression import UnaryExpression

from ..models import DictItem, ServiceTicket
from ..models.dictionary import SERVICE_TYPE

NAME = "service"
TITLE = _l("客户服务分析")
COLUMNS = {"service_type": _l("服务类型"), "count": _l("服务数量"), "overdue": _l("超时数量"),
           "on_time_percent": _l("按时率（%）")}
FILTERS = ("period",)
KEY = "key"
MEASURES = ("count",)
CENTS = ()
DEFAULT_SORT = None
TIE_BREAK = None

AGE_BUCKETS = [  # (key, label, lower bound in days, upper bound in days or None)
    ("lt1", _l("<1 天"), 0, 1), ("d1_3", _l("1–3 天"), 1, 3), ("d3_7", _l("3–7 天"), 3, 7),
    ("d7_30", _l("7–30 天"), 7, 30), ("gt30", _l(">30 天"), 30, None),
]


def missed_condition(now):
    """SQL: the ticket missed (or is missing) one of its deadlines at ``now``."""
    t = ServiceTicket
    late_response = and_(t.response_due.isnot(None), or_(
        t.first_response_on > t.response_due,
        and_(t.first_response_on.is_(None), t.response_due < now)))
    late_resolution = and_(t.resolution_due.isnot(None), or_(
        t.resolved_on > t.resolution_due,
        and_(t.resolved_on.is_(None), t.resolution_due < now)))
    return or_(late_response, late_resolution)


def _range(stmt, params, created=None):
    created = ServiceTicket.created_on if created is None else created
    if params.get("start"):
        stmt = stmt.where(created >= datetime.combine(params["start"], time.min))
    if params.get("stop"):
        stmt = stmt.where(created < datetime.combine(params["stop"], time.min))
    return stmt


def _sqlite_unindexed(session, column):
    """SQLite: ``+column`` (the same value, which no index is used for); else None."""
    if session.get_bind().dialect.name != "sqlite":
        return None
    return UnaryExpression(column, operator=operators.custom_op("+"), type_=column.type)


def _types(session, counted_keys):
    types = session.execute(select(DictItem.id, DictItem.item)
                            .where(DictItem.type == SERVICE_TYPE).order_by(DictItem.id)).all()
    missing = set(counted_keys) - {i for i, _ in types}
    if missing:
        types += session.execute(select(DictItem.id, DictItem.item)
                                 .where(DictItem.id.in_(list(missing)))).all()
    return types


def run(session, params, now=None):
    """The main table, from the one grouped scan (:func:`_scan`) summed per type. The
    scan is left in ``params`` for :func:`figures` of the same report (see there)."""
    now = now or datetime.now()
    scan = _scan(session, params, now)
    params[_SCAN] = scan
    counted = {}
    for r in scan["rows"]:
        n, m, w = counted.get(r.type_id, (0, 0, 0))
        counted[r.type_id] = (n + int(r.n), m + int(r.missed or 0), w + int(r.with_due or 0))
    rows = [(type_id, item, *counted.get(type_id, (0, 0, 0)))
            for type_id, item in scan["types"]]
    df = pd.DataFrame(rows, columns=["key", "service_type", "count", "overdue", "_with_deadline"])
    for c in ("count", "overdue", "_with_deadline"):
        df[c] = df[c].astype(int)
    df["key"] = df["key"].astype(str)
    # object dtype: None stays None (an empty cell), not NaN
    df["on_time_percent"] = pd.Series(
        [_percent(w - m, w) for w, m in zip(df["_with_deadline"], df["overdue"])], dtype=object)
    return df


def _percent(part, whole, digits=1):
    if not whole:
        return None
    return round(100.0 * part / whole, digits)


def total(df):
    return {"service_type": _l("合计"), "count": int(df["count"].sum()),
            "overdue": int(df["overdue"].sum()),
            "on_time_percent": _percent(int(df["_with_deadline"].sum()) - int(df["overdue"].sum()),
                                        int(df["_with_deadline"].sum()))}


def chart(df, params=None):
    return {
        "type": "bar",
        "title": _l("各类服务数量"),
        "categories": df["service_type"].tolist(),
        "keys": df.index.tolist(),
        "measure": "count",
        "series_name": _l("服务数量"),
    }


def link(row, params):
    """The tickets behind a row: 服务归档 with every status (``status=all``), the type
    and the created date range (both ends included)."""
    args = [("status", "all"), ("service_type", row["service_type"])]
    if params.get("start"):
        args.append(("date_from", params["start"].isoformat()))
    if params.get("stop"):
        args.append(("date_to", (params["stop"] - timedelta(days=1)).isoformat()))
    return "/service/archive/?" + urlencode(args)


# ---- service figures (issue 22.4) ----------------------------------------------------------

def hours_between(session, later, earlier):
    """SQL: ``later - earlier`` in hours (a float), on SQLite and PostgreSQL."""
    if session.get_bind().dialect.name == "postgresql":
        return func.date_part("epoch", later - earlier) / 3600.0
    return (func.julianday(later) - func.julianday(earlier)) * 24.0


def month_of(session, column):
    """SQL: ``YYYY-MM`` of ``column``."""
    if session.get_bind().dialect.name == "postgresql":
        return func.to_char(column, "YYYY-MM")
    return func.strftime("%Y-%m", column)


def month_start(session, column):
    """SQL: the month of ``column``, to group and sort by (:func:`_month_text` makes
    it ``YYYY-MM``): ``date_trunc`` on PostgreSQL (a quarter faster than ``to_char``
    over 200k tickets); on SQLite the stored text's first seven characters (``YYYY-MM``,
    what ``strftime('%Y-%m')`` gives, without parsing a date per ticket: 95 → 65 ms)."""
    if session.get_bind().dialect.name == "postgresql":
        return func.date_trunc("month", column, type_=DateTime)
    return func.substr(column, 1, 7)


def _month_text(value):
    return value if isinstance(value, str) else value.strftime("%Y-%m")


def figures(session, params, now=None):
    """The extra tables: [(key, title, columns, DataFrame, total, chart)].

    类型 × 优先级 and 未结服务 come from the grouped scan that :func:`run` left in
    ``params`` (same range; same ``now`` unless another one is given), taken out here so
    it lives for this one report only; without it (or for another range / ``now``) the
    scan runs again. 满意度 is its own GROUP BY month."""
    scan = params.pop(_SCAN, None)
    if scan is None or scan["range"] != _range_key(params) or (now and now != scan["now"]):
        scan = _scan(session, params, now or datetime.now())
    return [_by_priority(scan), _satisfaction(session, params), _open_age(scan)]


_SCAN = "_service_scan"  # the key of the shared scan in ``params`` (run → figures)


def _range_key(params):
    return params.get("start"), params.get("stop")


def _scan(session, params, now):
    """The one aggregation of the tickets of the range, by (type, priority): the
    main table's counts, the 类型 × 优先级 figures as SUM and COUNT of the non-null
    hours (averages worked out in Python, per row and in total) and the open tickets by
    age now (conditional sums; summed over the rows for the table). Plus the service
    types (:func:`_types`). Returns {"range", "now", "rows", "types"}."""
    t = ServiceTicket
    resolved_with_due = and_(t.resolved_on.isnot(None), t.resolution_due.isnot(None))
    response = case((t.first_response_on.isnot(None),
                     hours_between(session, t.first_response_on, t.created_on)))
    resolution = case((t.resolved_on.isnot(None),
                       hours_between(session, t.resolved_on, t.created_on)))
    is_open = t.status != "archived"
    ages = []
    for key, _, lo, hi in AGE_BUCKETS:
        cond = [is_open, t.created_on <= now - timedelta(days=lo)]
        if hi is not None:
            cond.append(t.created_on > now - timedelta(days=hi))
        ages.append(func.sum(case((and_(*cond), 1), else_=0)).label(f"age_{key}"))
    # ix_service_report holds every column read here, in the groups' order: the scan
    # reads the index (no table rows, no sort; SQLite at M: 230 → 90 ms, any range).
    # On SQLite the range is on ``+created_on``: without statistics SQLite would take
    # ix_service_created_rating for a range and read the table once per ticket
    type_id = t.service_type_id
    stmt = _range(select(
        type_id.label("type_id"), t.priority.label("priority"),
        func.min(t.priority_rank).label("rank"), func.count().label("n"),
        func.sum(case((missed_condition(now), 1), else_=0)).label("missed"),
        func.sum(case((t.response_due.isnot(None), 1), else_=0)).label("with_due"),
        func.sum(response).label("response_sum"), func.count(response).label("response_n"),
        func.sum(resolution).label("resolution_sum"),
        func.count(resolution).label("resolution_n"),
        func.sum(case((resolved_with_due, 1), else_=0)).label("resolved_due"),
        func.sum(case((and_(resolved_with_due, t.resolved_on <= t.resolution_due), 1),
                      else_=0)).label("resolved_in_time"),
        *ages,
        func.sum(case((is_open, 1), else_=0)).label("open"),
    ).group_by(type_id, t.priority), params, _sqlite_unindexed(session, t.created_on))
    rows = session.execute(stmt).all()
    return {"range": _range_key(params), "now": now, "rows": rows, "stmt": stmt,
            "types": _types(session, {r.type_id for r in rows})}


def _hours(total, n):
    """The average of ``n`` non-null hours summing to ``total``, to 0.1 (None if none)."""
    return round(float(total) / int(n), 1) if n else None


def _by_priority(scan):
    raw = list(scan["rows"])
    names = dict(scan["types"])
    order = {k: i for i, k in enumerate(names)}
    raw.sort(key=lambda r: (order.get(r.type_id, 1 << 30), r.rank, r.priority))
    rows = [(names.get(r.type_id, str(r.type_id)), r.priority, int(r.n),
             _hours(r.response_sum, r.response_n), _hours(r.resolution_sum, r.resolution_n),
             _percent(int(r.resolved_in_time or 0), int(r.resolved_due or 0)))
            for r in raw]
    cols = {"service_type": _l("服务类型"), "priority": _l("优先级"), "count": _l("服务数量"),
            "response_hours": _l("平均首次响应（小时）"),
            "resolution_hours": _l("平均解决（小时）"),
            "within_percent": _l("时限内解决率（%）")}
    df = pd.DataFrame(rows, columns=list(cols))
    for c in ("response_hours", "resolution_hours", "within_percent"):
        df[c] = pd.Series(df[c].tolist(), dtype=object)

    def tot(field, as_int=True):
        values = [getattr(r, field) for r in raw if getattr(r, field) is not None]
        return sum(int(v) for v in values) if as_int else sum(float(v) for v in values)
    # the totals over every ticket of the range: Σ of the rows' sums / Σ of their counts
    total = {"service_type": _l("合计"), "priority": "", "count": tot("n"),
             "response_hours": _hours(tot("response_sum", False), tot("response_n")),
             "resolution_hours": _hours(tot("resolution_sum", False), tot("resolution_n")),
             "within_percent": _percent(tot("resolved_in_time"), tot("resolved_due"))}
    labels = [f"{a}/{b}" for a, b in zip(df["service_type"], df["priority"])]
    chart = {"type": "bar", "title": _l("平均首次响应与解决时间（小时）"), "categories": labels,
             "series": [(str(cols["response_hours"]), df["response_hours"].tolist()),
                        (str(cols["resolution_hours"]), df["resolution_hours"].tolist())]}
    return ("by_priority", _l("服务时效（类型 × 优先级）"), cols, df, total, chart)


def _satisfaction_stmt(session, params):
    """The rated tickets of the range per month of creation: (month, count, Σ)."""
    t = ServiceTicket
    month = month_start(session, t.created_on)
    return _range(select(month, func.count(t.satisfaction), func.sum(t.satisfaction))
                  .where(t.satisfaction.isnot(None)).group_by(month).order_by(month), params)


def _satisfaction(session, params):
    stmt = _satisfaction_stmt(session, params)
    raw = [(_month_text(m), int(n), int(s)) for m, n, s in session.execute(stmt).all()]
    cols = {"month": _l("月份"), "rated": _l("已评价服务数"), "satisfaction": _l("平均满意度")}
    rows = [(m, n, round(s / n, 2)) for m, n, s in raw]
    df = pd.DataFrame(rows, columns=list(cols))
    n = int(df["rated"].sum()) if len(df) else 0
    avg = None
    if n:  # over every rated ticket (not an average of the rounded monthly averages)
        avg = round(sum(s for _, _, s in raw) / n, 2)
    total = {"month": _l("合计"), "rated": n, "satisfaction": avg}
    chart = {"type": "line", "title": _l("每月平均满意度"), "categories": df["month"].tolist(),
             "series": [(str(cols["satisfaction"]), df["satisfaction"].tolist())],
             "max": 5}
    return ("satisfaction", _l("满意度（按创建月份）"), cols, df, total, chart)


def _open_age(scan):
    rows_ = scan["rows"]
    cols = {"age": _l("已开启时长"), "open": _l("未结服务数")}
    rows = [(str(label), sum(int(getattr(r, f"age_{key}") or 0) for r in rows_))
            for key, label, _, _ in AGE_BUCKETS]
    df = pd.DataFrame(rows, columns=list(cols))
    total = {"age": _l("合计"), "open": sum(int(r.open or 0) for r in rows_)}
    chart = {"type": "bar", "title": _l("未结服务（按已开启时长）"), "categories": df["age"].tolist(),
             "series": [(str(cols["open"]), df["open"].tolist())]}
    return ("open_age", _l("未结服务（按已开启时长）"), cols, df, total, chart)

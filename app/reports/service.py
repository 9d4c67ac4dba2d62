"""客户服务分析: service tickets created in the date range (tickets of every status).

Main table — by 服务类型 (every type listed, also with 0): 服务数量, 超时数量 (handled
after the response deadline or still unhandled past it, archived after the
resolution deadline or still open past it) and 按时率 (the share of the tickets
*with* deadlines that missed none; tickets from before the deadlines existed count in
服务数量 only; no such ticket → empty).

Service figures (issue 22.4), each one SQL aggregation, same date range:

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
from sqlalchemy import and_, case, func, or_, select

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


def _range(stmt, params):
    t = ServiceTicket
    if params.get("start"):
        stmt = stmt.where(t.created_on >= datetime.combine(params["start"], time.min))
    if params.get("stop"):
        stmt = stmt.where(t.created_on < datetime.combine(params["stop"], time.min))
    return stmt


def _types(session, counted_keys):
    types = session.execute(select(DictItem.id, DictItem.item)
                            .where(DictItem.type == SERVICE_TYPE).order_by(DictItem.id)).all()
    missing = set(counted_keys) - {i for i, _ in types}
    if missing:
        types += session.execute(select(DictItem.id, DictItem.item)
                                 .where(DictItem.id.in_(list(missing)))).all()
    return types


def run(session, params, now=None):
    now = now or datetime.now()
    t = ServiceTicket
    stmt = _range(select(t.service_type_id, func.count(t.id),
                         func.sum(case((missed_condition(now), 1), else_=0)),
                         func.sum(case((t.response_due.isnot(None), 1), else_=0)))
                  .group_by(t.service_type_id), params)
    counted = {k: (n, int(m or 0), int(w or 0)) for k, n, m, w in session.execute(stmt).all()}
    rows = [(type_id, item, *counted.get(type_id, (0, 0, 0)))
            for type_id, item in _types(session, counted)]
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
    if session.get_bind().dialect.name == "postgresql":
        return func.to_char(column, "YYYY-MM")
    return func.strftime("%Y-%m", column)


def figures(session, params, now=None):
    """The extra tables: [(key, title, columns, DataFrame, total, chart)]."""
    now = now or datetime.now()
    return [_by_priority(session, params), _satisfaction(session, params),
            _open_age(session, params, now)]


def _by_priority(session, params):
    t = ServiceTicket
    resolved_with_due = and_(t.resolved_on.isnot(None), t.resolution_due.isnot(None))
    stmt = _range(select(
        t.service_type_id, t.priority, func.min(t.priority_rank), func.count(t.id),
        func.avg(case((t.first_response_on.isnot(None),
                       hours_between(session, t.first_response_on, t.created_on)))),
        func.avg(case((t.resolved_on.isnot(None),
                       hours_between(session, t.resolved_on, t.created_on)))),
        func.sum(case((resolved_with_due, 1), else_=0)),
        func.sum(case((and_(resolved_with_due, t.resolved_on <= t.resolution_due), 1), else_=0)),
    ).group_by(t.service_type_id, t.priority), params)
    raw = session.execute(stmt).all()
    names = dict(_types(session, {r[0] for r in raw}))
    order = {k: i for i, k in enumerate(names)}
    raw.sort(key=lambda r: (order.get(r[0], 1 << 30), r[2], r[1]))
    rows = [(names.get(type_id, str(type_id)), priority, int(n),
             None if resp is None else round(float(resp), 1),
             None if res is None else round(float(res), 1),
             _percent(int(ok or 0), int(due or 0)))
            for type_id, priority, _, n, resp, res, due, ok in raw]
    cols = {"service_type": _l("服务类型"), "priority": _l("优先级"), "count": _l("服务数量"),
            "response_hours": _l("平均首次响应（小时）"),
            "resolution_hours": _l("平均解决（小时）"),
            "within_percent": _l("时限内解决率（%）")}
    df = pd.DataFrame(rows, columns=list(cols))
    for c in ("response_hours", "resolution_hours", "within_percent"):
        df[c] = pd.Series(df[c].tolist(), dtype=object)
    # the totals over every ticket of the range, one more statement
    tot = session.execute(_range(select(
        func.count(t.id),
        func.avg(case((t.first_response_on.isnot(None),
                       hours_between(session, t.first_response_on, t.created_on)))),
        func.avg(case((t.resolved_on.isnot(None),
                       hours_between(session, t.resolved_on, t.created_on)))),
        func.sum(case((resolved_with_due, 1), else_=0)),
        func.sum(case((and_(resolved_with_due, t.resolved_on <= t.resolution_due), 1), else_=0)),
    ), params)).one()
    total = {"service_type": _l("合计"), "priority": "", "count": int(tot[0] or 0),
             "response_hours": None if tot[1] is None else round(float(tot[1]), 1),
             "resolution_hours": None if tot[2] is None else round(float(tot[2]), 1),
             "within_percent": _percent(int(tot[4] or 0), int(tot[3] or 0))}
    labels = [f"{a}/{b}" for a, b in zip(df["service_type"], df["priority"])]
    chart = {"type": "bar", "title": _l("平均首次响应与解决时间（小时）"), "categories": labels,
             "series": [(str(cols["response_hours"]), df["response_hours"].tolist()),
                        (str(cols["resolution_hours"]), df["resolution_hours"].tolist())]}
    return ("by_priority", _l("服务时效（类型 × 优先级）"), cols, df, total, chart)


def _satisfaction(session, params):
    t = ServiceTicket
    month = month_of(session, t.created_on)
    stmt = _range(select(month, func.count(t.id), func.avg(t.satisfaction))
                  .where(t.satisfaction.isnot(None)).group_by(month).order_by(month), params)
    raw = session.execute(stmt).all()
    cols = {"month": _l("月份"), "rated": _l("已评价服务数"), "satisfaction": _l("平均满意度")}
    rows = [(m, int(n), round(float(a), 2)) for m, n, a in raw]
    df = pd.DataFrame(rows, columns=list(cols))
    n = int(df["rated"].sum()) if len(df) else 0
    avg = None
    if n:  # over every rated ticket (not an average of the rounded monthly averages)
        avg = round(float(session.scalar(_range(
            select(func.avg(t.satisfaction)).where(t.satisfaction.isnot(None)), params))), 2)
    total = {"month": _l("合计"), "rated": n, "satisfaction": avg}
    chart = {"type": "line", "title": _l("每月平均满意度"), "categories": df["month"].tolist(),
             "series": [(str(cols["satisfaction"]), df["satisfaction"].tolist())],
             "max": 5}
    return ("satisfaction", _l("满意度（按创建月份）"), cols, df, total, chart)


def _open_age(session, params, now):
    t = ServiceTicket
    cases = []
    for key, _, lo, hi in AGE_BUCKETS:
        cond = [t.created_on <= now - timedelta(days=lo)]
        if hi is not None:
            cond.append(t.created_on > now - timedelta(days=hi))
        cases.append(func.sum(case((and_(*cond), 1), else_=0)))
    cases.append(func.count(t.id))
    stmt = _range(select(*cases).where(t.status != "archived"), params)
    got = session.execute(stmt).one()
    cols = {"age": _l("已开启时长"), "open": _l("未结服务数")}
    rows = [(str(label), int(got[i] or 0)) for i, (_, label, _, _) in enumerate(AGE_BUCKETS)]
    df = pd.DataFrame(rows, columns=list(cols))
    total = {"age": _l("合计"), "open": int(got[-1] or 0)}
    chart = {"type": "bar", "title": _l("未结服务（按已开启时长）"), "categories": df["age"].tolist(),
             "series": [(str(cols["open"]), df["open"].tolist())]}
    return ("open_age", _l("未结服务（按已开启时长）"), cols, df, total, chart)


"""客户服务分析: number of service tickets by 服务类型 (tickets of every status),
optionally of one year (by the created date). Every 服务类型 is listed, also with 0.

With the 服务时限 (issue 22) each 服务类型 also shows how many tickets missed a
deadline (超时数量: handled after the response deadline or still unhandled past it,
archived after the resolution deadline or still open past it) and the 按时率: the
share of the tickets *with* deadlines that missed none (tickets from before the
deadlines existed count in 服务数量 only; no such ticket → empty)."""
from datetime import datetime

import pandas as pd
from flask_babel import lazy_gettext as _l
from sqlalchemy import and_, case, func, or_, select

from ..models import DictItem, ServiceTicket
from ..models.dictionary import SERVICE_TYPE

NAME = "service"
TITLE = _l("客户服务分析")
COLUMNS = {"service_type": _l("服务类型"), "count": _l("服务数量"), "overdue": _l("超时数量"),
           "on_time_percent": _l("按时率（%）")}
FILTERS = ("year",)


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


def run(session, params, now=None):
    now = now or datetime.now()
    t = ServiceTicket
    stmt = (select(t.service_type_id, func.count(t.id),
                   func.sum(case((missed_condition(now), 1), else_=0)),
                   func.sum(case((t.response_due.isnot(None), 1), else_=0)))
            .group_by(t.service_type_id))
    year = params.get("year")
    if year:
        stmt = stmt.where(t.created_on >= datetime(year, 1, 1),
                          t.created_on < datetime(year + 1, 1, 1))
    counted = {k: (n, int(m or 0), int(w or 0)) for k, n, m, w in session.execute(stmt).all()}
    types = session.execute(select(DictItem.id, DictItem.item)
                            .where(DictItem.type == SERVICE_TYPE).order_by(DictItem.id)).all()
    rows = [(item, *counted.pop(type_id, (0, 0, 0))) for type_id, item in types]
    if counted:
        extra = dict(session.execute(select(DictItem.id, DictItem.item)
                                     .where(DictItem.id.in_(list(counted)))).all())
        rows += [(extra.get(k, str(k)), *v) for k, v in counted.items()]
    df = pd.DataFrame(rows, columns=["service_type", "count", "overdue", "with_deadline"])
    for c in ("count", "overdue", "with_deadline"):
        df[c] = df[c].astype(int)
    # object dtype: None stays None (an empty cell), not NaN
    df["on_time_percent"] = pd.Series(
        [_percent(w, m) for w, m in zip(df["with_deadline"], df["overdue"])], dtype=object)
    return df.rename(columns={"with_deadline": "_with_deadline"})


def _percent(with_deadline, missed):
    if not with_deadline:
        return None
    return round(100.0 * (with_deadline - missed) / with_deadline, 1)


def total(df):
    return {"service_type": _l("合计"), "count": int(df["count"].sum()),
            "overdue": int(df["overdue"].sum()),
            "on_time_percent": _percent(int(df["_with_deadline"].sum()), int(df["overdue"].sum()))}


def chart(df):
    return {
        "type": "bar",
        "title": _l("各类服务数量"),
        "categories": df["service_type"].tolist(),
        "values": [int(v) for v in df["count"]],
        "series_name": _l("服务数量"),
    }

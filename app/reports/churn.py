"""客户流失分析: confirmed churn (warnings with status ``lost``) whose 确认流失 falls in
the date range, newest first, plus the number per 客户经理 (the chart, comparable).

Filters: 客户名称 (contains) and 客户经理 (contains, on the manager's name or
user name). 客户经理 is the manager recorded on the warning (at detection).
"""
from datetime import datetime, time, timedelta
from urllib.parse import urlencode

import pandas as pd
from flask_appbuilder.security.sqla.models import User
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, or_, select

from ..models import ChurnWarning, Customer

NAME = "churn"
TITLE = _l("客户流失分析")
COLUMNS = {"customer_name": _l("客户名称"), "manager": _l("客户经理"),
           "last_order_date": _l("上次下单日期"), "confirmed_on": _l("确认流失日期"),
           "reason": _l("流失原因")}
FILTERS = ("customer", "manager", "period")
KEY = None                    # the rows are records: compared per 客户经理 (summary)
MEASURES = ()
CENTS = ()
DEFAULT_SORT = ("confirmed_on", "desc")
TIE_BREAK = "_id"
UNKNOWN = _l("（无客户经理）")


def _full_name():
    return func.coalesce(User.first_name, "") + func.coalesce(User.last_name, "")


def _filtered(stmt, params):
    if params.get("customer"):
        stmt = stmt.where(Customer.name.icontains(params["customer"], autoescape=True))
    if params.get("manager"):
        m = params["manager"]
        stmt = stmt.where(or_(_full_name().icontains(m, autoescape=True),
                              User.username.icontains(m, autoescape=True)))
    if params.get("start"):
        stmt = stmt.where(ChurnWarning.confirmed_on >= datetime.combine(params["start"], time.min))
    if params.get("stop"):
        stmt = stmt.where(ChurnWarning.confirmed_on < datetime.combine(params["stop"], time.min))
    return (stmt.select_from(ChurnWarning)
            .join(Customer, Customer.id == ChurnWarning.customer_id)
            .outerjoin(User, User.id == ChurnWarning.manager_id)
            .where(ChurnWarning.status == "lost"))


def run(session, params):
    stmt = _filtered(select(ChurnWarning.id, Customer.name, _full_name(), User.username,
                            ChurnWarning.last_order_date, ChurnWarning.confirmed_on,
                            ChurnWarning.reason), params)
    stmt = stmt.order_by(ChurnWarning.confirmed_on.desc(), ChurnWarning.id.desc())
    rows = [(wid, name, full or username or "", last, confirmed.date() if confirmed else None,
             reason or "")
            for wid, name, full, username, last, confirmed, reason in session.execute(stmt)]
    return pd.DataFrame(rows, columns=["_id"] + list(COLUMNS))


def total(df):
    return None


def by_manager(session, params):
    """[key (manager id or ''), manager, count]: one GROUP BY."""
    stmt = _filtered(select(ChurnWarning.manager_id, _full_name(), User.username,
                            func.count(ChurnWarning.id)), params)
    stmt = stmt.group_by(ChurnWarning.manager_id, _full_name(), User.username)
    rows = [("" if mid is None else str(mid), full or username or str(UNKNOWN), int(n))
            for mid, full, username, n in session.execute(stmt)]
    df = pd.DataFrame(rows, columns=["key", "manager", "count"])
    return df


def row_link(row, params):
    return f"/churn/show/{int(row['_id'])}"


def manager_link(row, params):
    """The lost customers of a 客户经理: 客户流失管理 › 已流失, filtered by that manager
    (the one on the warning), the customer name and the 确认流失 date range."""
    if not row["key"]:
        return None
    args = [("status", "lost"), ("manager_id", row["key"])]
    if params.get("customer"):
        args.append(("customer", params["customer"]))
    if params.get("start"):
        args.append(("confirmed_from", params["start"].isoformat()))
    if params.get("stop"):
        args.append(("confirmed_to", (params["stop"] - timedelta(days=1)).isoformat()))
    return "/churn/list/?" + urlencode(args)

"""客户流失分析: confirmed churn (warnings with status ``lost``), newest first.

Filters: 客户名称 (contains) and 客户经理 (contains, on the manager's name or
user name). 客户经理 is the manager recorded on the warning (at detection).
"""
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
FILTERS = ("customer", "manager")


def run(session, params):
    full_name = func.coalesce(User.first_name, "") + func.coalesce(User.last_name, "")
    stmt = (select(Customer.name, full_name, User.username, ChurnWarning.last_order_date,
                   ChurnWarning.confirmed_on, ChurnWarning.reason)
            .select_from(ChurnWarning)
            .join(Customer, Customer.id == ChurnWarning.customer_id)
            .outerjoin(User, User.id == ChurnWarning.manager_id)
            .where(ChurnWarning.status == "lost")
            .order_by(ChurnWarning.confirmed_on.desc(), ChurnWarning.id.desc()))
    if params.get("customer"):
        stmt = stmt.where(Customer.name.icontains(params["customer"], autoescape=True))
    if params.get("manager"):
        m = params["manager"]
        stmt = stmt.where(or_(full_name.icontains(m, autoescape=True),
                              User.username.icontains(m, autoescape=True)))
    rows = [(name, full or username or "", last, confirmed.date() if confirmed else None,
             reason or "")
            for name, full, username, last, confirmed, reason in session.execute(stmt)]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def total(df):
    return None


def chart(df):
    """Confirmed churn per month of confirmation (oldest first)."""
    months = pd.Series([d.strftime("%Y-%m") for d in df["confirmed_on"] if d is not None],
                       dtype=object)
    counts = months.value_counts().sort_index()
    return {
        "type": "bar",
        "title": _l("每月确认流失客户数"),
        "categories": counts.index.tolist(),
        "values": [int(v) for v in counts.tolist()],
        "series_name": _l("流失客户数"),
    }

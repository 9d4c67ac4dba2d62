"""客户构成分析: number and share of customers by 等级 / 信用度 / 满意度.

Counts only customers with status ``normal`` (正常): lost customers are no longer
part of the customer base. Every dictionary level (or 1–5) is listed, also with
0; customers without a value count as 未设置. Percentages have two decimals and
add up to exactly 100 (largest remainder).
"""
import pandas as pd
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select

from ..models import Customer, DictItem
from ..models.dictionary import LEVEL
from .common import BY_CHOICES, percents

NAME = "composition"
TITLE = _l("客户构成分析")
COLUMNS = {"item": _l("项目"), "count": _l("客户数"), "percent": _l("占比（%）")}
FILTERS = ("by",)
ITEM_LABELS = {"level": _l("客户等级"), "credit": _l("客户信用度"), "satisfaction": _l("客户满意度")}
UNSET = _l("未设置")


def run(session, params):
    by = params.get("by") or "level"
    normal = Customer.status == "normal"
    if by == "level":
        counted = dict(session.execute(
            select(Customer.level_id, func.count(Customer.id)).where(normal)
            .group_by(Customer.level_id)).all())
        items = session.execute(select(DictItem.id, DictItem.item)
                                .where(DictItem.type == LEVEL).order_by(DictItem.id)).all()
        rows = [(item, counted.pop(item_id, 0)) for item_id, item in items]
        unset = counted.pop(None, 0)
        if counted:  # a level that is not (any more) in the dictionary under 客户等级
            extra = dict(session.execute(select(DictItem.id, DictItem.item)
                                         .where(DictItem.id.in_(list(counted)))).all())
            rows += [(extra.get(k, str(k)), v) for k, v in counted.items()]
    else:
        column = Customer.credit if by == "credit" else Customer.satisfaction
        counted = dict(session.execute(
            select(column, func.count(Customer.id)).where(normal).group_by(column)).all())
        rows = [(str(n), counted.pop(n, 0)) for n in range(1, 6)]
        unset = counted.pop(None, 0)
    if unset:
        rows.append((str(UNSET), unset))
    df = pd.DataFrame(rows, columns=["item", "count"])
    df["count"] = df["count"].astype(int)
    df["percent"] = percents(df["count"].tolist())
    return df


def columns(params):
    by = params.get("by") or "level"
    return dict(COLUMNS, item=ITEM_LABELS[by])


def total(df):
    return {"item": _l("合计"), "count": int(df["count"].sum()),
            "percent": 100.0 if df["count"].sum() else 0.0}


def chart(df, params=None):
    by = (params or {}).get("by") or "level"
    return {
        "type": "pie",
        "title": _l("客户构成（%(by)s）", by=BY_CHOICES[by]),
        "categories": df["item"].tolist(),
        "values": [int(v) for v in df["count"]],
        "series_name": _l("客户数"),
    }

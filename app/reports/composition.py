"""客户构成分析: number and share of customers by 等级 / 信用度 / 满意度 / 地区.

Counts only customers with status ``normal`` (正常): lost customers are no longer
part of the customer base. With a date range, only the customers created (建档)
in it: the composition of the new customers of the period. Every dictionary level
(or 1–5) is listed, also with 0; customers without a value count as 未设置.
Percentages have two decimals and add up to exactly 100 (largest remainder).
"""
from datetime import datetime, time, timedelta
from urllib.parse import urlencode

import pandas as pd
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select

from ..models import Customer, DictItem
from ..models.dictionary import LEVEL, REGION
from .common import BY_CHOICES, percents

NAME = "composition"
TITLE = _l("客户构成分析")
COLUMNS = {"item": _l("项目"), "count": _l("客户数"), "percent": _l("占比（%）")}
FILTERS = ("by", "period")
KEY = "key"
MEASURES = ("count",)
CENTS = ()
DEFAULT_SORT = None           # the dictionary's order
TIE_BREAK = None
ITEM_LABELS = {"level": _l("客户等级"), "credit": _l("客户信用度"),
               "satisfaction": _l("客户满意度"), "region": _l("地区")}
UNSET = _l("未设置")
# the customer list's search column of each 统计方式 (FAB filter 0 = equal / relation)
LIST_COLUMN = {"level": "level", "region": "region", "credit": "credit",
               "satisfaction": "satisfaction"}


def run(session, params):
    by = params.get("by") or "level"
    cond = [Customer.status == "normal"]
    if params.get("start"):
        cond.append(Customer.created_on >= datetime.combine(params["start"], time.min))
    if params.get("stop"):
        cond.append(Customer.created_on < datetime.combine(params["stop"], time.min))
    if by in ("level", "region"):
        column = Customer.level_id if by == "level" else Customer.region_id
        counted = dict(session.execute(
            select(column, func.count(Customer.id)).where(*cond).group_by(column)).all())
        items = session.execute(select(DictItem.id, DictItem.item)
                                .where(DictItem.type == (LEVEL if by == "level" else REGION))
                                .order_by(DictItem.id)).all()
        rows = [(item_id, item, counted.pop(item_id, 0)) for item_id, item in items]
        unset = counted.pop(None, 0)
        if counted:  # an item that is not (any more) in the dictionary under its 类别
            extra = dict(session.execute(select(DictItem.id, DictItem.item)
                                         .where(DictItem.id.in_(list(counted)))).all())
            rows += [(k, extra.get(k, str(k)), v) for k, v in counted.items()]
    else:
        column = Customer.credit if by == "credit" else Customer.satisfaction
        counted = dict(session.execute(
            select(column, func.count(Customer.id)).where(*cond).group_by(column)).all())
        rows = [(n, str(n), counted.pop(n, 0)) for n in range(1, 6)]
        unset = counted.pop(None, 0)
    if unset:
        rows.append(("unset", str(UNSET), unset))
    df = pd.DataFrame(rows, columns=["key", "item", "count"])
    df["key"] = df["key"].astype(str)
    df["count"] = df["count"].astype(int)
    df["percent"] = percents(df["count"].tolist())
    return df


def columns(params):
    by = params.get("by") or "level"
    return dict(COLUMNS, item=ITEM_LABELS[by])


def total(df):
    n = int(df["count"].sum())
    return {"item": _l("合计"), "count": n, "percent": 100.0 if n else 0.0}


def chart(df, params=None):
    by = (params or {}).get("by") or "level"
    return {
        "type": "pie",
        "title": _l("客户构成（%(by)s）", by=BY_CHOICES[by]),
        "categories": df["item"].tolist(),
        "keys": df.index.tolist(),
        "measure": "count",
        "series_name": _l("客户数"),
    }


def link(row, params):
    """The customers behind a row: 客户信息 filtered by the item, status 正常 and the
    created date range (none for 未设置: the list has no "empty" filter)."""
    by = params.get("by") or "level"
    if row["key"] == "unset":
        return None
    args = [(f"_flt_0_{LIST_COLUMN[by]}", row["key"]), ("_flt_3_status", "normal")]
    if params.get("start"):
        last = datetime.combine(params["start"], time.min) - timedelta(microseconds=1)
        args.append(("_flt_1_created_on", last.isoformat(sep=" ")))
    if params.get("stop"):
        args.append(("_flt_2_created_on", datetime.combine(params["stop"], time.min)
                     .isoformat(sep=" ")))
    return "/customer/list/?" + urlencode(args)

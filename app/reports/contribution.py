"""客户贡献分析: order total per customer (orders with status 5/6, Σ 数量 × 单价).

Two statements on two databases, never one join across them:
1. the sales bind (may be another server) aggregates ``SUM(quantity * price)``
   per ``customer_number`` in one GROUP BY (year filter on the order date);
2. the CRM side maps customer numbers to names (name filter, contains).
pandas merges the two small aggregated frames, sorts and adds the total.
"""
from datetime import date

import pandas as pd
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select

from ..models import Customer, CustomerNumberAlias, Order, OrderLine
from ..models.sales import COUNTED_ORDER_STATUSES
from .common import money2

NAME = "contribution"
TITLE = _l("客户贡献分析")
COLUMNS = {"customer_name": _l("客户名称"), "amount": _l("订单金额（元）")}
FILTERS = ("customer", "year")
# with a name filter matching at most this many customers, their numbers are sent
# to the sales database as an IN list instead of aggregating every customer there
PUSH_DOWN_LIMIT = 1000


def sales_engine(session):
    """The engine of the ``sales`` bind (db.engines["sales"])."""
    return session.get_bind(mapper=Order.__mapper__)


def order_totals(session, year=None, numbers=None):
    """DataFrame [number, amount] aggregated on the sales database.

    Without a list of numbers the lines are first summed per order (one pass over
    the line index) and then per customer: on SQLite this is ~5x faster than
    joining every line to its order; PostgreSQL plans both as hash aggregates.
    With a (short) list of numbers the orders of those customers are joined directly.
    """
    counted = Order.status.in_(COUNTED_ORDER_STATUSES)
    if numbers is None:
        per_order = (select(OrderLine.order_id.label("order_id"),
                            func.sum(OrderLine.quantity * OrderLine.price).label("amount"))
                     .group_by(OrderLine.order_id).subquery("per_order"))
        stmt = (select(Order.customer_number.label("number"),
                       func.sum(per_order.c.amount).label("amount"))
                .join(per_order, per_order.c.order_id == Order.id)
                .where(counted).group_by(Order.customer_number))
    else:
        stmt = (select(Order.customer_number.label("number"),
                       func.sum(OrderLine.quantity * OrderLine.price).label("amount"))
                .join(OrderLine, OrderLine.order_id == Order.id)
                .where(counted, Order.customer_number.in_(numbers))
                .group_by(Order.customer_number))
    if year:
        stmt = stmt.where(Order.date >= date(year, 1, 1), Order.date < date(year + 1, 1, 1))
    with sales_engine(session).connect() as conn:
        rows = conn.execute(stmt).all()
    return pd.DataFrame.from_records([tuple(r) for r in rows], columns=["number", "amount"])


def customer_names(session, customer=None):
    """[number, customer_name, customer_id]; a merged-away customer's number (an alias,
    see CustomerNumberAlias) maps to the surviving customer."""
    stmt = select(Customer.number, Customer.name, Customer.id).where(Customer.status != "merged")
    alias = (select(CustomerNumberAlias.number, Customer.name, Customer.id)
             .join(Customer, Customer.id == CustomerNumberAlias.customer_id))
    if customer:
        stmt = stmt.where(Customer.name.icontains(customer, autoescape=True))
        alias = alias.where(Customer.name.icontains(customer, autoescape=True))
    conn = session.connection()  # Core: no ORM overhead per row
    rows = conn.execute(stmt).all() + conn.execute(alias).all()
    return pd.DataFrame.from_records([tuple(r) for r in rows],
                                     columns=["number", "customer_name", "customer_id"])


def run(session, params):
    names = customer_names(session, params.get("customer"))
    if names.empty:
        return _shape(pd.DataFrame(columns=["customer_name", "amount"]))
    numbers = None
    if params.get("customer") and len(names) <= PUSH_DOWN_LIMIT:
        numbers = names["number"].tolist()
    totals = order_totals(session, params.get("year"), numbers)
    df = totals.merge(names, on="number", how="inner")
    if df["customer_id"].duplicated().any():  # a survivor's own and alias numbers: one row
        sums = {}
        for cid, name, amount in zip(df["customer_id"], df["customer_name"], df["amount"]):
            key = (cid, name)
            sums[key] = sums.get(key, 0) + amount
        df = pd.DataFrame.from_records([(k[1], v) for k, v in sums.items()],
                                       columns=["customer_name", "amount"])
    return _shape(df)


def _shape(df):
    df = df[["customer_name", "amount"]].copy()
    df["amount"] = [money2(v) for v in df["amount"]]
    df["cents"] = [int(v * 100) for v in df["amount"]]  # exact integer sort key
    df = df[df["cents"] > 0]
    df = df.sort_values(["cents", "customer_name"], ascending=[False, True],
                        kind="mergesort").drop(columns="cents").reset_index(drop=True)
    return df


def total(df):
    return {"customer_name": _l("合计"), "amount": money2(sum(df["amount"], 0))}


def chart(df, top=20):
    head = df.head(top)
    return {
        "type": "bar",
        "title": _l("订单金额前 %(n)d 名客户", n=top) if len(df) > top else _l("各客户订单金额"),
        "categories": head["customer_name"].tolist(),
        "values": [float(v) for v in head["amount"]],
        "series_name": _l("订单金额（元）"),
    }

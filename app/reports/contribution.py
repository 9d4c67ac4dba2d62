"""客户贡献分析: order total per customer (orders with status 5/6, Σ 数量 × 单价) in a
date range (by the order date).

Two statements on two databases, never one join across them:
1. the sales bind (may be another server) aggregates ``SUM(quantity * price)``
   per ``customer_number`` in one GROUP BY (:func:`order_totals`, the same signature
   as ``app/workflows/rollup.py: order_totals``, which may replace it);
2. the CRM side maps customer numbers to names (name filter, contains).
pandas merges the two aggregated frames; amounts are integer cents (numpy int64)
so sorting, paging and totals never touch a Decimal: only the page shown (or the
export) is turned into money.
"""
import numpy as np
import pandas as pd
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select

from ..workflows import rollup
from ..models import Customer, CustomerNumberAlias, Order, OrderLine
from ..models.sales import COUNTED_ORDER_STATUSES

NAME = "contribution"
TITLE = _l("客户贡献分析")
COLUMNS = {"customer_name": _l("客户名称"), "amount": _l("订单金额（元）")}
FILTERS = ("customer", "period")
KEY = "customer_id"
MEASURES = ("amount",)
CENTS = ("amount",)           # integer cents in the frame, money (Decimal) outside
DEFAULT_SORT = ("amount", "desc")
TIE_BREAK = "customer_name"
CHART_TOP = 20
# with a name filter matching at most this many customers, their numbers are sent
# to the sales database as an IN list instead of aggregating every customer there
PUSH_DOWN_LIMIT = 1000


def sales_engine(session):
    """The engine of the ``sales`` bind (db.engines["sales"])."""
    return session.get_bind(mapper=Order.__mapper__)


def raw_order_totals(session, start=None, end=None, numbers=None):
    """DataFrame [number, amount]: Σ 数量 × 单价 of the counted orders (status 5/6)
    per customer number, aggregated on the sales database; ``start`` inclusive,
    ``end`` exclusive (dates of the order), ``numbers`` an optional list of customer
    numbers (None = every customer).

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
                .where(counted, Order.customer_number.in_(list(numbers)))
                .group_by(Order.customer_number))
    if start is not None:
        stmt = stmt.where(Order.date >= start)
    if end is not None:
        stmt = stmt.where(Order.date < end)
    with sales_engine(session).connect() as conn:
        rows = conn.execute(stmt).all()
    return pd.DataFrame.from_records([tuple(r) for r in rows], columns=["number", "amount"])


def data_as_of(session):
    """When the order rollup the report reads was built (``数据更新于``), or None while
    it was never built (the report then aggregates the sales system directly)."""
    return rollup.refreshed_at(session)


def order_totals(session, start=None, end=None, numbers=None):
    """The order totals the report reads: the rollup (app/workflows/rollup.py, refreshed
    hourly and by the admin's 刷新) once it has been built, the sales system directly
    (:func:`raw_order_totals`) before that."""
    if data_as_of(session) is None:
        return raw_order_totals(session, start, end, numbers)
    return rollup.order_totals(session, start, end, numbers)


def customer_names(session, customer=None):
    """[number, customer_name, customer_id, own_number]; a merged-away customer's
    number (an alias, see CustomerNumberAlias) maps to the surviving customer, whose
    own number is ``own_number``."""
    stmt = (select(Customer.number, Customer.name, Customer.id, Customer.number)
            .where(Customer.status != "merged"))
    alias = (select(CustomerNumberAlias.number, Customer.name, Customer.id, Customer.number)
             .join(Customer, Customer.id == CustomerNumberAlias.customer_id))
    if customer:
        stmt = stmt.where(Customer.name.icontains(customer, autoescape=True))
        alias = alias.where(Customer.name.icontains(customer, autoescape=True))
    conn = session.connection()  # Core: no ORM overhead per row
    rows = conn.execute(stmt).all() + conn.execute(alias).all()
    return pd.DataFrame.from_records([tuple(r) for r in rows],
                                     columns=["number", "customer_name", "customer_id",
                                              "own_number"])


def to_cents(values):
    """Amounts (Decimal, float, int or None) → int64 cents (the sums are whole cents:
    integer quantities × prices with two decimals)."""
    arr = np.fromiter((float(v) if v is not None else 0.0 for v in values), dtype=float,
                      count=len(values))
    return np.rint(arr * 100).astype(np.int64)


def names_for(session, params):
    return customer_names(session, params.get("customer"))


def run(session, params, names=None):
    """[customer_id, customer_name, _number, amount (cents)] of the customers with an
    amount in the period."""
    names = names_for(session, params) if names is None else names
    empty = pd.DataFrame({"customer_id": pd.Series(dtype=np.int64),
                          "customer_name": pd.Series(dtype=object),
                          "_number": pd.Series(dtype=object),
                          "amount": pd.Series(dtype=np.int64)})
    if names.empty:
        return empty
    numbers = None
    if params.get("customer") and len(names) <= PUSH_DOWN_LIMIT:
        numbers = names["number"].tolist()
    totals = order_totals(session, params.get("start"), params.get("stop"), numbers)
    if totals.empty:
        return empty
    totals = totals.assign(amount=to_cents(totals["amount"].tolist()))
    df = totals.merge(names, on="number", how="inner")
    df = (df.groupby("customer_id", sort=False)
          .agg(customer_name=("customer_name", "first"), _number=("own_number", "first"),
               amount=("amount", "sum"))
          .reset_index())
    return df[df["amount"] > 0].reset_index(drop=True)


def total(df):
    return {"customer_name": _l("合计"), "amount": int(df["amount"].sum()) if len(df) else 0}


def chart(df):
    """The top customers by amount (``df`` is sorted by the caller)."""
    head = df.head(CHART_TOP)
    return {
        "type": "bar",
        "title": (_l("订单金额前 %(n)d 名客户", n=CHART_TOP) if len(df) > CHART_TOP
                  else _l("各客户订单金额")),
        "categories": head["customer_name"].tolist(),
        "keys": head.index.tolist(),
        "measure": "amount",
        "series_name": _l("订单金额（元）"),
    }


def link(row, params):
    """The orders behind a row: 历史订单 filtered by the customer number and the
    order date range (FAB filters: 3 = equal, 1 = greater, 2 = smaller)."""
    from datetime import timedelta
    from urllib.parse import urlencode

    args = [("_flt_3_customer_number", row["_number"])]
    if params.get("start"):
        args.append(("_flt_1_date", (params["start"] - timedelta(days=1)).isoformat()))
    if params.get("stop"):
        args.append(("_flt_2_date", params["stop"].isoformat()))
    return "/order/list/?" + urlencode(args)

"""客户贡献分析: order total per customer (orders with status 5/6, Σ 数量 × 单价) in a
date range (by the order date).

Two statements on two databases, never one join across them:
1. the sales bind (may be another server) aggregates ``SUM(quantity * price)``
   per ``customer_number`` in one GROUP BY (:func:`order_totals`, the same signature
   as ``app/workflows/rollup.py: order_totals``, which may replace it);
2. the CRM side maps customer numbers to names (name filter, contains).
pandas merges the two aggregated frames; amounts are integer cents (numpy int64)
so sorting, paging and totals never touch a Decimal: only the page shown (or the
export) is turned into money. That frame path serves a fresh install, before the
order rollup was first built.

Once the rollup is built (``crm_order_month`` lives in the CRM database) the report
is **one SQL statement per page** (:class:`RollupQuery`): the rollup's months of
the period (and of the comparison period) summed per customer number, the numbers
mapped to their customer (merged customers' aliases to the survivor), joined to
the names, filtered, sorted, paged; the count and the totals come with the page
(window functions), so Python only sees the rows shown. The days of a partial
first/last month are the rollup's day rows too (the whole figure is one snapshot
and a request never queries the sales system); a rollup built by older code has
no days, and they then come from the sales bind and join the
statement through a temporary table. Exports read every row through the same
statement.
"""
from datetime import date, timedelta

import numpy as np
import pandas as pd
from flask_babel import lazy_gettext as _l
from sqlalchemy import (ARRAY, BigInteger, Column, Integer, MetaData, Numeric, String, Table,
                        and_, any_, bindparam, case, cast, func, literal, or_, select, text,
                        true, union_all)

from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import BooleanClauseList

from ..workflows import rollup
from ..models import Customer, CustomerNumberAlias, Order, OrderLine
from ..models.rollup import OrderCustomer
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
# SQLite, sorted by name: pages ending within this many rows walk the name index
NAME_WALK_MAX = 10000


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


def chart(df, count=None):
    """The top customers by amount (``df`` is sorted by the caller; ``count``: how
    many rows the whole report has when ``df`` holds only the top ones)."""
    head = df.head(CHART_TOP)
    count = len(df) if count is None else count
    return {
        "type": "bar",
        "title": (_l("订单金额前 %(n)d 名客户", n=CHART_TOP) if count > CHART_TOP
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


# ---- the rollup path: one statement per page --------------------------------------------

_EDGE_META = MetaData()
# crm_order_running (PostgreSQL; app/workflows/rollup.py): per customer its days with
# orders (YYYYMMDD, ascending) and the running total of its cents up to each
RUNNING = Table(rollup.RUNNING, _EDGE_META,
                Column("customer_id", Integer, primary_key=True),
                Column("days", ARRAY(Integer)), Column("cents", ARRAY(BigInteger)))
# the partial-month days of the period(s): fetched from the sales bind per request,
# mapped to customers in Python, then joined to the statement as this temporary table
EDGE = Table("tmp_contribution_days", _EDGE_META,
             Column("customer_id", Integer, nullable=False),
             Column("part", Integer, nullable=False),
             Column("amount", BigInteger, nullable=False),
             prefixes=["TEMPORARY"])
MAP_CHUNK = 5000


def pg_array(values):
    """A PostgreSQL array literal (``{"a","b"}``) of ``values``, sent as one text
    parameter: the server parses one constant, not an ``ARRAY[…]`` expression of
    thousands (what a Python list becomes)."""
    def item(v):
        if isinstance(v, int):
            return str(v)
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
    return "{" + ",".join(item(v) for v in values) + "}"


def _day_rows(session, raw):
    """[(customer_id, part, cents)] of the edge days ``raw`` [(number, part, amount)]:
    Σ per number and part rounded to cents (as the rollup rounds), each number mapped
    to its customer (a merged customer's number → the survivor) by an ``IN`` lookup on
    the unique number index — never a join of the day rows to crm_customer, which
    PostgreSQL may plan through the trigram index of the number (a nested loop that
    took minutes at 1M customers)."""
    from decimal import Decimal

    per_number = {}
    for number, part, amount in raw:
        key = (number, part)
        per_number[key] = per_number.get(key, Decimal(0)) + Decimal(amount)
    numbers = sorted({n for n, _ in per_number})
    if not numbers:
        return []
    C, A = Customer.__table__, CustomerNumberAlias.__table__
    owner = {}
    pg = session.get_bind(mapper=Customer.__mapper__).dialect.name == "postgresql"
    if pg and numbers:
        # a long IN list may otherwise be planned as trigram (GIN) bitmap scans, one per
        # number; without bitmap scans the unique btree index is the only index left
        session.execute(text("SET LOCAL enable_bitmapscan = off"))
    try:
        if pg:
            # one array parameter (= ANY): a single statement, no 5,000-literal lists
            arr = cast(bindparam("numbers", pg_array(numbers), type_=String), ARRAY(String))
            owner.update(session.execute(select(C.c.number, C.c.id).where(
                C.c.number == any_(arr), C.c.status != "merged")).all())
            rest = [n for n in numbers if n not in owner]
            if rest:
                arr = cast(bindparam("numbers", pg_array(rest), type_=String), ARRAY(String))
                owner.update(session.execute(select(A.c.number, A.c.customer_id)
                                             .where(A.c.number == any_(arr))).all())
        else:
            for i in range(0, len(numbers), MAP_CHUNK):
                chunk = numbers[i:i + MAP_CHUNK]
                owner.update(session.execute(select(C.c.number, C.c.id).where(
                    C.c.number.in_(chunk), C.c.status != "merged")).all())
            for i in range(0, len(numbers), MAP_CHUNK):
                chunk = [n for n in numbers[i:i + MAP_CHUNK] if n not in owner]
                if chunk:
                    owner.update(session.execute(select(A.c.number, A.c.customer_id)
                                                 .where(A.c.number.in_(chunk))).all())
    finally:
        if pg and numbers:
            session.execute(text("SET LOCAL enable_bitmapscan = on"))
    out = {}
    for (number, part), amount in per_number.items():
        cid = owner.get(number)
        if cid is not None:
            cents = int((amount * 100).quantize(Decimal(1), rounding="ROUND_HALF_EVEN"))
            out[(cid, part)] = out.get((cid, part), 0) + cents
    return [(cid, part, cents) for (cid, part), cents in out.items()]


def _cents(expr):
    """Σ amount (Numeric, whole cents) → integer cents."""
    return cast(func.round(expr * 100), BigInteger)


def paged(session, params):
    """The report as :class:`RollupQuery` once the order rollup is built, else None
    (the caller then takes the frame path, :func:`run`)."""
    if data_as_of(session) is None:
        return None
    return RollupQuery(session, params)


class RollupQuery:
    """客户贡献分析 over the rollup, in the CRM database. Part 0 is the period, part 1
    the comparison period (when comparing).

    A period is read from ``crm_order_customer`` (per customer, aliases already
    folded, cents): its whole calendar years (or all time) as year rows, its whole
    quarters as quarter rows, its other whole months as month rows and the days of a
    partial first/last month as day rows (a rollup built by older code has no day
    rows: those days then come from the sales bind, a temporary table, per
    sales number, mapped to the customer here).

    Rows: customer_id, customer_name, _number (the survivor's own number, for the
    drill-down link), amount (cents), and with a comparison amount_compare (cents)
    and amount_change (%, NULL where the comparison is 0). A customer is a row when
    its amount in the period — or, comparing, in either period — is above 0, as
    on the frame path."""

    def __init__(self, session, params):
        self.session = session
        self.params = params
        self.compare = bool(params.get("compare"))
        periods = [(params.get("start"), params.get("stop"))]
        if self.compare:
            cp = params["compare_period"]
            periods.append((cp.start, cp.stop))
        self.years = []                 # per part: None, 0 (all time) or (y0, y1) [y0, y1)
        self.quarters = []              # per part: [YYYYQ] whole quarters
        self.months = []                # per part: [(first, end)] month ranges
        self.days = []                  # per part: [(first, end)] day ranges (the rollup's days)
        raw_days = []                   # [(number, part, amount)] from the sales bind
        # the days of a partial first/last month: from the rollup once it holds them
        # (every refresh builds them), else straight from the sales system
        rollup_days = None              # asked once, when a range has such days
        for part, (start, stop) in enumerate(periods):
            years, quarters, months, days = None, [], [], []
            if start is None or stop is None or start < stop:
                whole, edges = rollup.split_range(start, stop)
                if whole is not None:
                    years, quarters, months = _split_grains(*whole)
                for a, b in edges:
                    if rollup_days is None:
                        rollup_days = rollup.has_days(session)
                    if rollup_days:
                        days.append((a, b))
                        continue
                    raw_days.extend((n, part, amt) for n, amt in rollup.raw_totals(session, a, b)
                                    if n is not None and amt is not None)
            self.years.append(years)
            self.quarters.append(quarters)
            self.months.append(months)
            self.days.append(days)
        self.dialect = session.get_bind(mapper=Customer.__mapper__).dialect.name
        self.parts = len(periods)
        self.periods = periods
        self._raw_days = bool(raw_days)
        self._running = None            # asked once, when a range is not one period
        self._edges_loaded = None       # the DB-API connection the edge rows are in
        self.edges = _day_rows(session, raw_days)   # [(customer_id, part, cents)]

    # -- SQL --------------------------------------------------------------------------
    def _grain_where(self, T, part):
        """``crm_order_customer`` rows of a part: its whole years (or all time), its
        whole quarters and its other whole months; None when it has none."""
        conds = []
        years = self.years[part]
        if years == 0:
            conds.append(T.c.period == 0)
        elif years is not None:
            y0, y1 = years
            cond = [T.c.period > 0, T.c.period < 10000]
            if y0 is not None:
                cond.append(T.c.period >= y0)
            if y1 is not None:
                cond.append(T.c.period < y1)
            conds.append(and_(*cond))
        if self.quarters[part]:
            conds.append(T.c.period.in_(self.quarters[part]))
        for first, end in self.months[part]:
            conds.append(and_(T.c.period >= first.year * 100 + first.month,
                              T.c.period < end.year * 100 + end.month))
        for first, end in self.days[part]:
            conds.append(and_(T.c.period >= _ymd(first), T.c.period < _ymd(end)))
        return or_(*conds) if conds else None

    def _grain_conds(self, T, part):
        """The conditions of :meth:`_grain_where` one by one (each a range of the
        period index: one SELECT each reads the index alone, where an OR of them is a
        bitmap scan that visits the table)."""
        where = self._grain_where(T, part)
        if where is None:
            return []
        return list(where.clauses) if isinstance(where, BooleanClauseList) and \
            where.operator is operators.or_ else [where]

    def _single_period(self, part):
        """The one ``crm_order_customer`` period (0 = all time, a year YYYY, a quarter
        YYYYQ or a month YYYYMM) that is the whole of ``part`` (edge days aside), or
        None (several periods, or none)."""
        years, quarters, months = self.years[part], self.quarters[part], self.months[part]
        days = self.days[part]
        if days:                                         # one day alone is a period too
            if years is None and not quarters and not months and len(days) == 1 \
                    and days[0][1] - days[0][0] == timedelta(days=1):
                return _ymd(days[0][0])
            return None
        if years is not None:
            if quarters or months:
                return None
            if years == 0:
                return 0
            y0, y1 = years
            return y0 if (y0 is not None and y1 == y0 + 1) else None
        if len(quarters) == 1 and not months:
            return quarters[0]
        if not quarters and len(months) == 1:           # one calendar month
            first, end = months[0]
            if (end.year * 12 + end.month) - (first.year * 12 + first.month) == 1:
                return first.year * 100 + first.month
        return None

    def _single_year(self):
        """The one period that is the whole report (no comparison, no edge days), or
        None."""
        if self.parts != 1 or self.edges:
            return None
        return self._single_period(0)

    def _single_pair(self):
        """Comparing, when each part is one ``crm_order_customer`` period (a year, a
        quarter or a month, no edge days): (p0, p1), else None."""
        if self.parts != 2 or self.edges:
            return None
        pair = (self._single_period(0), self._single_period(1))
        return None if None in pair or 0 in pair else pair

    def _pair_side(self, sort):
        """Comparing two single periods, sorted by ``sort`` (amount or amount_compare):
        (P, S) — P the rows whose sorted amount is above 0 (the sorted period's rows,
        the other period's amount looked up by primary key), S the other period's
        rows that P lacks (sorted amount 0). In any order by that amount, P's rows
        and S's rows never interleave, so a page is a slice of P then of S (or the
        other way round, ascending): each walks the (period, amount) index."""
        C = Customer.__table__
        p0, p1 = self._single_pair()
        mine, other = (p0, p1) if sort == "amount" else (p1, p0)
        a = OrderCustomer.__table__.alias("a")
        b = OrderCustomer.__table__.alias("b")
        ob = case((b.c.amount > 0, b.c.amount), else_=0)

        def row(cur, prev):
            change = case((prev != 0, func.round(cast((cur - prev) * 100.0 / prev,
                                                      Numeric(30, 10)), 1)))
            return [cur.label("amount"), prev.label("amount_compare"),
                    change.label("amount_change")]

        name_cols = [C.c.name.label("customer_name"), C.c.number.label("_number")]
        if sort == "amount":
            p_cols = row(a.c.amount, func.coalesce(ob, 0))
            s_cols = row(literal(0, BigInteger), a.c.amount)
        else:
            p_cols = row(func.coalesce(ob, 0), a.c.amount)
            s_cols = row(a.c.amount, literal(0, BigInteger))
        joined = a.join(C, C.c.id == a.c.customer_id)
        P = (select(a.c.customer_id, *name_cols, *p_cols)
             .select_from(joined.outerjoin(b, and_(b.c.customer_id == a.c.customer_id,
                                                   b.c.period == other)))
             .where(a.c.period == mine, a.c.amount > 0))
        # S: the other period's positive rows whose customer has none in this one
        mine_has = (select(literal(1)).where(b.c.customer_id == a.c.customer_id,
                                             b.c.period == mine, b.c.amount > 0)
                    .correlate(a).exists())
        S = (select(a.c.customer_id, *name_cols, *s_cols).select_from(joined)
             .where(a.c.period == other, a.c.amount > 0, ~mine_has))
        if self.params.get("customer"):
            flt = C.c.name.icontains(self.params["customer"], autoescape=True)
            P, S = P.where(flt), S.where(flt)
        return P.subquery("p"), S.subquery("s")

    def _pair_counts(self):
        """Comparing two single periods: {n0, n1: each period's positive rows, count:
        the report's rows (the customers with a positive row in either), t0, t1: Σ of
        each period's positive rows} — one aggregate over the index (once per report:
        the page and the chart share it)."""
        if getattr(self, "_pair_memo", None) is not None:
            return self._pair_memo
        C = Customer.__table__
        p0, p1 = self._single_pair()
        a = OrderCustomer.__table__.alias("a")
        flt = (C.c.name.icontains(self.params["customer"], autoescape=True)
               if self.params.get("customer") else None)

        def rows_of(t, periods):
            q = select().select_from(t).where(t.c.period.in_(periods), t.c.amount > 0)
            if flt is not None:
                q = q.join(C, C.c.id == t.c.customer_id).where(flt)
            return q

        one = [func.coalesce(func.sum(case((a.c.period == p, 1), else_=0)), 0) for p in (p0, p1)]
        total = [func.coalesce(func.sum(case((a.c.period == p, a.c.amount), else_=0)), 0)
                 for p in (p0, p1)]
        # one walk of both periods' index entries (covering: customer_id is in it); the
        # report's rows are the customers in either (a distinct count, cheaper than an
        # anti-join's lookup per row on SQLite: 60 ms against 210 ms at M)
        n0, n1, t0, t1, count = self._execute(rows_of(a, [p0, p1]).add_columns(
            *one, *total, func.count(a.c.customer_id.distinct())))[0]
        self._pair_memo = {"n0": int(n0), "n1": int(n1), "count": int(count),
                           "totals": self._totals([t0, t1])}
        return self._pair_memo

    def _pair_page(self, sort, desc, offset, limit):
        """(rows, count, totals) of a page comparing two single periods, sorted by
        amount or amount_compare: P's slice, then S's (ascending: S first) — at most
        two LIMITed index walks and the counts."""
        counts = self._pair_counts()
        P, S = self._pair_side(sort)
        n_p = counts["n0"] if sort == "amount" else counts["n1"]
        first, second = (P, S) if desc else (S, P)
        n_first = n_p if desc else counts["count"] - n_p
        rows = []
        if offset < n_first:
            rows += self._execute(select(*first.c).order_by(*self._order(first, sort, desc))
                                  .limit(limit).offset(offset))
        if len(rows) < limit and offset + limit > n_first:
            rows += self._execute(select(*second.c).order_by(*self._order(second, sort, desc))
                                  .limit(limit - len(rows)).offset(max(0, offset - n_first)))
        return rows, counts["count"], counts["totals"]

    def _by_number(self):
        """(customer_id, part, cents) of the edge days (already mapped to customers)."""
        if not self.edges:
            return None
        return select(EDGE.c.customer_id, EDGE.c.part, EDGE.c.amount)

    def _running_per_customer(self):
        """:meth:`_per_customer` from crm_order_running (PostgreSQL): each part is the
        difference of two running totals, each found by a binary search of the
        customer's days (``width_bucket``: how many of them are ≤ the bound) — one
        row per customer instead of its grain rows, no GROUP BY. The same rows.
        Each bound is looked up once per customer (a comparison shares one; the
        ``OFFSET 0`` keeps PostgreSQL from copying the lookups into every place
        that uses them: at L, 1.05 → 0.6 s for a range and its comparison)."""
        R = RUNNING
        bounds = {}             # bound (a day, or None: after the last) → column name

        def at(day):            # cents of the customer's days before ``day``
            if day not in bounds:
                bounds[day] = f"c{len(bounds)}"
            return bounds[day]

        parts = []
        for start, stop in self.periods:
            if start is not None and stop is not None and start >= stop:
                parts.append(None)
            else:
                parts.append((at(stop), None if start is None else at(start)))
        cols = []
        for day, name in bounds.items():
            if day is None:
                value = R.c.cents[func.cardinality(R.c.cents)]
            else:
                value = R.c.cents[func.width_bucket(_ymd(day) - 1, R.c.days)]
            cols.append(func.coalesce(value, 0).label(name))
        looked = select(R.c.customer_id, *cols)
        if self.params.get("customer"):
            C = Customer.__table__
            looked = looked.where(R.c.customer_id.in_(
                select(C.c.id).where(C.c.name.icontains(self.params["customer"],
                                                        autoescape=True))))
        looked = looked.offset(0).subquery("looked")
        sums = [literal(0, BigInteger) if p is None else
                (looked.c[p[0]] - looked.c[p[1]] if p[1] else looked.c[p[0]])
                for p in parts]
        diff = (select(looked.c.customer_id, *[x.label(f"s{i}") for i, x in enumerate(sums)])
                .offset(0).subquery("running"))
        ss = [diff.c[f"s{i}"] for i in range(self.parts)]
        return (select(diff.c.customer_id,
                       *[func.greatest(x, 0).label(f"a{i}") for i, x in enumerate(ss)])
                .where(or_(*[x > 0 for x in ss])))

    def _per_customer(self):
        """The many-grain case: (customer_id, a0[, a1]) — cents per part, Σ over the
        grains, a customer kept when a part is above 0; names not joined (a name
        filter is an ``IN`` on the customer ids). None when no grain has rows.
        PostgreSQL with the running totals: :meth:`_running_per_customer`."""
        if self._running is None:       # the running totals, once the rollup has them
            # (built from the day rows: a rollup without them has empty running totals)
            self._running = (self.dialect == "postgresql" and not self._raw_days
                             and rollup.has_running(self.session)
                             and rollup.has_days(self.session))
        if self._running:
            return self._running_per_customer()
        C = Customer.__table__
        T = OrderCustomer.__table__
        selects = [select(T.c.customer_id, literal(part).label("part"), T.c.amount)
                   .where(cond)
                   for part in range(self.parts) for cond in self._grain_conds(T, part)]
        by_number = self._by_number()
        if by_number is not None:
            selects.append(by_number)
        if not selects:
            return None
        src = (union_all(*selects) if len(selects) > 1 else selects[0]).subquery("src")
        sums = [func.sum(case((src.c.part == i, src.c.amount), else_=0))
                for i in range(self.parts)]
        q = (select(src.c.customer_id,
                    *[case((s > 0, s), else_=0).label(f"a{i}") for i, s in enumerate(sums)])
             .group_by(src.c.customer_id)
             .having(or_(*[s > 0 for s in sums])))
        if self.params.get("customer"):
            q = q.where(src.c.customer_id.in_(
                select(C.c.id).where(C.c.name.icontains(self.params["customer"],
                                                        autoescape=True))))
        return q

    def _named(self, per_customer, lookup=False):
        """The rows of ``per_customer`` (a subquery or CTE) with names, the survivor's
        number and, comparing, the comparison and the change. ``lookup``: the name
        and number as a lookup per row instead of a join (for a few rows; customers
        are merged, never deleted, so every row has its customer)."""
        C = Customer.__table__
        if lookup:
            def of(col):
                return (select(col).where(C.c.id == per_customer.c.customer_id)
                        .scalar_subquery())
            cols = [per_customer.c.customer_id, of(C.c.name).label("customer_name"),
                    of(C.c.number).label("_number"), per_customer.c.a0.label("amount")]
        else:
            cols = [per_customer.c.customer_id, C.c.name.label("customer_name"),
                    C.c.number.label("_number"), per_customer.c.a0.label("amount")]
        if self.compare:
            cur, prev = per_customer.c.a0, per_customer.c.a1
            cols += [prev.label("amount_compare"),
                     case((prev != 0, func.round(cast((cur - prev) * 100.0 / prev,
                                                      Numeric(30, 10)), 1))
                          ).label("amount_change")]
        if lookup:
            return select(*cols).select_from(per_customer)
        return select(*cols).select_from(per_customer.join(C, C.c.id == per_customer.c.customer_id))

    def _rows(self):
        """The report's rows (no order), or None when no grain has any."""
        C = Customer.__table__
        T = OrderCustomer.__table__
        single = self._single_year()
        if single is None:
            pc = self._per_customer()
            return None if pc is None else self._named(pc.subquery("per_customer"))
        q = (select(T.c.customer_id, C.c.name.label("customer_name"),   # one row per customer
                    C.c.number.label("_number"), T.c.amount.label("amount"))
             .select_from(T.join(C, C.c.id == T.c.customer_id))
             .where(T.c.period == single, T.c.amount > 0))
        if self.params.get("customer"):
            q = q.where(C.c.name.icontains(self.params["customer"], autoescape=True))
        return q

    def _name_walk(self, sort, depth):
        """SQLite, one period sorted by name, no name filter, a page within the first
        NAME_WALK_MAX rows: the rows as a walk of the customers' name index, each
        customer's period row looked up by primary key (an EXISTS keeps crm_customer
        the outer loop) — a page of the first pages reads a few dozen customers instead
        of joining and sorting all of them (SQLite at M: 5 ms against 190 ms). Deeper
        pages join and sort (the walk's random reads cost more there). Else None."""
        if (sort != "customer_name" or self.dialect != "sqlite" or self.params.get("customer")
                or depth > NAME_WALK_MAX):
            return None
        C = Customer.__table__
        T = OrderCustomer.__table__.alias("w")
        single = self._single_year()
        amount = (select(T.c.amount).where(T.c.customer_id == C.c.id, T.c.period == single)
                  .scalar_subquery())
        has = (select(literal(1)).where(T.c.customer_id == C.c.id, T.c.period == single,
                                        T.c.amount > 0).exists())
        return (select(C.c.id.label("customer_id"), C.c.name.label("customer_name"),
                       C.c.number.label("_number"), amount.label("amount"))
                .where(has).subquery("report"))

    def _cut_page(self, sort, desc, offset, limit):
        """Many grains, sorted by an amount: the aggregate is built once (a
        materialised CTE) and names are joined only for the rows up to the page's
        last one and its ties — the (offset + limit)-th amount is the cut. The count
        and totals come from the CTE in the same statement. (rows, count, totals) or
        None when the page is past the end."""
        pc_select = self._per_customer()
        if pc_select is None:
            return [], 0, self._totals(None)
        pc = pc_select.cte("pc").prefix_with("MATERIALIZED")
        col = "a0" if sort == "amount" else "a1"
        key = pc.c[col]
        cut = (select(key).order_by(key.desc() if desc else key.asc())
               .limit(1).offset(offset + limit - 1).scalar_subquery())
        # one reading of the cut (``x OR cut IS NULL`` read it twice: two top-N sorts);
        # names looked up per row past the cut (by primary key: the planner, which cannot
        # know how few rows pass, would otherwise hash all 1M customers at L)
        named = self._named(pc, lookup=True).where(
            func.coalesce(key >= cut if desc else key <= cut, true()))
        # the count and the totals: one pass over the aggregate, joined to every row
        sums = [func.count().label("n"), func.coalesce(func.sum(pc.c.a0), 0).label("t0")]
        if self.compare:
            sums.append(func.coalesce(func.sum(pc.c.a1), 0).label("t1"))
        agg = select(*sums).select_from(pc).subquery("pc_totals")
        r = named.subquery("report")
        stmt = (select(*r.c, *agg.c).select_from(r.join(agg, true()))
                .order_by(*self._order(r, sort, desc)).limit(limit).offset(offset))
        rows = self._execute(stmt, serial=True)
        if not rows:
            return None
        width = len(r.c)
        first = rows[0]
        totals = self._totals(first[width + 1:])
        return [row[:width] for row in rows], int(first[width]), totals

    def _order(self, r, sort, desc):
        name = r.c.customer_name
        if self.dialect == "postgresql":
            name = name.collate("C")         # code point order, as Python sorts text
        default = [r.c.amount.desc(), name.asc(), r.c.customer_id.asc()]
        if sort in (None, "amount") and desc:
            return default
        key = name if sort == "customer_name" else r.c[sort]
        first = [key.is_(None)] if sort == "amount_change" else []   # empty cells last
        return first + [key.desc() if desc else key.asc()] + \
            ([] if sort == "customer_name" else [name.asc()]) + default

    def _execute(self, stmt, serial=False):
        """The statement's rows. ``serial`` (PostgreSQL): no parallel workers for it —
        for a per-customer aggregate over several grains, where a customer has one or
        two rows per range, partial aggregation in workers cannot shrink the rows, and
        gathering ~1.2M partial groups in order costs more than it saves (at L, quiet:
        1.35–1.40 → 1.05 s). And no JIT compilation for it: a statement over 1M
        customers is costed far above ``jit_above_cost``, and compiling its
        expressions took 90–300 ms of a sub-second statement."""
        conn = self.session.connection(bind_arguments={"mapper": Customer.__mapper__})
        if serial and self.dialect == "postgresql":
            conn.exec_driver_sql("SET LOCAL max_parallel_workers_per_gather = 0")
            conn.exec_driver_sql("SET LOCAL jit = off")
            rows = self._execute(stmt)      # (a failure rolls the transaction back: SET too)
            conn.exec_driver_sql("SET LOCAL max_parallel_workers_per_gather TO DEFAULT")
            conn.exec_driver_sql("SET LOCAL jit TO DEFAULT")
            return rows
        if self.edges and self._edges_loaded is not conn.connection.dbapi_connection:
            # the connection's own temporary table (each connection has its own; it
            # lives as long as the connection or, created in a transaction rolled
            # back, until then): emptied and filled once for this report
            conn.exec_driver_sql(
                "CREATE TEMPORARY TABLE IF NOT EXISTS tmp_contribution_days "
                "(customer_id INTEGER NOT NULL, part INTEGER NOT NULL, amount BIGINT NOT NULL)")
            conn.execute(EDGE.delete())
            if self.dialect == "postgresql":
                # one statement of three arrays, not thousands of row batches
                conn.exec_driver_sql(
                    "INSERT INTO tmp_contribution_days (customer_id, part, amount) "
                    "SELECT * FROM unnest(%s::integer[], %s::integer[], %s::bigint[])",
                    tuple(pg_array(x) for x in zip(*self.edges)))
            else:
                conn.execute(EDGE.insert(), [{"customer_id": c, "part": p, "amount": a}
                                             for c, p, a in self.edges])
            self._edges_loaded = conn.connection.dbapi_connection   # (another → fill again)
        return conn.execute(stmt).all()

    def _frame(self, rows):
        cols = ["customer_id", "customer_name", "_number", "amount"]
        if self.compare:
            cols += ["amount_compare", "amount_change"]
        df = pd.DataFrame.from_records([tuple(r)[:len(cols)] for r in rows], columns=cols)
        for c in ("customer_id", "amount", "amount_compare"):
            if c in df.columns:
                df[c] = df[c].astype(np.int64) if len(df) else pd.Series(dtype=np.int64)
        if self.compare:
            from . import _change
            df["amount_change"] = (_change(df["amount"], df["amount_compare"]) if len(df)
                                   else pd.Series(dtype=float))
        return df

    # -- what the report framework asks ------------------------------------------------
    def _report(self):
        q = self._rows()
        return None if q is None else q.subquery("report")

    def page(self, sort, desc, offset, limit):
        """(rows of the page as a frame, count, totals {amount, amount_compare}).
        One year: the page walks the (period, amount) index and the count is its own
        statement; otherwise the count and totals come with the page (window)."""
        r = self._report()
        if r is None:
            return self._frame([]), 0, self._totals(None)
        width = len(r.c)
        if self._single_year() is not None:
            walk = self._name_walk(sort, offset + limit)
            if walk is not None:
                r = walk
            stmt = select(*r.c).order_by(*self._order(r, sort, desc)).limit(limit).offset(offset)
            rows = self._execute(stmt)
            count, totals = self.count_totals()
            return self._frame(rows), count, totals
        if sort in ("amount", "amount_compare") and self._single_pair() is not None:
            rows, count, totals = self._pair_page(sort, desc, offset, limit)
            return self._frame(rows), count, totals
        if sort in ("amount", "amount_compare"):
            got = self._cut_page(sort, desc, offset, limit)
            if got is None:
                return self._frame([]), *self.count_totals()
            rows, count, totals = got
            return self._frame(rows), count, totals
        over = [func.count().over().label("n"), func.sum(r.c.amount).over().label("t0")]
        if self.compare:
            over.append(func.sum(r.c.amount_compare).over().label("t1"))
        stmt = (select(*r.c, *over).order_by(*self._order(r, sort, desc))
                .limit(limit).offset(offset))
        rows = self._execute(stmt)
        if not rows:
            return self._frame([]), *self.count_totals()
        first = rows[0]
        totals = {"amount": int(first[width + 1] or 0)}
        if self.compare:
            totals["amount_compare"] = int(first[width + 2] or 0)
        return self._frame([row[:width] for row in rows]), int(first[width]), totals

    def count_totals(self):
        single = self._single_year()
        if single is not None and not self.params.get("customer"):
            # every row has its customer (customers are merged, never deleted; a merge
            # folds its rows): the count needs no join
            T = OrderCustomer.__table__
            row = self._execute(select(func.count(), func.coalesce(func.sum(T.c.amount), 0))
                                .where(T.c.period == single, T.c.amount > 0))[0]
            return int(row[0]), self._totals(row[1:])
        if self._single_pair() is not None:
            counts = self._pair_counts()
            return counts["count"], counts["totals"]
        r = self._report()
        if r is None:
            return 0, self._totals(None)
        cols = [func.count(), func.coalesce(func.sum(r.c.amount), 0)]
        if self.compare:
            cols.append(func.coalesce(func.sum(r.c.amount_compare), 0))
        row = self._execute(select(*cols))[0]
        return int(row[0]), self._totals(row[1:])

    def _totals(self, values):
        values = list(values or [0, 0])
        out = {"amount": int(values[0] or 0)}
        if self.compare:
            out["amount_compare"] = int(values[1] or 0) if len(values) > 1 else 0
        return out

    def frame(self, sort, desc, limit=None):
        """Every row (or the first ``limit``) in the given order (exports, chart)."""
        if limit is not None and sort in ("amount", "amount_compare") \
                and self._single_pair() is not None:
            return self._frame(self._pair_page(sort, desc, 0, limit)[0])
        if limit is not None and sort in ("amount", "amount_compare") \
                and self._single_year() is None:
            got = self._cut_page(sort, desc, 0, limit)
            return self._frame(got[0] if got else [])
        r = self._report()
        if r is None:
            return self._frame([])
        stmt = select(*r.c).order_by(*self._order(r, sort, desc))
        if limit is not None:
            stmt = stmt.limit(limit)
        return self._frame(self._execute(stmt))


def _ymd(day):
    """A day as crm_order_customer's period YYYYMMDD."""
    return day.year * 10000 + day.month * 100 + day.day


def _next_quarter(day):
    month = day.month + 3
    return date(day.year + (month > 12), (month - 1) % 12 + 1, 1)


def _split_quarters(first, end):
    """Whole months [first, end) (both set, inside at most two calendar years) →
    (quarters, month ranges): the whole calendar quarters inside as YYYYQ and the
    months before and after them."""
    qs = first if (first.month - 1) % 3 == 0 else _next_quarter(first.replace(
        month=first.month - (first.month - 1) % 3))
    qe = end.replace(month=end.month - (end.month - 1) % 3)
    if qs >= qe:
        return [], [(first, end)]
    quarters, d = [], qs
    while d < qe:
        quarters.append(d.year * 10 + (d.month - 1) // 3 + 1)
        d = _next_quarter(d)
    months = [(a, b) for a, b in ((first, qs), (qe, end)) if a < b]
    return quarters, months


def _split_grains(first, end):
    """Whole months [first, end) (either None = open) → (years, quarters, month ranges):
    the whole calendar years inside as ``(y0, y1)`` (``year >= y0 AND year < y1``, None
    open) — or 0 for all time, None for none —, the whole quarters outside them (YYYYQ)
    and the months left over."""
    if first is None and end is None:
        return 0, [], []
    y0 = None if first is None else (first.year if first.month == 1 else first.year + 1)
    y1 = None if end is None else end.year
    if y0 is not None and y1 is not None and y0 >= y1:
        return (None, *_split_quarters(first, end))
    quarters, months = [], []
    for a, b in ((first, None if y0 is None else date(y0, 1, 1)),
                 (None if y1 is None else date(y1, 1, 1), end)):
        if a is not None and b is not None and a < b:
            q, m = _split_quarters(a, b)
            quarters += q
            months += m
    return (y0, y1), quarters, months

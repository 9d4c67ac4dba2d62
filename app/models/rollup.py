"""订单汇总 (order rollup): the sales system's counted orders summed per customer
number and month, and the last order date per customer number, kept in the CRM
database for the reports and the churn check (app/workflows/rollup.py).

The rows are keyed by the number the order carries in the sales system; a merged
customer's old numbers (``CustomerNumberAlias``) are mapped to the survivor when
the rollup is read, so a merge needs no refresh. ``crm_rollup_state`` is one row
(id 1): when the rollup now in place was built.

``crm_order_customer`` sums the orders per CRM customer and day / month / quarter /
year / all time (aliases folded in) for the reports. A refresh builds ``*_next`` tables next to these and swaps them in one
transaction (app/workflows/rollup.py); the ``*_next`` tables are not models.

PostgreSQL also has ``crm_order_running`` (migration 0018): per customer its days with
orders and the running total of its cents up to each (two arrays), derived from the
day rows of ``crm_order_customer`` and written with them. Arrays have no SQLite type,
so it is not a model either (``models.base.ROLLUP_STAGING_TABLES`` keeps it out of the
schema comparison).
"""
from sqlalchemy import BigInteger, Column, Date, DateTime, Float, Index, Integer, Numeric, String

from .base import Model


class OrderMonth(Model):
    """Σ quantity × price of the counted orders (status 5/6) of one customer number
    in one month (``month`` = the month's first day)."""

    __tablename__ = "crm_order_month"

    number = Column(String(32), primary_key=True)
    month = Column(Date, primary_key=True)
    amount = Column(Numeric(16, 2), nullable=False)
    orders = Column(Integer, nullable=False)
    last_date = Column(Date, nullable=False)


class OrderDay(Model):
    """Σ of the counted orders of one customer number on one day: the sales aggregate
    the last refresh read, kept so that the next refresh can tell which numbers
    changed (an incremental refresh rebuilds only their customers). PostgreSQL: an
    UNLOGGED table (a crash empties it, and the next refresh then rebuilds all)."""

    __tablename__ = "crm_order_day"

    number = Column(String(32), primary_key=True)
    day = Column(Date, primary_key=True)
    amount = Column(Numeric(16, 2), nullable=False)
    orders = Column(Integer, nullable=False)


class OrderOwner(Model):
    """The CRM customer each customer number belonged to when the rollup was built
    (own numbers and merged customers' aliases): a number whose owner has changed
    since (a merge, a new customer, a changed number) is rebuilt by the next refresh."""

    __tablename__ = "crm_order_owner"

    number = Column(String(32), primary_key=True)
    customer_id = Column(Integer, nullable=False)


class OrderLast(Model):
    """The date of the last counted order of one customer number."""

    __tablename__ = "crm_order_last"

    number = Column(String(32), primary_key=True)
    last_date = Column(Date, nullable=False)


class OrderCustomer(Model):
    """Σ of the rollup per CRM customer and period — ``period`` YYYYMMDD a day, YYYYMM a
    month, YYYYQ a
    calendar quarter (1–4, since migration 0016), YYYY a calendar year, 0 all time — in
    integer cents: the numbers of a customer and of its
    aliases summed (no foreign key: the refresh's swap drops the table, which would lock
    crm_customer; customers are merged, never deleted). Built by the
    refresh from ``crm_order_month``; a merge folds the merged customer's rows into
    the survivor's in its own transaction (``rollup.fold_merged``), so it never waits
    for the next refresh. What 客户贡献分析 reads for days, whole months, quarters,
    years and all time."""

    __tablename__ = "crm_order_customer"
    # (period, amount) for the walks in amount order; customer_id in it so that a
    # period's reads never visit the table (migration 0014)
    __table_args__ = (Index("ix_order_customer_period_amount_customer",
                            "period", "amount", "customer_id"),)

    customer_id = Column(Integer, primary_key=True, autoincrement=False)
    period = Column(Integer, primary_key=True, autoincrement=False)
    amount = Column(BigInteger, nullable=False)          # cents
    orders = Column(Integer, nullable=False)


class RollupState(Model):
    """When the rollup in place was built (one row, id 1)."""

    __tablename__ = "crm_rollup_state"

    id = Column(Integer, primary_key=True, autoincrement=False)
    refreshed_at = Column(DateTime, nullable=False)   # the snapshot: sales data as of then
    seconds = Column(Float)                            # how long the refresh took
    months = Column(Integer)                           # rows in crm_order_month
    customers = Column(Integer)                        # rows in crm_order_last

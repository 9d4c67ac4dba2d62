"""订单汇总 (order rollup): the sales system's counted orders summed per customer
number and month, and the last order date per customer number, kept in the CRM
database for the reports and the churn check (app/workflows/rollup.py).

The rows are keyed by the number the order carries in the sales system; a merged
customer's old numbers (``CustomerNumberAlias``) are mapped to the survivor when
the rollup is read, so a merge needs no refresh. ``crm_rollup_state`` is one row
(id 1): when the rollup now in place was built.

A refresh builds ``*_next`` tables next to these and swaps them in one
transaction (app/workflows/rollup.py); the ``*_next`` tables are not models.
"""
from sqlalchemy import Column, Date, DateTime, Float, Integer, Numeric, String

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


class OrderLast(Model):
    """The date of the last counted order of one customer number."""

    __tablename__ = "crm_order_last"

    number = Column(String(32), primary_key=True)
    last_date = Column(Date, nullable=False)


class RollupState(Model):
    """When the rollup in place was built (one row, id 1)."""

    __tablename__ = "crm_rollup_state"

    id = Column(Integer, primary_key=True, autoincrement=False)
    refreshed_at = Column(DateTime, nullable=False)   # the snapshot: sales data as of then
    seconds = Column(Float)                            # how long the refresh took
    months = Column(Integer)                           # rows in crm_order_month
    customers = Column(Integer)                        # rows in crm_order_last

"""Reading the sales system (bind ``sales``): orders with status 5/6 only."""
from decimal import Decimal

from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select

from ..models import Order, OrderLine
from ..models.sales import COUNTED_ORDER_STATUSES
from .errors import NotFound


def _fmt(value):
    return f"{Decimal(value or 0):.2f}"


def lines_and_totals(session, order_ids):
    """{order_id: ([{product_id, quantity, unit, price}], "total")} in one query."""
    ids = [i for i in order_ids if i is not None]
    if not ids:
        return {}
    rows = session.execute(
        select(OrderLine.order_id, OrderLine.product_id, OrderLine.quantity,
               OrderLine.unit, OrderLine.price)
        .where(OrderLine.order_id.in_(ids)).order_by(OrderLine.order_id, OrderLine.id)
    ).all()
    out = {i: ([], Decimal(0)) for i in ids}
    for oid, pid, qty, unit, price in rows:
        lines, total = out[oid]
        lines.append({"product_id": pid, "quantity": qty, "unit": unit, "price": _fmt(price)})
        out[oid] = (lines, total + qty * Decimal(price))
    return {k: (v[0], _fmt(v[1])) for k, v in out.items()}


def get_order(session, order_id):
    """An order with status 5/6 (others are not shown by the CRM)."""
    order = session.get(Order, order_id)
    if order is None or order.status not in COUNTED_ORDER_STATUSES:
        raise NotFound(_l("订单不存在，或尚未发货/回款。"))
    return order


def customer_numbers(session, customer_number):
    """A customer's number plus the numbers that became its aliases when other customers
    were merged into it (the sales system keeps the old numbers on its orders)."""
    from ..models import Customer, CustomerNumberAlias
    extra = session.scalars(
        select(CustomerNumberAlias.number)
        .join(Customer, Customer.id == CustomerNumberAlias.customer_id)
        .where(Customer.number == customer_number)).all()
    return [customer_number, *extra]


def orders_of_customer(session, customer_number, page=0, page_size=20):
    """(total count, [(order, total)]) newest first: one query for the page + one count.

    ``customer_number``: a customer's number (its alias numbers are included) or a
    list of numbers (taken as given)."""
    if isinstance(customer_number, (list, tuple, set)):
        numbers = list(customer_number)
    else:
        numbers = customer_numbers(session, customer_number)
    where = (Order.customer_number.in_(numbers) if len(numbers) != 1
             else Order.customer_number == numbers[0],
             Order.status.in_(COUNTED_ORDER_STATUSES))
    count = session.scalar(select(func.count()).select_from(Order).where(*where))
    # total per order as a correlated subquery: only the page's lines are read
    # (a GROUP BY over all order lines cost ~1 s per customer page at 3M lines)
    total = (select(func.coalesce(func.sum(OrderLine.quantity * OrderLine.price), 0))
             .where(OrderLine.order_id == Order.id).correlate(Order).scalar_subquery())
    rows = session.execute(
        select(Order, total)
        .where(*where).order_by(Order.date.desc(), Order.id.desc())
        .limit(page_size).offset(page * page_size)
    ).all()
    return count, [(o, Decimal(t)) for o, t in rows]

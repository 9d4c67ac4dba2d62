"""销售机会看板 (pipeline board) and the forecast: read-only queries over opportunities.

* ``board``: one column per opportunity status with its count and the newest cards
  (customer, 概要, 成功机率, assignee, next plan date), limited to what the actor may
  read (``opportunities.readable_clause``, the rule of the opportunity list).
* ``forecast``: Σ 预计金额 × 成功机率 of the opportunities in progress (``assigned``,
  开发中) that have a 预计金额, by month of 预计成交日期 and by 客户经理 — one SQL
  ``GROUP BY`` (month × assignee); the two views and the total are added up from it.

The steps (指派, 开发成功, 终止开发) are not here: the board calls the opportunity
workflow's own functions (through the opportunity REST resource).
"""
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import BigInteger, cast, extract, func, or_, select

from ..models import Opportunity, PlanItem
from . import opportunities as opp_wf
from .service import user_name

COLUMNS = (opp_wf.UNASSIGNED, opp_wf.ASSIGNED, opp_wf.SUCCEEDED, opp_wf.FAILED)
CARD_LIMIT = 50          # cards per column (newest first); the count is always exact
CENT = Decimal("0.01")

User = opp_wf.User


@dataclass(frozen=True)
class Card:
    id: int
    number: str
    customer_name: str
    summary: str
    success_rate: int
    status: str
    assignee_id: int | None
    assignee: str
    next_plan_on: date | None
    expected_amount: Decimal | None
    expected_close_on: date | None


def _next_plan_on():
    """The earliest date of a plan item without 执行效果 (correlated subquery)."""
    return (select(func.min(PlanItem.date))
            .where(PlanItem.opportunity_id == Opportunity.id,
                   or_(PlanItem.result.is_(None), PlanItem.result == ""))
            .correlate(Opportunity).scalar_subquery())


def counts(session, actor):
    """{status: number of readable opportunities} for every status (0 included)."""
    rows = session.execute(select(Opportunity.status, func.count())
                           .where(opp_wf.readable_clause(actor))
                           .group_by(Opportunity.status)).all()
    out = dict.fromkeys(COLUMNS, 0)
    out.update({status: n for status, n in rows if status in out})
    return out


def _cards(session, actor, *where, limit=None):
    stmt = (select(Opportunity.id, Opportunity.number, Opportunity.customer_name,
                   Opportunity.summary, Opportunity.success_rate, Opportunity.status,
                   Opportunity.assignee_id, User, _next_plan_on().label("next_plan_on"),
                   Opportunity.expected_amount, Opportunity.expected_close_on)
            .outerjoin(User, User.id == Opportunity.assignee_id)
            .where(opp_wf.readable_clause(actor), *where)
            .order_by(Opportunity.id.desc()))
    rows = session.execute(stmt.limit(limit) if limit else stmt).all()
    return [Card(r.id, r.number, r.customer_name, r.summary, r.success_rate, r.status,
                 r.assignee_id, user_name(r.User), r.next_plan_on, r.expected_amount,
                 r.expected_close_on) for r in rows]


def cards(session, actor, status, limit=CARD_LIMIT):
    """The newest ``limit`` readable opportunities of ``status`` as Cards."""
    return _cards(session, actor, Opportunity.status == status, limit=limit)


def card(session, actor, opp_id):
    """One readable opportunity as a Card, or None."""
    found = _cards(session, actor, Opportunity.id == opp_id)
    return found[0] if found else None


def board(session, actor, limit=CARD_LIMIT):
    """[(status, count, [Card])] in the order of the workflow."""
    n = counts(session, actor)
    return [(status, n[status], cards(session, actor, status, limit)) for status in COLUMNS]


# ---- forecast ----------------------------------------------------------------------------

def _cents(session):
    """预计金额 in whole cents (exact integer arithmetic on SQLite, numeric on PostgreSQL)."""
    if session.get_bind(mapper=Opportunity.__mapper__).dialect.name == "sqlite":
        # SQLite keeps NUMERIC with decimals as REAL: round to integer cents first
        return cast(func.round(Opportunity.expected_amount * 100), BigInteger)
    return Opportunity.expected_amount * 100


def _money(cents_times_rate=None, cents=None):
    if cents_times_rate is not None:
        value = Decimal(cents_times_rate) / 10000          # cents × % → 元
    else:
        value = Decimal(cents or 0) / 100
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def forecast(session, actor):
    """The forecast of the opportunities in progress (开发中) with a 预计金额::

        {"total": {"weighted", "amount", "count"},
         "by_month": [{"month": "2027-03" | None, "weighted", "amount", "count"}],
         "by_manager": [{"assignee_id", "name", "weighted", "amount", "count"}],
         "without_amount": n}

    ``weighted`` = Σ 预计金额 × 成功机率 / 100 (元, Decimal to the cent, rounded half
    up once per figure); ``month`` None = no 预计成交日期. Months ascending (None
    last), 客户经理 by weighted amount, largest first."""
    cents = _cents(session)
    year = extract("year", Opportunity.expected_close_on)
    month = extract("month", Opportunity.expected_close_on)
    in_progress = (opp_wf.readable_clause(actor), Opportunity.status == opp_wf.ASSIGNED)
    grid = session.execute(
        select(year.label("y"), month.label("m"), Opportunity.assignee_id,
               func.sum(cents * Opportunity.success_rate).label("weighted"),
               func.sum(cents).label("amount"), func.count().label("n"))
        .where(*in_progress, Opportunity.expected_amount.is_not(None))
        .group_by(year, month, Opportunity.assignee_id)).all()
    without = session.scalar(select(func.count()).select_from(Opportunity)
                             .where(*in_progress, Opportunity.expected_amount.is_(None)))

    def add(acc, key, row):
        w, a, n = acc.get(key, (0, 0, 0))
        acc[key] = (w + Decimal(row.weighted or 0), a + Decimal(row.amount or 0), n + row.n)

    months, managers, total = {}, {}, {}
    for row in grid:
        key = f"{int(row.y):04d}-{int(row.m):02d}" if row.y is not None else None
        add(months, key, row)
        add(managers, row.assignee_id, row)
        add(total, "all", row)

    def figures(w, a, n):
        return {"weighted": _money(w), "amount": _money(cents=a), "count": n}

    names = {}
    if managers:
        names = {u.id: user_name(u) for u in session.scalars(
            select(User).where(User.id.in_([k for k in managers if k is not None])))}
    by_month = [dict(month=k, **figures(*months[k]))
                for k in sorted(months, key=lambda k: (k is None, k or ""))]
    by_manager = sorted(
        (dict(assignee_id=k, name=names.get(k, ""), **figures(*v)) for k, v in managers.items()),
        key=lambda r: (-r["weighted"], r["name"], r["assignee_id"] or 0))
    return {"total": figures(*total.get("all", (0, 0, 0))), "by_month": by_month,
            "by_manager": by_manager, "without_amount": without}

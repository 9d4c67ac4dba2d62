"""工作台: what each role must do today, as counts in SQL and the rows behind each count.

Every tile is a ``Metric``: a key, a label, the roles it is shown to, and one query
(``rows``) that both the count on the 工作台 and the list behind the tile use — the
count can never disagree with the list it links to. ``today`` is the business day in
the configured zone (the caller passes it); plan item dates are business dates.
"""
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Callable

from flask_babel import lazy_gettext as _l
from sqlalchemy import and_, case, exists, func, or_, select

from ..models import (
    ChurnWarning, Customer, JobRun, MailMessage, Notification, Opportunity, PlanItem,
    ServiceTicket,
)
from . import sla
from .actors import ADMIN, EXECUTIVE, MANAGER, SUPERVISOR
from .errors import Forbidden, NotFound

OPEN_CHURN = ("warning", "delaying")


def _users():
    from ..models.base import Model

    return Model.metadata.tables["ab_user"]


def _no_result():
    return or_(PlanItem.result.is_(None), PlanItem.result == "")


# ---- the queries behind the tiles -----------------------------------------------------
def _plan_items(actor, today, when):
    q = (select(PlanItem).join(Opportunity, Opportunity.id == PlanItem.opportunity_id)
         .where(Opportunity.assignee_id == actor.id, Opportunity.status == "assigned", _no_result()))
    if when == "today":
        q = q.where(PlanItem.date == today)
    elif when == "overdue":
        q = q.where(PlanItem.date < today)
    else:  # the next 7 days after today
        q = q.where(PlanItem.date > today, PlanItem.date <= today + timedelta(days=7))
    return q.order_by(PlanItem.date, PlanItem.id)


def _my_tickets(actor, today):
    return (select(ServiceTicket).where(ServiceTicket.assignee_id == actor.id,
                                        ServiceTicket.status == "assigned")
            .order_by(ServiceTicket.assigned_on, ServiceTicket.id))


def _my_churn(actor, today):
    return (select(ChurnWarning).join(Customer, Customer.id == ChurnWarning.customer_id)
            .where(Customer.manager_id == actor.id, ChurnWarning.status.in_(OPEN_CHURN))
            .order_by(ChurnWarning.warned_on.desc(), ChurnWarning.id.desc()))


def _opps_without_plan(actor, today):
    return (select(Opportunity).where(
        Opportunity.assignee_id == actor.id, Opportunity.status == "assigned",
        ~exists().where(PlanItem.opportunity_id == Opportunity.id))
        .order_by(Opportunity.assigned_on, Opportunity.id))


def _opps_unassigned(actor, today):
    return (select(Opportunity).where(Opportunity.status == "unassigned")
            .order_by(Opportunity.created_on, Opportunity.id))


def _tickets_unassigned(actor, today):
    return (select(ServiceTicket).where(ServiceTicket.status == "created")
            .order_by(ServiceTicket.created_on, ServiceTicket.id))


def _tickets_returned(actor, today):
    return (select(ServiceTicket).where(ServiceTicket.status == "assigned",
                                        ServiceTicket.satisfaction.is_not(None),
                                        ServiceTicket.satisfaction < 3)
            .order_by(ServiceTicket.assigned_on, ServiceTicket.id))


def _tickets_orphaned(actor, today):
    users = _users()
    return (select(ServiceTicket).join(users, users.c.id == ServiceTicket.assignee_id)
            .where(ServiceTicket.status == "assigned", users.c.active.is_not(True))
            .order_by(ServiceTicket.assigned_on, ServiceTicket.id))


@dataclass(frozen=True)
class Metric:
    key: str
    label: object
    roles: frozenset
    entity: str            # plan_item | ticket | churn | opportunity
    query: Callable        # (actor, today) -> Select of the entity
    group: object = ""
    warn: bool = False     # shown red when not 0 (overdue, stuck)


MGR = frozenset({MANAGER})
SUP = frozenset({SUPERVISOR, ADMIN})
METRICS = [
    Metric("plan_today", _l("今天到期的计划项"), MGR, "plan_item",
           lambda a, t: _plan_items(a, t, "today"), _l("我的开发计划")),
    Metric("plan_overdue", _l("已逾期的计划项"), MGR, "plan_item",
           lambda a, t: _plan_items(a, t, "overdue"), _l("我的开发计划"), warn=True),
    Metric("plan_week", _l("未来 7 天的计划项"), MGR, "plan_item",
           lambda a, t: _plan_items(a, t, "week"), _l("我的开发计划")),
    Metric("opps_without_plan", _l("开发中但还没有计划的机会"), MGR, "opportunity",
           _opps_without_plan, _l("我的开发计划"), warn=True),
    Metric("tickets_mine", _l("分配给我、待处理的服务"), MGR | SUP, "ticket", _my_tickets, _l("服务")),
    Metric("churn_mine", _l("我的客户的流失预警"), MGR, "churn", _my_churn, _l("客户")),
    Metric("opps_unassigned", _l("待指派的销售机会"), SUP, "opportunity", _opps_unassigned,
           _l("待指派")),
    Metric("tickets_unassigned", _l("待分配的服务（新创建）"), SUP, "ticket", _tickets_unassigned,
           _l("待指派")),
    Metric("tickets_returned", _l("被退回的服务（满意度低于 3）"), SUP, "ticket", _tickets_returned,
           _l("待指派"), warn=True),
    Metric("tickets_orphaned", _l("处理人已停用的服务（需重新分配）"), SUP, "ticket", _tickets_orphaned,
           _l("待指派"), warn=True),
]
BY_KEY = {m.key: m for m in METRICS}


def metrics_for(actor):
    return [m for m in METRICS if actor.roles & m.roles]


def require_metric(actor, key):
    m = BY_KEY.get(key)
    if m is None:
        raise NotFound(_l("没有这个工作台项目：%(key)s。", key=str(key)[:40]))
    if not actor.roles & m.roles:
        raise Forbidden(_l("这个工作台项目不属于您的角色。"))
    return m


def counts(session, actor, today):
    """{key: count} of the actor's tiles — one SELECT with a scalar subquery per tile."""
    ms = metrics_for(actor)
    if not ms:
        return {}
    cols = [select(func.count()).select_from(m.query(actor, today).order_by(None).subquery())
            .scalar_subquery().label(m.key) for m in ms]
    row = session.execute(select(*cols)).one()
    return {m.key: int(getattr(row, m.key) or 0) for m in ms}


def rows(session, actor, key, today, page=0, page_size=50):
    m = require_metric(actor, key)
    q = m.query(actor, today)
    total = session.scalar(select(func.count()).select_from(q.order_by(None).subquery()))
    items = session.scalars(q.offset(page * page_size).limit(page_size)).unique().all()
    return m, items, total


def oldest_ticket_days(session, actor, now):
    first = session.scalar(select(func.min(ServiceTicket.assigned_on)).where(
        ServiceTicket.assignee_id == actor.id, ServiceTicket.status == "assigned"))
    return (now - first).days if first else None


# ---- 销售主管: load per 客户经理 -------------------------------------------------------
def manager_load(session, manager_role_id):
    users = _users()
    from ..models.base import Model

    link = Model.metadata.tables["ab_user_role"]
    opp = (select(Opportunity.assignee_id.label("uid"), func.count().label("n"))
           .where(Opportunity.status == "assigned").group_by(Opportunity.assignee_id).subquery())
    tic = (select(ServiceTicket.assignee_id.label("uid"), func.count().label("n"))
           .where(ServiceTicket.status == "assigned").group_by(ServiceTicket.assignee_id).subquery())
    q = (select(users.c.id, users.c.first_name, users.c.last_name, users.c.username,
                func.coalesce(opp.c.n, 0), func.coalesce(tic.c.n, 0))
         .join(link, link.c.user_id == users.c.id)
         .outerjoin(opp, opp.c.uid == users.c.id).outerjoin(tic, tic.c.uid == users.c.id)
         .where(link.c.role_id == manager_role_id, users.c.active.is_(True))
         .order_by(users.c.id))
    return [{"user_id": uid, "name": f"{fn or ''}{ln or ''}" or un, "open_opportunities": int(o),
             "open_tickets": int(t)} for uid, fn, ln, un, o, t in session.execute(q)]


# ---- 高管 / 销售主管: KPI tiles --------------------------------------------------------
def _month_key(col, dialect):
    if dialect == "postgresql":
        return func.to_char(col, "YYYY-MM")
    return func.strftime("%Y-%m", col)


def _dialect(session, mapper=None):
    return session.get_bind(mapper=mapper).dialect.name


def new_customers_by_month(session, today, months=12):
    start = date(today.year, today.month, 1)
    for _ in range(months - 1):
        start = (start - timedelta(days=1)).replace(day=1)
    key = _month_key(Customer.created_on, _dialect(session, Customer.__mapper__))
    data = dict(session.execute(select(key, func.count()).where(
        Customer.created_on >= datetime.combine(start, datetime.min.time()))
        .group_by(key)).all())
    out, d = [], start
    while d <= today:
        k = d.strftime("%Y-%m")
        out.append({"month": k, "count": int(data.get(k, 0))})
        d = (d.replace(day=28) + timedelta(days=4)).replace(day=1)
    return out


def churn_by_quarter(session, today, quarters=8):
    rows_ = session.execute(select(ChurnWarning.confirmed_on).where(
        ChurnWarning.status == "lost", ChurnWarning.confirmed_on.is_not(None),
        ChurnWarning.confirmed_on >= datetime(today.year - quarters // 4 - 1, 1, 1))).scalars()
    counts_ = {}
    for d in rows_:
        k = f"{d.year}Q{(d.month - 1) // 3 + 1}"
        counts_[k] = counts_.get(k, 0) + 1
    out, y, q = [], today.year, (today.month - 1) // 3 + 1
    for _ in range(quarters):
        out.append({"quarter": f"{y}Q{q}", "count": counts_.get(f"{y}Q{q}", 0)})
        q -= 1
        if q == 0:
            y, q = y - 1, 4
    return list(reversed(out))


AGE_BUCKETS = ((1, _l("不到 1 天")), (3, _l("1–3 天")), (7, _l("3–7 天")), (30, _l("7–30 天")),
               (None, _l("30 天以上")))


def open_tickets_by_age(session, now):
    age = [(ServiceTicket.created_on > now - timedelta(days=d), i)
           for i, (d, _) in enumerate(AGE_BUCKETS) if d is not None]
    bucket = case(*age, else_=len(AGE_BUCKETS) - 1)
    data = dict(session.execute(select(bucket, func.count()).where(
        ServiceTicket.status.in_(("created", "assigned", "handled"))).group_by(bucket)).all())
    return [{"bucket": str(label), "count": int(data.get(i, 0))} for i, (_, label) in enumerate(AGE_BUCKETS)]


def satisfaction_avg(session, now, days=365):
    v = session.scalar(select(func.avg(ServiceTicket.satisfaction)).where(
        ServiceTicket.status == "archived", ServiceTicket.satisfaction.is_not(None),
        ServiceTicket.created_on >= now - timedelta(days=days)))
    return round(float(v), 2) if v is not None else None


def orders_by_month(sales_conn, today):
    """Order totals (status 5/6) per month, this year and last year, on the sales bind."""
    from ..models import Order, OrderLine

    start = date(today.year - 1, 1, 1)
    dialect = sales_conn.dialect.name
    key = _month_key(Order.date, dialect)
    q = (select(key, func.sum(OrderLine.quantity * OrderLine.price))
         .join(OrderLine, OrderLine.order_id == Order.id)
         .where(Order.status.in_((5, 6)), Order.date >= start)
         .group_by(key))
    data = {k: float(v or 0) for k, v in sales_conn.execute(q)}
    months = [f"{m:02d}" for m in range(1, 13)]
    return {"months": months,
            "this_year": [round(data.get(f"{today.year}-{m}", 0.0), 2) for m in months],
            "last_year": [round(data.get(f"{today.year - 1}-{m}", 0.0), 2) for m in months]}


# ---- 系统管理员 ---------------------------------------------------------------------------
def last_job(session, job):
    return session.scalars(select(JobRun).where(JobRun.job == job)
                           .order_by(JobRun.started_on.desc(), JobRun.id.desc()).limit(1)).first()


def sla_gaps(session, actor):
    """For 系统管理员 (who keeps the data dictionary): the 服务类型 × 优先级 pairs without
    a 服务时限 item, i.e. the tickets that get the documented default deadline —
    ``{"count", "pairs": [{service_type, priority, item, response_hours,
    resolution_hours}]}``; None for the other roles."""
    if not actor.is_admin:
        return None
    pairs = sla.unconfigured(session)
    return {"count": len(pairs), "pairs": pairs}


def failed_mail_counts(session):
    return {
        "mail": session.scalar(select(func.count(MailMessage.id)).where(MailMessage.status == "failed")) or 0,
        "notification": session.scalar(select(func.count(Notification.id))
                                       .where(Notification.mail_status == "failed")) or 0,
    }


def locked_accounts(session, attempts, minutes, now):
    if not attempts:
        return []
    users = _users()
    q = (select(users.c.id, users.c.username, users.c.changed_on).where(
        users.c.fail_login_count >= attempts,
        users.c.changed_on > now - timedelta(minutes=minutes)).order_by(users.c.username))
    return [{"id": i, "username": u, "since": c} for i, u, c in session.execute(q)]


def record_job(session, job, started_on, ok, summary=None, finished_on=None):
    """A finished job run for the admin's 工作台 (the caller commits)."""
    run = JobRun(job=job, started_on=started_on, finished_on=finished_on or datetime.now(),
                 ok=ok, summary=(summary or "")[:255] or None)
    session.add(run)
    return run

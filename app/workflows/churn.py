"""客户流失管理 (DESIGN.md §5.4): the weekly detection job, 暂缓措施 and 确认流失.

Detection (``check_churn``) is set-based and reads the order rollup
(app/workflows/rollup.py), never aggregating the sales orders itself:

1. CRM side, one ``INSERT … SELECT``: each customer's last counted order (status
   5/6) dated on or before the reference date, from ``crm_order_last`` (and, for a
   past reference date, ``crm_order_month`` plus that month's days read from the
   sales bind), merged customers' aliases folded into the survivor, into a temporary
   table; the caller refreshes the rollup first (``scheduler.run_churn_check``);
2. one ``UPDATE`` per open status marks recovered warnings and one
   ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` opens the new ones. The
   partial unique index ``uq_churn_open_customer`` guarantees at most one open
   (warning/delaying) warning per customer even when two runs race;
3. WorkflowEvents for the rows that actually changed (``RETURNING``), in bulk.

"Older than 6 months" uses calendar months: ``cutoff = as_of - 6 months`` (the
same day of the month, clamped to the month's last day, e.g. 2026-08-31 →
2026-02-28). A customer is churning when its last counted order is dated
*before* the cutoff (an order exactly on the cutoff day is not old enough), or
it never ordered and was created before the cutoff day. An open warning is
recovered when the customer has a counted order dated *after the last order the
warning was based on* and on/after the cutoff (it really ordered again and is no
longer at risk). A check as of an earlier day only sees orders up to that day, so
it can never recover a warning opened later: history runs cannot destroy work.

Measures are never deleted. A warning recovered by mistake (an old check as of
a day before the warning, before this rule) whose customer still has no newer
order is *reopened* by the next check instead of a fresh warning being opened:
back to 暂缓流失 when it has measures, else 预警 (event ``reopen``).

``dry_run=True`` (the CLI's preview for a past ``--as-of``) computes the same
result with SELECTs only and writes nothing but the session's temporary tables.
"""
import calendar
from datetime import date, datetime, time, timedelta

from flask_babel import lazy_gettext as _l
from sqlalchemy import (
    Column, Date, DateTime, Integer, MetaData, String, Table, Text, and_, exists, func, insert, literal, or_, select,
    union_all, update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.orm import contains_eager, lazyload

from ..models import (
    ChurnMeasure, ChurnWarning, Customer, CustomerNumberAlias, Order, WorkflowEvent,
)
from ..models.customer import CHURN_OPEN, CHURN_STATUS_LABELS
from ..models.sales import COUNTED_ORDER_STATUSES
from . import events
from .errors import Conflict, Forbidden, NotFound, ValidationError
from .rights import require_customer_manager

ENTITY = "churn"
DEFAULT_MONTHS = 6
CHUNK = 10000
MAX_TEXT = 2000

STATUS_LABELS = CHURN_STATUS_LABELS            # the model's vocabulary (models/customer.py)

_tmp_meta = MetaData()
LAST_ORDERS = Table(
    "tmp_churn_last_order", _tmp_meta,
    Column("customer_number", String(32), primary_key=True),
    Column("last_date", Date, nullable=False),
    prefixes=["TEMPORARY"], postgresql_on_commit="DROP",
)
# the customers to warn, computed before inserting: an anti-join against a table
# that grows during the same INSERT is quadratic when the planner thinks it is empty
CANDIDATES = Table(
    "tmp_churn_candidate", _tmp_meta,
    Column("customer_id", Integer, primary_key=True),
    Column("manager_id", Integer),
    Column("last_date", Date),
    prefixes=["TEMPORARY"], postgresql_on_commit="DROP",
)
# a past check's own month, read from the sales bind (see _load_last_orders)
TAIL = Table(
    "tmp_churn_tail", _tmp_meta,
    Column("number", String(32), nullable=False),
    Column("last_date", Date, nullable=False),
    prefixes=["TEMPORARY"], postgresql_on_commit="DROP",
)
TEMP_TABLES = (LAST_ORDERS, CANDIDATES)


# ---- dates ------------------------------------------------------------------------

def months_before(day, months):
    """``day`` minus ``months`` calendar months (day clamped to the month's end)."""
    total = day.year * 12 + (day.month - 1) - months
    year, month = divmod(total, 12)
    month += 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def cutoff_for(as_of, months=DEFAULT_MONTHS):
    return months_before(as_of, months)


def status_label(status):
    return STATUS_LABELS.get(status, status)


# ---- detection ----------------------------------------------------------------------

def _dialect(session):
    return session.get_bind(mapper=ChurnWarning.__mapper__).dialect.name


def last_order_dates(sales, as_of):
    """Yield (customer_number, last date) from the sales side, streamed.

    ``sales`` is a Session bound to the sales database or the sales Engine."""
    # ``status + 0``: most orders are 5/6, so an index on status only costs random
    # reads (SQLite without statistics would take it: 5s instead of 1s on 1M orders)
    stmt = (select(Order.customer_number, func.max(Order.date))
            .where((Order.status + 0).in_(COUNTED_ORDER_STATUSES), Order.date <= as_of)
            .group_by(Order.customer_number))
    if isinstance(sales, Engine):
        with sales.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=CHUNK).execute(stmt)
            for row in result:
                yield row[0], row[1]
    else:
        result = sales.execute(stmt.execution_options(stream_results=True, yield_per=CHUNK))
        for row in result:
            yield row[0], row[1]


def _load_last_orders(session, as_of, progress):
    """Fill the temporary table with each CRM customer number's last counted order
    dated on or before ``as_of``, from the order rollup (app/workflows/rollup.py), in
    SQL on the CRM database: no row passes through Python. Orders under a merged-away
    customer's number (an alias) count for the survivor. Only when the rollup holds
    orders dated after ``as_of`` (a check as of a past day) are the days of ``as_of``'s
    own month read from the sales bind (one month of orders)."""
    from . import rollup

    conn = session.connection()
    _drop_temp_tables(session)
    for table in TEMP_TABLES:
        table.create(conn)
    L = rollup.OrderLast.__table__
    src = rollup.last_order_select(as_of).subquery("r")
    later = session.scalar(select(literal(1)).where(L.c.last_date > as_of).limit(1))
    if later:
        tail = rollup.month_tail_last_orders(session, as_of)
        if tail:
            TAIL.create(conn)
            for i in range(0, len(tail), CHUNK):
                conn.execute(insert(TAIL), [{"number": n, "last_date": d}
                                            for n, d in tail[i:i + CHUNK]])
            src = union_all(select(src.c.number, src.c.last_date),
                            select(TAIL.c.number, TAIL.c.last_date)).subquery("r")
    A, C = CustomerNumberAlias.__table__, Customer.__table__.alias("survivor")
    owner = func.coalesce(C.c.number, src.c.number)
    conn.execute(LAST_ORDERS.insert().from_select(
        ["customer_number", "last_date"],
        select(owner, func.max(src.c.last_date))
        .select_from(src.outerjoin(A, A.c.number == src.c.number)
                     .outerjoin(C, C.c.id == A.c.customer_id))
        .group_by(owner)))
    total = session.scalar(select(func.count()).select_from(LAST_ORDERS))
    progress("last_orders", total)
    if _dialect(session) == "postgresql":
        conn.exec_driver_sql("ANALYZE tmp_churn_last_order")
    return total


def _alias_numbers(session):
    """{alias number: surviving customer's number} (see CustomerNumberAlias)."""
    A, C = CustomerNumberAlias.__table__, Customer.__table__
    return dict(session.execute(select(A.c.number, C.c.number)
                                .join(C, C.c.id == A.c.customer_id)).all())


def _drop_temp_tables(session):
    schema = "pg_temp" if _dialect(session) == "postgresql" else "temp"
    for table in TEMP_TABLES + (TAIL,):
        session.connection().exec_driver_sql(f"DROP TABLE IF EXISTS {schema}.{table.name}")


def _bulk_events(session, rows, action, to_status, actor_id, now, note=None):
    """rows = [(warning_id, from_status)]: one WorkflowEvent per warning, written by
    ``INSERT … SELECT`` from the warnings themselves (ids in chunks of ``CHUNK``): no
    row passes through Python (a check at 100k customers opens tens of thousands)."""
    W, E = ChurnWarning.__table__, WorkflowEvent.__table__
    by_from = {}
    for wid, frm in rows:
        by_from.setdefault(frm, []).append(wid)
    cols = ["entity", "entity_id", "action", "from_status", "to_status", "note", "created_on",
            "changed_on", "created_by_fk", "changed_by_fk"]
    for frm, ids in by_from.items():
        ids.sort()
        for i in range(0, len(ids), CHUNK):
            chunk = ids[i:i + CHUNK]
            session.execute(E.insert().from_select(cols, select(
                literal(ENTITY, String), W.c.id, literal(action, String),
                literal(frm, String), literal(to_status, String), literal(note, Text),
                literal(now, DateTime), literal(now, DateTime), literal(actor_id, Integer),
                literal(actor_id, Integer)).where(W.c.id.in_(chunk)).order_by(W.c.id)))


def _notify_managers(session, warning_ids, now):
    """One notice per 客户经理 per run (not one per warning)."""
    from . import notifications

    W = ChurnWarning.__table__
    per_manager = {}
    for i in range(0, len(warning_ids), CHUNK):
        for mid, n in session.execute(
                select(W.c.manager_id, func.count()).where(W.c.id.in_(warning_ids[i:i + CHUNK]))
                .group_by(W.c.manager_id)):
            if mid:
                per_manager[mid] = per_manager.get(mid, 0) + n
    for mid, n in per_manager.items():
        notifications.notify(session, mid, "churn_warnings",
                             _l("流失检查：您有 %(n)d 个客户出现流失预警", n=n),
                             link="/churn/list/", now=now)


def check_churn(session, sales, as_of=None, actor_id=None, progress=None, now=None,
                months=DEFAULT_MONTHS, customer_ids=None, dry_run=False):
    """Run the churn check as of ``as_of`` (default today) and commit nothing.

    ``session``: CRM session; ``sales``: a session or engine of the sales bind.
    ``customer_ids`` restricts the scan (tests share one database). The caller
    commits. Returns {"opened": [(warning_id, customer_id)], "recovered": [...],
    "reopened": [...], "scanned": customers with a counted order, "cutoff": date,
    "as_of": date, "dry_run": bool}. With ``dry_run`` nothing is written (only
    temporary tables) and opened warnings have no id yet: ``(None, customer_id)``.
    """
    progress = progress or (lambda stage, n: None)
    as_of = as_of or date.today()
    now = now or (datetime.now().replace(microsecond=0) if as_of == date.today()
                  else datetime.combine(as_of, time()))
    cutoff = cutoff_for(as_of, months)
    cutoff_dt = datetime.combine(cutoff, time())
    if actor_id is None:
        raise ValueError("actor_id is required (AuditMixin)")

    scanned = _load_last_orders(session, as_of, progress)
    W, C, T = ChurnWarning.__table__, Customer.__table__, LAST_ORDERS

    def scope(q):
        return q.where(C.c.id.in_(list(customer_ids))) if customer_ids is not None else q

    # 1. recovered: an open warning whose customer ordered again — an order newer than
    #    the one the warning was based on, and recent enough (on/after the cutoff)
    recovered = []
    ordered_again = scope(
        select(literal(1)).select_from(C.join(T, T.c.customer_number == C.c.number))
        .where(C.c.id == W.c.customer_id, T.c.last_date >= cutoff,
               or_(W.c.last_order_date.is_(None), T.c.last_date > W.c.last_order_date))
    ).exists()
    for frm in CHURN_OPEN:
        if dry_run:
            rows = session.execute(select(W.c.id, W.c.customer_id)
                                   .where(W.c.status == frm, ordered_again)
                                   .order_by(W.c.id)).all()
        else:
            rows = session.execute(
                update(W).where(W.c.status == frm, ordered_again)
                .values(status="recovered", recovered_on=now, changed_on=now,
                        changed_by_fk=actor_id)
                .returning(W.c.id, W.c.customer_id)
            ).all()
            _bulk_events(session, [(r[0], frm) for r in rows], "recover", "recovered",
                         actor_id, now)
        recovered.extend((r[0], r[1]) for r in rows)
    progress("recovered", len(recovered))

    # 2. customers at risk: normal, no open warning, last order too old (or never)
    open_exists = exists().where(W.c.customer_id == C.c.id, W.c.status.in_(CHURN_OPEN))
    session.execute(CANDIDATES.insert().from_select(
        ["customer_id", "manager_id", "last_date"],
        scope(select(C.c.id, C.c.manager_id, T.c.last_date)
              .select_from(C.outerjoin(T, T.c.customer_number == C.c.number))
              .where(C.c.status == "normal", ~open_exists,
                     or_(T.c.last_date < cutoff,
                         and_(T.c.last_date.is_(None), C.c.created_on < cutoff_dt))))))
    K = CANDIDATES

    # 3. reopen, not re-create: the customer's latest warning was recovered, yet the
    #    customer has no order newer than that warning's (a mistaken recovery) and this
    #    check is not older than that recovery → the same warning again, measures kept
    W2 = W.alias("w2")
    latest = ~exists().where(W2.c.customer_id == W.c.customer_id, W2.c.id > W.c.id)
    no_new_order = or_(K.c.last_date.is_(None),
                       and_(W.c.last_order_date.is_not(None), K.c.last_date <= W.c.last_order_date))
    has_measure = exists().where(ChurnMeasure.__table__.c.warning_id == W.c.id)
    to_reopen = session.execute(
        select(W.c.id, W.c.customer_id, has_measure.label("m"))
        .select_from(W.join(K, K.c.customer_id == W.c.customer_id))
        .where(W.c.status == "recovered", latest, no_new_order,
               W.c.recovered_on < datetime.combine(as_of, time()) + timedelta(days=1))
        .order_by(W.c.id)).all()
    reopened = []
    for wid, cid, with_measures in to_reopen:
        to_status = "delaying" if with_measures else "warning"
        if not dry_run:
            done = session.execute(
                update(W).where(W.c.id == wid, W.c.status == "recovered")
                .values(status=to_status, recovered_on=None, changed_on=now,
                        changed_by_fk=actor_id)).rowcount == 1
            if not done:
                continue
            _bulk_events(session, [(wid, "recovered")], "reopen", to_status, actor_id, now,
                         note="客户没有新的订单，预警重新打开（保留暂缓措施）")
        reopened.append((wid, cid))
    if reopened:
        session.execute(K.delete().where(K.c.customer_id.in_([c for _, c in reopened])))
    progress("reopened", len(reopened))

    # 4. new warnings for the remaining candidates
    if dry_run:
        opened = [(None, r[0]) for r in session.execute(
            select(K.c.customer_id).order_by(K.c.customer_id)).all()]
    else:
        candidates = (
            select(K.c.customer_id, K.c.manager_id, K.c.last_date, literal(now),
                   literal("warning"), literal(now), literal(now), literal(actor_id),
                   literal(actor_id))
            .where(literal(True))   # SQLite: a WHERE keeps "ON CONFLICT" from parsing as a join
            .order_by(K.c.customer_id)
        )
        ins = (pg_insert if _dialect(session) == "postgresql" else sqlite_insert)(W)
        stmt = (ins.from_select(["customer_id", "manager_id", "last_order_date", "warned_on",
                                 "status", "created_on", "changed_on", "created_by_fk",
                                 "changed_by_fk"], candidates)
                .on_conflict_do_nothing()
                .returning(W.c.id, W.c.customer_id))
        opened = [(r[0], r[1]) for r in session.execute(stmt).all()]
        _bulk_events(session, [(wid, None) for wid, _ in opened], "open", "warning", actor_id,
                     now, note=f"截止日期 {cutoff.isoformat()}")
    progress("opened", len(opened))
    if not dry_run:
        _notify_managers(session, [w for w, _ in opened + reopened if w], now)
    _drop_temp_tables(session)
    return {"opened": opened, "recovered": recovered, "reopened": reopened, "scanned": scanned,
            "cutoff": cutoff, "as_of": as_of, "dry_run": dry_run}


def earlier_warnings(session, warning):
    """The customer's earlier warnings (older ids), newest first, e.g. a recovered one
    whose 暂缓措施 the manager should see when the customer is at risk again."""
    return session.scalars(
        select(ChurnWarning).where(ChurnWarning.customer_id == warning.customer_id,
                                   ChurnWarning.id < warning.id)
        .options(lazyload(ChurnWarning.measures))
        .order_by(ChurnWarning.id.desc())).all()


# ---- reading ---------------------------------------------------------------------------

def visible_filter(actor):
    """SQL condition: which warnings ``actor`` may read (None = all)."""
    if actor.sees_all:
        return None
    return ChurnWarning.customer.has(Customer.manager_id == actor.id)


def can_read(actor, warning):
    return actor.sees_all or warning.customer.manager_id == actor.id


def can_act(actor, warning):
    return actor.is_admin or actor.is_supervisor or warning.customer.manager_id == actor.id


def _load(session, warning_id):
    w = session.get(ChurnWarning, warning_id)
    if w is None:
        raise NotFound(_l("流失预警不存在。"))
    return w


def get_warning(session, actor, warning_id):
    """A warning ``actor`` may read: 404 when missing, 403 for another manager's customer."""
    w = _load(session, warning_id)
    if not can_read(actor, w):
        raise Forbidden(_l("只能查看自己客户的流失预警。"))
    return w


def list_warnings(session, actor, statuses=None, customer_name=None, page=0, page_size=20,
                  **filters):
    """(count, [warning]) newest first; one count + one page query (+ selectin).
    ``filters``: see :func:`_warnings_select`."""
    q = _warnings_select(actor, statuses, customer_name, **filters)
    count = session.scalar(select(func.count()).select_from(q.subquery()))
    rows = session.scalars(
        _warnings_ordered(q).limit(page_size).offset(page * page_size)).unique().all()
    return count, rows


def iter_warnings(session, actor, statuses=None, customer_name=None, chunk=1000, **filters):
    """Every warning :func:`list_warnings` would page through, in the same order,
    fetched ``chunk`` rows per round trip (for exports: memory stays flat)."""
    q = _warnings_ordered(_warnings_select(actor, statuses, customer_name, **filters))
    return session.scalars(q.execution_options(yield_per=chunk))


def _warnings_select(actor, statuses, customer_name, manager_id=None, confirmed_from=None,
                     confirmed_to=None):
    """The warnings ``actor`` may see (客户经理: their own customers'), filtered;
    ``manager_id``: the 客户经理 recorded on the warning, ``confirmed_from`` /
    ``confirmed_to``: dates of 确认流失, both included (the drill-down of 客户流失分析)."""
    q = select(ChurnWarning).join(ChurnWarning.customer)
    cond = visible_filter(actor)
    if cond is not None:
        q = q.where(Customer.manager_id == actor.id)
    if statuses:
        q = q.where(ChurnWarning.status.in_(list(statuses)))
    if customer_name and customer_name.strip():
        q = q.where(Customer.name.contains(customer_name.strip(), autoescape=True))
    if manager_id is not None:
        q = q.where(ChurnWarning.manager_id == manager_id)
    if confirmed_from is not None:
        q = q.where(ChurnWarning.confirmed_on >= datetime.combine(confirmed_from, time.min))
    if confirmed_to is not None:
        q = q.where(ChurnWarning.confirmed_on
                    < datetime.combine(confirmed_to + timedelta(days=1), time.min))
    return q


def _warnings_ordered(q):
    return (q.options(contains_eager(ChurnWarning.customer).lazyload(Customer.contacts),
                      lazyload(ChurnWarning.measures))
            .order_by(ChurnWarning.warned_on.desc(), ChurnWarning.id.desc()))


def warnings_of_customer(session, actor, customer_id):
    """The warnings of one customer that ``actor`` may read (:func:`visible_filter`:
    a 客户经理 only those of his own customers), newest first."""
    stmt = (select(ChurnWarning).where(ChurnWarning.customer_id == customer_id)
            .options(lazyload(ChurnWarning.measures))
            .order_by(ChurnWarning.warned_on.desc(), ChurnWarning.id.desc()))
    cond = visible_filter(actor)
    if cond is not None:
        stmt = stmt.where(cond)
    return session.scalars(stmt).all()


def measures_of(session, warning_ids):
    """{warning_id: [ChurnMeasure]} in insertion order, one query."""
    ids = list(warning_ids)
    out = {i: [] for i in ids}
    if not ids:
        return out
    for m in session.scalars(select(ChurnMeasure).where(ChurnMeasure.warning_id.in_(ids))
                             .order_by(ChurnMeasure.warning_id, ChurnMeasure.id)):
        out[m.warning_id].append(m)
    return out


def user_names(session, ids):
    """{user id: display name} in one query (measure authors, managers)."""
    user = ChurnWarning.__table__.metadata.tables["ab_user"]
    ids = {i for i in ids if i is not None}
    if not ids:
        return {}
    rows = session.execute(select(user.c.id, user.c.first_name, user.c.last_name,
                                  user.c.username).where(user.c.id.in_(ids))).all()
    return {i: f"{fn or ''}{ln or ''}" or un for i, fn, ln, un in rows}


def days_since(last_order_date, today=None):
    if last_order_date is None:
        return None
    return ((today or date.today()) - last_order_date).days


# ---- steps ----------------------------------------------------------------------------------

def _clean_text(value, field, empty_message):
    text = (value or "").strip() if isinstance(value, str) or value is None else None
    if text is None:
        raise ValidationError(_l("输入必须是文字。"), field=field)
    if not text:
        raise ValidationError(empty_message, field=field)
    if len(text) > MAX_TEXT:
        raise ValidationError(_l("内容不能超过 %(n)d 个字。", n=MAX_TEXT), field=field)
    return text


def _require_open(w, action_label):
    if w.status not in CHURN_OPEN:
        raise Conflict(_l("该流失预警当前状态为“%(status)s”，不能%(action)s。",
                          status=status_label(w.status), action=action_label))


def add_measure(session, actor, warning_id, text, now=None):
    """暂缓流失: append a measure (never overwriting); the first one → delaying."""
    w = _load(session, warning_id)
    require_customer_manager(actor, w.customer)
    _require_open(w, _l("添加暂缓措施"))
    text = _clean_text(text, "measure", _l("请填写暂缓措施。"))
    now = now or datetime.now()
    touched = {"changed_on": now, "changed_by_fk": actor.id}
    # compare-and-set: warning → delaying; else it must still be delaying (not lost meanwhile)
    moved = session.execute(
        update(ChurnWarning).where(ChurnWarning.id == w.id, ChurnWarning.status == "warning")
        .values(status="delaying", **touched).execution_options(synchronize_session=False)
    ).rowcount == 1
    if moved:
        events.record_event(session, ENTITY, w.id, "delay", "warning", "delaying",
                            note=text[:200], actor_id=actor.id, when=now)
    else:
        events.compare_and_set(session, ChurnWarning, w.id, ("delaying",), touched,
                               _l("该流失预警已被他人处理，请刷新后重试。"))
    m = ChurnMeasure(warning_id=w.id, text=text, created_on=now, changed_on=now,
                     created_by_fk=actor.id, changed_by_fk=actor.id)
    session.add(m)
    session.flush()
    session.refresh(w)
    return m


def confirm(session, actor, warning_id, reason, now=None):
    """确认流失: needs ≥1 measure and a reason; warning → lost and customer → lost."""
    w = _load(session, warning_id)
    require_customer_manager(actor, w.customer)
    _require_open(w, _l("确认流失"))
    reason = _clean_text(reason, "reason", _l("请填写流失原因。"))
    n = session.scalar(select(func.count()).select_from(ChurnMeasure)
                       .where(ChurnMeasure.warning_id == w.id))
    if not n:
        raise Conflict(_l("确认流失前至少需要一条暂缓措施。"))
    now = now or datetime.now()
    events.compare_and_set(
        session, ChurnWarning, w.id, ("delaying",),
        {"status": "lost", "reason": reason, "confirmed_on": now, "changed_on": now,
         "changed_by_fk": actor.id},
        _l("该流失预警已被他人处理，请刷新后重试。"))
    events.compare_and_set(
        session, Customer, w.customer_id, ("normal",),
        {"status": "lost", "changed_on": now, "changed_by_fk": actor.id},
        _l("该客户已不是正常状态，不能确认流失。"))
    events.record_event(session, ENTITY, w.id, "confirm", "delaying", "lost", note=reason,
                        actor_id=actor.id, when=now)
    events.record_event(session, "customer", w.customer_id, "churn", "normal", "lost",
                        note=reason, actor_id=actor.id, when=now)
    session.flush()
    session.refresh(w)
    return w


def measures_json(measures):
    return [{"text": m.text, "author_id": m.created_by_fk,
             "created_on": m.created_on.isoformat() if m.created_on else None}
            for m in measures]


def to_json(w, measures=None):
    measures = w.measures if measures is None else measures
    return {
        "id": w.id, "customer_id": w.customer_id, "manager_id": w.manager_id,
        "last_order_date": w.last_order_date.isoformat() if w.last_order_date else None,
        "warned_on": w.warned_on.isoformat() if w.warned_on else None,
        "measures": measures_json(measures),
        "reason": w.reason,
        "confirmed_on": w.confirmed_on.isoformat() if w.confirmed_on else None,
        "status": w.status,
    }

"""服务时限 (service-level deadlines) of service tickets (issue 22).

Every ticket gets two deadlines when it is created, from its 服务类型 × 优先级:

* **响应时限** ``response_due``: by then the ticket must be assigned *and* handled
  (``first_response_on`` is set by the first 服务处理);
* **解决时限** ``resolution_due``: by then it must be archived (``resolved_on``). A
  ticket sent back for another round (satisfaction < 3) keeps its history and gets a
  new resolution deadline counted from the feedback (``sla_round`` + 1).

The hours come from the data dictionary, category 服务时限: 条目 "服务类型/优先级"
(e.g. "咨询/紧急"), 值 "响应小时" ("4": resolution = twice that) or
"响应小时/解决小时" ("4/24"); the dictionary refuses 0, negative numbers and text.
A type × priority without an item gets ``DEFAULT_RESPONSE_HOURS`` (an unknown
priority: 普通's) and ``RESOLUTION_FACTOR`` × that for the resolution.

A deadline is *missed* when it passed while still open: exactly at the deadline is
not overdue, one second later is.

:func:`escalate` (the scheduler's job every 10 minutes, ``app/scheduler.py``) marks
each missed deadline once — ``escalated_response_on`` / ``escalated_resolution_on``,
a compare-and-set on the mark being empty — and in the same transaction notifies the
assignee and every active 销售主管 with the dedupe key
``sla:<ticket>:<response|resolution>:<round>:<user>``; one transaction per ticket, so
a run killed halfway leaves each ticket either escalated with its notices or not at
all, and a second run (or a racing one) sends nothing twice.
"""
from datetime import timedelta

from flask_babel import lazy_gettext as _l
from sqlalchemy import and_, or_, select, update

from ..models import DictItem, ServiceTicket
from ..models.dictionary import SERVICE_LIMIT, SERVICE_PRIORITY, SERVICE_TYPE
from .dictionary import items_of, parse_limit

DEFAULT_RESPONSE_HOURS = {"普通": 72, "紧急": 24, "特急": 8}
FALLBACK_PRIORITY = "普通"
RESOLUTION_FACTOR = 2
RESPONSE, RESOLUTION = "response", "resolution"


def hours(session, service_type, priority):
    """(response hours, resolution hours) of a 服务类型 × 优先级 (texts)."""
    value = session.scalar(select(DictItem.value).where(
        DictItem.type == SERVICE_LIMIT, DictItem.item == f"{service_type}/{priority}"))
    if value is not None:
        try:
            response, resolution = parse_limit(value)
            return response, resolution if resolution is not None else \
                response * RESOLUTION_FACTOR
        except Exception:  # a value written around the dictionary's rule: the default
            pass
    return default_hours(priority)


def default_hours(priority):
    """The documented default of a priority without a 服务时限 item."""
    response = DEFAULT_RESPONSE_HOURS.get(priority, DEFAULT_RESPONSE_HOURS[FALLBACK_PRIORITY])
    return response, response * RESOLUTION_FACTOR


def unconfigured(session):
    """The 服务类型 × 优先级 pairs without a (valid) 服务时限 item — they get the
    default — as ``[{"service_type", "priority", "item", "response_hours",
    "resolution_hours"}]`` in dictionary order (three small reads)."""
    configured = set()
    for item, value in session.execute(select(DictItem.item, DictItem.value)
                                       .where(DictItem.type == SERVICE_LIMIT)):
        try:
            parse_limit(value)
        except Exception:  # a value written around the dictionary's rule: not configured
            continue
        configured.add(item)
    out = []
    for t in items_of(session, SERVICE_TYPE):
        for p in items_of(session, SERVICE_PRIORITY):
            key = f"{t.item}/{p.item}"
            if key not in configured:
                response, resolution = default_hours(p.item)
                out.append({"service_type": t.item, "priority": p.item, "item": key,
                            "response_hours": response, "resolution_hours": resolution})
    return out


def deadlines(session, service_type, priority, start):
    """(response_due, resolution_due) of a ticket created at ``start``."""
    response, resolution = hours(session, service_type, priority)
    return _at(start, response), _at(start, resolution)


def _at(start, h):
    return (start + timedelta(hours=h)).replace(microsecond=0)


def resolution_due_from(session, service_type, priority, start):
    return _at(start, hours(session, service_type, priority)[1])


def shifted(session, service_type, old_priority, new_priority, response_due, resolution_due):
    """The deadlines after a priority change: each one's start (due − old hours) plus
    the new hours — the same start, the new priority's time limit."""
    old, new = hours(session, service_type, old_priority), hours(session, service_type,
                                                                 new_priority)
    return (None if response_due is None else _at(response_due, new[0] - old[0]),
            None if resolution_due is None else _at(resolution_due, new[1] - old[1]))


# ---- state ----------------------------------------------------------------------------

def response_overdue(ticket, now):
    return bool(ticket.response_due and ticket.first_response_on is None
                and now > ticket.response_due)


def resolution_overdue(ticket, now):
    return bool(ticket.resolution_due and ticket.resolved_on is None
                and now > ticket.resolution_due)


def is_overdue(ticket, now):
    """A deadline the ticket still has to meet has passed."""
    return response_overdue(ticket, now) or resolution_overdue(ticket, now)


def overdue_condition(now):
    """SQL: the tickets for which :func:`is_overdue` is true at ``now``."""
    t = ServiceTicket
    return or_(and_(t.response_due.isnot(None), t.first_response_on.is_(None),
                    t.response_due < now),
               and_(t.resolution_due.isnot(None), t.resolved_on.is_(None),
                    t.resolution_due < now))


def state(ticket, now):
    """What the pages show: the next open deadline, or None when none is open.
    ``{"kind": response|resolution, "due": datetime, "overdue": bool, "seconds": int}``
    (``seconds``: left, or past when overdue)."""
    for kind, due, done in ((RESPONSE, ticket.response_due, ticket.first_response_on),
                            (RESOLUTION, ticket.resolution_due, ticket.resolved_on)):
        if due is not None and done is None:
            if now > due:
                return {"kind": kind, "due": due, "overdue": True,
                        "seconds": int((now - due).total_seconds())}
    for kind, due, done in ((RESPONSE, ticket.response_due, ticket.first_response_on),
                            (RESOLUTION, ticket.resolution_due, ticket.resolved_on)):
        if due is not None and done is None:
            return {"kind": kind, "due": due, "overdue": False,
                    "seconds": int((due - now).total_seconds())}
    return None


def duration_text(seconds):
    """"2 天 3 小时" / "3 小时 20 分钟" / "5 分钟"."""
    minutes = max(0, int(seconds)) // 60
    d, rest = divmod(minutes, 24 * 60)
    h, m = divmod(rest, 60)
    if d:
        return _l("%(d)d 天 %(h)d 小时", d=d, h=h)
    if h:
        return _l("%(h)d 小时 %(m)d 分钟", h=h, m=m)
    return _l("%(m)d 分钟", m=m)


def state_text(st):
    """The words of :func:`state`: "响应剩余 3 小时 20 分钟" / "解决已超时 2 天 1 小时"."""
    if st is None:
        return ""
    left = duration_text(st["seconds"])
    if st["kind"] == RESPONSE:
        return (_l("响应已超时 %(t)s", t=left) if st["overdue"] else _l("响应剩余 %(t)s", t=left))
    return (_l("解决已超时 %(t)s", t=left) if st["overdue"] else _l("解决剩余 %(t)s", t=left))


# ---- escalation ---------------------------------------------------------------------------

KIND_LABELS = {RESPONSE: _l("响应"), RESOLUTION: _l("解决")}
ESCALATION_BATCH = 500


def _supervisor_ids(session):
    from .actors import SUPERVISOR

    User = ServiceTicket.assignee.property.mapper.class_
    Role = User.roles.property.mapper.class_
    return session.scalars(select(User.id).where(
        User.active.is_(True), User.roles.any(Role.name == SUPERVISOR)).order_by(User.id)).all()


def _due_for_escalation(session, kind, now, limit):
    t = ServiceTicket
    if kind == RESPONSE:
        cond = (t.response_due < now, t.first_response_on.is_(None),
                t.escalated_response_on.is_(None))
    else:
        cond = (t.resolution_due < now, t.resolved_on.is_(None),
                t.escalated_resolution_on.is_(None))
    return session.scalars(select(t.id).where(*cond).order_by(t.id).limit(limit)).all()


def escalate_one(session, ticket_id, kind, now, actor_id, supervisors):
    """Mark one missed deadline and notify; False when it was already marked (or
    met meanwhile). The caller commits."""
    from . import events, notifications

    t = ServiceTicket
    if kind == RESPONSE:
        mark, due, done = t.escalated_response_on, t.response_due, t.first_response_on
        values = {"escalated_response_on": now}
    else:
        mark, due, done = t.escalated_resolution_on, t.resolution_due, t.resolved_on
        values = {"escalated_resolution_on": now}
    # not a user's edit: the audit columns keep their values (AuditMixin's onupdate
    # would write "no user")
    values.update(changed_on=t.changed_on, changed_by_fk=t.changed_by_fk)
    won = session.execute(
        update(t).where(t.id == ticket_id, mark.is_(None), done.is_(None), due < now)
        .values(**values).execution_options(synchronize_session=False)).rowcount == 1
    if not won:
        return False
    ticket = session.get(t, ticket_id)
    session.refresh(ticket)
    due_value = ticket.response_due if kind == RESPONSE else ticket.resolution_due
    round_ = 1 if kind == RESPONSE else ticket.sla_round
    due_text = due_value.strftime("%Y-%m-%d %H:%M")
    events.record_event(session, "service", ticket.id, "escalate", ticket.status, ticket.status,
                        note=f"{KIND_LABELS[kind]}超时（时限 {due_text}），已通知处理人和销售主管",
                        actor_id=actor_id, when=now)
    title = (_l("服务 %(number)s（%(priority)s）已超过响应时限 %(due)s，尚未处理",
                number=ticket.number, priority=ticket.priority, due=due_text)
             if kind == RESPONSE else
             _l("服务 %(number)s（%(priority)s）已超过解决时限 %(due)s，尚未归档",
                number=ticket.number, priority=ticket.priority, due=due_text))
    users = ([ticket.assignee_id] if ticket.assignee_id else []) + \
        [u for u in supervisors if u != ticket.assignee_id]
    for uid in users:
        notifications.notify(session, uid, "ticket_overdue", title,
                             link=f"/service/archive/{ticket.id}",
                             dedupe_key=f"sla:{ticket.id}:{kind}:{round_}:{uid}", now=now)
    return True


def escalate(session, now, actor_id, batch=ESCALATION_BATCH, on_ticket=None):
    """Escalate every missed deadline at ``now``; commits after each ticket.
    Returns {"response": n, "resolution": m} (the deadlines marked by this run).
    ``on_ticket(kind, ticket_id)`` is called before each (tests use it)."""
    supervisors = _supervisor_ids(session)
    done = {RESPONSE: 0, RESOLUTION: 0}
    for kind in (RESPONSE, RESOLUTION):
        while True:
            ids = _due_for_escalation(session, kind, now, batch)
            if not ids:
                break
            for tid in ids:
                if on_ticket:
                    on_ticket(kind, tid)
                try:
                    if escalate_one(session, tid, kind, now, actor_id, supervisors):
                        done[kind] += 1
                    session.commit()
                except Exception:
                    session.rollback()
                    raise
            if len(ids) < batch:
                break
    return done

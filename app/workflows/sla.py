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
"""
from datetime import timedelta

from flask_babel import lazy_gettext as _l
from sqlalchemy import and_, or_, select

from ..models import DictItem, ServiceTicket
from ..models.dictionary import SERVICE_LIMIT
from .dictionary import parse_limit

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
    response = DEFAULT_RESPONSE_HOURS.get(priority, DEFAULT_RESPONSE_HOURS[FALLBACK_PRIORITY])
    return response, response * RESOLUTION_FACTOR


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

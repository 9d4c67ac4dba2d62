"""服务管理 rules: service tickets (DESIGN.md §5.5).

Plain functions over a SQLAlchemy session and an ``Actor``; the HTML views and the
REST API both call them and commit afterwards. Every status change is a
compare-and-set (``events.compare_and_set``) plus a WorkflowEvent in the same
transaction; a failing step raises a DomainError and the caller rolls back, so
nothing is half-written.

Status: ``created`` 新创建 → ``assigned`` 已分配 → ``handled`` 已处理 → ``archived``
已归档, or ``handled`` → ``assigned`` again when the satisfaction is below 3.

Who does what:

* create   — 客户经理, 销售主管, 系统管理员;
* assign   — 销售主管, 系统管理员; a ``created`` ticket, to an active user who may
  handle tickets (``HANDLER_ROLES``: 客户经理 or 销售主管) — anyone else could
  never handle it and the ticket would be stuck;
* reassign — 销售主管, 系统管理员; an ``assigned`` (not yet handled) ticket to another
  such user (compare-and-set on status *and* the current assignee); tickets whose
  assignee was deactivated or lost the role are listed as needing re-assignment;
* handle   — only the ticket's assignee, on an ``assigned`` ticket;
* feedback — on a ``handled`` ticket: the assignee (DESIGN.md §3: a 客户经理 gives
  feedback on services assigned to him), the ticket's creator (who took the
  customer's request), 销售主管 and 系统管理员.

Every round is kept: the ticket's columns hold the latest handling and feedback,
and each handling and each feedback is also a WorkflowEvent whose ``note`` is the
handling text, or the result plus the satisfaction, so the history shows all rounds.
"""
from datetime import date, datetime, timedelta

from flask_babel import lazy_gettext as _l
from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.orm import joinedload

from ..models import Customer, ServiceTicket, WorkflowEvent
from ..models.dictionary import SERVICE_PRIORITY, SERVICE_TYPE
from ..models.service import SERVICE_STATUS_LABELS
from .names import display_name
from . import dates, dictionary, events, notifications, numbering, quick_search, sla
from .actors import MANAGER, SUPERVISOR
from .errors import Conflict, Forbidden, NotFound, ValidationError

ENTITY = "service"

CREATED, ASSIGNED, HANDLED, ARCHIVED = "created", "assigned", "handled", "archived"
STATUS_LABELS = SERVICE_STATUS_LABELS          # the model's vocabulary (models/service.py)
ACTION_LABELS = {
    "create": _l("创建"), "assign": _l("分配"), "reassign": _l("重新分配"),
    "handle": _l("服务处理"), "feedback": _l("服务反馈"), "priority": _l("调整优先级"),
    "escalate": _l("超时升级"),
}
LABELS = {
    "id": _l("序号"), "number": _l("编号"), "service_type": _l("服务类型"),
    "summary": _l("概要"), "customer_id": _l("客户"), "request": _l("服务请求"),
    "status": _l("状态"), "creator_id": _l("创建人"), "created_on": _l("创建时间"),
    "assignee_id": _l("分配给"), "assigned_on": _l("分配时间"), "handling": _l("服务处理"),
    "handler_id": _l("处理人"), "handled_on": _l("处理时间"), "result": _l("处理结果"),
    "satisfaction": _l("满意度"), "date_from": _l("创建日期（起）"),
    "date_to": _l("创建日期（止）"), "customer": _l("客户"), "priority": _l("优先级"),
    "response_due": _l("响应时限"), "resolution_due": _l("解决时限"),
    "first_response_on": _l("首次处理时间"), "resolved_on": _l("归档时间"),
    "overdue": _l("已超时"), "priority_rank": _l("优先级等级"),
}
CREATE_FIELDS = ("service_type", "summary", "customer_id", "request", "priority")
DEFAULT_PRIORITY = "普通"
# the states in which 销售主管 may still change the priority: until the ticket is handled
PRIORITY_STATES = ("created", "assigned")
MAX_LEN = {"summary": 255, "request": 4000, "handling": 4000, "result": 4000}
CUSTOMER_IDS_INLINE = 2000  # archive search: up to this many matching customers go inline
ARCHIVE_THRESHOLD = 3  # satisfaction ≥ 3 archives the ticket, < 3 sends it back

# FAB's user model, reached through our mapping (workflows import no FAB modules)
User = ServiceTicket.assignee.property.mapper.class_
Role = User.roles.property.mapper.class_

# who may be given a ticket: the roles whose users can open 服务处理 and handle it
HANDLER_ROLES = (MANAGER, SUPERVISOR)


def status_label(status):
    return STATUS_LABELS.get(status, status or "")


def action_label(action):
    return ACTION_LABELS.get(action, action or "")


def user_name(user):
    return display_name(user)


def _now():
    return datetime.now().replace(microsecond=0)


# ---- who may do what ----------------------------------------------------------------
# One pair per step: ``can_<step>(actor, ticket) -> bool`` for the pages (the views put
# the answers in the templates' ``may`` dict) and ``require_<step>(actor, ticket)``,
# which raises the Chinese Forbidden (403) / Conflict (409) the step itself raises.
# ``ticket=None`` asks about the role only (e.g. whether to show a list's form).

def _supervises(actor):
    return actor.is_admin or actor.is_supervisor


def can_create(actor, ticket=None):
    return actor.is_admin or actor.is_supervisor or actor.is_manager


def require_create(actor, ticket=None):
    if not can_create(actor):
        raise Forbidden(_l("只有客户经理、销售主管或系统管理员可以创建服务。"))


def can_assign(actor, ticket=None):
    return _supervises(actor) and (ticket is None or ticket.status == CREATED)


def require_assign(actor, ticket=None):
    """销售主管/admin, on a ``created`` ticket (403 / 409)."""
    if not _supervises(actor):
        raise Forbidden(_l("只有销售主管或系统管理员可以分配服务。"))
    if ticket is not None and ticket.status != CREATED:
        raise _wrong_state(ticket, _l("分配"), CREATED)


def can_reassign(actor, ticket=None):
    return _supervises(actor) and (ticket is None or ticket.status == ASSIGNED)


def require_reassign(actor, ticket=None):
    """销售主管/admin, on an ``assigned`` (not yet handled) ticket (403 / 409)."""
    if not _supervises(actor):
        raise Forbidden(_l("只有销售主管或系统管理员可以重新分配服务。"))
    if ticket is not None and ticket.status != ASSIGNED:
        raise _wrong_state(ticket, _l("重新分配"), ASSIGNED)


def can_priority(actor, ticket=None):
    """调整优先级: 销售主管/admin (the 服务分配 function), until the ticket is handled."""
    return _supervises(actor) and (ticket is None or ticket.status in PRIORITY_STATES)


def require_priority(actor, ticket=None):
    if not _supervises(actor):
        raise Forbidden(_l("只有销售主管或系统管理员可以调整服务的优先级。"))
    if ticket is not None and ticket.status not in PRIORITY_STATES:
        raise Conflict(_l("服务 %(number)s 当前状态为“%(status)s”，已处理或已归档的服务不能再调整优先级。",
                          number=ticket.number, status=status_label(ticket.status)))


# the older name of the same rule
can_change_priority = can_priority


def is_handler(user):
    """May ``user`` be given a ticket: active, with a role in ``HANDLER_ROLES``."""
    return bool(user is not None and user.active
                and any(r.name in HANDLER_ROLES for r in user.roles))


def needs_reassignment(ticket):
    """An ``assigned`` ticket whose assignee can no longer handle it."""
    return ticket.status == ASSIGNED and not is_handler(ticket.assignee)


def can_handle(actor, ticket):
    return ticket.status == ASSIGNED and ticket.assignee_id == actor.id


def require_handle(actor, ticket):
    """Only the assignee handles, and only an ``assigned`` ticket (403 / 409)."""
    if ticket.assignee_id != actor.id:
        raise Forbidden(_l("只有该服务的被分配人可以处理它。"))
    if ticket.status != ASSIGNED:
        raise _wrong_state(ticket, _l("处理"), ASSIGNED)


def may_give_feedback(actor, ticket):
    """The assignee, the creator, 销售主管 and admin (any state)."""
    return (actor.is_admin or actor.is_supervisor or ticket.assignee_id == actor.id
            or ticket.created_by_fk == actor.id)


def can_feedback(actor, ticket):
    return ticket.status == HANDLED and may_give_feedback(actor, ticket)


def require_feedback(actor, ticket):
    """Creator, assignee, 销售主管 or admin, on a ``handled`` ticket (403 / 409)."""
    if not may_give_feedback(actor, ticket):
        raise Forbidden(_l("只有服务的创建人、被分配人、销售主管或系统管理员可以反馈。"))
    if ticket.status != HANDLED:
        raise _wrong_state(ticket, _l("反馈"), HANDLED)


def can_view(actor, ticket=None):
    """服务归档 (the archive search, a ticket's page, the export): every staff role,
    any ticket — read-only."""
    return bool(actor.is_admin or actor.is_executive or actor.is_supervisor
                or actor.is_manager)


def require_view(actor, ticket=None):
    if not can_view(actor, ticket):
        raise Forbidden(_l("只有员工（客户经理、销售主管、高管、系统管理员）可以查看服务。"))


def may(actor, ticket=None):
    """The precomputed answers a template gets: ``may.assign``, ``may.reassign``…"""
    out = {"create": can_create(actor), "view": can_view(actor, ticket),
           "assign": can_assign(actor, ticket), "reassign": can_reassign(actor, ticket),
           "priority": can_priority(actor, ticket)}
    if ticket is not None:
        out.update(handle=can_handle(actor, ticket), feedback=can_feedback(actor, ticket))
    return out


def _wrong_state(ticket, what, needed):
    return Conflict(_l("服务 %(number)s 当前状态为“%(status)s”，只有“%(needed)s”的服务才能%(what)s。",
                       number=ticket.number, status=status_label(ticket.status),
                       needed=status_label(needed), what=what))


# ---- input ------------------------------------------------------------------------

def _text(data, field, required=True):
    v = data.get(field)
    if v is not None and (not isinstance(v, (str, int, float)) or isinstance(v, bool)):
        raise ValidationError(_l("%(field)s格式不正确。", field=LABELS[field]), field=field)
    v = "" if v is None else str(v).strip()
    if required and not v:
        raise ValidationError(_l("%(field)s不能为空。", field=LABELS[field]), field=field)
    if len(v) > MAX_LEN[field]:
        raise ValidationError(_l("%(field)s太长（最多 %(n)d 个字）。", field=LABELS[field],
                                 n=MAX_LEN[field]), field=field)
    return v or None


def _int(value, field, message):
    if isinstance(value, bool):
        raise ValidationError(message, field=field)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        value = int(value.strip())
    if not isinstance(value, int):
        raise ValidationError(message, field=field)
    return value


def parse_satisfaction(value):
    msg = _l("满意度必须是 1 到 5 之间的整数。")
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValidationError(_l("请选择满意度（1 到 5）。"), field="satisfaction")
    value = _int(value, "satisfaction", msg)
    if not 1 <= value <= 5:
        raise ValidationError(msg, field="satisfaction")
    return value


def service_type_item(session, text):
    """The DictItem of category 服务类型 whose 条目 is ``text`` (400 otherwise)."""
    if text is None or (isinstance(text, str) and not text.strip()):
        raise ValidationError(_l("请选择服务类型。"), field="service_type")
    if not isinstance(text, str):
        raise ValidationError(_l("服务类型格式不正确。"), field="service_type")
    try:
        return dictionary.find_item(session, SERVICE_TYPE, text.strip())
    except ValidationError as e:
        e.field = "service_type"
        raise


def service_types(session):
    return dictionary.items_of(session, SERVICE_TYPE)


def priorities(session):
    return dictionary.items_of(session, SERVICE_PRIORITY)


def priority_rank(item):
    """The rank lists sort by: the item's 值 as an integer (普通 1, 紧急 2, 特急 3)."""
    try:
        return max(0, min(int(str(item.value).strip()), 32767))
    except (TypeError, ValueError):
        return 0


def priority_item(session, text, required=False):
    """The DictItem of category 服务优先级 whose 条目 is ``text``; empty → 普通 unless
    ``required``; anything else → 400 listing the choices."""
    if text is None or (isinstance(text, str) and not text.strip()):
        if required:
            raise ValidationError(_l("请选择优先级。"), field="priority")
        text = DEFAULT_PRIORITY
    if not isinstance(text, str):
        raise ValidationError(_l("优先级格式不正确。"), field="priority")
    try:
        return dictionary.find_item(session, SERVICE_PRIORITY, text.strip())
    except ValidationError:
        choices = str(_l("、")).join(i.item for i in priorities(session))
        raise ValidationError(_l("“%(text)s”不是有效的优先级，请从以下选择：%(choices)s。",
                                 text=text.strip(), choices=choices), field="priority")


def _customer(session, value):
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValidationError(_l("请选择客户。"), field="customer_id")
    cid = _int(value, "customer_id", _l("客户编号格式不正确，请从搜索结果中选择客户。"))
    customer = session.get(Customer, cid)
    if customer is None:
        raise ValidationError(_l("所选客户不存在。"), field="customer_id")
    return customer


# ---- reading -------------------------------------------------------------------------

def get(session, ticket_id):
    ticket = session.get(ServiceTicket, ticket_id) if ticket_id is not None else None
    if ticket is None:
        raise NotFound(_l("服务不存在。"))
    return ticket


def get_for_view(session, actor, ticket_id):
    """A ticket with its relations for its page (服务归档 · 详情): 403 / 404."""
    require_view(actor)
    ticket = session.scalar(_eager(select(ServiceTicket)).where(ServiceTicket.id == ticket_id))
    if ticket is None:
        raise NotFound(_l("服务不存在。"))
    return ticket


def _eager(q):
    return q.options(joinedload(ServiceTicket.customer), joinedload(ServiceTicket.service_type),
                     joinedload(ServiceTicket.assignee), joinedload(ServiceTicket.handler),
                     joinedload(ServiceTicket.created_by))


def _page(session, q, page, page_size):
    count = session.scalar(select(func.count()).select_from(q.order_by(None).subquery()))
    rows = session.scalars(_eager(q).limit(page_size).offset(page * page_size)).unique().all()
    return count, rows


def iter_rows(session, q, chunk=1000):
    """Every ticket of ``q`` with its relations, ``chunk`` rows per round trip."""
    return session.scalars(_eager(q).execution_options(yield_per=chunk))


ASSIGN_FILTERS = ("search", "priority", "overdue")
SEARCH_MAX = quick_search.MAX_QUERY


def parse_overdue(value):
    """The 是否超时 filter: "1" only the overdue, "0" only the others, "" all."""
    if value is None or value == "" or value == "all":
        return None
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "是"):
        return True
    if text in ("0", "false", "no", "否"):
        return False
    raise ValidationError(_l("“是否超时”只能是 1（只看超时的）、0（只看未超时的）或留空（全部）。"),
                          field="overdue")


def parse_assign_filters(session, search=None, priority=None, overdue=None):
    """The search box and filters of every service list (服务分配, 服务处理, 服务反馈,
    服务归档 and the API's ``search``), checked: {search, priority, overdue, dialect}.
    ``search``: at most ``SEARCH_MAX`` characters (400), control characters are blanks;
    ``priority`` must be an item of 服务优先级 (400 listing the choices)."""
    text = quick_search.parse(search, field="search")
    prio = None
    if isinstance(priority, str) and priority.strip():
        prio = priority_item(session, priority, required=True).item
    return {"search": text, "priority": prio, "overdue": parse_overdue(overdue),
            "dialect": quick_search.dialect_of(session)}


def search_condition(text, dialect="postgresql"):
    """SQL: every word of ``text`` occurs in the ticket's 编号, 概要 or customer name
    (the 快速搜索 match: any case, ``%``/``_``/``\\`` literal); None for no text."""
    def customer_name(word, sqlite):
        return ServiceTicket.customer_id.in_(
            select(Customer.id).where(quick_search.like(Customer.name, word, sqlite)))
    return quick_search.condition([ServiceTicket.number, ServiceTicket.summary, customer_name],
                                  text, dialect)


def _filtered(q, filters, now=None):
    """Apply :func:`parse_assign_filters`' result (the one filter of every service
    list): ``search`` through :func:`search_condition`, ``priority``, ``overdue``."""
    if not filters:
        return q
    cond = search_condition(filters.get("search"), filters.get("dialect") or "postgresql")
    if cond is not None:
        q = q.where(cond)
    if filters.get("priority"):
        q = q.where(ServiceTicket.priority == filters["priority"])
    if filters.get("overdue") is not None:
        cond = sla.overdue_condition(now or _now())
        q = q.where(cond if filters["overdue"] else ~cond)
    return q


# ---- the tabs of the lists (the pages remember each user's last choice) ----------------------

OPEN_STATES = (CREATED, ASSIGNED, HANDLED)
HANDLE_TABS = (("all", _l("全部")), ("overdue", _l("已超时")), ("returned", _l("退回重办")))
FEEDBACK_TABS = (("all", _l("全部")), ("created", _l("我创建的")), ("handled", _l("我处理的")))
ARCHIVE_TABS = (("archived", _l("已归档")), ("open", _l("处理中")), ("overdue", _l("已超时")),
                ("all", _l("全部")))
TABS = {"handle": HANDLE_TABS, "feedback": FEEDBACK_TABS, "archive": ARCHIVE_TABS}
DEFAULT_TABS = {"handle": "all", "feedback": "all", "archive": "archived"}


def parse_tab(which, tab):
    """The tab key of list ``which`` (handle | feedback | archive): empty → its
    default; an unknown key → ValidationError (400) listing the keys (the API; the
    pages ignore an unknown ``?tab=``)."""
    keys = [k for k, _label in TABS[which]]
    if tab in (None, ""):
        return DEFAULT_TABS[which]
    if tab not in keys:
        raise ValidationError(_l("tab 只能是 %(keys)s 之一。", keys=", ".join(keys)), field="tab")
    return tab


def _tab_condition(which, tab, actor, now):
    t = ServiceTicket
    if tab == "overdue":
        cond = sla.overdue_condition(now)
        return cond if which != "archive" else and_(t.status.in_(OPEN_STATES), cond)
    if which == "handle" and tab == "returned":
        return t.sla_round > 1          # sent back after a feedback below 3
    if which == "feedback" and tab == "created":
        return t.created_by_fk == actor.id
    if which == "feedback" and tab == "handled":
        return t.assignee_id == actor.id
    if which == "archive" and tab == "open":
        return t.status.in_(OPEN_STATES)
    return None


def to_assign(session, page=0, page_size=20, filters=None):
    """``created`` tickets, oldest first: (count, rows); ``filters`` as from
    :func:`parse_assign_filters`."""
    q = (select(ServiceTicket).where(ServiceTicket.status == CREATED)
         .order_by(ServiceTicket.created_on, ServiceTicket.id))
    return _page(session, _filtered(q, filters), page, page_size)


def _handler_ids():
    """SQL: ids of the users who may be given a ticket."""
    return (select(User.id).where(User.active.is_(True),
                                  User.roles.any(Role.name.in_(HANDLER_ROLES))))


def stuck_filter():
    """SQL condition: an ``assigned`` ticket whose assignee can no longer handle it
    (deactivated, or no longer 客户经理/销售主管)."""
    return (ServiceTicket.status == ASSIGNED) & ~ServiceTicket.assignee_id.in_(_handler_ids())


def count_stuck(session):
    return session.scalar(select(func.count()).select_from(ServiceTicket).where(stuck_filter()))


def to_reassign(session, only_stuck=False, page=0, page_size=20, filters=None):
    """``assigned`` (not yet handled) tickets, those needing re-assignment first, then
    the oldest assignment: (count, rows). ``only_stuck``: just those needing it."""
    stuck = stuck_filter()
    q = _filtered(select(ServiceTicket).where(ServiceTicket.status == ASSIGNED), filters)
    if only_stuck:
        q = q.where(stuck)
    # a CASE on the stuck condition sorts the stuck ones first
    q = q.order_by(case((stuck, 0), else_=1), ServiceTicket.assigned_on, ServiceTicket.id)
    return _page(session, q, page, page_size)


def to_handle(session, actor, page=0, page_size=20, filters=None, tab="all"):
    """服务处理: the actor's ``assigned`` tickets, oldest assignment first; ``filters``
    as from :func:`parse_assign_filters`, ``tab`` one of ``HANDLE_TABS``."""
    q = (select(ServiceTicket)
         .where(ServiceTicket.status == ASSIGNED, ServiceTicket.assignee_id == actor.id)
         .order_by(ServiceTicket.assigned_on, ServiceTicket.id))
    cond = _tab_condition("handle", parse_tab("handle", tab), actor, _now())
    if cond is not None:
        q = q.where(cond)
    return _page(session, _filtered(q, filters), page, page_size)


def to_feedback(session, actor, page=0, page_size=20, filters=None, tab="all"):
    """服务反馈: ``handled`` tickets the actor may give feedback on (all for 销售主管/
    admin); ``filters`` as from :func:`parse_assign_filters`, ``tab`` one of
    ``FEEDBACK_TABS``."""
    q = select(ServiceTicket).where(ServiceTicket.status == HANDLED)
    if not (actor.is_admin or actor.is_supervisor):
        q = q.where(or_(ServiceTicket.assignee_id == actor.id,
                        ServiceTicket.created_by_fk == actor.id))
    cond = _tab_condition("feedback", parse_tab("feedback", tab), actor, _now())
    if cond is not None:
        q = q.where(cond)
    q = q.order_by(ServiceTicket.handled_on, ServiceTicket.id)
    return _page(session, _filtered(q, filters), page, page_size)


def parse_date(value, field):
    """An optional date filter written YYYY-MM-DD; the shared rule (``dates``)."""
    return dates.parse_ymd(value, LABELS[field], field, required=False)


def search_archive(session, customer=None, customer_id=None, summary=None, service_type=None,
                   date_from=None, date_to=None, page=0, page_size=20, status=None,
                   search=None, priority=None, overdue=None, tab=None):
    """Archived tickets (or those of ``tab``), newest first: (count, rows); the filters
    as in :func:`archive_query`."""
    return _page(session, archive_query(session, customer, customer_id, summary,
                                        service_type, date_from, date_to, status,
                                        search=search, priority=priority, overdue=overdue,
                                        tab=tab),
                 page, page_size)


def archive_query(session, customer=None, customer_id=None, summary=None, service_type=None,
                  date_from=None, date_to=None, status=None, search=None, priority=None,
                  overdue=None, tab=None):
    """The select of archived tickets, newest first (list pages and exports).

    ``search``, ``priority``, ``overdue``: the filter of every service list
    (:func:`parse_assign_filters`); ``tab`` (``ARCHIVE_TABS``): ``archived`` (default),
    ``open`` 处理中 (not yet archived), ``overdue`` open and past a deadline, ``all``.

    ``customer``: part of the customer's name, or its exact 客户编号; ``customer_id``:
    one customer; ``summary``: part of 概要; ``service_type``: the 条目 text;
    ``date_from``/``date_to``: the created date range, both ends included;
    ``status="all"``: tickets of every status (the drill-down of 客户服务分析; the same
    as ``tab="all"``).
    """
    filters = parse_assign_filters(session, search, priority, overdue)
    tab = "all" if (status or "").strip() == "all" else parse_tab("archive", tab)
    q = select(ServiceTicket)
    by_customer = False
    if customer_id not in (None, ""):
        q = q.where(ServiceTicket.customer_id == _int(
            customer_id, "customer_id", _l("客户编号格式不正确。")))
        by_customer = True
    if customer and customer.strip():
        text = customer.strip()
        matching = select(Customer.id).where(or_(Customer.name.contains(text, autoescape=True),
                                                 Customer.number == text.upper()))
        # resolve the customers first, so the tickets are found through ix_service_customer
        ids = session.scalars(matching.limit(CUSTOMER_IDS_INLINE + 1)).all()
        if len(ids) <= CUSTOMER_IDS_INLINE:
            q = q.where(ServiceTicket.customer_id.in_(ids))
            by_customer = True
        else:
            q = q.where(ServiceTicket.customer_id.in_(matching))
    # with a few customers, ix_service_customer is the selective index; SQLite without
    # ANALYZE statistics would otherwise walk every archived ticket through the status
    # index, so the status test is written as an expression that no index serves
    if tab == "archived":
        q = q.where((ServiceTicket.status + "") == ARCHIVED if by_customer
                    else ServiceTicket.status == ARCHIVED)
    else:
        cond = _tab_condition("archive", tab, None, _now())
        if cond is not None:
            q = q.where(cond)
    q = _filtered(q, filters)
    if summary and summary.strip():
        q = q.where(ServiceTicket.summary.contains(summary.strip(), autoescape=True))
    if service_type and service_type.strip():
        q = q.where(ServiceTicket.service_type_id == service_type_item(session, service_type).id)
    start, end = parse_date(date_from, "date_from"), parse_date(date_to, "date_to")
    if start and end and start > end:
        raise ValidationError(_l("创建日期的起始日期不能晚于截止日期。"), field="date_from")
    if start:
        q = q.where(ServiceTicket.created_on >= datetime.combine(start, datetime.min.time()))
    if end:
        q = q.where(ServiceTicket.created_on
                    < datetime.combine(end + timedelta(days=1), datetime.min.time()))
    return q.order_by(ServiceTicket.created_on.desc(), ServiceTicket.id.desc())


def of_customer(session, customer_id, limit=20):
    """(count, newest ``limit`` tickets) of one customer — two queries."""
    count = session.scalar(select(func.count()).select_from(ServiceTicket)
                           .where(ServiceTicket.customer_id == customer_id))
    if not count:
        return 0, []
    rows = session.scalars(
        select(ServiceTicket).options(joinedload(ServiceTicket.service_type))
        .where(ServiceTicket.customer_id == customer_id)
        .order_by(ServiceTicket.created_on.desc(), ServiceTicket.id.desc()).limit(limit)).all()
    return count, rows


def history(session, ticket_id):
    """The ticket's WorkflowEvents, oldest first, with their actors (one query)."""
    return session.scalars(
        select(WorkflowEvent).options(joinedload(WorkflowEvent.actor))
        .where(WorkflowEvent.entity == ENTITY, WorkflowEvent.entity_id == ticket_id)
        .order_by(WorkflowEvent.id)).all()


def assignable_users(session):
    """Active 客户经理 / 销售主管 (the choices for 分配给): the users who can handle."""
    return session.scalars(
        select(User).where(User.id.in_(_handler_ids())).order_by(User.id)).all()


def search_customers(session, text, limit=20):
    """At most ``limit`` customers: those whose 客户编号 starts with ``text`` (an index
    range), then those whose name contains it (no ORDER BY in SQL, so the scan stops
    after ``limit`` matches; the few rows are sorted here)."""
    text = (text or "").strip()
    if not text:
        return []
    limit = max(1, min(int(limit), 50))
    cols = (Customer.id, Customer.number, Customer.name)
    prefix = text.upper()
    by_number = session.execute(
        select(*cols).where(Customer.number >= prefix, Customer.number < prefix + "\U0010ffff",
                            Customer.number.startswith(prefix, autoescape=True))
        .order_by(Customer.number).limit(limit)).all()
    by_name = session.execute(
        select(*cols).where(Customer.name.contains(text, autoescape=True)).limit(limit)).all()
    seen, out = set(), []
    for row in list(by_number) + sorted(by_name, key=lambda r: (r.name, r.id)):
        if row.id not in seen:
            seen.add(row.id)
            out.append(row)
    return out[:limit]


# ---- steps -----------------------------------------------------------------------------

def _audit_values(actor):
    return {"changed_by_fk": actor.id, "changed_on": datetime.now()}


def create(session, actor, data):
    """A new ``created`` ticket; 编号/创建人/创建时间 are set by the system."""
    require_create(actor)
    if not isinstance(data, dict):
        raise ValidationError(_l("请求体必须是 JSON 对象。"))
    for key in data:
        if key not in CREATE_FIELDS:
            raise ValidationError(
                _l("字段“%(field)s”不能由用户填写，创建服务只需要：%(fields)s。",
                   field=LABELS.get(key, key),
                   fields=str(_l("、")).join(str(LABELS[f]) for f in CREATE_FIELDS)), field=key)
    item = service_type_item(session, data.get("service_type"))
    summary = _text(data, "summary")
    customer = _customer(session, data.get("customer_id"))
    request = _text(data, "request")
    prio = priority_item(session, data.get("priority"))
    now = _now()
    response_due, resolution_due = sla.deadlines(session, item.item, prio.item, now)
    ticket = ServiceTicket(
        number=numbering.next_number(session, numbering.PREFIX_SERVICE),
        service_type_id=item.id, summary=summary, customer_id=customer.id, request=request,
        priority=prio.item, priority_rank=priority_rank(prio),
        response_due=response_due, resolution_due=resolution_due,
        status=CREATED, created_by_fk=actor.id, changed_by_fk=actor.id,
        created_on=now, changed_on=now)
    session.add(ticket)
    session.flush()
    events.record_event(session, ENTITY, ticket.id, "create", None, CREATED, actor_id=actor.id)
    return ticket


def _check_assignee(session, assignee_id):
    if assignee_id is None or assignee_id == "":
        raise ValidationError(_l("请选择要分配的用户。"), field="assignee_id")
    uid = _int(assignee_id, "assignee_id", _l("分配给的用户编号必须是整数。"))
    user = session.get(User, uid)
    if user is None:
        raise ValidationError(_l("要分配的用户不存在。"), field="assignee_id")
    if not user.active:
        raise ValidationError(_l("用户“%(name)s”已停用，不能分配服务，请选择启用中的客户经理或销售主管。",
                                 name=user.username), field="assignee_id")
    if not is_handler(user):
        raise ValidationError(
            _l("用户“%(name)s”不是客户经理或销售主管，不能处理服务；请选择启用中的客户经理或销售主管。",
               name=user.username), field="assignee_id")
    return user


def assign(session, actor, ticket_id, assignee_id):
    """销售主管 assigns a ``created`` ticket to an active user → ``assigned``."""
    require_assign(actor)
    ticket = get(session, ticket_id)
    require_assign(actor, ticket)
    user = _check_assignee(session, assignee_id)
    events.compare_and_set(
        session, ServiceTicket, ticket.id, CREATED,
        dict(status=ASSIGNED, assignee_id=user.id, assigned_on=_now(), **_audit_values(actor)),
        _l("服务 %(number)s 已被他人分配或状态已改变，请刷新后查看。", number=ticket.number))
    events.record_event(session, ENTITY, ticket.id, "assign", CREATED, ASSIGNED,
                        note=f"分配给 {user_name(user)}", actor_id=actor.id)
    session.refresh(ticket)
    notifications.notify(session, user.id, "ticket_assigned",
                         _l("服务 %(number)s（%(summary)s）分配给您处理", number=ticket.number,
                            summary=ticket.summary), link=f"/service/handle/{ticket.id}")
    return ticket


BULK_MAX = 200


def parse_ids(value):
    """The ids of a bulk step: a non-empty list of integers (at most ``BULK_MAX``;
    repeated ids count once, in their first place)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ValidationError(_l("ids 必须是服务序号的列表，例如 [12, 15]。"), field="ids")
    out = []
    for v in value:
        tid = _int(v, "ids", _l("ids 中的“%(v)s”不是服务序号（整数）。", v=str(v)[:20]))
        if tid not in out:
            out.append(tid)
    if not out:
        raise ValidationError(_l("请至少选择一张服务。"), field="ids")
    if len(out) > BULK_MAX:
        raise ValidationError(_l("一次最多批量分配 %(n)d 张服务，请分批进行。", n=BULK_MAX),
                              field="ids")
    return out


def bulk_assign(session, actor, ids, assignee_id):
    """批量分配: many ``created`` tickets to one handler, each through :func:`assign`
    (its own compare-and-set). Returns one result per id, in order:
    ``{"id", "ok", "number", "message"}`` — a row refused (another state, assigned
    meanwhile, not found) is reported and the others proceed. The role (403), the ids
    and the assignee (400) are checked first: then nothing is changed at all.

    Every refusal of :func:`assign` happens before its first write (the checks, then
    the compare-and-set is the first statement that changes anything), so a refused
    row leaves nothing behind in the transaction the caller commits."""
    require_assign(actor)
    ids = parse_ids(ids)
    user = _check_assignee(session, assignee_id)
    results = []
    for tid in ids:
        try:
            ticket = assign(session, actor, tid, user.id)
        except (Conflict, NotFound, Forbidden, ValidationError) as e:
            number = session.scalar(select(ServiceTicket.number).where(ServiceTicket.id == tid))
            results.append({"id": tid, "ok": False, "number": number,
                            "message": str(e.message)})
            continue
        results.append({"id": tid, "ok": True, "number": ticket.number,
                        "message": str(_l("已分配给 %(name)s。", name=user_name(user)))})
    return results


def _move_assignee(session, ticket_id, from_id, to_id, actor):
    """UPDATE … WHERE status = assigned AND assignee_id = from_id; True when it matched."""
    result = session.execute(
        update(ServiceTicket)
        .where(ServiceTicket.id == ticket_id, ServiceTicket.status == ASSIGNED,
               ServiceTicket.assignee_id == from_id)
        .values(assignee_id=to_id, assigned_on=_now(), **_audit_values(actor))
        .execution_options(synchronize_session=False))
    return result.rowcount == 1


def reassign(session, actor, ticket_id, assignee_id, from_assignee_id=None):
    """销售主管 gives an ``assigned`` (not yet handled) ticket to another handler.

    Compare-and-set on the status *and* the current assignee, so of two racing
    re-assignments one wins and the other gets 409; ``from_assignee_id`` (the
    assignee the caller saw, optional) makes a stale page a 409 too."""
    require_reassign(actor)
    ticket = get(session, ticket_id)
    require_reassign(actor, ticket)
    stale = _l("服务 %(number)s 已被他人重新分配或状态已改变，请刷新后查看。", number=ticket.number)
    if from_assignee_id not in (None, ""):
        seen = _int(from_assignee_id, "from_assignee_id", _l("原处理人编号必须是整数。"))
        if seen != ticket.assignee_id:
            raise Conflict(stale)
    user = _check_assignee(session, assignee_id)
    if user.id == ticket.assignee_id:
        raise ValidationError(_l("服务 %(number)s 已经分配给 %(name)s，请选择另一位处理人。",
                                 number=ticket.number, name=user_name(user)), field="assignee_id")
    old = ticket.assignee
    if not _move_assignee(session, ticket.id, ticket.assignee_id, user.id, actor):
        raise Conflict(stale)
    events.record_event(session, ENTITY, ticket.id, "reassign", ASSIGNED, ASSIGNED,
                        note=f"由 {user_name(old)} 改为分配给 {user_name(user)}",
                        actor_id=actor.id)
    session.refresh(ticket)
    notifications.notify(session, user.id, "ticket_assigned",
                         _l("服务 %(number)s（%(summary)s）改为分配给您处理", number=ticket.number,
                            summary=ticket.summary), link=f"/service/handle/{ticket.id}")
    return ticket


def change_priority(session, actor, ticket_id, priority, from_priority=None):
    """销售主管/admin changes the priority of a ticket not yet handled.

    Compare-and-set on the status (still 新创建/已分配) *and* the priority read, so a
    ticket handled or re-prioritised meanwhile gives 409; ``from_priority`` (the
    priority the caller saw, optional) makes a stale page a 409 too. Recorded as a
    WorkflowEvent ``priority`` (the status does not change)."""
    require_priority(actor)
    ticket = get(session, ticket_id)
    require_priority(actor, ticket)
    item = priority_item(session, priority, required=True)
    old = ticket.priority
    stale = _l("服务 %(number)s 的优先级或状态已被他人改变，请刷新后查看。", number=ticket.number)
    if from_priority not in (None, "") and str(from_priority).strip() != old:
        raise Conflict(stale)
    if item.item == old:
        raise ValidationError(_l("服务 %(number)s 的优先级已经是“%(priority)s”，请选择另一个优先级。",
                                 number=ticket.number, priority=old), field="priority")
    status = ticket.status
    # the deadlines keep their start and take the new priority's time limits
    response_due, resolution_due = sla.shifted(
        session, ticket.service_type.item, old, item.item, ticket.response_due,
        ticket.resolution_due)
    result = session.execute(
        update(ServiceTicket)
        .where(ServiceTicket.id == ticket.id, ServiceTicket.status == status,
               ServiceTicket.priority == old)
        .values(priority=item.item, priority_rank=priority_rank(item),
                response_due=response_due, resolution_due=resolution_due,
                **_audit_values(actor))
        .execution_options(synchronize_session=False))
    if result.rowcount != 1:
        raise Conflict(stale)
    events.record_event(session, ENTITY, ticket.id, "priority", status, status,
                        note=f"优先级由 {old} 改为 {item.item}", actor_id=actor.id)
    session.refresh(ticket)
    return ticket


def handle(session, actor, ticket_id, handling):
    """The assignee records 服务处理 on an ``assigned`` ticket → ``handled``."""
    ticket = get(session, ticket_id)
    require_handle(actor, ticket)
    text = _text({"handling": handling}, "handling")
    now = _now()
    events.compare_and_set(
        session, ServiceTicket, ticket.id, ASSIGNED,
        dict(status=HANDLED, handling=text, handler_id=actor.id, handled_on=now,
             first_response_on=func.coalesce(ServiceTicket.first_response_on, now),
             **_audit_values(actor)),
        _l("服务 %(number)s 的状态已改变，请刷新后查看。", number=ticket.number))
    events.record_event(session, ENTITY, ticket.id, "handle", ASSIGNED, HANDLED,
                        note=text, actor_id=actor.id)
    session.refresh(ticket)
    return ticket


def feedback(session, actor, ticket_id, result, satisfaction):
    """处理结果 + 满意度 on a ``handled`` ticket: ≥ 3 → ``archived``, < 3 → ``assigned``
    (the same assignee handles it again; this round stays in the history)."""
    ticket = get(session, ticket_id)
    require_feedback(actor, ticket)
    text = _text({"result": result}, "result")
    score = parse_satisfaction(satisfaction)
    to = ARCHIVED if score >= ARCHIVE_THRESHOLD else ASSIGNED
    now = _now()
    if to == ARCHIVED:
        deadline = dict(resolved_on=now)
    else:  # another round: a new resolution deadline from now, escalated afresh
        deadline = dict(sla_round=ServiceTicket.sla_round + 1, escalated_resolution_on=None,
                        resolution_due=sla.resolution_due_from(
                            session, ticket.service_type.item, ticket.priority, now))
    events.compare_and_set(
        session, ServiceTicket, ticket.id, HANDLED,
        dict(status=to, result=text, satisfaction=score, **deadline, **_audit_values(actor)),
        _l("服务 %(number)s 已被他人反馈或状态已改变，请刷新后查看。", number=ticket.number))
    events.record_event(session, ENTITY, ticket.id, "feedback", HANDLED, to,
                        note=f"处理结果：{text}；满意度：{score}", actor_id=actor.id)
    session.refresh(ticket)
    if to == ASSIGNED:
        notifications.notify(session, ticket.assignee_id, "ticket_returned",
                             _l("服务 %(number)s 被退回（满意度 %(score)d），请再次处理",
                                number=ticket.number, score=score),
                             link=f"/service/handle/{ticket.id}")
    else:
        notifications.notify(session, ticket.created_by_fk, "ticket_archived",
                             _l("您创建的服务 %(number)s 已归档（满意度 %(score)d）",
                                number=ticket.number, score=score),
                             link=f"/service/archive/{ticket.id}")
    return ticket


# ---- exports (服务归档 and any ticket list) -------------------------------------------------

# the 服务时限 columns of an export, as the service desk calls them
EXPORT_SLA_LABELS = (_l("优先级"), _l("响应期限"), _l("解决期限"), _l("首次响应时间"),
                     _l("解决时间"), _l("是否逾期"))


def export_headers():
    """The columns of a ticket export: the §8 fields, then priority and deadlines."""
    return ([LABELS[c] for c in ("number", "service_type", "summary")]
            + [_l("客户编号"), _l("客户名称")]
            + [LABELS[c] for c in ("request", "creator_id", "created_on", "assignee_id",
                                   "assigned_on", "handling", "handler_id", "handled_on",
                                   "result", "satisfaction", "status")]
            + list(EXPORT_SLA_LABELS))


def export_row(t, now):
    """One ticket as the cells of :func:`export_headers` (``now``: for 是否逾期)."""
    return [t.number, t.service_type.item if t.service_type else "", t.summary,
            t.customer.number, t.customer.name, t.request,
            user_name(t.created_by), t.created_on, user_name(t.assignee),
            t.assigned_on, t.handling or "", user_name(t.handler), t.handled_on,
            t.result or "", t.satisfaction, str(status_label(t.status)),
            t.priority, t.response_due, t.resolution_due, t.first_response_on,
            t.resolved_on, str(_l("是") if sla.is_overdue(t, now) else _l("否"))]


def export_rows(session, q, now=None):
    now = now or _now()
    for t in iter_rows(session, q):
        yield export_row(t, now)


def json_by_id(session, ids):
    """{id: :func:`to_json`} of the tickets among ``ids`` (one query; the API's list
    and get answers)."""
    ids = [i for i in ids if i is not None]
    if not ids:
        return {}
    rows = session.scalars(select(ServiceTicket).options(joinedload(ServiceTicket.service_type))
                           .where(ServiceTicket.id.in_(ids))).all()
    now = _now()
    return {t.id: to_json(t, now) for t in rows}


def to_json(ticket, now=None):
    """The §8 ``service`` fields, plus priority and the 服务时限 (``overdue``: a
    deadline it still has to meet has passed, at ``now``)."""
    def ts(v):
        return v.isoformat() if v else None
    now = now or _now()
    return {
        "response_due": ts(ticket.response_due), "resolution_due": ts(ticket.resolution_due),
        "first_response_on": ts(ticket.first_response_on),
        "resolved_on": ts(ticket.resolved_on), "overdue": sla.is_overdue(ticket, now),
        "id": ticket.id, "number": ticket.number,
        "service_type": ticket.service_type.item if ticket.service_type else None,
        "summary": ticket.summary, "customer_id": ticket.customer_id, "request": ticket.request,
        "status": ticket.status, "priority": ticket.priority,
        "creator_id": ticket.created_by_fk,
        "created_on": ts(ticket.created_on), "assignee_id": ticket.assignee_id,
        "assigned_on": ts(ticket.assigned_on), "handling": ticket.handling,
        "handler_id": ticket.handler_id, "handled_on": ts(ticket.handled_on),
        "result": ticket.result, "satisfaction": ticket.satisfaction,
    }


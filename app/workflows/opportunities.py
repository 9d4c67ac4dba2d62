"""营销管理 rules: sales opportunities, assignment and customer development plans.

DESIGN.md §5.1–5.2. Plain functions over a SQLAlchemy session and an ``Actor``;
the HTML views and the REST API both call them and commit afterwards. Every
status change is a compare-and-set (``events.compare_and_set``) plus a
WorkflowEvent in the same transaction; a failing step raises a DomainError and
the caller rolls back, so nothing is half-written.

Status: ``unassigned`` 未指派 → ``assigned`` 已指派（开发中） → ``succeeded`` 开发成功 |
``failed`` 开发失败.
"""
import json
import re
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

from flask_babel import lazy_gettext as _l
from sqlalchemy import delete as sql_delete
from sqlalchemy import select, true, update
from sqlalchemy.exc import IntegrityError

from ..models import Contact, Customer, Opportunity, PlanItem
from ..models.opportunities import OPPORTUNITY_STATUS_LABELS
from . import customers, dates, events, notifications, numbering
from .actors import MANAGER
from .errors import Collect, Conflict, DomainError, Forbidden, NotFound, ValidationError
from .names import check_name

ENTITY = "opportunity"

UNASSIGNED, ASSIGNED, SUCCEEDED, FAILED = "unassigned", "assigned", "succeeded", "failed"
STATUS_LABELS = OPPORTUNITY_STATUS_LABELS      # the model's vocabulary (models/opportunities.py)

LABELS = {
    "id": _l("序号"), "number": _l("编号"), "source": _l("机会来源"),
    "customer_name": _l("客户名称"), "success_rate": _l("成功机率"), "summary": _l("概要"),
    "contact": _l("联系人"), "contact_phone": _l("联系人电话"), "description": _l("机会描述"),
    "status": _l("状态"), "creator_id": _l("创建人"), "created_on": _l("创建时间"),
    "assignee_id": _l("指派给"), "assigned_on": _l("指派时间"),
    "customer_id": _l("开发成功后的客户"),
    "expected_amount": _l("预计金额（元）"), "expected_close_on": _l("预计成交日期"),
    "date": _l("日期"), "content": _l("计划内容"), "result": _l("执行效果"),
}

# the fields a user fills in (create) and may change while ``unassigned`` (edit)
EDITABLE = ("source", "customer_name", "success_rate", "summary", "contact",
            "contact_phone", "description", "expected_amount", "expected_close_on")
REQUIRED = ("customer_name", "success_rate", "summary", "description")
MAX_LEN = {"source": 128, "customer_name": 128, "summary": 255, "contact": 64,
           "contact_phone": 32, "description": 4000}
PLAN_MAX_LEN = 4000
MOBILE_RE = re.compile(r"^(\+?86[- ]?)?1[3-9]\d{9}$")

# FAB's user/role models, reached through our mapping (workflows import no FAB modules)
User = Opportunity.assignee.property.mapper.class_
Role = User.roles.property.mapper.class_


def status_label(status):
    return STATUS_LABELS.get(status, status or "")


# ---- who may do what: ONE rule per step -------------------------------------------------
#
# ``require_<step>(actor, opp)`` raises Forbidden (403: not this user) or Conflict (409:
# not in this state); ``can_<step>(actor, opp)`` is the same rule as a bool (it calls
# ``require_<step>``). Steps: create, edit, delete, assign, plan, execute, succeed, fail.
# HTML views, the REST API and templates (through :func:`may`) use only these. ``opp``
# needs ``status``, ``number``, ``created_by_fk`` and ``assignee_id`` (a list row's
# values will do).

def _allowed(require, *args):
    try:
        require(*args)
    except (Forbidden, Conflict):
        return False
    return True


def _lead(actor):
    return actor.is_admin or actor.is_supervisor


def _refuse_if_not_unassigned(opp, what):
    if opp.status != UNASSIGNED:
        raise Conflict(_l("销售机会 %(number)s 当前状态为“%(status)s”，只有未指派的销售机会才能%(what)s。",
                          number=opp.number, status=status_label(opp.status), what=what))


def _not_assigned(opp):
    return Conflict(_l("销售机会 %(number)s 当前状态为“%(status)s”，只有已指派（开发中）的销售机会才能进行此操作。",
                       number=opp.number, status=status_label(opp.status)))


def require_create(actor):
    if not (_lead(actor) or actor.is_manager):
        raise Forbidden(_l("只有客户经理和销售主管可以创建销售机会。"))


def readable_clause(actor):
    """Which opportunities ``actor`` reads (WHERE clause): every one. 销售机会管理 lists
    them all to whoever holds its list permission (the function's permission decides);
    the 销售机会看板 and its forecast use this same rule."""
    return true()


def can_create(actor):
    return _allowed(require_create, actor)


def require_edit(actor, opp):
    """Creator, 销售主管 or admin (403); only while ``unassigned`` (409)."""
    if not (_lead(actor) or opp.created_by_fk == actor.id):
        raise Forbidden(_l("只有创建人、销售主管或系统管理员可以编辑销售机会。"))
    _refuse_if_not_unassigned(opp, _l("编辑"))


def can_edit(actor, opp):
    return _allowed(require_edit, actor, opp)


def require_delete(actor, opp):
    """Only the creator (403); only while ``unassigned`` (409)."""
    if opp.created_by_fk != actor.id:
        raise Forbidden(_l("只有销售机会的创建人可以删除它。"))
    _refuse_if_not_unassigned(opp, _l("删除"))


def can_delete(actor, opp):
    return _allowed(require_delete, actor, opp)


def require_assign(actor, opp=None):
    """销售主管 or admin (403); the opportunity (when given) is ``unassigned`` (409).
    Without ``opp``: may the actor assign at all (the 批量指派 page, the list's button)."""
    if not _lead(actor):
        raise Forbidden(_l("只有销售主管可以指派销售机会。"))
    if opp is not None:
        _refuse_if_not_unassigned(opp, _l("指派"))


def can_assign(actor, opp=None):
    return _allowed(require_assign, actor, opp)


def may_plan(actor, opp):
    """Who makes the 客户开发计划 (any state): the assignee, 销售主管 and admin
    (DESIGN.md: 销售主管 "对特定销售机会制定客户开发计划")."""
    return (opp.assignee_id is not None
            and (opp.assignee_id == actor.id or _lead(actor)))


def require_plan(actor, opp):
    """制定计划: the assignee, 销售主管 or admin (403), on an ``assigned`` one (409)."""
    if opp.status == UNASSIGNED:
        raise Conflict(_l("销售机会 %(number)s 还没有指派，指派后才能制定开发计划。",
                          number=opp.number))
    if not may_plan(actor, opp):
        raise Forbidden(_l("只有被指派的客户经理或销售主管可以制定该销售机会的开发计划。"))
    if opp.status != ASSIGNED:
        raise _not_assigned(opp)


def can_plan(actor, opp):
    """Add, edit and delete plan items of an ``assigned`` opportunity."""
    return _allowed(require_plan, actor, opp)


def require_execute(actor, opp):
    """执行计划 (执行效果): only the assignee (403), while ``assigned`` (409)."""
    if opp.assignee_id is not None and opp.assignee_id != actor.id:
        raise Forbidden(_l("只有被指派的客户经理可以制定和执行该销售机会的开发计划。"))
    if opp.status != ASSIGNED:
        raise _not_assigned(opp)


def can_execute(actor, opp):
    return _allowed(require_execute, actor, opp)


def require_succeed(actor, opp):
    """开发成功: the same people and state as 执行计划."""
    require_execute(actor, opp)


def can_succeed(actor, opp):
    return _allowed(require_succeed, actor, opp)


def require_fail(actor, opp):
    """终止开发: the same people and state as 执行计划."""
    require_execute(actor, opp)


def can_fail(actor, opp):
    return _allowed(require_fail, actor, opp)


def require_update_forecast(actor, opp):
    """更新预计成交 (预计金额, 预计成交日期, 成功机率) while 开发中: the people who make
    the development plan — the assignee, 销售主管, admin (403) — on an ``assigned``
    opportunity (409). Before assignment these are ordinary fields of 编辑; after
    开发成功/终止开发 the forecast is history and stays as it was."""
    if opp.status == UNASSIGNED:
        raise Conflict(_l("销售机会 %(number)s 还没有指派：未指派时请用“编辑”修改预计金额和预计成交日期。",
                          number=opp.number))
    if not may_plan(actor, opp):
        raise Forbidden(_l("只有被指派的客户经理或销售主管可以更新该销售机会的预计成交。"))
    if opp.status != ASSIGNED:
        raise _not_assigned(opp)


def can_update_forecast(actor, opp):
    return _allowed(require_update_forecast, actor, opp)


# 执行计划 + 开发成功 + 终止开发 share the FAB permission ``can_develop``
require_develop = require_execute
can_develop = can_execute

STEPS = ("edit", "delete", "assign", "plan", "execute", "succeed", "fail", "update_forecast")
_CAN = {"edit": can_edit, "delete": can_delete, "assign": can_assign, "plan": can_plan,
        "execute": can_execute, "succeed": can_succeed, "fail": can_fail,
        "update_forecast": can_update_forecast}


def may(actor, opp):
    """{step: bool} for the buttons of a page or a list row (``may.edit`` …): templates
    get this, never the rules themselves. The server checks again on every write."""
    return {step: _CAN[step](actor, opp) for step in STEPS}


# ---- input ------------------------------------------------------------------------

def _text(data, field):
    v = data.get(field)
    if v is None:
        return ""
    if not isinstance(v, (str, int, float)) or isinstance(v, bool):
        raise ValidationError(_l("%(field)s格式不正确。", field=LABELS[field]), field=field)
    return str(v).strip()


def parse_rate(value):
    if isinstance(value, bool):
        value = None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d{1,4}\s*", value):
        value = int(value)
    if not isinstance(value, int) or not 0 <= value <= 100:
        raise ValidationError(_l("成功机率必须是 0 到 100 之间的整数。"), field="success_rate")
    return value


def parse_date(value, field="date"):
    """A date written YYYY-MM-DD (e.g. 2007-12-13); the shared rule (``dates``)."""
    return dates.parse_ymd(value, LABELS[field], field)


AMOUNT_MAX = Decimal(10) ** 12          # Numeric(14, 2): below 1,000,000,000,000 元
CLOSE_ON_MIN = date(2000, 1, 1)


def parse_amount(value, field="expected_amount"):
    """预计金额 (元): empty → None; a number or number text ≥ 0 with at most two
    decimals ("120000", "120,000.50", 120000.5); anything else a ValidationError."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    d = None
    if isinstance(value, (int, float, Decimal, str)) and not isinstance(value, bool):
        try:
            d = Decimal(str(value).strip().replace(",", ""))
        except InvalidOperation:
            d = None
    if d is None or not d.is_finite():
        raise ValidationError(_l("%(field)s必须是数字（单位：元），例如 120000 或 120000.50。",
                                 field=LABELS[field]), field=field)
    if d < 0:
        raise ValidationError(_l("%(field)s不能小于 0，请填写 0 或正数，不知道时留空。",
                                 field=LABELS[field]), field=field)
    if d >= AMOUNT_MAX:
        raise ValidationError(_l("%(field)s太大：最多 999,999,999,999.99 元。",
                                 field=LABELS[field]), field=field)
    if d != d.quantize(Decimal("0.01")):
        raise ValidationError(_l("%(field)s最多两位小数（到分）。", field=LABELS[field]),
                              field=field)
    return d.quantize(Decimal("0.01"))


def close_on_max(today=None):
    today = today or date.today()
    return date(today.year + 10, 12, 31)


def parse_close_on(value, field="expected_close_on", today=None):
    """预计成交日期: empty → None; YYYY-MM-DD between 2000-01-01 and ten years ahead."""
    day = dates.parse_ymd(value, LABELS[field], field, required=False)
    if day is not None and not CLOSE_ON_MIN <= day <= close_on_max(today):
        raise ValidationError(
            _l("%(field)s不合理：应在 %(first)s 到 %(last)s 之间，不确定时留空。",
               field=LABELS[field], first=CLOSE_ON_MIN.isoformat(),
               last=close_on_max(today).isoformat()), field=field)
    return day


def clean(data, partial=False):
    """Validate the user-editable fields of ``data``; return {field: value}.

    ``partial``: only the fields present are checked (API PUT); otherwise every
    required field must be given. Unknown or system fields are refused (400).
    """
    for key in data:
        if key not in EDITABLE:
            raise ValidationError(
                _l("字段“%(field)s”不能由用户填写或修改，可修改的字段：%(fields)s。",
                   field=LABELS.get(key, key), fields=str(_l("、")).join(str(LABELS[f]) for f in EDITABLE)),
                field=key)
    out = {}
    errs = Collect()          # every field is checked; all problems are reported at once
    for f in EDITABLE:
        with errs:
            if f not in data:
                if not partial and f in REQUIRED:
                    raise ValidationError(_l("%(field)s不能为空。", field=LABELS[f]), field=f)
                continue
            if f == "success_rate":
                if data[f] is None or (isinstance(data[f], str) and not data[f].strip()):
                    raise ValidationError(_l("%(field)s不能为空。", field=LABELS[f]), field=f)
                out[f] = parse_rate(data[f])
                continue
            if f == "expected_amount":
                out[f] = parse_amount(data[f])
                continue
            if f == "expected_close_on":
                out[f] = parse_close_on(data[f])
                continue
            v = _text(data, f)
            if f in REQUIRED and not v:
                raise ValidationError(_l("%(field)s不能为空。", field=LABELS[f]), field=f)
            if len(v) > MAX_LEN[f]:
                raise ValidationError(_l("%(field)s太长（最多 %(n)d 个字）。", field=LABELS[f],
                                         n=MAX_LEN[f]), field=f)
            if f == "contact_phone" and v:
                # the customer module's phone rule (one rule for every phone number)
                customers.check_phone(v, f, LABELS)
            if f in ("customer_name", "contact"):
                # they become a customer's and a contact's name at 开发成功: the same rule
                check_name(v, f, LABELS[f])
            out[f] = v or None
    errs.raise_any()
    return out


# ---- opportunities ------------------------------------------------------------------

def get(session, opp_id):
    opp = session.get(Opportunity, opp_id) if opp_id is not None else None
    if opp is None:
        raise NotFound(_l("销售机会不存在。"))
    return opp


def for_edit(session, actor, opp_id):
    """The opportunity, when the actor may edit it (see :func:`require_edit`)."""
    opp = get(session, opp_id)
    require_edit(actor, opp)
    return opp


def for_assign(session, actor, opp_id):
    """The opportunity, when the actor may assign it (see :func:`require_assign`)."""
    opp = get(session, opp_id)
    require_assign(actor, opp)
    return opp


def _audit_values(actor):
    return {"changed_by_fk": actor.id, "changed_on": datetime.now()}


def create(session, actor, data):
    """A new ``unassigned`` opportunity; 编号/创建人/创建时间 are set by the system."""
    require_create(actor)
    values = clean(data)
    opp = Opportunity(**values, number=numbering.next_number(session, numbering.PREFIX_OPPORTUNITY),
                      status=UNASSIGNED, created_by_fk=actor.id, changed_by_fk=actor.id)
    session.add(opp)
    session.flush()
    events.record_event(session, ENTITY, opp.id, "create", None, UNASSIGNED, actor_id=actor.id)
    return opp


def update_opportunity(session, actor, opp_id, data):
    """Edit the listed fields of an ``unassigned`` opportunity (creator, 销售主管, admin)."""
    opp = for_edit(session, actor, opp_id)
    values = clean(data, partial=True)
    # compare-and-set on the status: an assign racing with this edit wins or loses as a whole
    events.compare_and_set(session, Opportunity, opp.id, UNASSIGNED,
                           dict(values, **_audit_values(actor)),
                           _l("销售机会已被指派，不能再编辑。"))
    session.refresh(opp)
    return opp


def delete_opportunity(session, actor, opp_id):
    """Delete an ``unassigned`` opportunity; only its creator may."""
    opp = get(session, opp_id)
    require_delete(actor, opp)
    number = opp.number
    try:
        with session.begin_nested():
            result = session.execute(
                sql_delete(Opportunity)
                .where(Opportunity.id == opp.id, Opportunity.status == UNASSIGNED)
                .execution_options(synchronize_session=False))
    except IntegrityError:
        raise Conflict(_l("销售机会 %(number)s 还有关联的文档等记录，不能删除。", number=number))
    if result.rowcount != 1:
        raise Conflict(_l("销售机会已被指派，不能再删除。"))
    session.expunge(opp)
    events.record_event(session, ENTITY, opp_id, "delete", UNASSIGNED, None,
                        note=number, actor_id=actor.id)
    return number


def assignable_managers(session):
    """Active users with role 客户经理 (the choices for 指派给)."""
    return session.scalars(
        select(User).where(User.active.is_(True), User.roles.any(Role.name == MANAGER))
        .order_by(User.id)).all()


def _check_assignee(session, assignee_id):
    if assignee_id is None or assignee_id == "":
        raise ValidationError(_l("请选择要指派的客户经理。"), field="assignee_id")
    try:
        assignee_id = int(assignee_id)
    except (TypeError, ValueError):
        raise ValidationError(_l("指派给的用户编号必须是整数。"), field="assignee_id")
    user = session.get(User, assignee_id)
    if user is None:
        raise ValidationError(_l("要指派的用户不存在。"), field="assignee_id")
    if not user.active:
        raise ValidationError(_l("用户“%(name)s”已停用，不能被指派。", name=user.username),
                              field="assignee_id")
    if not any(r.name == MANAGER for r in user.roles):
        raise ValidationError(_l("只能指派给角色为“客户经理”的用户。"), field="assignee_id")
    return user


def assign(session, actor, opp, assignee_id, now=None):
    """销售主管 assigns an ``unassigned`` opportunity to an active 客户经理 → ``assigned``.

    ``opp``: its id, or the Opportunity already loaded (the 指派 page loads it once to
    show it again when the chosen 客户经理 is refused)."""
    opp = opp if isinstance(opp, Opportunity) else get(session, opp)
    require_assign(actor, opp)
    user = _check_assignee(session, assignee_id)
    now = now or datetime.now().replace(microsecond=0)
    events.compare_and_set(
        session, Opportunity, opp.id, UNASSIGNED,
        dict(status=ASSIGNED, assignee_id=user.id, assigned_on=now, **_audit_values(actor)),
        _l("销售机会 %(number)s 已被他人指派或状态已改变，请刷新后查看。", number=opp.number))
    events.record_event(session, ENTITY, opp.id, "assign", UNASSIGNED, ASSIGNED,
                        note=f"指派给 {user.username}", actor_id=actor.id)
    session.refresh(opp)
    notifications.notify(session, user.id, "opportunity_assigned",
                         _l("销售机会 %(number)s（%(customer)s）指派给您开发", number=opp.number,
                            customer=opp.customer_name), link=f"/opportunity/plan/{opp.id}")
    return opp


MAX_BULK = 100


def parse_ids(value, field="ids"):
    """A list of opportunity ids (JSON numbers or digit strings from a form), without
    repeats, in the order given. Anything else is a ValidationError (400)."""
    if not isinstance(value, (list, tuple)) or not value:
        raise ValidationError(_l("请选择要指派的销售机会（ids 为编号列表，例如 [12, 13]）。"), field=field)
    if len(value) > MAX_BULK:
        raise ValidationError(_l("一次最多指派 %(n)d 条销售机会，请分批指派。", n=MAX_BULK), field=field)
    out = []
    for v in value:
        text = v.strip() if isinstance(v, str) else v
        if isinstance(text, str) and text.isascii() and text.isdigit():
            text = int(text)
        if isinstance(text, bool) or not isinstance(text, int) or not 0 < text < 2**31:
            raise ValidationError(_l("销售机会编号必须是正整数，“%(value)s”不是。", value=str(v)[:40]),
                                  field=field)
        if text not in out:
            out.append(text)
    return out


def unassigned(session, search=None, limit=MAX_BULK):
    """The newest ``unassigned`` opportunities (the 批量指派 page), optionally those whose
    客户名称 or 概要 contains ``search``."""
    q = select(Opportunity).where(Opportunity.status == UNASSIGNED)
    text = (search or "").strip()[:100]
    if text:
        q = q.where(Opportunity.customer_name.contains(text, autoescape=True)
                    | Opportunity.summary.contains(text, autoescape=True))
    return session.scalars(q.order_by(Opportunity.created_on.desc(), Opportunity.id.desc())
                           .limit(limit)).all()


def assign_many(session, actor, opp_ids, assignee_id, now=None):
    """批量指派: each opportunity through :func:`assign` (its own rule check and
    compare-and-set, in its own savepoint), so a row someone else assigned meanwhile
    is refused (409) and the others proceed.

    Refuses the whole request before any row when the actor may not assign (403), the
    ids are not a list of ids, or the 客户经理 may not be assigned (400). Returns
    ``[{"id", "ok", "code", "message"}]`` in the order of ``opp_ids``; the caller
    commits once (the refused rows left nothing behind)."""
    require_assign(actor)
    ids = parse_ids(opp_ids)
    user = _check_assignee(session, assignee_id)
    now = now or datetime.now().replace(microsecond=0)
    done = {}
    for pk in sorted(ids):      # one lock order for every caller: no deadlock between two batches
        try:
            with session.begin_nested():
                opp = assign(session, actor, pk, user.id, now=now)
        except DomainError as e:
            done[pk] = {"id": pk, "ok": False, "code": e.status, "message": str(e.message)}
        else:
            done[pk] = {"id": pk, "ok": True, "code": 200,
                        "message": str(_l("销售机会 %(number)s 已指派给 %(name)s。",
                                          number=opp.number, name=user.username))}
    return [done[pk] for pk in ids]


# ---- development plans ---------------------------------------------------------------

def _lock_assigned(session, opp, actor):
    """Compare-and-set without a status change: the opportunity is still ``assigned`` to
    the same assignee. Holds the row (PostgreSQL row lock / SQLite write lock) until
    commit, so a plan change never slips past a concurrent 开发成功/终止开发."""
    result = session.execute(
        update(Opportunity)
        .where(Opportunity.id == opp.id, Opportunity.status == ASSIGNED,
               Opportunity.assignee_id == opp.assignee_id)
        .values(**_audit_values(actor))
        .execution_options(synchronize_session=False))
    if result.rowcount != 1:
        raise Conflict(_l("销售机会的状态已改变，请刷新后再试。"))


def for_development(session, actor, opp_id):
    """The opportunity, when the actor may execute its plan (see :func:`require_execute`)."""
    opp = get(session, opp_id)
    require_execute(actor, opp)
    return opp


def for_planning(session, actor, opp_id):
    """The opportunity, when the actor may make its plan (see :func:`require_plan`)."""
    opp = get(session, opp_id)
    require_plan(actor, opp)
    return opp


def _get_item(session, opp, item_id):
    item = session.get(PlanItem, item_id) if item_id is not None else None
    if item is None or item.opportunity_id != opp.id:
        raise NotFound(_l("开发计划项不存在。"))
    return item


def _plan_text(data, field, required):
    v = data.get(field)
    if v is not None and not isinstance(v, str):
        raise ValidationError(_l("%(field)s格式不正确。", field=LABELS[field]), field=field)
    v = (v or "").strip()
    if required and not v:
        raise ValidationError(_l("%(field)s不能为空。", field=LABELS[field]), field=field)
    if len(v) > PLAN_MAX_LEN:
        raise ValidationError(_l("%(field)s太长（最多 %(n)d 个字）。", field=LABELS[field],
                                 n=PLAN_MAX_LEN), field=field)
    return v or None


def add_plan_item(session, actor, opp_id, data):
    """日期 (YYYY-MM-DD) + 计划内容, both required (assignee, 销售主管, admin)."""
    opp = for_planning(session, actor, opp_id)
    for key in data:
        if key not in ("date", "content"):
            raise ValidationError(_l("新建计划项只需要日期和计划内容。"), field=key)
    day = parse_date(data.get("date"))
    content = _plan_text(data, "content", required=True)
    _lock_assigned(session, opp, actor)
    item = PlanItem(opportunity_id=opp.id, date=day, content=content,
                    created_by_fk=actor.id, changed_by_fk=actor.id)
    session.add(item)
    session.flush()
    return item


def update_plan_item(session, actor, opp_id, item_id, data):
    """Change 计划内容 (assignee, 销售主管, admin) and/or record 执行效果 (the assignee
    only); the 日期 is fixed after creation."""
    opp = (for_development if "result" in data else for_planning)(session, actor, opp_id)
    item = _get_item(session, opp, item_id)
    if "date" in data:
        raise ValidationError(_l("计划项的日期创建后不能修改；只能修改计划内容和执行效果。"),
                              field="date")
    for key in data:
        if key not in ("content", "result"):
            raise ValidationError(_l("计划项只能修改计划内容和执行效果。"), field=key)
    values = {}
    if "content" in data:
        values["content"] = _plan_text(data, "content", required=True)
    if "result" in data:
        values["result"] = _plan_text(data, "result", required=False)
    _lock_assigned(session, opp, actor)
    for k, v in values.items():
        setattr(item, k, v)
    item.changed_by_fk = actor.id
    session.flush()
    return item


def delete_plan_item(session, actor, opp_id, item_id):
    opp = for_planning(session, actor, opp_id)
    item = _get_item(session, opp, item_id)
    _lock_assigned(session, opp, actor)
    session.delete(item)
    session.flush()


# ---- 预计成交 while 开发中 ------------------------------------------------------------

FORECAST_FIELDS = ("expected_amount", "expected_close_on", "success_rate")


def clean_forecast(data):
    """The fields of :data:`FORECAST_FIELDS` present in ``data``, validated by the rules
    of the edit form (every problem at once); any other field, or none, is a 400."""
    fields = str(_l("、")).join(str(LABELS[f]) for f in FORECAST_FIELDS)
    for key in data:
        if key not in FORECAST_FIELDS:
            raise ValidationError(
                _l("开发中只能更新%(fields)s；“%(field)s”只有未指派时才能编辑。",
                   fields=fields, field=LABELS.get(key, key)), field=key)
    if not data:
        raise ValidationError(_l("请填写要更新的%(fields)s中的至少一项。", fields=fields),
                              field="expected_amount")
    return clean(data, partial=True)


def update_forecast(session, actor, opp_id, data):
    """更新预计成交 of an ``assigned`` opportunity: only the fields given change (an empty
    预计金额/预计成交日期 clears it). Compare-and-set on status and assignee: when a
    concurrent 开发成功/终止开发 got there first, 409 and nothing changed. One
    WorkflowEvent ``forecast`` records the changes as ``{"field": [old, new]}``."""
    opp = get(session, opp_id)
    require_update_forecast(actor, opp)
    values = clean_forecast(data)
    before = {f: getattr(opp, f) for f in values}
    result = session.execute(
        update(Opportunity)
        .where(Opportunity.id == opp.id, Opportunity.status == ASSIGNED,
               Opportunity.assignee_id == opp.assignee_id)
        .values(**values, **_audit_values(actor))
        .execution_options(synchronize_session=False))
    if result.rowcount != 1:
        raise Conflict(_l("销售机会 %(number)s 的状态已改变（已开发成功或已终止），不能再更新预计成交。",
                          number=opp.number))
    changes = {f: [_json_value(before[f]), _json_value(v)] for f, v in values.items()
               if _json_value(before[f]) != _json_value(v)}
    events.record_event(session, ENTITY, opp.id, "forecast", ASSIGNED, ASSIGNED,
                        note=json.dumps(changes, ensure_ascii=False, sort_keys=True),
                        actor_id=actor.id)
    session.refresh(opp)
    return opp


def _json_value(v):
    if isinstance(v, Decimal):
        return f"{v:.2f}"
    if isinstance(v, date):
        return v.isoformat()
    return v


# ---- closing: 开发成功 / 终止开发 -------------------------------------------------------

def _contact_phones(phone):
    if not phone:
        return None, None
    return (None, phone) if MOBILE_RE.match(phone.replace(" ", "")) else (phone, None)


class DuplicateCustomer(Conflict):
    """开发成功 would create a customer whose name an existing customer already has.
    ``existing``: those customers (oldest first). Answer again with
    ``link_customer_id`` (link to one of them) or ``create_anyway``."""

    def __init__(self, message, existing):
        super().__init__(message, field="customer_name")
        self.existing = existing

    def to_dict(self):
        body = super().to_dict()
        body["existing_customer_id"] = self.existing[0].id
        body["existing_customers"] = [{"id": c.id, "number": c.number, "name": c.name}
                                      for c in self.existing]
        return body


def customers_named(session, name):
    """Existing (not merged-away) customers with exactly this name, oldest first."""
    name = (name or "").strip()
    return session.scalars(select(Customer).where(Customer.name == name,
                                                  Customer.merged_into_id.is_(None))
                           .order_by(Customer.id)).all()


def _link_target(session, link_customer_id):
    try:
        pk = int(link_customer_id)
        if isinstance(link_customer_id, bool):
            raise ValueError
    except (TypeError, ValueError):
        raise ValidationError(_l("要关联的客户编号 link_customer_id 必须是整数。"),
                              field="link_customer_id")
    customer = session.get(Customer, pk) if -2**31 <= pk < 2**31 else None
    if customer is None:
        raise ValidationError(_l("要关联的客户不存在。"), field="link_customer_id")
    if customer.merged_into_id:
        raise ValidationError(_l("客户 %(number)s 已合并到另一客户，请关联合并后的客户。",
                                 number=customer.number), field="link_customer_id")
    return customer


def succeed(session, actor, opp_id, link_customer_id=None, create_anyway=False):
    """开发成功: ``assigned`` → ``succeeded``; creates the Customer (name, manager =
    assignee, phone) and a Contact when a 联系人 was given, and links it — one transaction.

    When a customer of the same name exists already, nothing is written and
    :class:`DuplicateCustomer` (409) names it, unless the caller decides:
    ``link_customer_id`` links the opportunity to that existing customer (the 联系人 is
    added to it; no new customer), ``create_anyway`` creates a second one.
    Returns (opportunity, customer)."""
    if not isinstance(create_anyway, bool):
        raise ValidationError(_l("create_anyway 必须是 true 或 false。"), field="create_anyway")
    opp = get(session, opp_id)
    require_succeed(actor, opp)
    linked = None
    if link_customer_id not in (None, ""):
        linked = _link_target(session, link_customer_id)
    elif not create_anyway:
        existing = customers_named(session, opp.customer_name)
        if existing:
            raise DuplicateCustomer(
                _l("已有同名客户“%(name)s”（%(numbers)s）：请选择关联到已有客户，或确认仍然新建客户。",
                   name=opp.customer_name, numbers="、".join(c.number for c in existing)),
                existing)
    manager_id = opp.assignee_id
    events.compare_and_set(
        session, Opportunity, opp.id, ASSIGNED,
        dict(status=SUCCEEDED, **_audit_values(actor)),
        _l("销售机会 %(number)s 的状态已改变（已开发成功或已终止），不能重复操作。",
           number=opp.number))
    if linked is not None:
        customer = linked
    else:
        customer = Customer(number=numbering.next_number(session, numbering.PREFIX_CUSTOMER),
                            name=opp.customer_name, manager_id=manager_id,
                            phone=opp.contact_phone, status="normal", created_by_fk=actor.id,
                            changed_by_fk=actor.id)
        session.add(customer)
        session.flush()
    if opp.contact:
        office, mobile = _contact_phones(opp.contact_phone)
        session.add(Contact(customer_id=customer.id, name=opp.contact, office_phone=office,
                            mobile=mobile, memo=str(_l("由销售机会 %(number)s 开发成功时创建",
                                                         number=opp.number)),
                            created_by_fk=actor.id, changed_by_fk=actor.id))
    session.execute(update(Opportunity).where(Opportunity.id == opp.id)
                    .values(customer_id=customer.id, **_audit_values(actor))
                    .execution_options(synchronize_session=False))
    note = f"关联已有客户 {customer.number}" if linked is not None else f"客户 {customer.number}"
    events.record_event(session, ENTITY, opp.id, "succeed", ASSIGNED, SUCCEEDED,
                        note=note, actor_id=actor.id)
    session.flush()
    session.refresh(opp)
    return opp, customer


def fail(session, actor, opp_id, note=None):
    """终止开发: ``assigned`` → ``failed``."""
    opp = get(session, opp_id)
    require_fail(actor, opp)
    events.compare_and_set(
        session, Opportunity, opp.id, ASSIGNED, dict(status=FAILED, **_audit_values(actor)),
        _l("销售机会 %(number)s 的状态已改变（已开发成功或已终止），不能重复操作。",
           number=opp.number))
    events.record_event(session, ENTITY, opp.id, "fail", ASSIGNED, FAILED, note=note,
                        actor_id=actor.id)
    session.refresh(opp)
    return opp


def of_customer(session, customer_id):
    """The opportunities whose 开发成功 created (or linked) this customer, oldest first."""
    return session.scalars(select(Opportunity).where(Opportunity.customer_id == customer_id)
                           .order_by(Opportunity.id)).all()


def plan_items_by_opportunity(session, opportunity_ids):
    """{opportunity id: [PlanItem, ...] by date} for many opportunities in one query
    (REST lists and the 我的开发计划 export; never one query per opportunity)."""
    ids = list(opportunity_ids)
    out = {i: [] for i in ids}
    if ids:
        for item in session.scalars(select(PlanItem).where(PlanItem.opportunity_id.in_(ids))
                                    .order_by(PlanItem.date, PlanItem.id)):
            out[item.opportunity_id].append(item)
    return out

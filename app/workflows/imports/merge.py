"""合并客户: fold one customer into another in one transaction (销售主管/admin)."""
from datetime import datetime

from flask_babel import lazy_gettext as _l
from sqlalchemy import select, update

from ...models import (
    Activity, ChurnWarning, Contact, Customer, CustomerNumberAlias, Document,
    DocumentFolder, MailMessage, Opportunity, ServiceTicket,
)
from ...models.customer import CHURN_OPEN
from .. import customers as cwf
from .. import events
from ..errors import Conflict, Forbidden, NotFound, ValidationError
from .jobs import can_merge

# ---- merge ---------------------------------------------------------------------------------------

# customer fields chosen one by one (API names; region/level/manager map to their columns)
MERGE_FIELDS = ("name", "region", "manager_id", "level", "satisfaction", "credit", "address",
                "zip_code", "phone", "fax", "website", "license_no", "legal_person",
                "registered_capital", "annual_turnover", "bank", "bank_account",
                "local_tax_no", "national_tax_no")
_MERGE_COLUMN = {"region": "region_id", "level": "level_id"}
SURVIVOR, MERGED = "survivor", "merged"
# records that follow the customer (model, label for the summary)
MOVED = ((Contact, "contacts"), (Activity, "activities"), (ServiceTicket, "services"),
         (Document, "documents"), (DocumentFolder, "folders"), (MailMessage, "mail"),
         (ChurnWarning, "churn"), (Opportunity, "opportunities"))


def merge_column(field):
    return _MERGE_COLUMN.get(field, field)


def _int_id(value, field):
    try:
        if isinstance(value, bool):
            raise ValueError
        return int(value)
    except (TypeError, ValueError):
        raise ValidationError(_l("请指定要合并的两个客户（客户序号）。"), field=field)


def merge(session, actor, survivor_id, merged_id, field_choices=None, confirm_lost=False,
          now=None):
    """Fold customer ``merged_id`` into ``survivor_id`` (one transaction, the caller
    commits). ``field_choices`` = {field: "survivor" | "merged"} (default survivor).

    Contacts, activities, service tickets, documents and folders, mail, churn
    warnings and opportunities move to the survivor; the merged customer's number
    (and the numbers already aliased to it) become aliases of the survivor, so its
    orders in the sales system count for the survivor; the merged customer keeps
    its row with status ``merged`` and ``merged_into_id``. Returns a summary dict."""
    if not can_merge(actor):
        raise Forbidden(_l("只有销售主管或系统管理员可以合并客户。"))
    sid, mid = _int_id(survivor_id, "survivor_id"), _int_id(merged_id, "merged_id")
    if sid == mid:
        raise Conflict(_l("不能把客户合并到它自己。"))
    found = {c.id: c for c in session.scalars(
        select(Customer).where(Customer.id.in_((sid, mid))).order_by(Customer.id)
        .with_for_update())}
    if sid not in found or mid not in found:
        raise NotFound(_l("客户不存在。"))
    survivor, merged = found[sid], found[mid]
    for c in (survivor, merged):
        if c.status == cwf.MERGED:
            raise Conflict(_l("客户 %(number)s %(name)s 已经合并到其他客户，不能再合并。",
                              number=c.number, name=c.name))
    if not confirm_lost:
        for c in (survivor, merged):
            if c.status == cwf.LOST:
                raise Conflict(_l("客户 %(number)s %(name)s 已流失；如确实要合并，请确认合并已流失的客户。",
                                  number=c.number, name=c.name))
    choices = field_choices or {}
    if not isinstance(choices, dict):
        raise ValidationError(_l("字段选择必须是 JSON 对象。"), field="fields")
    values = {}
    for field, choice in choices.items():
        if field not in MERGE_FIELDS:
            raise ValidationError(_l("字段“%(field)s”不能在合并时选择。",
                                     field=cwf.LABELS.get(field, field)), field="fields")
        if choice not in (SURVIVOR, MERGED):
            raise ValidationError(_l("字段“%(field)s”的取值只能是 survivor（保留客户）或 merged（被合并客户）。",
                                     field=cwf.LABELS.get(field, field)), field="fields")
        if choice == MERGED:
            col = merge_column(field)
            if getattr(merged, col) != getattr(survivor, col):
                values[col] = getattr(merged, col)
    W = ChurnWarning
    open_ = session.execute(select(W.customer_id).where(W.customer_id.in_((sid, mid)),
                                                        W.status.in_(CHURN_OPEN))).all()
    if len({r[0] for r in open_}) == 2:
        raise Conflict(_l("两个客户都有未处理的流失预警，请先处理其中一个后再合并。"))
    now = now or datetime.now().replace(microsecond=0)
    from_status, survivor_status = merged.status, survivor.status

    moved = {}
    # folders: a top-level folder with the same name as one of the survivor's is renamed
    F = DocumentFolder
    taken = set(session.scalars(select(F.name).where(F.customer_id == sid, F.parent_id.is_(None))))
    for folder in session.scalars(select(F).where(F.customer_id == mid, F.parent_id.is_(None))):
        if folder.name in taken:
            folder.name = f"{folder.name}（{merged.number}）"[:128]
    session.flush()
    for model, key in MOVED:
        result = session.execute(update(model).where(model.customer_id == mid)
                                 .values(customer_id=sid)
                                 .execution_options(synchronize_session=False))
        moved[key] = result.rowcount
    # the per-customer order rollup (客户贡献分析): the merged customer's years count
    # for the survivor from now on, as its numbers do (aliases below)
    from ..rollup import fold_merged
    fold_merged(session, sid, mid)
    A = CustomerNumberAlias
    moved["aliases"] = session.execute(
        update(A).where(A.customer_id == mid).values(customer_id=sid, changed_on=now,
                                                     changed_by_fk=actor.id)
        .execution_options(synchronize_session=False)).rowcount
    session.add(A(number=merged.number, customer_id=sid, merged_from_id=mid,
                  note=f"{merged.name} 于 {now:%Y-%m-%d} 合并到 {survivor.number} {survivor.name}",
                  created_on=now, changed_on=now, created_by_fk=actor.id,
                  changed_by_fk=actor.id))
    events.compare_and_set(session, Customer, mid, (cwf.NORMAL, cwf.LOST),
                           {"status": cwf.MERGED, "merged_into_id": sid, "changed_on": now,
                            "changed_by_fk": actor.id},
                           _l("被合并的客户刚刚被他人修改，请刷新后再试。"))
    events.compare_and_set(session, Customer, sid, (survivor_status,),
                           dict(values, changed_on=now, changed_by_fk=actor.id),
                           _l("保留的客户刚刚被他人修改，请刷新后再试。"))
    events.record_event(session, "customer", sid, "merge", survivor_status, survivor_status,
                        note=f"合并了客户 {merged.number} {merged.name}", actor_id=actor.id)
    events.record_event(session, "customer", mid, "merged", from_status, cwf.MERGED,
                        note=f"合并到客户 {survivor.number} {survivor.name}", actor_id=actor.id)
    session.flush()
    session.expire_all()
    return {"survivor_id": sid, "merged_id": mid, "moved": moved,
            "fields": sorted(values), "alias": merged.number}


def merge_history(session, customer_id):
    """The numbers aliased to a customer (newest first) and the customers merged into it."""
    A = CustomerNumberAlias
    aliases = session.scalars(select(A).where(A.customer_id == customer_id)
                              .order_by(A.created_on.desc())).all()
    return aliases

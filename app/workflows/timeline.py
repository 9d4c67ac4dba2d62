"""客户动态: one chronological feed (newest first) of everything that happened to a customer.

Sources (``KINDS``), one SQL query each, every one limited:

============  ==========================  ===============================  ==================
kind          what                        time                             who
============  ==========================  ===============================  ==================
activity      交往记录                     its date (a day, no time)        who recorded it
ticket        客户服务 (one per ticket)    created                          creator
mail          邮件 of the customer         sent / received / written        owner (sender)
document      文档 (one per version)       uploaded                         uploader
opportunity   the 销售机会 it came from    开发成功 (last change)           who marked it
churn         流失预警                     warned                           the daily job (系统任务)
measure       暂缓措施                     written                          author
change        信息变更 (操作记录)          the change                       who changed it
============  ==========================  ===============================  ==================

Only what the actor may read, by each module's own rule: documents
``documents.readable_clause`` (``DOCUMENT_READ_SCOPE``), mail ``mail.readable_filter``,
churn warnings and measures ``churn.visible_filter`` (a 客户经理: his own customers),
the rest readable by everyone who reads the customer (``rights.can_read_customer``:
all staff). Which kinds the actor may see at all (the function's ``can_list``, e.g.
no 邮件 function, no mail) is decided by the caller and passed as ``kinds``.

Paging is by offset over the merged feed: page ``p`` of size ``n`` needs the newest
``(p + 1) * n`` rows of each kind — every source query is ``ORDER BY time DESC LIMIT
(p + 1) * n``, the rows are merged (``heapq.merge``) and the page is cut out. The
window is capped (``MAX_WINDOW``), so nothing ever loads a customer's whole history;
the counts are one ``COUNT`` per kind.
"""
import heapq
from dataclasses import dataclass, field
from datetime import date, datetime, time

from flask_babel import lazy_gettext as _l
from sqlalchemy import false, func, null, select, true

from ..models import (ChurnMeasure, ChurnWarning, Customer, Document, MailMessage, Opportunity,
                      ServiceTicket, Activity, WorkflowEvent)
from . import churn as churn_wf
from . import documents as docs_wf
from . import mail as mail_wf
from . import service as service_wf
from .errors import ValidationError
from .rights import can_read_customer

KINDS = ("activity", "ticket", "mail", "document", "opportunity", "churn", "measure", "change")
KIND_LABELS = {
    "activity": _l("交往记录"), "ticket": _l("客户服务"), "mail": _l("邮件"),
    "document": _l("文档"), "opportunity": _l("销售机会"), "churn": _l("流失预警"),
    "measure": _l("暂缓措施"), "change": _l("信息变更"),
}
# the function (view menu) whose can_list opens each kind
FUNCTIONS = {"activity": "Activity", "ticket": "Service", "mail": "Mail",
             "document": "Document", "opportunity": "Opportunity", "churn": "Churn",
             "measure": "Churn", "change": "Customer"}
# ties (same time) in a stable order: the later step of a story first
_RANK = {k: i for i, k in enumerate(KINDS)}

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
MAX_WINDOW = 5000          # (page + 1) * page_size: rows read per kind at most
TEXT_LEN = 120             # a short text: the first characters

CUSTOMER_ENTITY = Customer.__tablename__   # field changes (app/workflows/audit.py)


@dataclass
class Entry:
    kind: str
    id: int
    time: datetime
    all_day: bool
    user_id: int = None
    title: str = ""
    text: str = ""
    ref: dict = field(default_factory=dict)    # ids the caller needs to link the record
    user_name: str = None
    url: str = None                            # set by the caller (views know the routes)

    @property
    def kind_label(self):
        return KIND_LABELS[self.kind]


@dataclass
class Page:
    entries: list
    count: int
    counts: dict
    page: int
    page_size: int
    kind: str = None

    @property
    def pages(self):
        return max(1, -(-self.count // self.page_size))

    def to_json(self):
        return {
            "count": self.count, "page": self.page, "page_size": self.page_size,
            "kind": self.kind, "counts": self.counts,
            "result": [{
                "kind": e.kind, "kind_label": str(e.kind_label), "id": e.id,
                "time": e.time.isoformat(timespec="seconds"), "all_day": e.all_day,
                "user_id": e.user_id, "user_name": e.user_name, "title": e.title,
                "text": e.text, "url": e.url,
            } for e in self.entries],
        }


# ---- input -----------------------------------------------------------------------------

def clean_kind(kind):
    """'' / None / 'all' → None (every kind); a known kind → itself; else 400."""
    if kind is None or str(kind).strip() in ("", "all"):
        return None
    kind = str(kind).strip()
    if kind not in KINDS:
        raise ValidationError(_l("动态类别“%(kind)s”不存在：只能是 %(kinds)s 或 all。",
                                 kind=kind[:40], kinds="、".join(KINDS)), field="kind")
    return kind


def _int(value, field, label, low, high, default):
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    try:
        n = int(str(value).strip())
    except ValueError:
        n = None
    if n is None or not low <= n <= high:
        raise ValidationError(_l("%(label)s必须是 %(low)d 到 %(high)d 之间的整数。",
                                 label=label, low=low, high=high), field=field)
    return n


def clean_paging(page, page_size):
    """(page from 0, page size 1–100); the window (page + 1) * size at most MAX_WINDOW."""
    size = _int(page_size, "page_size", _l("page_size（每页条数）"), 1, MAX_PAGE_SIZE,
                DEFAULT_PAGE_SIZE)
    last = MAX_WINDOW // size - 1
    page = _int(page, "page", _l("page（页码，从 0 开始）"), 0, last, 0)
    return page, size


# ---- the sources -----------------------------------------------------------------------

def _short(value, n=TEXT_LEN):
    text = " ".join((value or "").split())
    return text if len(text) <= n else text[:n - 1] + "…"


def _sources(actor, customer, document_scope):
    """{kind: (select of (id, time, user_id, a, b, c), time column, id column)}."""
    cid = customer.id
    staff = true() if can_read_customer(actor, customer) else false()
    mail_rule = mail_wf.readable_filter(actor)
    churn_rule = churn_wf.visible_filter(actor)
    mail_time = func.coalesce(MailMessage.sent_on, MailMessage.received_on,
                              MailMessage.created_on)
    out = {
        "activity": (select(Activity.id, Activity.date, Activity.created_by_fk, Activity.summary,
                            Activity.place, Activity.detail)
                     .where(Activity.customer_id == cid, staff), Activity.date, Activity.id),
        "ticket": (select(ServiceTicket.id, ServiceTicket.created_on, ServiceTicket.created_by_fk,
                          ServiceTicket.number, ServiceTicket.summary, ServiceTicket.status)
                   .where(ServiceTicket.customer_id == cid, staff),
                   ServiceTicket.created_on, ServiceTicket.id),
        "mail": (select(MailMessage.id, mail_time, MailMessage.owner_id, MailMessage.subject,
                        MailMessage.status, MailMessage.sender)
                 .where(MailMessage.customer_id == cid,
                        true() if mail_rule is None else mail_rule),
                 mail_time, MailMessage.id),
        "document": (select(Document.id, Document.created_on, Document.created_by_fk,
                            Document.name, Document.version, Document.folder_id)
                     .join(Customer, Customer.id == Document.customer_id)
                     .where(Document.customer_id == cid,
                            docs_wf.readable_clause(actor, document_scope)),
                     Document.created_on, Document.id),
        "opportunity": (select(Opportunity.id, Opportunity.changed_on, Opportunity.changed_by_fk,
                               Opportunity.number, Opportunity.summary, null())
                        .where(Opportunity.customer_id == cid, staff),
                        Opportunity.changed_on, Opportunity.id),
        "churn": (select(ChurnWarning.id, ChurnWarning.warned_on, ChurnWarning.created_by_fk,
                         ChurnWarning.status, ChurnWarning.reason, ChurnWarning.last_order_date)
                  .where(ChurnWarning.customer_id == cid,
                         true() if churn_rule is None else churn_rule),
                  ChurnWarning.warned_on, ChurnWarning.id),
        "measure": (select(ChurnMeasure.id, ChurnMeasure.created_on, ChurnMeasure.created_by_fk,
                           ChurnMeasure.text, ChurnMeasure.warning_id, null())
                    .join(ChurnWarning, ChurnWarning.id == ChurnMeasure.warning_id)
                    .where(ChurnWarning.customer_id == cid,
                           true() if churn_rule is None else churn_rule),
                    ChurnMeasure.created_on, ChurnMeasure.id),
        "change": (select(WorkflowEvent.id, WorkflowEvent.created_on, WorkflowEvent.created_by_fk,
                          WorkflowEvent.action, WorkflowEvent.note, null())
                   .where(WorkflowEvent.entity == CUSTOMER_ENTITY,
                          WorkflowEvent.entity_id == cid, staff),
                   WorkflowEvent.created_on, WorkflowEvent.id),
    }
    return out


def _change_text(action, note, labels):
    from .audit import parse_note

    if action == "insert":
        return str(_l("新建客户")), ""
    changes = parse_note(note) or {}
    fields = [str(labels.get(k[:-3] if k.endswith("_id") and k[:-3] in labels else k, k))
              for k in changes]
    title = str(_l("修改客户信息")) if action == "update" else str(_l("删除客户"))
    parts = []
    for k, (old, new) in changes.items():
        label = str(labels.get(k[:-3] if k.endswith("_id") and k[:-3] in labels else k, k))
        if k == "status":
            from .customers import status_label
            old, new = status_label(old), status_label(new)
        parts.append(str(_l("%(field)s：%(old)s → %(new)s", field=label,
                            old=_short(str(old) if old is not None else "", 30),
                            new=_short(str(new) if new is not None else "", 30))))
    return title, _short(str(_l("；")).join(parts) or str(_l("、")).join(fields))


def _entry(kind, row):
    pk, when, user_id, a, b, c = row
    all_day = isinstance(when, date) and not isinstance(when, datetime)
    if all_day:
        when = datetime.combine(when, time.min)
    elif when is None:
        when = datetime.min
    e = Entry(kind=kind, id=pk, time=when, all_day=all_day, user_id=user_id)
    if kind == "activity":
        e.title = _short(a, 60)
        e.text = _short(str(_l("%(place)s：%(detail)s", place=b, detail=c)) if b else c)
    elif kind == "ticket":
        e.title = f"{a} {_short(b, 60)}"
        e.text = str(service_wf.status_label(c))
    elif kind == "mail":
        e.title = _short(a, 80) or str(_l("（无主题）"))
        e.text = f"{mail_wf.status_label(b)} · {c}" if c else str(mail_wf.status_label(b))
    elif kind == "document":
        e.title = a
        e.text = str(_l("第 %(n)d 版", n=b or 1))
        e.ref = {"folder_id": c}
    elif kind == "opportunity":
        e.title = str(_l("由销售机会 %(number)s 开发而来", number=a))
        e.text = _short(b)
    elif kind == "churn":
        e.title = str(_l("流失预警（%(status)s）", status=churn_wf.status_label(a)))
        e.text = _short(b) if b else (str(_l("上次下单：%(d)s", d=c.isoformat())) if c
                                      else str(_l("没有订单记录")))
    elif kind == "measure":
        e.title = str(_l("暂缓措施"))
        e.text = _short(a)
        e.ref = {"warning_id": b}
    elif kind == "change":
        from .customers import LABELS
        e.title, e.text = _change_text(a, b, LABELS)
    return e


def _key(e):
    return (e.time, -_RANK[e.kind], e.id)


def feed(session, actor, customer, kinds, kind=None, page=0, page_size=DEFAULT_PAGE_SIZE,
         document_scope="restricted"):
    """One page of the customer's feed, newest first, over ``kinds`` (the kinds the
    actor may open) or only ``kind``. ``kind`` and the paging are cleaned here (400 on
    bad input); returns a :class:`Page` with the per-kind counts of ``kinds``."""
    kind = clean_kind(kind)
    page, page_size = clean_paging(page, page_size)
    sources = _sources(actor, customer, document_scope)
    counts = {}
    for k in kinds:
        stmt = sources[k][0]
        counts[k] = session.scalar(select(func.count()).select_from(stmt.subquery()))
    shown = [k for k in kinds if kind in (None, k) and counts.get(k)]
    window = (page + 1) * page_size
    streams = []
    for k in shown:
        stmt, when, pk = sources[k]
        rows = session.execute(stmt.order_by(when.desc(), pk.desc()).limit(window)).all()
        streams.append([_entry(k, r) for r in rows])
    merged = heapq.merge(*streams, key=_key, reverse=True)
    entries = [e for i, e in enumerate(merged) if i < window][page * page_size:]
    names = churn_wf.user_names(session, {e.user_id for e in entries})
    for e in entries:
        e.user_name = names.get(e.user_id)
    total = sum(counts[k] for k in shown) if kind is None else counts.get(kind, 0)
    return Page(entries=entries, count=total, counts=counts, page=page, page_size=page_size,
                kind=kind)

"""邮件收发: compose/send over SMTP (Flask-Mail), fetch over IMAP, link mail to customers.

Rules (DESIGN.md §5.7):

- Every outgoing message is stored first (status ``draft``, committed), then handed
  to the SMTP server, then marked ``sent`` (sent_on) or ``failed`` with the SMTP error
  in Chinese kept on the record. A failed message is retried on the same record.
  Transitions are compare-and-set and each writes a WorkflowEvent.
- A message is linked to a customer when a recipient (outgoing) or the sender or a
  recipient (incoming) matches one of its contacts' e-mail addresses
  (case-insensitive), or explicitly (sent from the customer page), or through
  ``In-Reply-To``/``References`` to a message already linked.
- Incoming mail is stored once per Message-ID (messages without one get a stable
  id synthesized from a hash of their raw bytes); two fetches never duplicate.
- Who reads what: the owner reads their mail; mail linked to a customer is read by
  whoever may read that customer (all staff); unowned, unlinked mail only by admins.
  Only the owner (or an admin) retries a failed message.

The functions take a SQLAlchemy session, an ``Actor`` (or the acting user id for CLI
jobs) and the app config (a mapping); they never see a request.
"""
import hashlib
import imaplib
import os
import re
import smtplib
import socket
from datetime import datetime
from email import message_from_bytes, policy as email_policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import (format_datetime, getaddresses, make_msgid, parseaddr,
                         parsedate_to_datetime)

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError

from .. import metrics
from ..models import Contact, Customer, Document, MailAttachment, MailMessage, User
from ..models.mail import MAIL_STATUS_LABELS as STATUS_LABELS
from . import events, quick_search
from . import documents as docs_wf
from .errors import Conflict, Forbidden, NotFound, ValidationError
from .names import header_safe
from .rights import can_read_customer

ENTITY = "mail"
BOXES = ("inbox", "sent", "failed", "all")
MAX_RECIPIENTS = 50
MAX_SUBJECT = 998
DEFAULT_MAX_ATTACHMENT_BYTES = 20 * 1024 * 1024
SYNTH_DOMAIN = "crm.synthesized"


# ---- small helpers ---------------------------------------------------------------

def status_label(status):
    return STATUS_LABELS.get(status, status)


_SEPARATORS = {",", ";", "，", "；", "、", "\n", "\r"}


def _split_outside_quotes(text):
    """'王总 <a@x.cn>; "Li, Si" <b@y.cn>，c@z.cn' → the pieces between separators
    (, ; ， ； 、 or a line break) that are not inside quotes or <>."""
    pieces, buf, quoted, angle, escaped = [], [], False, False, False
    for ch in text:
        if escaped:
            buf.append(ch)
            escaped = False
            continue
        if ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == "<" and not quoted:
            angle = True
        elif ch == ">" and not quoted:
            angle = False
        elif ch in _SEPARATORS and not quoted and not angle:
            pieces.append("".join(buf))
            buf = []
            continue
        buf.append(ch)
    pieces.append("".join(buf))
    return [p.strip() for p in pieces if p.strip()]


def parse_address_list(value, field="to"):
    """Recipients as people type them → [(display name, address)], addresses validated.

    Accepts ``王总 <wang@partner.cn>``, ``"Wang, Zong" <w@p.cn>``, bare addresses, and
    lists separated by , ; ， ； 、 or line breaks (bare addresses also by spaces), as a
    string or a list of strings. The display name is kept (control characters removed);
    the address part must be a valid address, else ValidationError naming ``field``.
    """
    if value is None or value == "":
        return []
    items = value if isinstance(value, (list, tuple)) else [value]
    out = []
    for item in items:
        if not isinstance(item, str):
            raise ValidationError(_l("收件人地址必须是字符串。"), field=field)
        for piece in _split_outside_quotes(item):
            if "<" in piece or '"' in piece:
                pairs = getaddresses([piece])
                if len(pairs) != 1 or not pairs[0][1]:
                    raise ValidationError(_l("邮件地址“%(addr)s”格式不正确。", addr=piece),
                                          field=field)
                name, addr = pairs[0]
                if "<" in piece and not re.search(r"<\s*[^<>]+\s*>\s*$", piece):
                    raise ValidationError(_l("邮件地址“%(addr)s”格式不正确。", addr=piece),
                                          field=field)
                out.append((header_safe(name), normalize_address(addr, field, shown=piece)))
            else:
                for token in piece.split():
                    out.append(("", normalize_address(token, field)))
    return out


def split_addresses(text):
    """The bare addresses of a stored or typed recipient list (tolerant: never raises
    for stored text; pieces that are not addresses are skipped)."""
    if not text:
        return []
    out = []
    for piece in _split_outside_quotes(text if isinstance(text, str) else ", ".join(text)):
        if "<" in piece or '"' in piece:
            addr = getaddresses([piece])[0][1] if getaddresses([piece]) else ""
            if addr:
                out.append(addr)
        else:
            out.extend(t for t in piece.split() if "@" in t)
    return out


def address_pairs(text):
    """[(display name, address)] of a stored recipient list (tolerant)."""
    if not text:
        return []
    out = []
    for piece in _split_outside_quotes(text):
        if "<" in piece or '"' in piece:
            pairs = getaddresses([piece])
            if pairs and pairs[0][1]:
                out.append((header_safe(pairs[0][0]), pairs[0][1]))
        else:
            out.extend(("", t) for t in piece.split() if "@" in t)
    return out


def format_address(name, addr):
    """'王总 <wang@partner.cn>' (display name quoted when needed) or the bare address."""
    name = header_safe(name)
    if not name:
        return addr
    try:
        return str(Address(display_name=name, addr_spec=addr))
    except (ValueError, IndexError, TypeError):
        return addr


_ADDRESS_RE = re.compile(
    r"^(?!\.)(?!.*\.\.)[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}(?<!\.)"
    r"@(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")


def normalize_address(addr, field="to", shown=None):
    """A validated bare address (domain lower-cased) or ValidationError naming the field."""
    bare = (addr or "").strip()
    if not _ADDRESS_RE.match(bare):
        raise ValidationError(_l("邮件地址“%(addr)s”格式不正确。", addr=shown or addr), field=field)
    local, domain = bare.rsplit("@", 1)
    return f"{local}@{domain.lower()}"


def _int_list(value, field):
    if value in (None, ""):
        return []
    if isinstance(value, (int, str)):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise ValidationError(_l("%(field)s 必须是编号列表。", field=field), field=field)
    out = []
    for v in value:
        try:
            out.append(int(v))
        except (TypeError, ValueError):
            raise ValidationError(_l("%(field)s 必须是编号列表。", field=field), field=field)
    return list(dict.fromkeys(out))


def contacts_by_address(session, addresses):
    """{lower(address): Contact} for contacts whose e-mail matches (one query)."""
    lowered = sorted({a.lower() for a in addresses if a})
    if not lowered:
        return {}
    rows = session.scalars(
        select(Contact).where(func.lower(Contact.email).in_(lowered)).order_by(Contact.id)
    ).all()
    out = {}
    for c in rows:
        out.setdefault(c.email.lower(), c)
    return out


def users_by_address(session, addresses):
    """{lower(address): user id} for active users whose e-mail matches (one query)."""
    lowered = sorted({a.lower() for a in addresses if a})
    if not lowered:
        return {}
    rows = session.execute(
        select(User.id, User.email).where(func.lower(User.email).in_(lowered),
                                          User.active.is_(True)).order_by(User.id)
    ).all()
    out = {}
    for uid, email in rows:
        out.setdefault(email.lower(), uid)
    return out


def _default_sender(config):
    sender = config.get("MAIL_DEFAULT_SENDER") or "crm@localhost"
    if isinstance(sender, (list, tuple)):
        sender = f"{sender[0]} <{sender[1]}>"
    return sender


def _sender_for(actor, config):
    """From: '<actor name> <company sender address>' (replies come back to the CRM mailbox).
    The name is made header-safe (a legacy name with CR/LF cannot break sending)."""
    _name, addr = parseaddr(_default_sender(config))
    return format_address(actor.name or "", addr)


# ---- rights -------------------------------------------------------------------------

def can_read(actor, mail):
    if actor.is_admin or (mail.owner_id is not None and mail.owner_id == actor.id):
        return True
    return mail.customer is not None and can_read_customer(actor, mail.customer)


def readable_filter(actor):
    """A WHERE clause for the mail this actor may read (None = everything)."""
    if actor.is_admin:
        return None
    conds = [MailMessage.owner_id == actor.id]
    if actor.roles:  # all staff read all customers (DESIGN.md §5.3)
        conds.append(MailMessage.customer_id.isnot(None))
    return or_(*conds)


def get_mail(session, actor, mail_id):
    mail = session.get(MailMessage, mail_id)
    if mail is None:
        raise NotFound(_l("邮件不存在。"))
    if not can_read(actor, mail):
        raise Forbidden(_l("您无权查看这封邮件。"))
    return mail


def search_condition(text, dialect="postgresql"):
    """快速搜索 of 我的邮箱: every word in the subject, the sender or the recipients
    (收件人、抄送); None for no text."""
    return quick_search.condition([MailMessage.subject, MailMessage.sender,
                                   MailMessage.recipients, MailMessage.cc], text, dialect)


def search(session, actor, box="all", subject=None, address=None, customer=None,
           customer_id=None, page=0, page_size=20, text=None):
    """(count, [MailMessage]) newest first. ``box``: inbox | sent | failed | all.

    inbox/sent/failed are the actor's own mailbox (admins' inbox also shows received
    mail that belongs to nobody); ``all`` is everything the actor may read.
    ``text``: the 快速搜索 (:func:`search_condition`; at most 100 characters, else
    400); ``subject``/``address``/``customer``: one part each. Every match is a
    substring in any case with ``%``, ``_``, ``\\`` taken literally.
    """
    if box not in BOXES:
        raise ValidationError(_l("邮箱分类只能是 inbox、sent、failed 或 all。"), field="box")
    dialect = quick_search.dialect_of(session)
    sqlite = dialect == "sqlite"
    q = select(MailMessage)
    mine = MailMessage.owner_id == actor.id
    if box == "inbox":
        owner = or_(mine, MailMessage.owner_id.is_(None)) if actor.is_admin else mine
        q = q.where(MailMessage.status == "received", owner)
    elif box == "sent":
        q = q.where(MailMessage.status == "sent", mine)
    elif box == "failed":
        q = q.where(MailMessage.status.in_(("failed", "draft")), mine)
    else:
        cond = readable_filter(actor)
        if cond is not None:
            q = q.where(cond)
    cond = search_condition(quick_search.parse(text, field="search"), dialect)
    if cond is not None:
        q = q.where(cond)
    subject, address, customer = (quick_search.clean(v) for v in (subject, address, customer))
    if subject:
        q = q.where(quick_search.like(MailMessage.subject, subject, sqlite))
    if address:
        q = q.where(or_(*[quick_search.like(c, address, sqlite) for c in (
            MailMessage.sender, MailMessage.recipients, MailMessage.cc)]))
    if customer_id:
        try:
            q = q.where(MailMessage.customer_id == int(customer_id))
        except (TypeError, ValueError):
            raise ValidationError(_l("客户编号必须是整数。"), field="customer_id")
    if customer:
        q = q.where(MailMessage.customer_id.in_(
            select(Customer.id).where(or_(quick_search.like(Customer.name, customer, sqlite),
                                          Customer.number == customer))))
    count = session.scalar(select(func.count()).select_from(q.subquery()))
    page_size = min(max(int(page_size), 1), 100)
    rows = session.scalars(
        q.order_by(func.coalesce(MailMessage.sent_on, MailMessage.received_on,
                                 MailMessage.created_on).desc(), MailMessage.id.desc())
        .limit(page_size).offset(max(int(page), 0) * page_size)
    ).all()
    _preload_customers(session, rows)
    return count, rows


def _preload_customers(session, rows):
    ids = {m.customer_id for m in rows if m.customer_id}
    if ids:  # one query fills the identity map, so m.customer costs nothing
        session.scalars(select(Customer).where(Customer.id.in_(ids))).all()


def customer_mail(session, customer_id, limit=10):
    """(count, newest mails) of one customer, for the customer page."""
    where = MailMessage.customer_id == customer_id
    count = session.scalar(select(func.count()).select_from(MailMessage).where(where))
    if not count:
        return 0, []
    rows = session.scalars(
        select(MailMessage).where(where)
        .order_by(func.coalesce(MailMessage.sent_on, MailMessage.received_on,
                                MailMessage.created_on).desc(), MailMessage.id.desc())
        .limit(limit)).all()
    return count, rows


# ---- compose ------------------------------------------------------------------------

def compose_choices(session, actor, customer_id=None, config=None):
    """What the compose form offers: the customer's contacts with e-mail, its documents
    that the actor may read (newest 100; the documents workflow's read rule) and active
    colleagues with an e-mail address."""
    customer = contacts = documents = None
    if customer_id:
        customer = session.get(Customer, int(customer_id))
        if customer is None:
            raise NotFound(_l("客户不存在。"))
        contacts = [c for c in customer.contacts if c.email]
        scope = docs_wf.settings(config).read_scope
        documents = session.scalars(
            select(Document).join(Customer, Customer.id == Document.customer_id)
            .where(Document.customer_id == customer.id, docs_wf.readable_clause(actor, scope))
            .order_by(Document.id.desc()).limit(100)).all()
    users = session.execute(
        select(User.id, User.first_name, User.last_name, User.username, User.email)
        .where(User.active.is_(True), User.email.isnot(None), User.email != "")
        .order_by(User.username)).all()
    return {"customer": customer, "contacts": contacts or [], "documents": documents or [],
            "users": users}


def _resolve(session, actor, data, config):
    """Validate the compose input → (recipients, customer, documents)."""
    if not isinstance(data, dict):
        raise ValidationError(_l("请求体必须是 JSON 对象。"))
    subject = (data.get("subject") or "")
    body = data.get("body") or ""
    if not isinstance(subject, str) or not subject.strip():
        raise ValidationError(_l("主题不能为空。"), field="subject")
    subject = subject.strip()
    if len(subject) > MAX_SUBJECT or "\n" in subject or "\r" in subject:
        raise ValidationError(_l("主题过长或包含换行。"), field="subject")
    if not isinstance(body, str):
        raise ValidationError(_l("正文必须是文本。"), field="body")

    customer = None
    if data.get("customer_id") not in (None, ""):
        try:
            customer = session.get(Customer, int(data["customer_id"]))
        except (TypeError, ValueError):
            customer = None
        if customer is None:
            raise ValidationError(_l("客户不存在。"), field="customer_id")
        if not can_read_customer(actor, customer):
            raise Forbidden(_l("您无权查看该客户。"))

    recipients = []
    contact_ids = _int_list(data.get("contact_ids"), "contact_ids")
    if contact_ids:
        contacts = session.scalars(select(Contact).where(Contact.id.in_(contact_ids))).all()
        found = {c.id: c for c in contacts}
        for cid in contact_ids:
            c = found.get(cid)
            if c is None:
                raise ValidationError(_l("联系人 %(id)s 不存在。", id=cid), field="contact_ids")
            if not c.email:
                raise ValidationError(_l("联系人“%(name)s”没有电子邮件地址。", name=c.name),
                                      field="contact_ids")
            if customer is None:
                customer = c.customer
            elif c.customer_id != customer.id:
                raise ValidationError(_l("联系人“%(name)s”不属于该客户。", name=c.name),
                                      field="contact_ids")
            recipients.append(("", normalize_address(c.email, "contact_ids")))
    user_ids = _int_list(data.get("user_ids"), "user_ids")
    if user_ids:
        users = dict(session.execute(
            select(User.id, User.email).where(User.id.in_(user_ids), User.active.is_(True))).all())
        for uid in user_ids:
            if not users.get(uid):
                raise ValidationError(_l("同事 %(id)s 不存在、已停用或没有电子邮件地址。", id=uid),
                                      field="user_ids")
            recipients.append(("", normalize_address(users[uid], "user_ids")))
    recipients.extend(parse_address_list(data.get("to"), "to"))
    cc_pairs = parse_address_list(data.get("cc"), "cc")

    seen, unique = set(), []
    for name, addr in recipients:
        if addr.lower() not in seen:
            seen.add(addr.lower())
            unique.append((name, addr))
    cc = []
    for name, addr in cc_pairs:
        if addr.lower() not in seen:
            seen.add(addr.lower())
            cc.append((name, addr))
    if not unique:
        raise ValidationError(_l("请至少填写一个收件人（联系人、同事或邮件地址）。"), field="to")
    if len(unique) + len(cc) > MAX_RECIPIENTS:
        raise ValidationError(_l("收件人最多 %(n)d 个。", n=MAX_RECIPIENTS), field="to")

    if customer is None:
        bare = [a for _n, a in unique + cc]
        matches = contacts_by_address(session, bare)
        for addr in bare:
            if addr.lower() in matches:
                customer = matches[addr.lower()].customer
                break

    documents = []
    doc_ids = _int_list(data.get("document_ids"), "document_ids")
    if doc_ids:
        if customer is None:
            raise ValidationError(_l("只有发给客户的邮件才能附加该客户的文档。"),
                                  field="document_ids")
        docs = {d.id: d for d in session.scalars(
            select(Document).where(Document.id.in_(doc_ids))).all()}
        scope = docs_wf.settings(config).read_scope
        owners = {c.id: c for c in session.scalars(select(Customer).where(
            Customer.id.in_({d.customer_id for d in docs.values()}))).all()} if docs else {}
        limit = int(config.get("MAIL_MAX_ATTACHMENT_BYTES") or DEFAULT_MAX_ATTACHMENT_BYTES)
        total = 0
        for did in doc_ids:
            d = docs.get(did)
            if d is None:
                raise ValidationError(_l("文档 %(id)s 不存在或不属于该客户。", id=did),
                                      field="document_ids")
            # attaching = sending the file out: the same read right as downloading it
            if not docs_wf.can_read(actor, d, owners.get(d.customer_id), scope):
                raise Forbidden(_l("您无权查看文档 %(id)s，不能把它作为附件发送（只有能下载该文档的人"
                                   "才能把它附加到邮件）。", id=did))
            if d.customer_id != customer.id:
                raise ValidationError(_l("文档 %(id)s 不存在或不属于该客户。", id=did),
                                      field="document_ids")
            if not os.path.exists(blob_path(config, d.sha256)):
                raise ValidationError(_l("文档“%(name)s”的文件已丢失，无法作为附件。", name=d.name),
                                      field="document_ids")
            total += d.size or 0
            documents.append(d)
        if total > limit:
            raise ValidationError(_l("附件总大小超过 %(mb)d MB。", mb=limit // (1024 * 1024)),
                                  field="document_ids")
    return subject, body, unique, cc, customer, documents


def blob_path(config, sha):
    return os.path.join(config["DOCUMENT_DIR"], sha[:2], sha[2:4], sha)


def create_draft(session, actor, data, config):
    """Validate and store the message (status ``draft``); not yet sent, not committed."""
    subject, body, recipients, cc, customer, documents = _resolve(session, actor, data, config)
    _name, addr = parseaddr(_default_sender(config))
    domain = addr.rsplit("@", 1)[-1] if "@" in addr else None
    mail = MailMessage(
        owner_id=actor.id, status="draft", message_id=make_msgid(domain=domain),
        subject=subject, body=body, sender=_sender_for(actor, config),
        recipients=", ".join(format_address(n, a) for n, a in recipients),
        cc=", ".join(format_address(n, a) for n, a in cc) or None,
        customer_id=customer.id if customer else None,
        created_by_fk=actor.id, changed_by_fk=actor.id,
    )
    session.add(mail)
    session.flush()
    for d in documents:
        session.add(MailAttachment(mail_id=mail.id, document_id=d.id, filename=d.name,
                                   mime=d.mime or "application/octet-stream",
                                   size=d.size or 0, sha256=d.sha256))
    events.record_event(session, ENTITY, mail.id, "create", None, "draft", actor_id=actor.id)
    session.flush()
    return mail


# Sending is two units of work, and the caller commits after each (app/api/base.py
# ``commit_step``): first the message is stored (``create_draft``, or ``claim_retry``
# for a failed one: compare-and-set failed → draft), committed, so that nothing is
# lost whatever happens during the SMTP conversation; then ``transmit`` hands it to
# the server and records the outcome (draft → sent | failed), committed too — also
# when the answer to the user is an error (502), since the failure must be kept.

def claim_retry(session, actor, mail_id):
    """Take a ``failed`` message back for sending (same record): compare-and-set
    failed → draft. Only the sender or an admin; a racing retry gets a 409.
    The caller commits, then calls ``transmit(..., previous="failed")``."""
    mail = session.get(MailMessage, mail_id)
    if mail is None:
        raise NotFound(_l("邮件不存在。"))
    if not (actor.is_admin or mail.owner_id == actor.id):
        if can_read(actor, mail):
            raise Forbidden(_l("只有发件人或系统管理员可以重新发送这封邮件。"))
        raise Forbidden(_l("您无权查看这封邮件。"))
    if mail.status != "failed":
        raise Conflict(_l("只有发送失败的邮件可以重新发送（当前状态：%(s)s）。",
                          s=status_label(mail.status)))
    events.compare_and_set(session, MailMessage, mail_id, ("failed",),
                           {"status": "draft", "changed_on": datetime.now(),
                            "changed_by_fk": actor.id},
                           _l("这封邮件正在发送或已发送，请刷新后查看。"))
    return mail


def transmit(session, actor, mail_id, config, previous="draft"):
    """Hand a stored draft to the SMTP server, then compare-and-set draft → sent |
    failed (the SMTP error in Chinese kept on the record), with its WorkflowEvent.
    Returns the record. Not committed: the caller commits whatever the outcome."""
    mail = session.get(MailMessage, mail_id)
    session.refresh(mail)
    try:
        _smtp_send(mail, config)
    except Exception as exc:  # noqa: BLE001 - every failure is recorded, never lost
        error = smtp_error_text(exc, config)
        events.compare_and_set(session, MailMessage, mail_id, ("draft",),
                               {"status": "failed", "error": error,
                                "changed_on": datetime.now(), "changed_by_fk": actor.id},
                               _l("邮件状态已被他人修改。"))
        events.record_event(session, ENTITY, mail_id, "send", previous, "failed",
                            note=error[:1000], actor_id=actor.id)
        metrics.mail_sent(False)
    else:
        events.compare_and_set(session, MailMessage, mail_id, ("draft",),
                               {"status": "sent", "error": None, "sent_on": datetime.now(),
                                "changed_on": datetime.now(), "changed_by_fk": actor.id},
                               _l("邮件状态已被他人修改。"))
        events.record_event(session, ENTITY, mail_id, "send", previous, "sent",
                            actor_id=actor.id)
        metrics.mail_sent(True)
    session.flush()
    session.refresh(mail)
    return mail


# Outgoing messages are built with the standard library (EmailMessage + headerregistry):
# display names are RFC 2047 encoded by the header policy and every value passes through
# ``header_safe`` first, so no stored name can inject a header or break sending.
# Raw (pre-folded) header values are never refolded: that keeps the ``name=`` fallback
# on attachments' Content-Type exactly as written below.
SEND_POLICY = email_policy.SMTP.clone(refold_source="none")


class AttachmentMissing(Exception):
    """An attachment's file is no longer in the document store."""


def _address_objects(text):
    out = []
    for name, addr in address_pairs(text):
        try:
            out.append(Address(display_name=name, addr_spec=addr))
        except (ValueError, IndexError, TypeError):
            continue
    return out


def _encoded_words(text, chunk=10):
    """RFC 2047 base64 encoded words, one per folded line (≤ 78 characters each)."""
    import base64

    words = []
    for i in range(0, len(text), chunk):
        b64 = base64.b64encode(text[i:i + chunk].encode("utf-8")).decode("ascii")
        words.append(f"=?utf-8?b?{b64}?=")
    return words


def _name_param(mime, filename):
    """Content-Type with the legacy ``name=`` parameter (RFC 2047 encoded when not ASCII),
    which Outlook and Foxmail read; Content-Disposition carries RFC 2231 ``filename*``."""
    try:
        filename.encode("ascii")
        value = filename.replace("\\", "\\\\").replace('"', '\\"')
        return f'{mime};\n name="{value}"'
    except UnicodeEncodeError:
        return f'{mime};\n name="' + "\n ".join(_encoded_words(filename)) + '"'


def build_message(mail, config, read_blob=None):
    """The EmailMessage for a stored outgoing mail (headers, text body, attachments)."""
    msg = EmailMessage(policy=SEND_POLICY)
    msg["Subject"] = header_safe(mail.subject)
    sender = _address_objects(mail.sender)
    msg["From"] = sender[0] if sender else Address(addr_spec=parseaddr(_default_sender(config))[1])
    msg["To"] = _address_objects(mail.recipients)
    if mail.cc:
        msg["Cc"] = _address_objects(mail.cc)
    msg["Date"] = format_datetime(datetime.now().astimezone())
    msg["Message-ID"] = header_safe(mail.message_id)
    if mail.in_reply_to:
        msg["In-Reply-To"] = header_safe(mail.in_reply_to)
        msg["References"] = header_safe(mail.in_reply_to)
    msg.set_content(mail.body or "", charset="utf-8", cte="base64")
    for att in mail.attachments:
        if read_blob is not None:
            data = read_blob(att)
        else:
            try:
                with open(blob_path(config, att.sha256 or ""), "rb") as fh:
                    data = fh.read()
            except OSError as exc:
                raise AttachmentMissing(att.filename) from exc
        mime = (att.mime or "application/octet-stream").lower()
        if not re.match(r"^[a-z0-9.+-]+/[a-z0-9.+-]+$", mime):
            mime = "application/octet-stream"
        maintype, subtype = mime.split("/", 1)
        filename = header_safe(att.filename) or "附件"
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
        part = list(msg.iter_attachments())[-1]
        # store this one header verbatim (compat32 keeps the string; SEND_POLICY does not refold it)
        part.policy = email_policy.compat32
        part.replace_header("Content-Type", _name_param(mime, filename))
        part.policy = SEND_POLICY
    return msg


def _smtp_connection(config):
    server = config.get("MAIL_SERVER") or "127.0.0.1"
    port = int(config.get("MAIL_PORT") or 25)
    timeout = float(config.get("MAIL_TIMEOUT") or 30)
    if config.get("MAIL_USE_SSL"):
        host = smtplib.SMTP_SSL(server, port, timeout=timeout)
    else:
        host = smtplib.SMTP(server, port, timeout=timeout)
    try:
        if config.get("MAIL_USE_TLS"):
            host.starttls()
        if config.get("MAIL_USERNAME") and config.get("MAIL_PASSWORD"):
            host.login(config["MAIL_USERNAME"], config["MAIL_PASSWORD"])
    except BaseException:
        host.close()
        raise
    return host


def _smtp_send(mail, config):
    msg = build_message(mail, config)
    if config.get("MAIL_SUPPRESS_SEND"):
        return
    envelope_from = parseaddr(_default_sender(config))[1]
    rcpts = list(dict.fromkeys(split_addresses(mail.recipients) + split_addresses(mail.cc)))
    host = _smtp_connection(config)
    try:
        host.send_message(msg, from_addr=envelope_from, to_addrs=rcpts)
    finally:
        try:
            host.quit()
        except (smtplib.SMTPException, OSError):
            host.close()


def _server_text(code, resp):
    if isinstance(resp, bytes):
        resp = resp.decode("utf-8", "replace")
    return f"{code} {resp}".strip()


def smtp_error_text(exc, config):
    """The SMTP failure in Chinese, with the server's own reply kept verbatim."""
    where = f"{config.get('MAIL_SERVER')}:{config.get('MAIL_PORT')}"
    if isinstance(exc, AttachmentMissing):
        return _("附件“%(name)s”的文件已丢失，邮件未发送。", name=exc.args[0])
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        detail = "; ".join(f"{addr}: {_server_text(c, r)}" for addr, (c, r) in exc.recipients.items())
        return _("邮件服务器拒绝了收件人（%(detail)s）。", detail=detail)
    if isinstance(exc, smtplib.SMTPSenderRefused):
        return _("邮件服务器拒绝了发件人地址 %(sender)s（%(detail)s）。",
                 sender=exc.sender, detail=_server_text(exc.smtp_code, exc.smtp_error))
    if isinstance(exc, smtplib.SMTPDataError):
        return _("邮件服务器拒收了这封邮件（%(detail)s）。",
                 detail=_server_text(exc.smtp_code, exc.smtp_error))
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return _("登录邮件服务器失败，请检查 CRM_MAIL_USERNAME / CRM_MAIL_PASSWORD（%(detail)s）。",
                 detail=_server_text(exc.smtp_code, exc.smtp_error))
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return _("邮件服务器 %(where)s 意外断开了连接（%(detail)s）。", where=where, detail=exc)
    if isinstance(exc, smtplib.SMTPResponseException):
        return _("邮件服务器返回错误（%(detail)s）。",
                 detail=_server_text(exc.smtp_code, exc.smtp_error))
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return _("连接邮件服务器 %(where)s 超时。", where=where)
    if isinstance(exc, ConnectionRefusedError):
        return _("无法连接邮件服务器 %(where)s：连接被拒绝（服务器未启动或端口错误）。", where=where)
    if isinstance(exc, OSError) and not isinstance(exc, smtplib.SMTPException):
        return _("无法连接邮件服务器 %(where)s（%(detail)s）。", where=where, detail=exc)
    if isinstance(exc, smtplib.SMTPException):
        return _("发送失败（%(detail)s）。", detail=exc)
    return _("发送失败：%(kind)s（%(detail)s）。", kind=type(exc).__name__, detail=exc)


# ---- receive ----------------------------------------------------------------------

_CHARSET_ALIASES = {"gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030",
                    "cp936": "gb18030", "gb_2312-80": "gb18030", "euc-cn": "gb18030",
                    "unknown-8bit": "utf-8", "us-ascii": "utf-8", "ascii": "utf-8"}


def decode_bytes(data, charset=None):
    """Bytes in the part's charset (gb2312/gbk read as gb18030), falling back to
    UTF-8 then GB18030; never raises."""
    charset = (charset or "").strip().strip('"').lower()
    tried = []
    for cs in (_CHARSET_ALIASES.get(charset, charset), "utf-8", "gb18030"):
        if not cs or cs in tried:
            continue
        tried.append(cs)
        try:
            return data.decode(cs)
        except (LookupError, UnicodeDecodeError):
            continue
    return data.decode("utf-8", "replace")


def decode_header_value(value):
    """An RFC 2047 header value (=?gbk?b?...?=, =?utf-8?q?...?=, or raw 8-bit) as text,
    decoded by the standard library's header policy (``email.policy.default``): the
    whitespace between an encoded word and plain text is kept (``Re: =?..?= 确认订购 10 台``),
    the whitespace between two encoded words is dropped, as RFC 2047 says."""
    if value is None:
        return ""
    text = str(value)
    if any("\udc80" <= ch <= "\udcff" for ch in text):  # raw 8-bit bytes (careless mailers)
        text = decode_bytes(text.encode("ascii", "surrogateescape"))
    text = re.sub(r"\r?\n(?=[ \t])", "", text)
    text = _gb_labels(text)
    try:
        decoded = str(email_policy.default.header_factory("Subject", text))
    except Exception:  # noqa: BLE001 - never let one odd header stop a fetch
        decoded = text
    return header_safe(decoded)


_GB_LABEL = re.compile(r"=\?(gb2312|gbk|x-gbk|cp936|euc-cn|gb_2312-80)(\*[^?]*)?\?", re.I)


def _gb_labels(text):
    """Encoded words labelled gb2312/gbk are read as GB18030 (a superset: real mail labels
    GBK text such as 镕 as gb2312)."""
    return _GB_LABEL.sub("=?gb18030?", text)


def _raw_headers(msg, name):
    """The raw values of header ``name`` (8-bit bytes decoded as UTF-8 or GB18030,
    unfolded), ready for the header policy."""
    out = []
    for key, value in msg.raw_items():
        if key.lower() != name.lower():
            continue
        value = str(value)
        if any("\udc80" <= ch <= "\udcff" for ch in value):
            value = decode_bytes(value.encode("ascii", "surrogateescape"))
        out.append(_gb_labels(re.sub(r"\r?\n(?=[ \t])", "", value)))
    return out


def _addresses(msg, *names):
    """[(display name, address)] of the address headers, decoded by the header policy."""
    out = []
    for name in names:
        for value in _raw_headers(msg, name):
            try:
                header = email_policy.default.header_factory(name, value)
                pairs = [(a.display_name, a.addr_spec) for a in header.addresses]
            except Exception:  # noqa: BLE001 - fall back to the tolerant parser
                pairs = getaddresses([value])
            for disp, addr in pairs:
                addr = header_safe(addr)
                if addr and "@" in addr:
                    out.append((decode_header_value(disp), addr))
    return out


def _filename(part):
    """An attachment's file name: RFC 2231 ``filename*``, RFC 2047 in ``filename=`` or
    ``name=`` (Outlook, Foxmail; gb2312 labels read as GB18030), raw 8-bit names;
    control characters removed."""
    for header, param in (("Content-Disposition", "filename"), ("Content-Type", "name")):
        for value in _raw_headers(part, header):
            try:
                name = email_policy.default.header_factory(header, value).params.get(param)
            except Exception:  # noqa: BLE001 - try the next form
                continue
            if name:
                return decode_header_value(name) or None
    try:
        name = part.get_filename()
    except Exception:  # noqa: BLE001
        name = None
    return decode_header_value(name) or None if name else None


def _text_body(msg):
    """The text/plain part (else text/html with tags removed), decoded."""
    plain = html = None
    attachments = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        disp = str(part.get("Content-Disposition") or "").lower()
        filename = _filename(part)
        if filename or disp.startswith("attachment"):
            payload = part.get_payload(decode=True) or b""
            attachments.append((filename or "附件", ctype, payload))
            continue
        if ctype == "text/plain" and plain is None:
            plain = decode_bytes(part.get_payload(decode=True) or b"", part.get_content_charset())
        elif ctype == "text/html" and html is None:
            html = decode_bytes(part.get_payload(decode=True) or b"", part.get_content_charset())
    if plain is None and html is not None:
        text = re.sub(r"(?is)<(script|style).*?</\1>", "", html)
        text = re.sub(r"(?i)<br\s*/?>|</p>|</div>", "\n", text)
        text = re.sub(r"<[^>]+>", "", text)
        import html as html_mod
        plain = html_mod.unescape(text).strip()
    return (plain or "").replace("\r\n", "\n"), attachments


def parse_message(raw):
    """Raw RFC 822 bytes → a dict of the fields we store (no database access)."""
    msg = message_from_bytes(raw, policy=email_policy.default)
    message_id = " ".join(_raw_headers(msg, "Message-ID")[:1]).strip()
    message_id = re.sub(r"\s+", "", header_safe(message_id))[:255]
    if not message_id:
        message_id = f"<{hashlib.sha256(raw).hexdigest()[:40]}@{SYNTH_DOMAIN}>"
    senders = _addresses(msg, "From")
    to = _addresses(msg, "To")
    cc = _addresses(msg, "Cc")
    refs = [header_safe(r) for v in _raw_headers(msg, "In-Reply-To") + _raw_headers(msg, "References")
            for r in v.split()]
    when = None
    dates = _raw_headers(msg, "Date")
    if dates:
        try:
            when = parsedate_to_datetime(dates[0].strip())
            if when.tzinfo is not None:
                # stored like every other time in the database: server-local, naive
                when = when.astimezone().replace(tzinfo=None)
        except (TypeError, ValueError, IndexError, OverflowError):
            when = None
    body, attachments = _text_body(msg)
    name, addr = senders[0] if senders else ("", "")
    return {
        "message_id": message_id,
        "in_reply_to": (refs[0] if refs else None),
        "references": refs,
        "subject": " ".join(decode_header_value(v) for v in _raw_headers(msg, "Subject")[:1])[:MAX_SUBJECT],
        "sender": format_address(name, addr)[:320],
        "sender_address": addr,
        "to": [a for _n, a in to],
        "cc": [a for _n, a in cc],
        "to_pairs": to,
        "cc_pairs": cc,
        "date": when,
        "body": body,
        "attachments": attachments,
    }


def store_received(session, parsed, actor_id, contacts=None, users=None):
    """Insert one received message unless its Message-ID is known. True when new."""
    if session.scalar(select(MailMessage.id).where(
            MailMessage.message_id == parsed["message_id"])) is not None:
        return False
    addresses = [parsed["sender_address"]] + parsed["to"] + parsed["cc"]
    if contacts is None:
        contacts = contacts_by_address(session, addresses)
    if users is None:
        users = users_by_address(session, parsed["to"] + parsed["cc"])
    customer_id = owner_id = None
    for addr in addresses:  # the sender first: a customer writing to us
        c = contacts.get((addr or "").lower())
        if c is not None:
            customer_id = c.customer_id
            break
    # the owner: a colleague it was addressed to; else the sender of the CRM mail it
    # answers; else (a customer's own mail to the company mailbox) the customer's 客户经理
    for addr in parsed["to"] + parsed["cc"]:
        if (addr or "").lower() in users:
            owner_id = users[addr.lower()]
            break
    if parsed["references"] and (owner_id is None or customer_id is None):
        parent = session.execute(
            select(MailMessage.owner_id, MailMessage.customer_id)
            .where(MailMessage.message_id.in_(parsed["references"][:20]))
            .order_by(MailMessage.id.desc()).limit(1)).first()
        if parent is not None:
            owner_id = owner_id if owner_id is not None else parent.owner_id
            customer_id = customer_id if customer_id is not None else parent.customer_id
    if owner_id is None and customer_id is not None:
        owner_id = session.scalar(
            select(Customer.manager_id).where(Customer.id == customer_id)
            .join(User, User.id == Customer.manager_id).where(User.active.is_(True)))
    mail = MailMessage(
        owner_id=owner_id, status="received", message_id=parsed["message_id"],
        in_reply_to=(parsed["in_reply_to"] or None) and parsed["in_reply_to"][:255],
        subject=parsed["subject"], body=parsed["body"], sender=parsed["sender"],
        recipients=", ".join(format_address(n, a) for n, a in parsed.get("to_pairs") or
                             [("", a) for a in parsed["to"]]),
        cc=", ".join(format_address(n, a) for n, a in parsed.get("cc_pairs") or
                     [("", a) for a in parsed["cc"]]) or None,
        customer_id=customer_id, received_on=parsed["date"] or datetime.now(),
        created_by_fk=actor_id, changed_by_fk=actor_id,
    )
    try:
        with session.begin_nested():  # a concurrent fetch may store it first
            session.add(mail)
            session.flush()
            for filename, ctype, payload in parsed["attachments"]:
                # received attachments: name, type and size are recorded, not the content
                session.add(MailAttachment(mail_id=mail.id, filename=filename[:255],
                                           mime=ctype[:128], size=len(payload)))
            events.record_event(session, ENTITY, mail.id, "receive", None, "received",
                                actor_id=actor_id)
            session.flush()
    except IntegrityError:
        return False
    return True


class FetchError(Exception):
    """IMAP is not configured or cannot be reached; ``message`` is Chinese."""


def _imap_connect(config):
    host, port = config.get("IMAP_HOST"), int(config.get("IMAP_PORT") or 143)
    user, password = config.get("IMAP_USER"), config.get("IMAP_PASSWORD")
    if not host or not user or not password:
        raise FetchError(_("未配置收件服务器：请设置 CRM_IMAP_HOST、CRM_IMAP_USER 和 CRM_IMAP_PASSWORD。"))
    timeout = float(config.get("IMAP_TIMEOUT") or 60)
    cls = imaplib.IMAP4_SSL if config.get("IMAP_SSL") else imaplib.IMAP4
    try:
        conn = cls(host, port, timeout=timeout)
    except (OSError, imaplib.IMAP4.error) as exc:
        raise FetchError(_("无法连接收件服务器 %(where)s（%(detail)s）。",
                           where=f"{host}:{port}", detail=exc))
    try:
        conn.login(user, password)
    except imaplib.IMAP4.error:
        _safe_logout(conn)
        raise FetchError(_("登录收件服务器失败：请检查 CRM_IMAP_USER / CRM_IMAP_PASSWORD。"))
    return conn


def _safe_logout(conn):
    try:
        conn.logout()
    except (OSError, imaplib.IMAP4.error):
        pass


def _fetch_parts(conn, uids, query):
    """{uid: bytes} for a UID FETCH over ``uids``."""
    out = {}
    if not uids:
        return out
    for start in range(0, len(uids), 200):
        chunk = b",".join(uids[start:start + 200]).decode()
        typ, data = conn.uid("FETCH", chunk, query)
        if typ != "OK":
            continue
        for item in data:
            if isinstance(item, tuple) and len(item) >= 2:
                m = re.search(rb"UID (\d+)", item[0])
                if m:
                    out[m.group(1)] = item[1]
    return out


def fetch_mail(session, config, actor_id):
    """Fetch the IMAP mailbox; store new messages once. Returns {"new", "skipped", "total"}.

    Message-IDs are read first (headers only); full messages are downloaded only for
    unknown ones (and for those without a Message-ID, whose id is a hash of the raw
    message). Messages are left on the server unread (BODY.PEEK).
    """
    conn = _imap_connect(config)
    new = skipped = 0
    try:
        typ, _data = conn.select(config.get("IMAP_MAILBOX") or "INBOX", readonly=True)
        if typ != "OK":
            raise FetchError(_("收件箱“%(box)s”不存在。", box=config.get("IMAP_MAILBOX")))
        typ, data = conn.uid("SEARCH", None, "ALL")
        uids = data[0].split() if typ == "OK" and data and data[0] else []
        headers = _fetch_parts(conn, uids, "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        ids = {}
        for uid in uids:
            raw = headers.get(uid) or b""
            m = re.search(rb"(?im)^message-id:\s*(.+?)\s*$", raw.replace(b"\r\n\t", b" ")
                          .replace(b"\r\n ", b" "))
            ids[uid] = re.sub(r"\s+", "", m.group(1).decode("ascii", "replace"))[:255] if m else None
        known = set()
        wanted = [i for i in ids.values() if i]
        for start in range(0, len(wanted), 500):
            known.update(session.scalars(select(MailMessage.message_id).where(
                MailMessage.message_id.in_(wanted[start:start + 500]))).all())
        todo = [u for u in uids if not ids[u] or ids[u] not in known]
        skipped += len(uids) - len(todo)
        bodies = _fetch_parts(conn, todo, "(BODY.PEEK[])")
    finally:
        _safe_logout(conn)
    parsed = [parse_message(bodies[u]) for u in todo if u in bodies]
    addresses = [a for p in parsed for a in [p["sender_address"]] + p["to"] + p["cc"]]
    contacts = contacts_by_address(session, addresses)
    users = users_by_address(session, [a for p in parsed for a in p["to"] + p["cc"]])
    for p in parsed:
        if store_received(session, p, actor_id, contacts, users):
            new += 1
        else:
            skipped += 1
    return {"new": new, "skipped": skipped, "total": len(uids)}   # the caller commits

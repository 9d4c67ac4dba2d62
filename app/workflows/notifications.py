"""Notifications: raised by the workflow steps, read by their user only, mailed if wanted.

* ``notify(session, user_id, kind, title, link)`` adds a notice in the caller's
  transaction, so it exists exactly when the step that raised it committed. A notice
  for an inactive (deactivated) user is not created. ``dedupe_key`` makes a notice
  that must exist at most once (a day's digest) safe to raise again: a second insert
  with the same key is skipped, also when two processes race (unique index).
* Mail: when the user's switch for the kind is on (``settings``; every kind defaults
  to on), the notice is marked ``pending``; ``send_pending`` — run by the scheduler —
  sends pending notices through a ``send(to, subject, text)`` callable it is given
  and records ``sent``, or ``failed`` with the error and a retry time (1, 5, 30,
  120 min …; after ``MAX_ATTEMPTS`` it stays failed). An SMTP failure therefore never
  fails the step, and the in-app notice is there whatever the mail does.
* Reading: ``for_user``, ``unread_count``, ``mark_read`` (403 for another user's
  notice, 404 for none), ``mark_all_read``.
* ``raise_digests`` creates one 每日计划提醒 per user and day (plan items due today and
  overdue) with ``dedupe_key = digest:<user>:<day>``: the job run twice, or killed and
  rerun, sends each user at most one digest a day.
"""
from datetime import datetime, timedelta

from flask_babel import lazy_gettext as _l
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from ..models import Notification, NotificationSetting, Opportunity, PlanItem
from ..models.notification import NOTIFICATION_KINDS
from .errors import Forbidden, NotFound, ValidationError

MAX_ATTEMPTS = 6
RETRY_MINUTES = (1, 5, 30, 120, 360)
KIND_LABELS = {k: _l(v) for k, v in NOTIFICATION_KINDS.items()}


def kind_label(kind):
    return KIND_LABELS.get(kind, kind)


def _now():
    return datetime.now()


def _user_table():
    from ..models.base import Model

    return Model.metadata.tables["ab_user"]


def _active(session, user_id):
    users = _user_table()
    return bool(session.execute(select(users.c.active).where(users.c.id == user_id)).scalar())


def mail_wanted(session, user_id, kind):
    row = session.execute(select(NotificationSetting.mail).where(
        NotificationSetting.user_id == user_id, NotificationSetting.kind == kind)).first()
    return True if row is None else bool(row[0])


def notify(session, user_id, kind, title, link=None, body=None, dedupe_key=None, now=None):
    """Add a notice for ``user_id`` in the current transaction; None when skipped."""
    if not user_id or not _active(session, user_id):
        return None
    if kind not in NOTIFICATION_KINDS:
        raise ValueError(f"unknown notification kind {kind!r}")
    now = now or _now()
    n = Notification(user_id=user_id, kind=kind, title=str(title)[:255], body=body, link=link,
                     created_on=now, dedupe_key=dedupe_key,
                     mail_status="pending" if mail_wanted(session, user_id, kind) else "none",
                     mail_next_try=now)
    if dedupe_key is None:
        session.add(n)
        session.flush()
        return n
    if session.execute(select(Notification.id).where(Notification.dedupe_key == dedupe_key)).first():
        return None
    try:
        with session.begin_nested():  # a racing twin with the same key: skip, keep the step
            session.add(n)
            session.flush()
    except IntegrityError:
        return None
    return n


# ---- reading ----------------------------------------------------------------------
def for_user(session, user_id, unread_only=False, page=0, page_size=20):
    q = select(Notification).where(Notification.user_id == user_id)
    if unread_only:
        q = q.where(Notification.read_on.is_(None))
    total = session.scalar(select(func.count()).select_from(q.subquery()))
    rows = session.scalars(q.order_by(Notification.created_on.desc(), Notification.id.desc())
                           .offset(page * page_size).limit(page_size)).all()
    return rows, total


def unread_count(session, user_id):
    return session.scalar(select(func.count(Notification.id)).where(
        Notification.user_id == user_id, Notification.read_on.is_(None))) or 0


def get_own(session, user_id, notification_id):
    n = session.get(Notification, notification_id)
    if n is None:
        raise NotFound(_l("通知不存在，可能已被删除。"))
    if n.user_id != user_id:
        raise Forbidden(_l("这条通知不是发给您的，不能查看或标记。"))
    return n


def mark_read(session, user_id, notification_id, now=None):
    n = get_own(session, user_id, notification_id)
    if n.read_on is None:
        session.execute(update(Notification).where(Notification.id == n.id,
                                                   Notification.read_on.is_(None))
                        .values(read_on=now or _now()))
    return n


def mark_all_read(session, user_id, now=None):
    return session.execute(update(Notification).where(
        Notification.user_id == user_id, Notification.read_on.is_(None))
        .values(read_on=now or _now())).rowcount


def to_json(n):
    return {"id": n.id, "kind": n.kind, "kind_label": str(kind_label(n.kind)), "title": n.title,
            "body": n.body, "link": n.link,
            "created_on": n.created_on.isoformat(timespec="seconds") if n.created_on else None,
            "read": n.read_on is not None,
            "read_on": n.read_on.isoformat(timespec="seconds") if n.read_on else None,
            "mail_status": n.mail_status}


# ---- settings -----------------------------------------------------------------------
def settings(session, user_id):
    """{kind: mail on?} for every kind."""
    rows = dict(session.execute(select(NotificationSetting.kind, NotificationSetting.mail)
                                .where(NotificationSetting.user_id == user_id)).all())
    return {k: bool(rows.get(k, True)) for k in NOTIFICATION_KINDS}


def save_settings(session, user_id, values):
    """``values``: {kind: bool}; unknown kinds and non-booleans are refused (400)."""
    if not isinstance(values, dict):
        raise ValidationError(_l("设置必须是“通知类型: true/false”的对象。"), field="mail")
    for kind, on in values.items():
        if kind not in NOTIFICATION_KINDS:
            raise ValidationError(_l("没有这种通知类型：%(kind)s。", kind=str(kind)[:40]), field="mail")
        if not isinstance(on, bool):
            raise ValidationError(_l("“%(kind)s”的邮件开关只能是 true 或 false。",
                                     kind=kind_label(kind)), field="mail")
    for kind, on in values.items():
        row = session.execute(select(NotificationSetting).where(
            NotificationSetting.user_id == user_id, NotificationSetting.kind == kind)).scalar()
        if row is None:
            session.add(NotificationSetting(user_id=user_id, kind=kind, mail=on))
        else:
            row.mail = on
    session.flush()
    return settings(session, user_id)


# ---- mail -----------------------------------------------------------------------------
def send_pending(session, send, base_url="", now=None, limit=200):
    """Send the pending notices that are due; returns (sent, failed). ``send(to_addr,
    subject, text)`` raises on failure. Each notice is claimed by compare-and-set on
    its status, so two schedulers never mail the same notice twice."""
    now = now or _now()
    users = _user_table()
    rows = session.execute(
        select(Notification.id, Notification.title, Notification.body, Notification.link,
               Notification.mail_attempts, users.c.email, users.c.active)
        .join(users, users.c.id == Notification.user_id)
        .where(Notification.mail_status.in_(("pending", "failed")),
               Notification.mail_attempts < MAX_ATTEMPTS,
               or_(Notification.mail_next_try.is_(None), Notification.mail_next_try <= now))
        .order_by(Notification.id).limit(limit)).all()
    sent = failed = 0
    for nid, title, body, link, attempts, email, active in rows:
        claimed = session.execute(
            update(Notification).where(Notification.id == nid,
                                       Notification.mail_attempts == attempts,
                                       Notification.mail_status.in_(("pending", "failed")))
            .values(mail_status="sending", mail_attempts=attempts + 1)).rowcount
        session.commit()
        if not claimed:
            continue
        if not active or not email:
            session.execute(update(Notification).where(Notification.id == nid)
                            .values(mail_status="none", mail_error="no active address"))
            session.commit()
            continue
        text = "\n\n".join(x for x in (title, body, (base_url.rstrip("/") + link) if link else None) if x)
        try:
            send(email, f"[CRM] {title}", text)
        except Exception as exc:  # noqa: BLE001 - any delivery failure is recorded, retried
            failed += 1
            delay = RETRY_MINUTES[min(attempts, len(RETRY_MINUTES) - 1)]
            session.execute(update(Notification).where(Notification.id == nid).values(
                mail_status="failed", mail_error=str(exc)[:255],
                mail_next_try=now + timedelta(minutes=delay)))
        else:
            sent += 1
            session.execute(update(Notification).where(Notification.id == nid)
                            .values(mail_status="sent", mail_error=None))
        session.commit()
    return sent, failed


def failed_mail_count(session):
    return session.scalar(select(func.count(Notification.id))
                          .where(Notification.mail_status == "failed")) or 0


# ---- the daily digest ----------------------------------------------------------------
def raise_digests(session, today, now=None):
    """One 每日计划提醒 per active assignee with plan items due today or overdue
    (date passed, no 执行效果) on opportunities in development. Idempotent per day."""
    open_item = and_(PlanItem.date <= today,
                     or_(PlanItem.result.is_(None), PlanItem.result == ""))
    rows = session.execute(
        select(Opportunity.assignee_id,
               func.sum(func.cast(PlanItem.date == today, _int_type())),
               func.sum(func.cast(PlanItem.date < today, _int_type())))
        .join(PlanItem, PlanItem.opportunity_id == Opportunity.id)
        .where(Opportunity.status == "assigned", open_item)   # 已指派（开发中）
        .group_by(Opportunity.assignee_id)).all()
    made = 0
    for user_id, due, overdue in rows:
        due, overdue = int(due or 0), int(overdue or 0)
        title = str(_l("今日计划提醒：今天到期 %(due)d 项，已逾期 %(overdue)d 项",
                       due=due, overdue=overdue))
        if notify(session, user_id, "digest", title, link="/?focus=plan",
                  dedupe_key=f"digest:{user_id}:{today.isoformat()}", now=now):
            made += 1
    return made


def _int_type():
    from sqlalchemy import Integer

    return Integer

"""In-app notifications (the bell), the user's mail switches, and job runs."""
from sqlalchemy import (
    Boolean, Column, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint,
)

from .base import Model



def N_(text):
    """Marks a string for the catalogue; translated where it is shown."""
    return text


# kind → shown name; the workflows raise these (app/workflows/notifications.py)
NOTIFICATION_KINDS = {
    "opportunity_assigned": N_("销售机会指派给我"),
    "ticket_assigned": N_("服务分配给我"),
    "ticket_returned": N_("服务被退回（满意度低于 3）"),
    "ticket_archived": N_("我创建的服务已归档"),
    "ticket_overdue": N_("服务超过响应或解决时限"),
    "churn_warnings": N_("我的客户出现流失预警"),
    "digest": N_("每日计划提醒"),
}
MAIL_STATUSES = ("none", "pending", "sent", "failed")


class Notification(Model):
    """One notice for one user. ``dedupe_key`` (unique when set) makes a notice that
    must exist at most once (a day's digest, one escalation) safe to raise twice."""

    __tablename__ = "crm_notification"
    __table_args__ = (
        Index("ix_notification_user_read", "user_id", "read_on"),
        Index("ix_notification_mail", "mail_status", "mail_next_try"),
        {"sqlite_autoincrement": True},
    )

    id = Column(Integer, primary_key=True)
    user_id = Column(Integer, ForeignKey("ab_user.id"), nullable=False)
    kind = Column(String(32), nullable=False)
    title = Column(String(255), nullable=False)
    body = Column(Text)
    link = Column(String(512))
    created_on = Column(DateTime, nullable=False)
    read_on = Column(DateTime)
    dedupe_key = Column(String(128), unique=True)
    mail_status = Column(String(16), nullable=False, default="none", server_default="none")
    mail_attempts = Column(Integer, nullable=False, default=0, server_default="0")
    mail_next_try = Column(DateTime)
    mail_error = Column(String(255))


class NotificationSetting(Model):
    """Whether a user also gets a kind by mail (no row: the kind's default)."""

    __tablename__ = "crm_notification_setting"
    __table_args__ = (UniqueConstraint("user_id", "kind", name="uq_notification_setting"),)

    id = Column(Integer, primary_key=True)
    user_id = Column(Integer, ForeignKey("ab_user.id"), nullable=False)
    kind = Column(String(32), nullable=False)
    mail = Column(Boolean, nullable=False)


class JobRun(Model):
    """One run of a background job (churn check, mail fetch, digest, backup …), for the
    administrator's 工作台."""

    __tablename__ = "crm_job_run"
    __table_args__ = (Index("ix_job_run_job_started", "job", "started_on"),)

    id = Column(Integer, primary_key=True)
    job = Column(String(32), nullable=False)
    started_on = Column(DateTime, nullable=False)
    finished_on = Column(DateTime)
    ok = Column(Boolean)
    summary = Column(String(255))

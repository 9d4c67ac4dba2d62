"""邮件收发: every message sent or received, with its status."""
from sqlalchemy import (
    CheckConstraint, Column, DateTime, ForeignKey, Index, Integer, String, Text,
)
from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import relationship

from .base import AuditMixin, Model

MAIL_STATUSES = ("draft", "sent", "failed", "received")
# the Chinese names of the statuses (mailbox lists, 操作记录's 状态变化)
MAIL_STATUS_LABELS = dict(zip(MAIL_STATUSES, (
    _l("待发送"), _l("已发送"), _l("发送失败"), _l("已接收"))))


class MailMessage(AuditMixin, Model):
    __tablename__ = "crm_mail"
    __table_args__ = (
        CheckConstraint("status IN ('draft','sent','failed','received')", name="ck_mail_status"),
        Index("ix_mail_owner_status", "owner_id", "status"),
        Index("ix_mail_customer", "customer_id"),
    )

    id = Column(Integer, primary_key=True)
    owner_id = Column(Integer, ForeignKey("ab_user.id"))  # sender, or mailbox owner
    owner = relationship("User", foreign_keys=[owner_id])
    status = Column(String(16), nullable=False)
    message_id = Column(String(255), unique=True)
    in_reply_to = Column(String(255))
    subject = Column(String(998), nullable=False, default="")
    body = Column(Text, nullable=False, default="")
    sender = Column(String(320), nullable=False, default="")
    recipients = Column(Text, nullable=False, default="")   # comma separated
    cc = Column(Text)
    customer_id = Column(Integer, ForeignKey("crm_customer.id"))
    customer = relationship("Customer")
    error = Column(Text)
    sent_on = Column(DateTime)
    received_on = Column(DateTime)

    attachments = relationship("MailAttachment", back_populates="mail", lazy="selectin")


class MailAttachment(Model):
    __tablename__ = "crm_mail_attachment"

    id = Column(Integer, primary_key=True)
    mail_id = Column(Integer, ForeignKey("crm_mail.id"), nullable=False, index=True)
    mail = relationship("MailMessage", back_populates="attachments")
    document_id = Column(Integer, ForeignKey("crm_document.id"))
    filename = Column(String(255), nullable=False)
    mime = Column(String(128), nullable=False)
    size = Column(Integer, nullable=False)
    sha256 = Column(String(64), ForeignKey("crm_document_blob.sha256"))

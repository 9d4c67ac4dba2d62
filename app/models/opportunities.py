"""营销管理: sales opportunities and their development plans."""
from sqlalchemy import (
    CheckConstraint, Column, Date, DateTime, ForeignKey, Index, Integer, Numeric, String, Text,
)
from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import relationship

from .base import AuditMixin, Model

OPPORTUNITY_STATUSES = ("unassigned", "assigned", "succeeded", "failed")
# the Chinese names of the statuses (lists, filters, 操作记录's 状态变化)
OPPORTUNITY_STATUS_LABELS = dict(zip(OPPORTUNITY_STATUSES, (
    _l("未指派"), _l("已指派（开发中）"), _l("开发成功"), _l("开发失败"))))


class Opportunity(AuditMixin, Model):
    """销售机会. 创建人/创建时间 are AuditMixin's created_by/created_on."""

    __tablename__ = "crm_opportunity"
    __table_args__ = (
        CheckConstraint("success_rate BETWEEN 0 AND 100", name="ck_opportunity_rate"),
        CheckConstraint("status IN ('unassigned','assigned','succeeded','failed')",
                        name="ck_opportunity_status"),
        CheckConstraint("expected_amount IS NULL OR expected_amount >= 0",
                        name="ck_opportunity_amount"),
        Index("ix_opportunity_status", "status"),
        Index("ix_opportunity_assignee_status", "assignee_id", "status"),
        Index("ix_opportunity_creator", "created_by_fk"),
        {"sqlite_autoincrement": True},
    )

    id = Column(Integer, primary_key=True)
    number = Column(String(32), nullable=False, unique=True)
    source = Column(String(128))
    customer_name = Column(String(128), nullable=False, index=True)
    success_rate = Column(Integer, nullable=False)
    summary = Column(String(255), nullable=False)
    contact = Column(String(64))
    contact_phone = Column(String(32))
    description = Column(Text, nullable=False)
    assignee_id = Column(Integer, ForeignKey("ab_user.id"))
    assignee = relationship("User", foreign_keys=[assignee_id])
    assigned_on = Column(DateTime)
    status = Column(String(16), nullable=False, default="unassigned",
                    server_default="unassigned")
    # the customer created when development succeeded
    customer_id = Column(Integer, ForeignKey("crm_customer.id"))
    customer = relationship("Customer")
    # 预计金额 (元) and 预计成交日期, both optional: the forecast (销售机会看板)
    expected_amount = Column(Numeric(14, 2))
    expected_close_on = Column(Date)

    plan_items = relationship("PlanItem", back_populates="opportunity",
                              order_by="PlanItem.date, PlanItem.id",
                              cascade="all, delete-orphan")

    def __str__(self):
        return f"{self.number} {self.customer_name}"


class PlanItem(AuditMixin, Model):
    """开发计划项: 日期 fixed after creation, 计划内容, 执行效果."""

    __tablename__ = "crm_plan_item"
    __table_args__ = (Index("ix_plan_item_date", "date"),)

    id = Column(Integer, primary_key=True)
    opportunity_id = Column(Integer, ForeignKey("crm_opportunity.id"), nullable=False,
                            index=True)
    opportunity = relationship("Opportunity", back_populates="plan_items")
    date = Column(Date, nullable=False)
    content = Column(Text, nullable=False)
    result = Column(Text)

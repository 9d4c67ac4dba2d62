"""服务管理: service tickets."""
from sqlalchemy import (
    CheckConstraint, Column, DateTime, ForeignKey, Index, Integer, SmallInteger,
    String, Text,
)
from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import relationship

from .base import AuditMixin, Model

SERVICE_STATUSES = ("created", "assigned", "handled", "archived")
# the Chinese names of the statuses (lists, filters, 操作记录's 状态变化)
SERVICE_STATUS_LABELS = dict(zip(SERVICE_STATUSES, (
    _l("新创建"), _l("已分配"), _l("已处理"), _l("已归档"))))


class ServiceTicket(AuditMixin, Model):
    """客户服务. 创建人/创建时间 are AuditMixin's created_by/created_on."""

    __tablename__ = "crm_service"
    __table_args__ = (
        CheckConstraint("status IN ('created','assigned','handled','archived')",
                        name="ck_service_status"),
        CheckConstraint("satisfaction IS NULL OR satisfaction BETWEEN 1 AND 5",
                        name="ck_service_satisfaction"),
        Index("ix_service_status_created", "status", "created_on"),
        Index("ix_service_assignee_status", "assignee_id", "status"),
        Index("ix_service_customer", "customer_id"),
        Index("ix_service_type", "service_type_id"),
        Index("ix_service_priority_status", "priority", "status"),
        Index("ix_service_response_due", "response_due"),      # the escalation job
        Index("ix_service_resolution_due", "resolution_due"),
        # 客户服务分析 reads only these (its groups in order, no table rows; migration 0015)
        Index("ix_service_report", "service_type_id", "priority", "created_on", "priority_rank",
              "status", "response_due", "first_response_on", "resolution_due", "resolved_on"),
        Index("ix_service_created_rating", "created_on", "satisfaction"),
    )

    id = Column(Integer, primary_key=True)
    number = Column(String(32), nullable=False, unique=True)
    service_type_id = Column(Integer, ForeignKey("crm_dict_item.id"), nullable=False)
    service_type = relationship("DictItem")
    summary = Column(String(255), nullable=False)
    customer_id = Column(Integer, ForeignKey("crm_customer.id"), nullable=False)
    customer = relationship("Customer")
    request = Column(Text, nullable=False)
    assignee_id = Column(Integer, ForeignKey("ab_user.id"))
    assignee = relationship("User", foreign_keys=[assignee_id])
    assigned_on = Column(DateTime)
    handling = Column(Text)
    handler_id = Column(Integer, ForeignKey("ab_user.id"))
    handler = relationship("User", foreign_keys=[handler_id])
    handled_on = Column(DateTime)
    result = Column(Text)
    satisfaction = Column(SmallInteger)
    status = Column(String(16), nullable=False, default="created", server_default="created")
    # 服务优先级: the 条目 text of the dictionary category 服务优先级 (普通/紧急/特急), and its
    # rank (the item's 值: 普通 1 < 紧急 2 < 特急 3) so lists sort by urgency, not by text
    priority = Column(String(64), nullable=False, default="普通", server_default="普通")
    priority_rank = Column(SmallInteger, nullable=False, default=1, server_default="1")
    # 服务时限 (app/workflows/sla.py): 响应时限 = assigned and handled by, 解决时限 =
    # archived by (a new one for each round sent back); NULL for tickets older than 0007
    response_due = Column(DateTime)
    resolution_due = Column(DateTime)
    first_response_on = Column(DateTime)     # the first 服务处理
    resolved_on = Column(DateTime)           # archived
    sla_round = Column(SmallInteger, nullable=False, default=1, server_default="1")
    # the escalation job marks each missed deadline once (per round for the resolution)
    escalated_response_on = Column(DateTime)
    escalated_resolution_on = Column(DateTime)

    def __str__(self):
        return self.number or ""

"""操作记录: one row per workflow status change (and other audited steps)."""
from sqlalchemy import Column, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import relationship

from .base import AuditMixin, Model
from .customer import CHURN_STATUS_LABELS, CUSTOMER_STATUS_LABELS
from .imports import IMPORT_STATUS_LABELS
from .mail import MAIL_STATUS_LABELS
from .opportunities import OPPORTUNITY_STATUS_LABELS
from .service import SERVICE_STATUS_LABELS

# WorkflowEvent.entity → the Chinese names of that entity's status codes
STATUS_LABELS = {
    "opportunity": OPPORTUNITY_STATUS_LABELS, "customer": CUSTOMER_STATUS_LABELS,
    "crm_customer": CUSTOMER_STATUS_LABELS, "churn": CHURN_STATUS_LABELS,
    "service": SERVICE_STATUS_LABELS, "mail": MAIL_STATUS_LABELS,
    "import": IMPORT_STATUS_LABELS,
}


def status_change_text(entity, from_status, to_status):
    """``未指派 → 已指派（开发中）``: the codes of ``entity`` in Chinese; a code with no
    name (or an entity without statuses) is shown as stored; "" when neither."""
    if not from_status and not to_status:
        return ""
    labels = STATUS_LABELS.get(entity, {})

    def name(code):
        return "—" if not code else str(labels.get(code, code))
    return f"{name(from_status)} → {name(to_status)}"


class WorkflowEvent(AuditMixin, Model):
    """entity/id, from → to, actor (= created_by), time (= created_on), note."""

    __tablename__ = "crm_workflow_event"
    __table_args__ = (Index("ix_event_entity", "entity", "entity_id"),)

    id = Column(Integer, primary_key=True)
    entity = Column(String(32), nullable=False)
    entity_id = Column(Integer, nullable=False)
    action = Column(String(32), nullable=False)
    from_status = Column(String(16))
    to_status = Column(String(16))
    note = Column(Text)

    actor = relationship("User", foreign_keys="WorkflowEvent.created_by_fk", viewonly=True)

    def status_change(self):
        """「原状态 → 新状态」 in the entity's Chinese status names (操作记录 list)."""
        return status_change_text(self.entity, self.from_status, self.to_status)

"""操作记录: one row per workflow status change (and other audited steps)."""
from sqlalchemy import Column, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import relationship

from .base import AuditMixin, Model


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
        from ..workflows.audit import status_change_text

        return status_change_text(self.entity, self.from_status, self.to_status)

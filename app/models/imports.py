"""导入 (bulk import of customers/contacts) and customer merges."""
from sqlalchemy import Column, DateTime, ForeignKey, Integer, String, Text
from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import relationship

from .base import AuditMixin, Model

IMPORT_STATUSES = ("preview", "committed", "failed")
# the Chinese names of the statuses (import list, 操作记录's 状态变化)
IMPORT_STATUS_LABELS = dict(zip(IMPORT_STATUSES, (_l("待确认"), _l("已导入"), _l("导入失败"))))


class ImportJob(AuditMixin, Model):
    """One import: who (created_by), when (created_on), file, counts, report."""

    __tablename__ = "crm_import"

    id = Column(Integer, primary_key=True)
    kind = Column(String(16), nullable=False)           # customer | contact
    file_name = Column(String(255), nullable=False)
    status = Column(String(16), nullable=False, default="preview")  # preview|committed|failed
    total_rows = Column(Integer, nullable=False, default=0)
    created_count = Column(Integer, nullable=False, default=0)
    updated_count = Column(Integer, nullable=False, default=0)
    skipped_count = Column(Integer, nullable=False, default=0)
    failed_count = Column(Integer, nullable=False, default=0)
    staged_path = Column(String(500))                   # parsed rows kept between preview and commit
    report = Column(Text)                                # JSON summary / per-row outcome
    committed_on = Column(DateTime)


class CustomerNumberAlias(AuditMixin, Model):
    """A customer number that now belongs to another customer (after a merge).

    Orders in the sales system keep the old number; the CRM reads them for the
    surviving customer through this mapping.
    """

    __tablename__ = "crm_customer_alias"

    number = Column(String(32), primary_key=True)
    customer_id = Column(Integer, ForeignKey("crm_customer.id"), nullable=False, index=True)
    customer = relationship("Customer")
    merged_from_id = Column(Integer)                     # id of the merged-away customer
    note = Column(Text)

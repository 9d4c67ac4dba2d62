"""文档管理: folders, versioned documents and content-addressed blobs."""
from sqlalchemy import BigInteger, Column, DateTime, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import relationship

from .base import AuditMixin, Model


class DocumentFolder(AuditMixin, Model):
    __tablename__ = "crm_document_folder"
    __table_args__ = (
        UniqueConstraint("customer_id", "parent_id", "name", name="uq_folder_name"),
    )

    id = Column(Integer, primary_key=True)
    customer_id = Column(Integer, ForeignKey("crm_customer.id"), nullable=False, index=True)
    customer = relationship("Customer")
    parent_id = Column(Integer, ForeignKey("crm_document_folder.id"))
    parent = relationship("DocumentFolder", remote_side=[id])
    name = Column(String(128), nullable=False)

    def __str__(self):
        return self.name or ""


class DocumentBlob(Model):
    """Stored content, keyed by sha256; the file lives at DOCUMENT_DIR/ab/cd/<sha256>."""

    __tablename__ = "crm_document_blob"

    sha256 = Column(String(64), primary_key=True)
    size = Column(BigInteger, nullable=False)
    mime = Column(String(128), nullable=False)
    created_on = Column(DateTime, nullable=False)


class Document(AuditMixin, Model):
    """A file attached to a customer; uploader = created_by, time = created_on."""

    __tablename__ = "crm_document"
    __table_args__ = (
        Index("ix_document_customer_folder_name", "customer_id", "folder_id", "name"),
        Index("ix_document_sha256", "sha256"),
    )

    id = Column(Integer, primary_key=True)
    customer_id = Column(Integer, ForeignKey("crm_customer.id"), nullable=False)
    customer = relationship("Customer")
    folder_id = Column(Integer, ForeignKey("crm_document_folder.id"))
    folder = relationship("DocumentFolder")
    opportunity_id = Column(Integer, ForeignKey("crm_opportunity.id"), index=True)
    service_id = Column(Integer, ForeignKey("crm_service.id"), index=True)
    name = Column(String(255), nullable=False)      # original file name, exactly
    version = Column(Integer, nullable=False, default=1)
    sha256 = Column(String(64), ForeignKey("crm_document_blob.sha256"), nullable=False)
    blob = relationship("DocumentBlob")
    size = Column(BigInteger, nullable=False)
    mime = Column(String(128), nullable=False)

    def __str__(self):
        return self.name or ""

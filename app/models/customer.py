"""客户管理: customers, contacts, interaction records, churn warnings."""
from sqlalchemy import (
    CheckConstraint, Column, Date, DateTime, ForeignKey, Index, Integer,
    Numeric, SmallInteger, String, Text, text,
)
from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import relationship

from .base import AuditMixin, Model

CUSTOMER_STATUSES = ("normal", "lost", "merged")
CHURN_STATUSES = ("warning", "delaying", "lost", "recovered")
CHURN_OPEN = ("warning", "delaying")
# the Chinese names of the statuses (lists, filters, 操作记录's 状态变化)
CUSTOMER_STATUS_LABELS = dict(zip(CUSTOMER_STATUSES, (_l("正常"), _l("已流失"), _l("已合并"))))
CHURN_STATUS_LABELS = dict(zip(CHURN_STATUSES, (
    _l("预警"), _l("暂缓流失"), _l("已流失"), _l("已恢复"))))


class Customer(AuditMixin, Model):
    __tablename__ = "crm_customer"
    __table_args__ = (
        CheckConstraint("status IN ('normal','lost','merged')", name="ck_customer_status"),
        CheckConstraint("satisfaction IS NULL OR satisfaction BETWEEN 1 AND 5",
                        name="ck_customer_satisfaction"),
        CheckConstraint("credit IS NULL OR credit BETWEEN 1 AND 5", name="ck_customer_credit"),
        Index("ix_customer_manager_status", "manager_id", "status"),
        Index("ix_customer_status_created", "status", "created_on"),
        # 客户构成分析 groups normal customers by level / credit / satisfaction
        Index("ix_customer_status_level", "status", "level_id"),
        Index("ix_customer_status_credit", "status", "credit"),
        Index("ix_customer_status_satisfaction", "status", "satisfaction"),
    )

    id = Column(Integer, primary_key=True)
    number = Column(String(32), nullable=False, unique=True)
    name = Column(String(128), nullable=False, index=True)
    region_id = Column(Integer, ForeignKey("crm_dict_item.id"), index=True)
    region = relationship("DictItem", foreign_keys=[region_id])
    manager_id = Column(Integer, ForeignKey("ab_user.id"), nullable=False)
    manager = relationship("User", foreign_keys=[manager_id])
    level_id = Column(Integer, ForeignKey("crm_dict_item.id"), index=True)
    level = relationship("DictItem", foreign_keys=[level_id])
    satisfaction = Column(SmallInteger)
    credit = Column(SmallInteger)
    address = Column(String(255))
    zip_code = Column(String(6))
    phone = Column(String(32))
    fax = Column(String(32))
    website = Column(String(255))
    license_no = Column(String(64), index=True)
    legal_person = Column(String(64))
    registered_capital = Column(Numeric(16, 2))  # 万元
    annual_turnover = Column(Numeric(18, 2))
    bank = Column(String(128))
    bank_account = Column(String(64))
    local_tax_no = Column(String(64))
    national_tax_no = Column(String(64), index=True)
    status = Column(String(16), nullable=False, default="normal", server_default="normal")
    # created by that import; set when merged away into another customer
    import_id = Column(Integer, ForeignKey("crm_import.id", name="fk_customer_import"), index=True)
    merged_into_id = Column(Integer, ForeignKey("crm_customer.id", name="fk_customer_merged_into"))

    contacts = relationship("Contact", back_populates="customer", lazy="selectin",
                            order_by="Contact.id", cascade="all, delete-orphan")

    def __str__(self):
        return self.name or ""


class Contact(AuditMixin, Model):
    __tablename__ = "crm_contact"
    __table_args__ = (
        CheckConstraint("gender IS NULL OR gender IN ('男','女')", name="ck_contact_gender"),
    )

    id = Column(Integer, primary_key=True)
    customer_id = Column(Integer, ForeignKey("crm_customer.id"), nullable=False, index=True)
    customer = relationship("Customer", back_populates="contacts")
    name = Column(String(64), nullable=False)
    gender = Column(String(2))
    position = Column(String(64))
    office_phone = Column(String(32))
    mobile = Column(String(32))
    email = Column(String(255), index=True)
    memo = Column(Text)

    def __str__(self):
        return self.name or ""


class Activity(AuditMixin, Model):
    """交往记录."""

    __tablename__ = "crm_activity"
    __table_args__ = (Index("ix_activity_customer_date", "customer_id", "date"),)

    id = Column(Integer, primary_key=True)
    customer_id = Column(Integer, ForeignKey("crm_customer.id"), nullable=False)
    customer = relationship("Customer")
    date = Column(Date, nullable=False)
    place = Column(String(128), nullable=False)
    summary = Column(String(255), nullable=False)
    detail = Column(Text, nullable=False)
    memo = Column(Text)


class ChurnWarning(AuditMixin, Model):
    """客户流失预警. At most one open (warning/delaying) warning per customer."""

    __tablename__ = "crm_churn_warning"
    __table_args__ = (
        CheckConstraint("status IN ('warning','delaying','lost','recovered')",
                        name="ck_churn_status"),
        Index("uq_churn_open_customer", "customer_id", unique=True,
              sqlite_where=text("status IN ('warning','delaying')"),
              postgresql_where=text("status IN ('warning','delaying')")),
        Index("ix_churn_customer", "customer_id"),
        Index("ix_churn_status_manager", "status", "manager_id"),
    )

    id = Column(Integer, primary_key=True)
    customer_id = Column(Integer, ForeignKey("crm_customer.id"), nullable=False)
    customer = relationship("Customer")
    manager_id = Column(Integer, ForeignKey("ab_user.id"))
    manager = relationship("User", foreign_keys=[manager_id])
    last_order_date = Column(Date)
    warned_on = Column(DateTime, nullable=False)
    reason = Column(Text)
    confirmed_on = Column(DateTime)
    recovered_on = Column(DateTime)
    status = Column(String(16), nullable=False, default="warning", server_default="warning")

    measures = relationship("ChurnMeasure", back_populates="warning",
                            order_by="ChurnMeasure.id", lazy="selectin")


class ChurnMeasure(AuditMixin, Model):
    """暂缓措施: appended, never overwritten; author = created_by, time = created_on."""

    __tablename__ = "crm_churn_measure"

    id = Column(Integer, primary_key=True)
    warning_id = Column(Integer, ForeignKey("crm_churn_warning.id"), nullable=False, index=True)
    warning = relationship("ChurnWarning", back_populates="measures")
    text = Column(Text, nullable=False)

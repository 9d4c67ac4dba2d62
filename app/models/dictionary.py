"""Data dictionary 数据字典 and the system's number sequences."""
from sqlalchemy import BigInteger, Boolean, Column, Integer, String, UniqueConstraint
from sqlalchemy.orm import relationship  # noqa: F401

from .base import AuditMixin, Model

# dictionary categories (类别) used by selects
REGION = "地区"
LEVEL = "客户等级"
SERVICE_TYPE = "服务类型"
SERVICE_PRIORITY = "服务优先级"
SERVICE_LIMIT = "服务时限"  # 条目 "服务类型/优先级", 值 "响应小时" or "响应小时/解决小时"


class DictItem(AuditMixin, Model):
    """编号 = id, 类别 = type, 条目 = item, 值 = value, 是否可编辑 = editable."""

    __tablename__ = "crm_dict_item"
    __table_args__ = (UniqueConstraint("type", "item", name="uq_dict_item_type_item"),)

    id = Column(Integer, primary_key=True)
    type = Column(String(32), nullable=False, index=True)
    item = Column(String(64), nullable=False)
    value = Column(String(64), nullable=False)
    editable = Column(Boolean, nullable=False, default=True, server_default="1")

    def __str__(self):
        return self.item or ""


class NumberSequence(Model):
    """Counters for business numbers (KH…, XS…, FW…): incremented atomically."""

    __tablename__ = "crm_sequence"

    name = Column(String(32), primary_key=True)
    value = Column(BigInteger, nullable=False, default=0)


class RoleGrant(Model):
    """Which (role, permission, view) pairs `crm init` has granted once.

    Init grants a pair only if it never granted it before, so an admin's later
    removal in the security UI is never undone by re-running init.
    """

    __tablename__ = "crm_role_grant"

    role_name = Column(String(64), primary_key=True)
    permission_name = Column(String(100), primary_key=True)
    view_menu_name = Column(String(250), primary_key=True)

"""Row-level rules shared by the modules ("own customer", etc.)."""
from flask_babel import lazy_gettext as _l

from .errors import Forbidden


def can_manage_customer(actor, customer):
    """The customer's 客户经理, 销售主管 and admin maintain a customer and its records."""
    return actor.is_admin or actor.is_supervisor or customer.manager_id == actor.id


def require_customer_manager(actor, customer):
    if not can_manage_customer(actor, customer):
        raise Forbidden(_l("只有该客户的客户经理、销售主管或系统管理员可以进行此操作。"))


def can_read_customer(actor, customer):
    """All staff read all customers (DESIGN.md §5.3)."""
    return bool(actor.roles)

"""基础数据 › 产品查询, 库存查询, and orders (历史订单) over the read-only ``sales`` bind.

The REST resources ``product``, ``stock``, ``order`` (app/api/sales.py) only
offer GET; writes answer 405. Orders are only those with status 5 (已发货) or 6 (已回款), newest
first; total = Σ 数量 × 单价, computed in SQL for the whole page in one query.
"""
from decimal import Decimal

from flask import g
from flask_appbuilder import ModelView, expose
from flask_appbuilder.models.sqla.filters import FilterInFunction
from flask_appbuilder.models.sqla.interface import SQLAInterface
from flask_appbuilder.security.decorators import has_access
from flask_babel import gettext, lazy_gettext as _l
from sqlalchemy.orm import selectinload

from ..extensions import db
from ..models import Order, Product, Stock
from ..models.sales import COUNTED_ORDER_STATUSES, ORDER_STATUSES
from ..workflows import sales as wf
from ..workflows.actors import EXECUTIVE, MANAGER, SUPERVISOR
from .common import VIEW_CRUD
from .export import ExportMixin
from .lists import ListMixin

ORDER = 60
# One permission per function (pages, API, menu): can_list on "Product" (产品查询),
# "Stock" (库存查询) and "Order" (历史订单).
RIGHTS = {role: [("Product|Stock|Order", "can_list")] for role in (EXECUTIVE, SUPERVISOR, MANAGER)}

PRODUCT_LABELS = {"id": _l("编号"), "name": _l("名称"), "model": _l("型号"),
                  "batch": _l("等级/批次"), "unit": _l("单位"), "price": _l("单价"),
                  "memo": _l("备注")}
STOCK_LABELS = {"id": _l("编号"), "product": _l("产品"), "product_id": _l("产品"),
                "product.name": _l("产品"), "warehouse": _l("仓库"), "location": _l("货位"),
                "quantity": _l("件数"), "memo": _l("备注")}
ORDER_LABELS = {"id": _l("序号"), "number": _l("订单编号"), "customer_number": _l("客户编号"),
                "date": _l("下单日期"), "address": _l("送货地址"), "status": _l("状态"),
                "status_label": _l("状态"), "total": _l("总金额")}


def money(value):
    """Money with two decimals and 元, e.g. 1,234.50 元."""
    if value is None:
        return ""
    return gettext("%(amount)s 元", amount=f"{Decimal(value):,.2f}")


def counted_statuses():
    return list(COUNTED_ORDER_STATUSES)


class ProductView(ListMixin, ExportMixin, ModelView):
    quick_search_columns = ["name", "model", "batch"]
    datamodel = SQLAInterface(Product, db.session)
    route_base = "/product"
    class_permission_name = "Product"
    method_permission_name = VIEW_CRUD
    list_title = show_title = _l("产品查询")
    label_columns = PRODUCT_LABELS
    list_columns = ["name", "model", "batch", "unit", "price", "memo"]
    show_columns = list_columns
    search_columns = ["name", "model", "batch"]
    base_permissions = ["can_list"]
    # read-only: no add/edit/delete/action routes; 导出 CSV / XLSX of the filtered list
    include_route_methods = {"list", "show", "export_list"}
    formatters_columns = {"price": money}
    page_size = 50


class StockView(ListMixin, ExportMixin, ModelView):
    quick_search_columns = ["product.name", "warehouse", "location"]
    order_columns = ["product.name", "warehouse", "location", "quantity"]
    datamodel = SQLAInterface(Stock, db.session)
    route_base = "/stock"
    class_permission_name = "Stock"
    method_permission_name = VIEW_CRUD
    list_title = show_title = _l("库存查询")
    label_columns = STOCK_LABELS
    list_columns = ["product.name", "warehouse", "location", "quantity", "memo"]
    show_columns = list_columns
    search_columns = ["product", "warehouse"]
    base_permissions = ["can_list"]
    # read-only: no add/edit/delete/action routes; 导出 CSV / XLSX of the filtered list
    include_route_methods = {"list", "show", "export_list"}
    page_size = 50


class OrderView(ListMixin, ExportMixin, ModelView):
    quick_search_columns = ["number", "customer_number", "address"]
    sort_columns = {"address": "address", "status_label": "status"}
    datamodel = SQLAInterface(Order, db.session)
    route_base = "/order"
    class_permission_name = "Order"
    method_permission_name = VIEW_CRUD
    list_title = _l("历史订单")
    show_title = _l("订单详情")
    label_columns = ORDER_LABELS
    list_columns = ["number", "customer_number", "date", "address", "status_label", "total"]
    show_columns = ["number", "customer_number", "date", "address", "status_label", "total"]
    search_columns = ["number", "customer_number", "date", "address"]
    order_columns = ["number", "customer_number", "date"]
    base_filters = [["status", FilterInFunction, counted_statuses]]
    base_order = ("date", "desc")
    base_permissions = ["can_list"]
    include_route_methods = {"list", "show", "export_list"}  # read-only: no add/edit/delete/action routes
    formatters_columns = {"total": money}
    show_template = "order_show.html"
    export_load_options = [selectinload(Order.lines)]  # total = Σ lines, per chunk
    page_size = 20

    @expose("/show/<pk>", methods=["GET"])
    @has_access
    def show(self, pk):
        g.crm_order = wf.get_order(db.session, int(pk))
        return super().show(pk)


def register(appbuilder):
    appbuilder.add_view(ProductView, "Products", label=_l("产品查询"), icon="fa-cube",
                        category="BaseData")
    appbuilder.add_view(StockView, "Stock", label=_l("库存查询"), icon="fa-cubes",
                        category="BaseData")
    appbuilder.add_view(OrderView, "Orders", label=_l("历史订单"), icon="fa-list-alt",
                        category="BaseData")


__all__ = ["money", "ORDER_STATUSES"]

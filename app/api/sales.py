"""``/api/v1/product``, ``/api/v1/stock``, ``/api/v1/order``: the read-only sales
data (GET only; writes answer 405). Orders: status 5/6 only, newest first, with
their lines and total (app/workflows/sales.py)."""
from flask_appbuilder.models.sqla.filters import FilterInFunction
from flask_appbuilder.models.sqla.interface import SQLAInterface

from ..extensions import db
from ..models import Order, Product, Stock
from ..views.common import CrmModelRestApi
from ..views.sales import ORDER_LABELS, PRODUCT_LABELS, STOCK_LABELS, counted_statuses
from ..workflows import sales as wf

ORDER = 60


class ProductApi(CrmModelRestApi):
    resource_name = "product"
    class_permission_name = "Product"
    datamodel = SQLAInterface(Product, db.session)
    include_route_methods = {"get", "get_list", "info"}
    list_columns = ["id", "name", "model", "batch", "unit", "price", "memo"]
    show_columns = list_columns
    search_columns = ["name", "model", "batch"]
    order_columns = ["id", "name", "model", "batch", "price"]
    label_columns = PRODUCT_LABELS


class StockApi(CrmModelRestApi):
    resource_name = "stock"
    class_permission_name = "Stock"
    datamodel = SQLAInterface(Stock, db.session)
    include_route_methods = {"get", "get_list", "info"}
    list_columns = ["id", "product_id", "warehouse", "location", "quantity", "memo"]
    show_columns = list_columns
    search_columns = ["product_id", "warehouse"]
    order_columns = ["id", "warehouse", "quantity"]
    label_columns = STOCK_LABELS


class OrderApi(CrmModelRestApi):
    resource_name = "order"
    class_permission_name = "Order"
    datamodel = SQLAInterface(Order, db.session)
    include_route_methods = {"get", "get_list", "info"}
    list_columns = ["id", "number", "customer_number", "date", "address", "status"]
    show_columns = list_columns
    search_columns = ["number", "customer_number", "date", "status"]
    order_columns = ["id", "number", "date"]
    base_filters = [["status", FilterInFunction, counted_statuses]]
    base_order = ("date", "desc")
    label_columns = ORDER_LABELS

    def pre_get_list(self, data):
        details = wf.lines_and_totals(db.session, data.get("ids", []))
        for pk, row in zip(data.get("ids", []), data.get("result", [])):
            row["lines"], row["total"] = details.get(pk, ([], "0.00"))

    def pre_get(self, data):
        pk = data.get("id")
        details = wf.lines_and_totals(db.session, [pk])
        data["result"]["lines"], data["result"]["total"] = details.get(pk, ([], "0.00"))



def register(appbuilder):
    appbuilder.add_api(ProductApi)
    appbuilder.add_api(StockApi)
    appbuilder.add_api(OrderApi)

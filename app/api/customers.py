"""客户管理 REST resources: ``/api/v1/customer`` (with ``/<id>/timeline``),
``/api/v1/contact``, ``/api/v1/activity`` and their serializers.

Thin: every rule (who may, in which state) is in ``app/workflows/customers.py``, the
客户动态 feed in ``app/workflows/timeline.py``; ``json_body``/``api_step``
(app/api/base.py) parse the body, commit and map domain errors.
"""
from decimal import Decimal

from flask import request
from flask_appbuilder import expose
from flask_appbuilder.api import protect
from flask_appbuilder.models.sqla.interface import SQLAInterface
from flask_babel import gettext as _
from sqlalchemy import select

from ..extensions import db
from ..models import Activity, Contact, Customer, DictItem
from ..views.common import API_CRUD, CrmModelRestApi, current_actor
from ..views.customer import CustomerInterface, timeline_page
from ..workflows import customers as wf
from .base import QuickSearchFilter, api_step, json_body

ORDER = 20

CUSTOMER_API_FIELDS = ["id", "number", "name", "region", "manager_id", "level", "satisfaction",
                       "credit", "address", "zip_code", "phone", "fax", "website", "license_no",
                       "legal_person", "registered_capital", "annual_turnover", "bank",
                       "bank_account", "local_tax_no", "national_tax_no", "status"]
_CUSTOMER_COLUMNS = [{"region": "region_id", "level": "level_id"}.get(c, c)
                     for c in CUSTOMER_API_FIELDS]
_MONEY = ("registered_capital", "annual_turnover")


# ---- serializers ---------------------------------------------------------------------

def _money_text(value):
    return None if value is None else f"{Decimal(value):.2f}"


def _dict_texts(ids):
    ids = {i for i in ids if i is not None}
    if not ids:
        return {}
    return dict(db.session.execute(select(DictItem.id, DictItem.item)
                                   .where(DictItem.id.in_(ids))).all())


def customer_json(c):
    """The §8 fields of a customer; region/level as the dictionary item text."""
    out = {f: getattr(c, f) for f in CUSTOMER_API_FIELDS if f not in ("region", "level")}
    out["region"] = c.region.item if c.region else None
    out["level"] = c.level.item if c.level else None
    for f in _MONEY:
        out[f] = _money_text(out[f])
    return out


def _rows_to_api(rows):
    texts = _dict_texts([r.get(k) for r in rows for k in ("region_id", "level_id")])
    for row in rows:
        for key in ("region", "level"):
            if f"{key}_id" in row:
                row[key] = texts.get(row.pop(f"{key}_id"))
        for f in _MONEY:
            if f in row:
                row[f] = _money_text(row[f])


def contact_json(c):
    return {f: getattr(c, f) for f in ["id", "customer_id", *wf.CONTACT_FIELDS]}


def activity_json(a):
    out = {f: getattr(a, f) for f in ["id", "customer_id", *wf.ACTIVITY_FIELDS]}
    out["date"] = a.date.isoformat()
    return out


# ---- resources -------------------------------------------------------------------------

class _Api(CrmModelRestApi):
    def response_401(self):
        return self.response(401, message=_("请先登录。"))

    def response_403(self):
        return self.response(403, message=_("无权执行此操作：您的角色没有这项权限。"))


class CustomerApi(_Api):
    """``/api/v1/customer``: list/get/create/edit (no delete: 405). region/level are the
    dictionary item text. Filter e.g. ``(filters:!((col:manager_id,opr:eq,value:3)))``.
    A customer's orders: ``/api/v1/order/?q=(filters:!((col:customer_number,opr:eq,value:KH…)))``.
    ``/<id>/timeline``: the 客户动态 feed (app/workflows/timeline.py)."""

    resource_name = "customer"
    class_permission_name = "Customer"
    method_permission_name = dict(API_CRUD, timeline="list")
    openapi_spec_tag = "customer"
    datamodel = CustomerInterface(Customer, eager=False)
    include_route_methods = {"get", "get_list", "info", "post", "put", "timeline"}
    list_columns = _CUSTOMER_COLUMNS
    show_columns = _CUSTOMER_COLUMNS
    add_columns = [c for c in _CUSTOMER_COLUMNS if c not in ("id", "number", "status")]
    edit_columns = add_columns
    search_columns = ["number", "name", "region_id", "level_id", "manager_id", "status",
                      "satisfaction", "credit", "phone", "license_no"]
    order_columns = ["id", "number", "name", "satisfaction", "credit", "status"]
    base_order = ("id", "desc")
    label_columns = wf.LABELS

    def pre_get_list(self, data):
        _rows_to_api(data.get("result", []))
        if "list_columns" in data:
            data["list_columns"] = CUSTOMER_API_FIELDS

    def pre_get(self, data):
        _rows_to_api([data.get("result", {})])
        if "show_columns" in data:
            data["show_columns"] = CUSTOMER_API_FIELDS

    def _ok(self, code, customer):
        db.session.refresh(customer)
        return self.response(code, id=customer.id, result=customer_json(customer),
                             message=_("保存成功"))

    @expose("/", methods=["POST"])
    @protect()
    @api_step
    def post(self):
        """Create a customer (number automatic; a 客户经理 only for himself).
        ---
        post:
          requestBody:
            content:
              application/json:
                schema: {type: object}
                example: {name: 北京某某科技有限公司, region: 北京, level: 大客户, manager_id: 3,
                          satisfaction: 4, credit: 4, address: 北京市海淀区中关村大街1号,
                          zip_code: "100080", phone: 010-62345678, legal_person: 王五,
                          bank: 中国银行, bank_account: "6216600000000000001"}
          responses:
            201: {description: created}
            400: {$ref: '#/components/responses/400'}
            403: {description: not allowed}
        """
        customer = wf.create(db.session, current_actor(), json_body())
        return self._ok(201, customer)

    @expose("/<int:pk>", methods=["PUT"])
    @protect()
    @api_step
    def put(self, pk):
        """Edit a ``normal`` customer (its 客户经理, 销售主管, admin); only the fields given.
        ---
        put:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer}}
          responses:
            200: {description: saved}
            400: {$ref: '#/components/responses/400'}
            403: {description: not your customer}
            404: {$ref: '#/components/responses/404'}
            409: {description: the customer is lost}
        """
        customer = wf.update_customer(db.session, current_actor(), pk, json_body())
        return self._ok(200, customer)

    @expose("/<int:pk>/timeline", methods=["GET"])
    @protect()
    @api_step
    def timeline(self, pk):
        """客户动态: the customer's interactions, tickets, mail, documents, origin
        opportunity, churn warnings and measures and field changes, newest first —
        only what the caller may read.
        ---
        get:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer}}
          - in: query
            name: kind
            required: false
            description: "一个类别：activity 交往记录、ticket 客户服务、mail 邮件、document 文档、
              opportunity 销售机会、churn 流失预警、measure 暂缓措施、change 信息变更；省略或 all 为全部"
            schema: {type: string}
          - {in: query, name: page, required: false, description: "页码，从 0 开始",
             schema: {type: integer, minimum: 0}}
          - {in: query, name: page_size, required: false, description: "每页条数 1–100，默认 20",
             schema: {type: integer, minimum: 1, maximum: 100}}
          responses:
            200: {description: one page of the feed}
            400: {$ref: '#/components/responses/400'}
            404: {$ref: '#/components/responses/404'}
        """
        customer = wf.get(db.session, pk)
        feed = timeline_page(customer, current_actor(), request.args.get("kind"),
                             request.args.get("page"), request.args.get("page_size"))
        return self.response(200, **feed.to_json())


class ContactApi(_Api):
    """``/api/v1/contact``: a customer's contacts (filter ``customer_id``); writes only on
    customers the user manages; ``customer_id`` never changes."""

    resource_name = "contact"
    class_permission_name = "Contact"
    openapi_spec_tag = "contact"
    datamodel = SQLAInterface(Contact)
    list_columns = ["id", "customer_id", *wf.CONTACT_FIELDS]
    show_columns = list_columns
    add_columns = list_columns[1:]
    edit_columns = list_columns[1:]
    search_columns = ["customer_id", "name", "gender", "position", "office_phone", "mobile",
                      "email"]
    # 快速搜索 (opr:search): 姓名, 办公电话, 手机, 电子邮件 — the contact list's search
    search_filters = {"name": [QuickSearchFilter.on(Contact, wf.contact_search_condition)]}
    order_columns = ["id", "customer_id", "name"]
    base_order = ("id", "asc")
    label_columns = wf.CONTACT_LABELS

    @expose("/", methods=["POST"])
    @protect()
    @api_step
    def post(self):
        """Add a contact ``{customer_id, name, gender, position, office_phone, ...}``.
        ---
        post:
          responses:
            201: {description: created}
            400: {$ref: '#/components/responses/400'}
            403: {description: not your customer}
            409: {description: the customer is lost}
        """
        data = json_body()
        customer_id = wf.owner_id_of(db.session, data)
        contact = wf.add_contact(db.session, current_actor(), customer_id, data)
        return self.response(201, id=contact.id, result=contact_json(contact))

    @expose("/<int:pk>", methods=["PUT"])
    @protect()
    @api_step
    def put(self, pk):
        """Change fields of a contact (a different ``customer_id`` is refused: 400).
        ---
        put:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer}}
          responses:
            200: {description: saved}
        """
        contact = wf.update_contact(db.session, current_actor(), pk, json_body())
        return self.response(200, id=contact.id, result=contact_json(contact))

    @expose("/<int:pk>", methods=["DELETE"])
    @protect()
    @api_step
    def delete(self, pk):
        """Delete a contact.
        ---
        delete:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer}}
          responses:
            200: {description: deleted}
        """
        wf.delete_contact(db.session, current_actor(), pk)
        return self.response(200, message=_("删除成功"))


class ActivityApi(_Api):
    """``/api/v1/activity``: a customer's 交往记录 (filter ``customer_id``); add and edit
    on customers the user manages; records are not deleted (405)."""

    resource_name = "activity"
    class_permission_name = "Activity"
    openapi_spec_tag = "activity"
    datamodel = SQLAInterface(Activity)
    include_route_methods = {"get", "get_list", "info", "post", "put"}
    list_columns = ["id", "customer_id", *wf.ACTIVITY_FIELDS]
    show_columns = list_columns
    add_columns = list_columns[1:]
    edit_columns = list_columns[1:]
    search_columns = ["customer_id", "date", "place", "summary"]
    order_columns = ["id", "customer_id", "date"]
    base_order = ("date", "desc")
    label_columns = wf.ACTIVITY_LABELS

    @expose("/", methods=["POST"])
    @protect()
    @api_step
    def post(self):
        """Add a record ``{customer_id, date, place, summary, detail, memo?}``.
        ---
        post:
          responses:
            201: {description: created}
            400: {$ref: '#/components/responses/400'}
            403: {description: not your customer}
            409: {description: the customer is lost}
        """
        data = json_body()
        customer_id = wf.owner_id_of(db.session, data)
        activity = wf.add_activity(db.session, current_actor(), customer_id, data)
        return self.response(201, id=activity.id, result=activity_json(activity))

    @expose("/<int:pk>", methods=["PUT"])
    @protect()
    @api_step
    def put(self, pk):
        """Change fields of a record; 日期/地点/概要/详细信息 cannot become empty.
        ---
        put:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer}}
          responses:
            200: {description: saved}
        """
        activity = wf.update_activity(db.session, current_actor(), pk, json_body())
        return self.response(200, id=activity.id, result=activity_json(activity))


def register(appbuilder):
    appbuilder.add_api(CustomerApi)
    appbuilder.add_api(ContactApi)
    appbuilder.add_api(ActivityApi)

"""``/api/v1/opportunity``: the 销售机会 REST resource (营销管理).

List/get with filters (FAB), and every write through app/workflows/opportunities.py:
an endpoint parses the body (``json_body``), calls one workflow step and answers;
``api_step`` commits on success, rolls back and maps domain errors otherwise.
"""
from flask import request
from flask_appbuilder import expose
from flask_appbuilder.api import protect, safe
from flask_appbuilder.models.sqla.interface import SQLAInterface
from flask_appbuilder.security.decorators import permission_name
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from ..extensions import db
from ..models import Opportunity
from ..views.common import API_CRUD, CrmModelRestApi, current_actor
from ..workflows import opportunities as wf
from .base import api_step, json_body

ORDER = 10

_API_COLUMNS = ["id", "number", "source", "customer_name", "success_rate", "summary",
                "contact", "contact_phone", "description", "status", "created_by_fk",
                "created_on", "assignee_id", "assigned_on", "customer_id",
                "expected_amount", "expected_close_on"]
_RENAMES = {"created_by_fk": "creator_id"}


def _iso(value):
    return value.isoformat() if value else None


def plan_item_json(item):
    return {"id": item.id, "date": item.date.isoformat(), "content": item.content,
            "result": item.result}


def opportunity_json(opp, items=None):
    """The §8 fields of an opportunity (with its plan items)."""
    return {
        "id": opp.id, "number": opp.number, "source": opp.source,
        "customer_name": opp.customer_name, "success_rate": opp.success_rate,
        "summary": opp.summary, "contact": opp.contact, "contact_phone": opp.contact_phone,
        "description": opp.description, "status": opp.status, "creator_id": opp.created_by_fk,
        "created_on": _iso(opp.created_on), "assignee_id": opp.assignee_id,
        "assigned_on": _iso(opp.assigned_on), "customer_id": opp.customer_id,
        "expected_amount": None if opp.expected_amount is None else f"{opp.expected_amount:.2f}",
        "expected_close_on": _iso(opp.expected_close_on),
        "plan_items": [plan_item_json(i) for i in (opp.plan_items if items is None else items)],
    }


def _plan_items_of(ids):
    return {pk: [plan_item_json(i) for i in items]
            for pk, items in wf.plan_items_by_opportunity(db.session, ids).items()}


class OpportunityApi(CrmModelRestApi):
    """``/api/v1/opportunity``: list/get with filters; writes go through the workflow."""

    resource_name = "opportunity"
    class_permission_name = "Opportunity"
    # FAB's BaseApi takes an unmapped method's *name* as its permission: map them all
    method_permission_name = dict(API_CRUD, assign="assign", plan_item_add="plan",
                                  plan_item_put="plan", plan_item_delete="plan",
                                  succeed="develop", fail="develop", forecast="plan",
                                  bulk_assign="assign")
    openapi_spec_tag = "opportunity"
    datamodel = SQLAInterface(Opportunity)
    list_columns = _API_COLUMNS
    show_columns = _API_COLUMNS
    add_columns = list(wf.EDITABLE)
    edit_columns = list(wf.EDITABLE)
    search_columns = ["number", "customer_name", "summary", "status", "source",
                      "assignee_id", "created_by_fk"]
    order_columns = ["id", "number", "customer_name", "success_rate", "created_on",
                     "assigned_on", "status", "expected_amount", "expected_close_on"]
    base_order = ("id", "desc")
    label_columns = dict(wf.LABELS, created_by_fk=_l("创建人"))

    def pre_get_list(self, data):
        items = _plan_items_of(data.get("ids", []))
        for pk, row in zip(data.get("ids", []), data.get("result", [])):
            for old, new in _RENAMES.items():
                if old in row:
                    row[new] = row.pop(old)
            row["plan_items"] = items.get(pk, [])
        if "list_columns" in data:
            data["list_columns"] = [_RENAMES.get(c, c) for c in data["list_columns"]] + ["plan_items"]

    def pre_get(self, data):
        row = data.get("result", {})
        for old, new in _RENAMES.items():
            if old in row:
                row[new] = row.pop(old)
        row["plan_items"] = _plan_items_of([data.get("id")]).get(data.get("id"), [])
        if "show_columns" in data:
            data["show_columns"] = [_RENAMES.get(c, c) for c in data["show_columns"]] + ["plan_items"]

    def response_401(self):
        return self.response(401, message=_("请先登录。"))

    def response_403(self):
        return self.response(403, message=_("无权执行此操作：您的角色没有这项权限。"))

    def _ok(self, code, opp, **extra):
        db.session.refresh(opp)
        return self.response(code, id=opp.id, result=opportunity_json(opp), **extra)

    @expose("/", methods=["POST"])
    @protect()
    @safe
    @api_step
    def post(self):
        """Create an opportunity.
        ---
        post:
          requestBody:
            content:
              application/json:
                schema: {type: object}
                example: {customer_name: 北京某某科技有限公司, success_rate: 60, summary: 采购打印机,
                          description: 计划采购 20 台激光打印机, source: 展会, contact: 张三,
                          contact_phone: "13900139000"}
          responses:
            201: {description: created}
            400: {$ref: '#/components/responses/400'}
            403: {$ref: '#/components/responses/401'}
        """
        opp = wf.create(db.session, current_actor(), json_body())
        return self._ok(201, opp)

    @expose("/<int:pk>", methods=["PUT"])
    @protect()
    @safe
    @api_step
    def put(self, pk):
        """Edit an ``unassigned`` opportunity (only the user fields).
        ---
        put:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer}}
          responses:
            200: {description: saved}
            400: {$ref: '#/components/responses/400'}
            404: {$ref: '#/components/responses/404'}
        """
        opp = wf.update_opportunity(db.session, current_actor(), pk, json_body())
        return self._ok(200, opp)

    @expose("/<int:pk>", methods=["DELETE"])
    @protect()
    @safe
    @api_step
    def delete(self, pk):
        """Delete an ``unassigned`` opportunity (its creator only).
        ---
        delete:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer}}
          responses:
            200: {description: deleted}
            404: {$ref: '#/components/responses/404'}
        """
        wf.delete_opportunity(db.session, current_actor(), pk)
        return self.response(200, message=_("删除成功"))

    @expose("/<int:pk>/assign", methods=["POST"])
    @protect()
    @safe
    @permission_name("assign")
    @api_step
    def assign(self, pk):
        """销售主管 assigns to an active 客户经理: ``{"assignee_id": 3}``.
        ---
        post:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer}}
          responses:
            200: {description: assigned}
            409: {description: not unassigned any more}
        """
        data = json_body()
        opp = wf.assign(db.session, current_actor(), pk, data.get("assignee_id"))
        return self._ok(200, opp, message=_("指派成功"))

    @expose("/<int:pk>/plan_items", methods=["POST"])
    @protect()
    @safe
    @permission_name("plan")
    @api_step
    def plan_item_add(self, pk):
        """Add a plan item ``{"date": "2007-12-13", "content": "..."}``.
        ---
        post:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer}}
          responses:
            201: {description: added}
        """
        item = wf.add_plan_item(db.session, current_actor(), pk, json_body())
        return self.response(201, id=item.id, result=plan_item_json(item))

    @expose("/<int:pk>/plan_items/<int:item_id>", methods=["PUT"])
    @protect()
    @safe
    @permission_name("plan")
    @api_step
    def plan_item_put(self, pk, item_id):
        """Change ``content`` and/or record ``result``; a ``date`` is refused (400).
        ---
        put:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer}}
          - {in: path, name: item_id, required: true, schema: {type: integer}}
          responses:
            200: {description: saved}
        """
        item = wf.update_plan_item(db.session, current_actor(), pk, item_id, json_body())
        return self.response(200, id=item.id, result=plan_item_json(item))

    @expose("/<int:pk>/plan_items/<int:item_id>", methods=["DELETE"])
    @protect()
    @safe
    @permission_name("plan")
    @api_step
    def plan_item_delete(self, pk, item_id):
        """Delete a plan item.
        ---
        delete:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer}}
          - {in: path, name: item_id, required: true, schema: {type: integer}}
          responses:
            200: {description: deleted}
        """
        wf.delete_plan_item(db.session, current_actor(), pk, item_id)
        return self.response(200, message=_("删除成功"))

    @expose("/<int:pk>/forecast", methods=["POST"])
    @protect()
    @safe
    @permission_name("plan")
    @api_step
    def forecast(self, pk):
        """更新预计成交 while 开发中 (the assignee, 销售主管): only the fields given change.
        ---
        post:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer}}
          requestBody:
            required: true
            content:
              application/json:
                schema: {type: object}
                example: {expected_amount: "120000.50", expected_close_on: "2027-03-31", success_rate: 70}
          responses:
            200: {description: saved (the opportunity)}
            400: {$ref: '#/components/responses/400'}
            403: {description: not the assignee / 销售主管}
            404: {$ref: '#/components/responses/404'}
            409: {description: not 开发中 (any more)}
        """
        opp = wf.update_forecast(db.session, current_actor(), pk, json_body())
        return self._ok(200, opp, message=_("预计成交已更新"))

    @expose("/<int:pk>/succeed", methods=["POST"])
    @protect()
    @safe
    @permission_name("develop")
    @api_step
    def succeed(self, pk):
        """开发成功: creates the customer (and contact); answers its id.

        When a customer of the same name exists, nothing changes and the answer is 409
        with ``existing_customer_id`` (and ``existing_customers``); repeat with
        ``{"link_customer_id": <id>}`` to link the opportunity to that customer, or
        ``{"create_anyway": true}`` to create a second customer of that name.
        ---
        post:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer}}
          requestBody:
            required: false
            content:
              application/json:
                schema:
                  type: object
                  properties:
                    link_customer_id: {type: integer, description: link to this existing customer}
                    create_anyway: {type: boolean, description: create even if the name exists}
          responses:
            200: {description: succeeded}
            400: {$ref: '#/components/responses/400'}
            409: {description: "not assigned (any more), or a customer of that name exists (existing_customer_id)"}
        """
        data = json_body() if request.get_data() else {}     # the body is optional
        opp, customer = wf.succeed(db.session, current_actor(), pk,
                                   link_customer_id=data.get("link_customer_id"),
                                   create_anyway=data.get("create_anyway", False))
        return self._ok(200, opp, customer_id=customer.id, customer_number=customer.number)

    @expose("/<int:pk>/fail", methods=["POST"])
    @protect()
    @safe
    @permission_name("develop")
    @api_step
    def fail(self, pk):
        """终止开发.
        ---
        post:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer}}
          responses:
            200: {description: failed}
            409: {description: not assigned (any more)}
        """
        opp = wf.fail(db.session, current_actor(), pk)
        return self._ok(200, opp)

    @expose("/bulk_assign", methods=["POST"])
    @protect()
    @safe
    @permission_name("assign")
    @api_step
    def bulk_assign(self):
        """批量指派: ``{"ids": [12, 13], "assignee_id": 5}``; each row through the
        same 指派 step (its own compare-and-set): a row that is not 未指派 any more is
        refused (``ok: false``, ``code: 409``) and the others are assigned.
        ---
        post:
          requestBody:
            required: true
            content:
              application/json:
                schema:
                  type: object
                  required: [ids, assignee_id]
                  properties:
                    ids: {type: array, items: {type: integer}, maxItems: 100}
                    assignee_id: {type: integer, description: 客户经理的用户 id}
          responses:
            200: {description: one result per id}
            400: {$ref: '#/components/responses/400'}
            403: {$ref: '#/components/responses/401'}
        """
        data = json_body()
        results = wf.assign_many(db.session, current_actor(), data.get("ids"),
                                 data.get("assignee_id"))
        return self.response(200, results=results)


def register(appbuilder):
    appbuilder.add_api(OpportunityApi)

"""REST: the ``service`` resource (``/api/v1/service``) — list/get the §8 fields
plus priority and the 服务时限, create, and the steps as POSTs on the record
(``/assign``, ``/reassign``, ``/priority``, ``/handle``, ``/feedback``) and
``/bulk_assign``. Every rule is in app/workflows/service.py; the endpoints parse the
body (``json_body``), call the step and answer (``api_step`` commits or rolls back).
"""
from flask_appbuilder import expose
from flask_appbuilder.api import protect
from flask_appbuilder.models.filters import BaseFilter
from flask_appbuilder.models.sqla.interface import SQLAInterface
from flask_babel import lazy_gettext as _l

from ..extensions import db
from ..models import ServiceTicket
from ..views.common import API_CRUD, CrmModelRestApi, current_actor
from ..workflows import service as wf
from ..workflows import sla
from .base import QuickSearchFilter, api_step, json_body


class FilterOverdue(BaseFilter):
    """``q=(filters:!((col:resolution_due,opr:overdue,value:!t)))``: the tickets with a
    missed open deadline (``!f``: the others) — the API's ``overdue`` field."""
    name = _l("已超时")
    arg_name = "overdue"

    def apply(self, query, value):
        cond = sla.overdue_condition(wf._now())
        if value in (False, 0, "false", "0", "f", "否"):
            return query.filter(~cond)
        return query.filter(cond)


class ServiceApi(CrmModelRestApi):
    """``/api/v1/service``: list/get the §8 fields, POST creates through the workflow;
    the steps are POSTs on the record: ``/assign``, ``/reassign``, ``/priority``,
    ``/handle``, ``/feedback``; ``/bulk_assign`` assigns many at once.
    Tickets are never edited or deleted directly (PUT/DELETE → 405)."""

    resource_name = "service"
    class_permission_name = "Service"
    datamodel = SQLAInterface(ServiceTicket)
    # 重新分配 is part of 服务分配: the same permission (the workflow: 销售主管/admin only)
    # 调整优先级 too (the 服务分配 function)
    method_permission_name = dict(API_CRUD, assign="assign", bulk_assign="assign",
                                  reassign="assign", priority="assign", handle="handle",
                                  feedback="feedback")
    include_route_methods = {"get", "get_list", "info", "post", "assign", "bulk_assign",
                             "reassign", "priority", "handle", "feedback"}
    list_columns = ["id", "number", "service_type_id", "summary", "customer_id", "request",
                    "status", "created_by_fk", "created_on", "assignee_id", "assigned_on",
                    "handling", "handler_id", "handled_on", "result", "satisfaction",
                    "priority", "response_due", "resolution_due", "first_response_on",
                    "resolved_on"]
    show_columns = list_columns
    search_columns = ["number", "summary", "customer_id", "status", "assignee_id",
                      "handler_id", "service_type_id", "created_on", "priority",
                      "response_due", "resolution_due"]
    # the 已超时 filter looks at both deadlines; FAB hangs a filter on a column, so it
    # is offered on either (``col:resolution_due`` or ``col:response_due``, ``opr:overdue``)
    search_filters = {"resolution_due": [FilterOverdue], "response_due": [FilterOverdue],
                      # 快速搜索 (opr:search): 编号, 概要, customer name — the pages' search
                      "number": [QuickSearchFilter.on(ServiceTicket, wf.search_condition)]}
    # priority_rank: by urgency (普通 1 < 紧急 2 < 特急 3); priority: by the text
    order_columns = ["id", "number", "created_on", "assigned_on", "handled_on", "status",
                     "priority", "priority_rank", "response_due", "resolution_due"]
    base_order = ("id", "desc")
    label_columns = dict(wf.LABELS, created_by_fk=wf.LABELS["creator_id"],
                         service_type_id=wf.LABELS["service_type"])

    def pre_get_list(self, data):
        ids = data.get("ids", [])
        found = wf.json_by_id(db.session, ids)
        data["result"] = [found[i] for i in ids if i in found]

    def pre_get(self, data):
        pk = data.get("id")
        found = wf.json_by_id(db.session, [pk])
        if pk in found:
            data["result"] = found[pk]

    @expose("/", methods=["POST"])
    @protect()
    @api_step
    def post(self):
        """Create a service ticket (status ``created``).
        ---
        post:
          requestBody:
            required: true
            content:
              application/json:
                schema:
                  type: object
                  properties:
                    service_type: {type: string, example: 咨询}
                    summary: {type: string}
                    customer_id: {type: integer}
                    request: {type: string}
                    priority: {type: string, example: 紧急, description: 服务优先级条目，缺省为普通}
          responses:
            201: {description: created}
            400: {$ref: '#/components/responses/400'}
            403: {$ref: '#/components/responses/403'}
        """
        ticket = wf.create(db.session, current_actor(), json_body())
        return self.response(201, id=ticket.id, result=wf.to_json(ticket))

    @expose("/<int:pk>/assign", methods=["POST"])
    @protect()
    @api_step
    def assign(self, pk):
        """Assign a ``created`` ticket to an active 客户经理/销售主管 (销售主管).
        ---
        post:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer}}
          requestBody:
            required: true
            content:
              application/json:
                schema: {type: object, properties: {assignee_id: {type: integer}}}
          responses:
            200: {description: assigned}
            400: {$ref: '#/components/responses/400'}
            403: {$ref: '#/components/responses/403'}
            404: {$ref: '#/components/responses/404'}
            409: {description: wrong state or lost race}
        """
        data = json_body()
        ticket = wf.assign(db.session, current_actor(), pk, data.get("assignee_id"))
        return self.response(200, result=wf.to_json(ticket))

    @expose("/bulk_assign", methods=["POST"])
    @protect()
    @api_step
    def bulk_assign(self):
        """批量分配: many ``created`` tickets to one 客户经理/销售主管 (销售主管), each
        through the same step as ``/assign`` (its own compare-and-set); one result per id.
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
                    ids: {type: array, items: {type: integer}, maxItems: 200}
                    assignee_id: {type: integer}
          responses:
            200: {description: "one result per id: ok, or refused and why"}
            400: {$ref: '#/components/responses/400'}
            403: {$ref: '#/components/responses/403'}
        """
        data = json_body()
        results = wf.bulk_assign(db.session, current_actor(), data.get("ids"),
                                 data.get("assignee_id"))
        return self.response(200, results=results)

    @expose("/<int:pk>/reassign", methods=["POST"])
    @protect()
    @api_step
    def reassign(self, pk):
        """Re-assign an ``assigned`` (not yet handled) ticket to another 客户经理/销售主管
        (销售主管). ``from_assignee_id`` (optional): the assignee you saw — 409 if it changed.
        ---
        post:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer}}
          requestBody:
            required: true
            content:
              application/json:
                schema:
                  type: object
                  properties:
                    assignee_id: {type: integer}
                    from_assignee_id: {type: integer}
          responses:
            200: {description: re-assigned}
            400: {$ref: '#/components/responses/400'}
            403: {$ref: '#/components/responses/403'}
            404: {$ref: '#/components/responses/404'}
            409: {description: not assigned (created/handled/archived), or re-assigned meanwhile}
        """
        data = json_body()
        ticket = wf.reassign(db.session, current_actor(), pk, data.get("assignee_id"),
                             data.get("from_assignee_id"))
        return self.response(200, result=wf.to_json(ticket))

    @expose("/<int:pk>/priority", methods=["POST"])
    @protect()
    @api_step
    def priority(self, pk):
        """Change the priority of a ticket not yet handled (销售主管, 服务分配).
        ``from_priority`` (optional): the priority you saw — 409 if it changed.
        ---
        post:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer}}
          requestBody:
            required: true
            content:
              application/json:
                schema:
                  type: object
                  properties:
                    priority: {type: string, example: 紧急}
                    from_priority: {type: string, example: 普通}
          responses:
            200: {description: priority changed}
            400: {$ref: '#/components/responses/400'}
            403: {$ref: '#/components/responses/403'}
            404: {$ref: '#/components/responses/404'}
            409: {description: handled or archived, or changed meanwhile}
        """
        data = json_body()
        ticket = wf.change_priority(db.session, current_actor(), pk, data.get("priority"),
                                    data.get("from_priority"))
        return self.response(200, result=wf.to_json(ticket))

    @expose("/<int:pk>/handle", methods=["POST"])
    @protect()
    @api_step
    def handle(self, pk):
        """Record 服务处理 (only the assignee) → ``handled``.
        ---
        post:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer}}
          requestBody:
            required: true
            content:
              application/json:
                schema: {type: object, properties: {handling: {type: string}}}
          responses:
            200: {description: handled}
            400: {$ref: '#/components/responses/400'}
            403: {$ref: '#/components/responses/403'}
            404: {$ref: '#/components/responses/404'}
            409: {description: wrong state}
        """
        data = json_body()
        ticket = wf.handle(db.session, current_actor(), pk, data.get("handling"))
        return self.response(200, result=wf.to_json(ticket))

    @expose("/<int:pk>/feedback", methods=["POST"])
    @protect()
    @api_step
    def feedback(self, pk):
        """Record 处理结果 and 满意度 1–5: ≥ 3 → ``archived``, < 3 → ``assigned``.
        ---
        post:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer}}
          requestBody:
            required: true
            content:
              application/json:
                schema:
                  type: object
                  properties:
                    result: {type: string}
                    satisfaction: {type: integer, minimum: 1, maximum: 5}
          responses:
            200: {description: archived or sent back}
            400: {$ref: '#/components/responses/400'}
            403: {$ref: '#/components/responses/403'}
            404: {$ref: '#/components/responses/404'}
            409: {description: wrong state}
        """
        data = json_body()
        ticket = wf.feedback(db.session, current_actor(), pk, data.get("result"),
                             data.get("satisfaction"))
        return self.response(200, result=wf.to_json(ticket))


def register(appbuilder):
    appbuilder.add_api(ServiceApi)

"""服务管理: 服务创建, 服务分配, 服务处理, 服务反馈, 服务归档, the customer page's
客户服务 section and the ``service`` REST resource.

Thin: every rule is in ``app/workflows/service.py``; these views parse the input,
call the workflow, commit, and render or serialize the result.
"""
from flask import flash, jsonify, redirect, request, url_for
from flask_appbuilder import BaseView, expose
from flask_appbuilder.api import protect, safe
from flask_appbuilder.models.filters import BaseFilter
from flask_appbuilder.models.sqla.interface import SQLAInterface
from flask_appbuilder.security.decorators import has_access, permission_name
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from ..extensions import db
from ..models import Customer, ServiceTicket
from ..workflows import service as wf
from ..workflows import sla
from ..workflows.actors import EXECUTIVE, MANAGER, SUPERVISOR
from ..workflows.errors import NotFound, ValidationError
from .common import API_CRUD, VIEW_CRUD, CrmModelRestApi, api_errors, current_actor, html_errors
from .export import export_response
from .sections import customer_section

ORDER = 30
PAGE_SIZE = 20

# One permission per function on the view menu "Service" (pages, API and menu alike):
# can_list 服务归档/查询, can_add 服务创建, can_assign 服务分配, can_handle 服务处理,
# can_feedback 服务反馈. The workflow still decides whose ticket (Chinese 403).
RIGHTS = {
    MANAGER: [("Service", "can_list|can_add|can_handle|can_feedback")],
    SUPERVISOR: [("Service", "can_list|can_add|can_assign|can_handle|can_feedback")],
    EXECUTIVE: [("Service", "can_list")],
}


def _page_arg():
    try:
        return max(int(request.args.get("page", 0)), 0)
    except ValueError:
        return 0


def _sla_state(ticket):
    return sla.state(ticket, wf._now())


def _common(**kw):
    """Helpers every service template uses."""
    return dict(status_label=wf.status_label, action_label=wf.action_label,
                user_name=wf.user_name, page_size=PAGE_SIZE, sla_state=_sla_state,
                sla_text=sla.state_text, **kw)


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


# ---- 服务创建 --------------------------------------------------------------------------

class ServiceCreateView(BaseView):
    route_base = "/service"
    class_permission_name = "Service"             # 服务创建 = can_add on Service
    method_permission_name = {"create": "add", "customers": "add"}
    default_view = "create"

    def _form(self, values=None, error=None, status=200):
        values = values or {}
        customer = None
        cid = values.get("customer_id")
        if cid:
            try:
                customer = db.session.get(Customer, int(cid))
            except (TypeError, ValueError):
                customer = None
        return self.render_template(
            "service/create.html", values=values, error=error, customer=customer,
            types=wf.service_types(db.session), priorities=wf.priorities(db.session),
            actor=current_actor(),
            **_common()), status

    @expose("/create", methods=["GET", "POST"])
    @has_access
    @html_errors
    def create(self):
        if request.method == "GET":
            return self._form({"customer_id": request.args.get("customer_id", "")})
        data = {f: request.form.get(f, "") for f in wf.CREATE_FIELDS}
        try:
            ticket = wf.create(db.session, current_actor(), data)
        except ValidationError as e:
            db.session.rollback()
            return self._form(data, e, 400)
        db.session.commit()
        flash(_("保存成功：服务 %(number)s 已创建。", number=ticket.number), "success")
        return redirect(url_for("ServiceCreateView.create"))

    @expose("/customers", methods=["GET"])
    @has_access
    def customers(self):
        """JSON for the select2 customer search: ``?q=`` part of a name or a 客户编号."""
        rows = wf.search_customers(db.session, request.args.get("q", ""), limit=20)
        return jsonify(results=[{"id": r.id, "text": _("%(name)s（%(detail)s）", name=r.name, detail=r.number)} for r in rows])


# ---- 服务分配 --------------------------------------------------------------------------

ASSIGN_TABS = (("new", _l("新创建的服务")), ("stuck", _l("需重新分配")),
               ("assigned", _l("已分配未处理")))


class ServiceAssignView(BaseView):
    route_base = "/service/assign"
    class_permission_name = "Service"
    # 调整优先级 is part of 服务分配 (can_assign): the same function decides who handles
    # a ticket and how urgently
    method_permission_name = {"list": "assign", "assign": "assign", "reassign": "assign",
                              "priority": "assign"}
    default_view = "list"

    @expose("/", methods=["GET"])
    @has_access
    def list(self):
        """Tabs: ``?tab=new`` the created tickets (default); ``?tab=stuck`` assigned
        tickets whose assignee can no longer handle them; ``?tab=assigned`` every
        assigned, not yet handled ticket (the stuck ones first, marked)."""
        page = _page_arg()
        tab = request.args.get("tab", "new")
        if tab not in dict(ASSIGN_TABS):
            tab = "new"
        if tab == "new":
            count, rows = wf.to_assign(db.session, page, PAGE_SIZE)
        else:
            count, rows = wf.to_reassign(db.session, only_stuck=(tab == "stuck"), page=page,
                                         page_size=PAGE_SIZE)
        return self.render_template("service/assign.html", rows=rows, count=count, page=page,
                                    tab=tab, tabs=ASSIGN_TABS, stuck=wf.count_stuck(db.session),
                                    users=wf.assignable_users(db.session),
                                    needs_reassignment=wf.needs_reassignment, **_common())

    @expose("/<int:pk>", methods=["POST"])
    @has_access
    @html_errors
    def assign(self, pk):
        ticket = wf.assign(db.session, current_actor(), pk, request.form.get("assignee_id"))
        db.session.commit()
        flash(_("服务 %(number)s 已分配给 %(name)s。", number=ticket.number,
                name=wf.user_name(ticket.assignee)), "success")
        return redirect(url_for("ServiceAssignView.list"))

    @expose("/<int:pk>/reassign", methods=["POST"])
    @has_access
    @html_errors
    def reassign(self, pk):
        """重新分配 an assigned, not yet handled ticket (from the list or the ticket page)."""
        ticket = wf.reassign(db.session, current_actor(), pk, request.form.get("assignee_id"),
                             request.form.get("from_assignee_id"))
        db.session.commit()
        flash(_("服务 %(number)s 已重新分配给 %(name)s。", number=ticket.number,
                name=wf.user_name(ticket.assignee)), "success")
        back = request.form.get("back", "")
        if back == "show":
            return redirect(url_for("ServiceArchiveView.show", pk=pk))
        return redirect(url_for("ServiceAssignView.list",
                                tab=back if back in dict(ASSIGN_TABS) else "assigned"))


    @expose("/<int:pk>/priority", methods=["POST"])
    @has_access
    @html_errors
    def priority(self, pk):
        """调整优先级 of a ticket not yet handled (the control on the ticket page)."""
        ticket = wf.change_priority(db.session, current_actor(), pk, request.form.get("priority"),
                                    request.form.get("from_priority"))
        db.session.commit()
        flash(_("服务 %(number)s 的优先级已改为“%(priority)s”。", number=ticket.number,
                priority=ticket.priority), "success")
        return redirect(url_for("ServiceArchiveView.show", pk=pk))


# ---- 服务处理 --------------------------------------------------------------------------

class ServiceHandleView(BaseView):
    route_base = "/service/handle"
    class_permission_name = "Service"
    method_permission_name = {"list": "handle", "handle": "handle"}
    default_view = "list"

    @expose("/", methods=["GET"])
    @has_access
    def list(self):
        page = _page_arg()
        count, rows = wf.to_handle(db.session, current_actor(), page, PAGE_SIZE)
        return self.render_template("service/handle_list.html", rows=rows, count=count,
                                    page=page, **_common())

    @expose("/<int:pk>", methods=["GET", "POST"])
    @has_access
    @html_errors
    def handle(self, pk):
        actor = current_actor()
        if request.method == "POST":
            try:
                ticket = wf.handle(db.session, actor, pk, request.form.get("handling"))
            except ValidationError as e:
                db.session.rollback()
                return self._page(pk, actor, e, request.form.get("handling", ""), 400)
            db.session.commit()
            flash(_("服务 %(number)s 的处理已保存。", number=ticket.number), "success")
            return redirect(url_for("ServiceHandleView.list"))
        return self._page(pk, actor)

    def _page(self, pk, actor, error=None, handling="", status=200):
        ticket = wf.get(db.session, pk)
        wf.require_handle(actor, ticket)  # same rule as the POST: 403 / 409 page
        return self.render_template(
            "service/handle.html", t=ticket, error=error, handling=handling,
            events=wf.history(db.session, ticket.id), **_common()), status


# ---- 服务反馈 --------------------------------------------------------------------------

class ServiceFeedbackView(BaseView):
    route_base = "/service/feedback"
    class_permission_name = "Service"
    method_permission_name = {"list": "feedback", "feedback": "feedback"}
    default_view = "list"

    @expose("/", methods=["GET"])
    @has_access
    def list(self):
        page = _page_arg()
        count, rows = wf.to_feedback(db.session, current_actor(), page, PAGE_SIZE)
        return self.render_template("service/feedback_list.html", rows=rows, count=count,
                                    page=page, **_common())

    @expose("/<int:pk>", methods=["GET", "POST"])
    @has_access
    @html_errors
    def feedback(self, pk):
        actor = current_actor()
        if request.method == "POST":
            result, score = request.form.get("result"), request.form.get("satisfaction")
            try:
                ticket = wf.feedback(db.session, actor, pk, result, score)
            except ValidationError as e:
                db.session.rollback()
                return self._page(pk, actor, e, {"result": result or "",
                                                 "satisfaction": score or ""}, 400)
            db.session.commit()
            if ticket.status == wf.ARCHIVED:
                flash(_("服务 %(number)s 已归档。", number=ticket.number), "success")
            else:
                flash(_("满意度低于 3，服务 %(number)s 已退回给 %(name)s 重新处理。",
                        number=ticket.number, name=wf.user_name(ticket.assignee)), "warning")
            return redirect(url_for("ServiceFeedbackView.list"))
        return self._page(pk, actor)

    def _page(self, pk, actor, error=None, values=None, status=200):
        ticket = wf.get(db.session, pk)
        wf.require_feedback(actor, ticket)  # same rule as the POST: 403 / 409 page
        return self.render_template(
            "service/feedback.html", t=ticket, error=error, values=values or {},
            events=wf.history(db.session, ticket.id), **_common()), status


# ---- 服务归档 --------------------------------------------------------------------------

class ServiceArchiveView(BaseView):
    route_base = "/service/archive"
    class_permission_name = "Service"
    method_permission_name = VIEW_CRUD
    default_view = "list"

    # status=all: every status (the drill-down of 客户服务分析)
    ARGS = ("customer", "customer_id", "summary", "service_type", "date_from", "date_to", "status")

    @expose("/", methods=["GET"])
    @has_access
    @html_errors
    def list(self):
        page = _page_arg()
        args = {k: request.args.get(k, "") for k in self.ARGS}
        error, count, rows = None, 0, []
        try:
            count, rows = wf.search_archive(db.session, page=page, page_size=PAGE_SIZE, **args)
        except ValidationError as e:
            db.session.rollback()
            error = e
        customer = None
        if args["customer_id"].isdigit():
            customer = db.session.get(Customer, int(args["customer_id"]))
        return self.render_template(
            "service/archive.html", rows=rows, count=count, page=page, args=args, error=error,
            pargs={k: v for k, v in args.items() if v},
            types=wf.service_types(db.session), customer=customer, **_common()), \
            (400 if error else 200)

    @expose("/export/<fmt>/", methods=["GET"])
    @has_access
    @permission_name("list")
    @html_errors
    def export_list(self, fmt):
        """导出 CSV / XLSX: every archived ticket the current search selects (no
        paging), streamed in chunks; a bad filter gives the list's Chinese 400 message."""
        q = wf.archive_query(db.session, **{k: request.args.get(k, "") for k in self.ARGS})
        headers = [wf.LABELS[c] for c in ("number", "service_type", "summary")] + [
            _l("客户编号"), _l("客户名称")] + [wf.LABELS[c] for c in (
                "request", "creator_id", "created_on", "assignee_id", "assigned_on",
                "handling", "handler_id", "handled_on", "result", "satisfaction", "status")]

        def rows():
            for t in wf.iter_rows(db.session, q):
                yield [t.number, t.service_type.item if t.service_type else "", t.summary,
                       t.customer.number, t.customer.name, t.request,
                       wf.user_name(t.created_by), t.created_on, wf.user_name(t.assignee),
                       t.assigned_on, t.handling or "", wf.user_name(t.handler), t.handled_on,
                       t.result or "", t.satisfaction, str(wf.status_label(t.status))]
        return export_response(fmt, str(_l("服务归档")), "service_archive", headers, rows())

    @expose("/<int:pk>", methods=["GET"])
    @has_access
    @html_errors
    def show(self, pk):
        ticket = db.session.scalar(
            select(ServiceTicket).options(
                joinedload(ServiceTicket.customer), joinedload(ServiceTicket.service_type),
                joinedload(ServiceTicket.assignee), joinedload(ServiceTicket.handler),
                joinedload(ServiceTicket.created_by))
            .where(ServiceTicket.id == pk))
        if ticket is None:
            raise NotFound(_l("服务不存在。"))
        actor = current_actor()
        can_reassign = wf.can_reassign(actor, ticket)
        can_priority = wf.can_change_priority(actor, ticket)
        return self.render_template(
            "service/show.html", t=ticket, events=wf.history(db.session, ticket.id),
            can_reassign=can_reassign, stuck=wf.needs_reassignment(ticket),
            can_priority=can_priority,
            priorities=wf.priorities(db.session) if can_priority else [],
            users=wf.assignable_users(db.session) if can_reassign else [], **_common())


# ---- customer page section ------------------------------------------------------------------

@customer_section(order=50, key="service", title=_l("客户服务"))
def service_section(customer, actor):
    count, rows = wf.of_customer(db.session, customer.id, limit=PAGE_SIZE)
    if not count:
        return None
    from flask import render_template
    return Markup(render_template("service/_customer_section.html", customer=customer,
                                  rows=rows, count=count, can_create=wf.can_create(actor),
                                  **_common()))


# ---- REST: service --------------------------------------------------------------------------

class ServiceApi(CrmModelRestApi):
    """``/api/v1/service``: list/get the §8 fields, POST creates through the workflow;
    the steps are POSTs on the record: ``/assign``, ``/handle``, ``/feedback``.
    Tickets are never edited or deleted directly (PUT/DELETE → 405)."""

    resource_name = "service"
    class_permission_name = "Service"
    datamodel = SQLAInterface(ServiceTicket)
    # 重新分配 is part of 服务分配: the same permission (the workflow: 销售主管/admin only)
    # 调整优先级 too (the 服务分配 function)
    method_permission_name = dict(API_CRUD, assign="assign", reassign="assign",
                                  priority="assign", handle="handle", feedback="feedback")
    include_route_methods = {"get", "get_list", "info", "post", "assign", "reassign", "priority",
                             "handle", "feedback"}
    list_columns = ["id", "number", "service_type_id", "summary", "customer_id", "request",
                    "status", "created_by_fk", "created_on", "assignee_id", "assigned_on",
                    "handling", "handler_id", "handled_on", "result", "satisfaction",
                    "priority", "response_due", "resolution_due", "first_response_on",
                    "resolved_on"]
    show_columns = list_columns
    search_columns = ["number", "summary", "customer_id", "status", "assignee_id",
                      "handler_id", "service_type_id", "created_on", "priority",
                      "response_due", "resolution_due"]
    search_filters = {"resolution_due": [FilterOverdue]}
    # priority_rank: by urgency (普通 1 < 紧急 2 < 特急 3); priority: by the text
    order_columns = ["id", "number", "created_on", "assigned_on", "handled_on", "status",
                     "priority", "priority_rank", "response_due", "resolution_due"]
    base_order = ("id", "desc")
    label_columns = dict(wf.LABELS, created_by_fk=wf.LABELS["creator_id"],
                         service_type_id=wf.LABELS["service_type"])

    @staticmethod
    def _tickets(ids):
        rows = db.session.scalars(select(ServiceTicket)
                                  .options(joinedload(ServiceTicket.service_type))
                                  .where(ServiceTicket.id.in_(ids))).all()
        return {t.id: wf.to_json(t) for t in rows}

    def pre_get_list(self, data):
        ids = data.get("ids", [])
        found = self._tickets(ids) if ids else {}
        data["result"] = [found[i] for i in ids if i in found]

    def pre_get(self, data):
        pk = data.get("id")
        found = self._tickets([pk])
        if pk in found:
            data["result"] = found[pk]

    def _json(self):
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            raise ValidationError(_l("请求体必须是 JSON 对象。"))
        return data

    @expose("/", methods=["POST"])
    @protect()
    @safe
    @api_errors
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
        ticket = wf.create(db.session, current_actor(), self._json())
        db.session.commit()
        return self.response(201, id=ticket.id, result=wf.to_json(ticket))

    @expose("/<int:pk>/assign", methods=["POST"])
    @protect()
    @safe
    @api_errors
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
        data = self._json()
        ticket = wf.assign(db.session, current_actor(), pk, data.get("assignee_id"))
        db.session.commit()
        return self.response(200, result=wf.to_json(ticket))

    @expose("/<int:pk>/reassign", methods=["POST"])
    @protect()
    @safe
    @api_errors
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
        data = self._json()
        ticket = wf.reassign(db.session, current_actor(), pk, data.get("assignee_id"),
                             data.get("from_assignee_id"))
        db.session.commit()
        return self.response(200, result=wf.to_json(ticket))

    @expose("/<int:pk>/priority", methods=["POST"])
    @protect()
    @safe
    @api_errors
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
        data = self._json()
        ticket = wf.change_priority(db.session, current_actor(), pk, data.get("priority"),
                                    data.get("from_priority"))
        db.session.commit()
        return self.response(200, result=wf.to_json(ticket))

    @expose("/<int:pk>/handle", methods=["POST"])
    @protect()
    @safe
    @api_errors
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
        data = self._json()
        ticket = wf.handle(db.session, current_actor(), pk, data.get("handling"))
        db.session.commit()
        return self.response(200, result=wf.to_json(ticket))

    @expose("/<int:pk>/feedback", methods=["POST"])
    @protect()
    @safe
    @api_errors
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
        data = self._json()
        ticket = wf.feedback(db.session, current_actor(), pk, data.get("result"),
                             data.get("satisfaction"))
        db.session.commit()
        return self.response(200, result=wf.to_json(ticket))


def register(appbuilder):
    appbuilder.add_view(ServiceCreateView, "ServiceCreate", label=_l("服务创建"),
                        href="/service/create", icon="fa-plus-square", category="Service")
    appbuilder.add_view(ServiceAssignView, "ServiceAssign", label=_l("服务分配"),
                        href="/service/assign/", icon="fa-share", category="Service")
    appbuilder.add_view(ServiceHandleView, "ServiceHandle", label=_l("服务处理"),
                        href="/service/handle/", icon="fa-wrench", category="Service")
    appbuilder.add_view(ServiceFeedbackView, "ServiceFeedback", label=_l("服务反馈"),
                        href="/service/feedback/", icon="fa-comments", category="Service")
    appbuilder.add_view(ServiceArchiveView, "ServiceArchive", label=_l("服务归档"),
                        href="/service/archive/", icon="fa-archive", category="Service")
    appbuilder.add_api(ServiceApi)

"""营销管理: 销售机会管理 (list/add/edit/delete/show), 指派, 客户开发计划, 执行计划,
开发成功/终止开发, 我的开发计划, and the ``opportunity`` REST resource.

Thin: every rule lives in ``app/workflows/opportunities.py``; this module parses
input, calls it, commits, and renders or serializes the result.
"""
from datetime import datetime
from types import SimpleNamespace

from flask import abort, flash, g, redirect, request, url_for
from flask_appbuilder import ModelView, expose
from flask_appbuilder.api import protect, safe
from flask_appbuilder.fieldwidgets import BS3TextFieldWidget, Select2Widget
from flask_appbuilder.models.sqla.filters import FilterEqualFunction
from flask_appbuilder.models.sqla.interface import SQLAInterface
from flask_appbuilder.security.decorators import has_access, permission_name
from flask_appbuilder.widgets import ListWidget
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from markupsafe import Markup, escape
from wtforms import SelectField, StringField

from ..extensions import db
from ..models import Opportunity
from ..workflows import opportunities as wf
from ..workflows.actors import EXECUTIVE, MANAGER, SUPERVISOR
from ..workflows.errors import DomainError, ValidationError
from .common import (CrmModelRestApi, GuardedModelView, api_errors, current_actor, html_errors,
                     show_form_errors)
from .common import API_CRUD, VIEW_CRUD
from .errors import error_response
from .export import ExportMixin, chunked
from .sales import money

ORDER = 10

# One permission per function on the view menu "Opportunity" (pages, API, menu):
# can_list 查看, can_add 新建, can_edit 编辑, can_delete 删除, can_assign 指派,
# can_develop 制定/执行开发计划 (and 我的开发计划).
RIGHTS = {
    EXECUTIVE: [("Opportunity", "can_list")],
    # can_plan: 制定计划 (plan items); the workflow's require_plan decides on which ones
    SUPERVISOR: [("Opportunity", "can_list|can_add|can_edit|can_delete|can_assign|can_plan")],
    MANAGER: [("Opportunity", "can_list|can_add|can_edit|can_delete|can_develop|can_plan")],
}

LABELS = dict(wf.LABELS, created_by=_l("创建人"), assignee=_l("指派给"),
              customer=_l("开发成功后的客户"), created_on=_l("创建时间"),
              operations=_l("操作"))


def _fmt_time(value):
    return value.strftime("%Y-%m-%d %H:%M") if value else ""


def _fmt_status(value):
    return Markup('<span class="crm-status crm-status-%s" style="white-space:nowrap">%s</span>') % (
        value or "", wf.status_label(value))


def _fmt_user(user):
    if user is None:
        return ""
    return f"{user.first_name or ''}{user.last_name or ''}" or user.username


def _row_ops(actor, pk, row, with_show=False):
    """The buttons of one list row: [(kind, label, url)] (kind: link | succeed | fail)."""
    ops = [("link", _("详情"), url_for("OpportunityView.show", pk=pk))] if with_show else []
    status = row.get("status")
    assignee = row.get("assignee")
    if status == wf.UNASSIGNED and wf.can_assign(actor):
        ops.append(("link", _("指派"), url_for("OpportunityView.assign", pk=pk)))
    opp = SimpleNamespace(status=status, assignee_id=assignee.id if assignee else None)
    if wf.can_plan(actor, opp):
        ops.append(("link", _("制定计划"), url_for("OpportunityView.plan", pk=pk)))
    if wf.can_develop(actor, opp):
        ops.append(("link", _("执行计划"), url_for("OpportunityView.execute", pk=pk)))
        ops.append(("succeed", _("开发成功"), url_for("OpportunityView.succeed", pk=pk)))
        ops.append(("fail", _("终止开发"), url_for("OpportunityView.fail", pk=pk)))
    return ops


def _row_rights(actor, row):
    """(may edit, may delete) for a list row; the server checks again on every write."""
    if row.get("status") != wf.UNASSIGNED:
        return False, False
    creator = row.get("created_by")
    own = creator is not None and creator.id == actor.id
    return own or actor.is_supervisor or actor.is_admin, own


class OpportunityListWidget(ListWidget):
    """FAB's list plus an 操作 column (指派 / 制定计划 / 执行计划 / 开发成功 / 终止开发)."""

    template = "marketing/list_widget.html"

    def __call__(self, **kwargs):
        actor = current_actor()
        with_show = self.template_args.get("modelview_name") != "OpportunityView"
        kwargs["row_ops"] = lambda pk, row: _row_ops(actor, pk, row, with_show)
        # edit/delete icons only where they can succeed (the server checks anyway)
        kwargs["row_rights"] = lambda row: _row_rights(actor, row)
        return super().__call__(**kwargs)


def _readonly(label):
    return StringField(label, widget=BS3TextFieldWidget(), render_kw={"readonly": True})


_STATUS_CHOICES = [(k, v) for k, v in wf.STATUS_LABELS.items()]


class _OpportunityColumns:
    label_columns = LABELS
    list_columns = ["number", "customer_name", "summary", "success_rate", "created_by",
                    "created_on", "assignee", "status"]
    order_columns = ["number", "customer_name", "success_rate", "created_on", "status"]
    search_columns = ["customer_name", "summary", "status", "created_by", "assignee"]
    search_form_extra_fields = {"status": SelectField(_l("状态"), choices=_STATUS_CHOICES,
                                                       widget=Select2Widget())}
    formatters_columns = {"status": _fmt_status, "created_on": _fmt_time,
                          "assigned_on": _fmt_time, "created_by": _fmt_user,
                          "assignee": _fmt_user, "success_rate": lambda v: f"{v}%",
                          "expected_amount": money}
    base_order = ("created_on", "desc")
    list_widget = OpportunityListWidget
    page_size = 20


class OpportunityView(ExportMixin, _OpportunityColumns, GuardedModelView):
    """销售机会管理. Add/edit/delete go through the workflow (not FAB's populate_obj)."""

    datamodel = SQLAInterface(Opportunity)
    route_base = "/opportunity"
    class_permission_name = "Opportunity"
    method_permission_name = VIEW_CRUD
    # no actions and no file columns: FAB's action/download routes would answer 500
    exclude_route_methods = {"action", "action_post", "download"}
    list_title = _l("销售机会管理")
    show_title = _l("销售机会详情")
    add_title = _l("新建销售机会")
    edit_title = _l("编辑销售机会")
    show_columns = ["number", "source", "customer_name", "success_rate", "summary", "contact",
                    "contact_phone", "description", "created_by", "created_on", "assignee",
                    "assigned_on", "status", "expected_amount", "expected_close_on"]
    add_columns = ["number", "created_by", "created_on"] + list(wf.EDITABLE)
    edit_columns = add_columns
    add_form_extra_fields = {"number": _readonly(_l("编号")),
                             "created_by": _readonly(_l("创建人")),
                             "created_on": _readonly(_l("创建时间"))}
    edit_form_extra_fields = add_form_extra_fields
    description_columns = {"success_rate": _l("0 到 100 之间的整数"),
                           "expected_amount": _l("可不填；单位：元，例如 120000.50"),
                           "expected_close_on": _l("可不填；格式 YYYY-MM-DD，例如 2027-03-31")}
    show_template = "marketing/show.html"
    # 导出 CSV / XLSX: the rows of the current search, with the contact fields too
    export_columns = ["number", "source", "customer_name", "summary", "success_rate",
                      "contact", "contact_phone", "created_by", "created_on", "assignee",
                      "assigned_on", "status", "expected_amount", "expected_close_on"]
    export_formatters = {"status": lambda v: str(wf.status_label(v)),
                         "created_by": lambda u: _fmt_user(u), "assignee": lambda u: _fmt_user(u)}
    add_row_message = _l("保存成功")
    edit_row_message = _l("保存成功")
    delete_row_message = _l("删除成功")

    # ---- add / edit / delete through the workflow ------------------------------------

    def check_row(self, item, action):
        actor = current_actor()
        if action == "edit":
            if not (actor.is_admin or actor.is_supervisor or item.created_by_fk == actor.id):
                raise wf.Forbidden(_l("只有创建人、销售主管或系统管理员可以编辑销售机会。"))
            wf._refuse_if_not_unassigned(item, _l("编辑"))
        elif action == "delete":
            if item.created_by_fk != actor.id:
                raise wf.Forbidden(_l("只有销售机会的创建人可以删除它。"))
            wf._refuse_if_not_unassigned(item, _l("删除"))

    @staticmethod
    def _form_data():
        # the raw input goes to the workflow: its checks (and Chinese messages) are the rules
        return {f: request.form.get(f, "") for f in wf.EDITABLE}

    @staticmethod
    def _show_error(form, e):
        show_form_errors(form, e)
        g.crm_form_status = e.status

    def _system_fields(self, form, item=None):
        if item is None:
            form.number.data = _("保存时自动生成")
            form.created_by.data = current_actor().name
            form.created_on.data = datetime.now().strftime("%Y-%m-%d %H:%M")
        else:
            form.number.data = item.number
            form.created_by.data = _fmt_user(item.created_by)
            form.created_on.data = _fmt_time(item.created_on)

    def _add(self):
        form = self.add_form.refresh()
        if request.method == "POST":
            try:
                opp = wf.create(db.session, current_actor(), self._form_data())
                db.session.commit()
            except DomainError as e:
                db.session.rollback()
                if e.status != 400:
                    raise
                self._show_error(form, e)
            else:
                flash(_("保存成功：销售机会 %(number)s", number=opp.number), "success")
                return None
        self._system_fields(form)
        return self._get_add_widget(form=form)

    def _edit(self, pk):
        item = self.datamodel.get(pk, self._base_filters)
        if item is None:
            abort(404)
        if request.method == "POST":
            form = self.edit_form.refresh(request.form)
            try:
                wf.update_opportunity(db.session, current_actor(), item.id, self._form_data())
                db.session.commit()
            except DomainError as e:
                db.session.rollback()
                if e.status != 400:
                    raise
                self._show_error(form, e)
            else:
                flash(self.edit_row_message, "success")
                return None
            item = self.datamodel.get(pk)
        else:
            form = self.edit_form.refresh(obj=item)
        self._system_fields(form, item)
        return self._get_edit_widget(form=form)

    def _delete(self, pk):
        try:
            number = wf.delete_opportunity(db.session, current_actor(), int(pk))
            db.session.commit()
        except DomainError:
            db.session.rollback()
            raise
        flash(_("删除成功：销售机会 %(number)s", number=number), "success")

    @expose("/add", methods=["GET", "POST"])
    @has_access
    @html_errors
    def add(self):
        return _with_status(super().add())

    @expose("/edit/<pk>", methods=["GET", "POST"])
    @has_access
    @html_errors
    def edit(self, pk):
        return _with_status(super().edit(pk))

    @expose("/delete/<pk>", methods=["GET", "POST"])
    @has_access
    @html_errors
    def delete(self, pk):
        return super().delete(pk)

    def post_add_redirect(self):
        return redirect(url_for("OpportunityView.list"))

    # ---- show: details + plan items + the buttons the user may use ---------------------

    @expose("/show/<pk>", methods=["GET"])
    @has_access
    def show(self, pk):
        item = self.datamodel.get(pk, self._base_filters)
        if item is not None:
            g.crm_opp = item
            g.crm_actor = current_actor()
            g.crm_wf = wf
        return super().show(pk)

    # ---- 指派 ---------------------------------------------------------------------------

    def _page(self, template, opp, status=200, **kw):
        actor = current_actor()
        html = self.render_template(template, opp=opp, actor=actor, wf=wf,
                                    labels=LABELS, fmt_time=_fmt_time, fmt_user=_fmt_user,
                                    status_html=_fmt_status(opp.status), **kw)
        return html, status

    @expose("/assign/<int:pk>", methods=["GET", "POST"])
    @has_access
    @permission_name("assign")
    @html_errors
    def assign(self, pk):
        actor = current_actor()
        opp = wf.get(db.session, pk)
        if not wf.can_assign(actor):
            raise wf.Forbidden(_l("只有销售主管可以指派销售机会。"))
        error, selected = None, None
        if request.method == "POST":
            selected = request.form.get("assignee_id")
            try:
                wf.assign(db.session, actor, pk, selected)
                db.session.commit()
            except ValidationError as e:
                db.session.rollback()
                error = e.message
            else:
                flash(_("指派成功"), "success")
                return redirect(url_for("OpportunityView.list"))
        else:
            wf._refuse_if_not_unassigned(opp, _l("指派"))
        opp = wf.get(db.session, pk)
        return self._page("marketing/assign.html", opp, status=400 if error else 200,
                          managers=wf.assignable_managers(db.session), error=error,
                          selected=selected, now=datetime.now().strftime("%Y-%m-%d %H:%M"),
                          title=_("指派销售机会"))

    # ---- 客户开发计划 / 执行计划 -----------------------------------------------------------

    def _plan_page(self, pk, template, status=200, error=None, values=None):
        planning = template.endswith("plan.html")
        opp = (wf.for_planning if planning else wf.for_development)(db.session, current_actor(), pk)
        title = _("制定客户开发计划") if template.endswith("plan.html") else _("执行客户开发计划")
        return self._page(template, opp, status=status, error=error, values=values or {},
                          title=title, today=datetime.now().strftime("%Y-%m-%d"))

    @expose("/plan/<int:pk>", methods=["GET"])
    @has_access
    @permission_name("plan")
    @html_errors
    def plan(self, pk):
        return self._plan_page(pk, "marketing/plan.html")

    @expose("/execute/<int:pk>", methods=["GET"])
    @has_access
    @permission_name("develop")
    @html_errors
    def execute(self, pk):
        return self._plan_page(pk, "marketing/execute.html")

    def _plan_step(self, pk, template, step, ok_message, values=None):
        try:
            step()
            db.session.commit()
        except ValidationError as e:
            db.session.rollback()
            return self._plan_page(pk, template, status=400, error=e.message, values=values)
        flash(ok_message, "success")
        target = "OpportunityView.plan" if template.endswith("plan.html") else "OpportunityView.execute"
        return redirect(url_for(target, pk=pk))

    @expose("/plan/<int:pk>/add", methods=["POST"])
    @has_access
    @permission_name("plan")
    @html_errors
    def plan_add(self, pk):
        data = {"date": request.form.get("date", ""), "content": request.form.get("content", "")}
        return self._plan_step(
            pk, "marketing/plan.html",
            lambda: wf.add_plan_item(db.session, current_actor(), pk, data),
            _("保存成功"), values=data)

    @expose("/plan/<int:pk>/item/<int:item_id>/edit", methods=["POST"])
    @has_access
    @permission_name("plan")
    @html_errors
    def plan_edit(self, pk, item_id):
        data = {"content": request.form.get("content", "")}
        if "date" in request.form:
            data["date"] = request.form["date"]
        return self._plan_step(
            pk, "marketing/plan.html",
            lambda: wf.update_plan_item(db.session, current_actor(), pk, item_id, data),
            _("保存成功"))

    @expose("/plan/<int:pk>/item/<int:item_id>/delete", methods=["POST"])
    @has_access
    @permission_name("plan")
    @html_errors
    def plan_delete(self, pk, item_id):
        return self._plan_step(
            pk, "marketing/plan.html",
            lambda: wf.delete_plan_item(db.session, current_actor(), pk, item_id),
            _("删除成功"))

    @expose("/execute/<int:pk>/item/<int:item_id>", methods=["POST"])
    @has_access
    @permission_name("develop")
    @html_errors
    def execute_item(self, pk, item_id):
        data = {"result": request.form.get("result", "")}
        return self._plan_step(
            pk, "marketing/execute.html",
            lambda: wf.update_plan_item(db.session, current_actor(), pk, item_id, data),
            _("执行效果已保存"))

    # ---- 开发成功 / 终止开发 ---------------------------------------------------------------

    @expose("/succeed/<int:pk>", methods=["POST"])
    @has_access
    @permission_name("develop")
    @html_errors
    def succeed(self, pk):
        link = request.form.get("link_customer_id") or None
        try:
            opp, customer = wf.succeed(db.session, current_actor(), pk, link_customer_id=link,
                                       create_anyway=bool(request.form.get("create_anyway")))
        except wf.DuplicateCustomer as e:
            # a customer of that name exists: the user chooses (link / create anyway)
            db.session.rollback()
            from ..workflows.customers import status_label as customer_status
            return self._page("marketing/duplicate.html", wf.get(db.session, pk), status=409,
                              error=e, customer_status=customer_status,
                              title=_("开发成功：已有同名客户"))
        db.session.commit()
        url = f"/customer/show/{customer.id}"
        text = _("开发成功：已关联到已有客户 %(number)s %(name)s，") if link else \
            _("开发成功：已创建客户 %(number)s %(name)s，")
        flash(Markup(text) % {"number": escape(customer.number), "name": escape(customer.name)}
              + Markup('<a href="%s">%s</a>') % (url, _("查看客户")), "success")
        return redirect(url_for("OpportunityView.show", pk=pk))

    @expose("/fail/<int:pk>", methods=["POST"])
    @has_access
    @permission_name("develop")
    @html_errors
    def fail(self, pk):
        opp = wf.fail(db.session, current_actor(), pk)
        db.session.commit()
        flash(_("已终止开发：销售机会 %(number)s", number=opp.number), "success")
        back = request.referrer or ""
        if "/opportunity/list" in back or "/myplan/list" in back:
            return redirect(back)
        # the plan pages are closed now: show the record
        return redirect(url_for("OpportunityView.show", pk=pk))


def _with_status(resp):
    status = g.pop("crm_form_status", None)
    if status and isinstance(resp, str):
        return resp, status
    return resp


class MyPlanView(ExportMixin, _OpportunityColumns, ModelView):
    """我的开发计划: the opportunities assigned to the signed-in 客户经理."""

    datamodel = SQLAInterface(Opportunity)
    route_base = "/myplan"
    list_title = _l("我的开发计划")
    class_permission_name = "Opportunity"          # 我的开发计划 = can_develop
    method_permission_name = {"list": "develop", "export_list": "develop"}
    base_permissions = ["can_develop"]
    # a read-only list: FAB's other routes (and its action/download, which answer 500
    # to a crafted request) are not registered at all
    include_route_methods = {"list", "export_list"}
    base_filters = [["assignee_id", FilterEqualFunction, lambda: g.user.id]]
    list_columns = ["number", "customer_name", "summary", "success_rate", "assigned_on",
                    "status"]
    search_columns = ["customer_name", "summary", "status"]
    base_order = ("assigned_on", "desc")
    # 导出: one row per 计划项 of the plans the list selects (a plan without items
    # still gets one row, so nothing the list shows is missing from the file)
    export_name = _l("客户开发计划")

    def export_headers(self):
        return [LABELS[c] for c in ("number", "customer_name", "summary", "assigned_on",
                                    "status", "date", "content", "result")]

    def export_rows(self):
        for chunk in chunked(self.export_query(), self.export_chunk):
            items = wf.plan_items_by_opportunity(db.session, [o.id for o in chunk])
            for opp in chunk:
                head = [opp.number, opp.customer_name, opp.summary, opp.assigned_on,
                        str(wf.status_label(opp.status))]
                for item in items.get(opp.id) or [None]:
                    yield head + ([item.date, item.content, item.result or ""] if item
                                  else [None, "", ""])


# ---- REST: the ``opportunity`` resource ------------------------------------------------

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


def _json_body():
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ValidationError(_l("请求体必须是 JSON 对象。"))
    return data


class OpportunityApi(CrmModelRestApi):
    """``/api/v1/opportunity``: list/get with filters; writes go through the workflow."""

    resource_name = "opportunity"
    class_permission_name = "Opportunity"
    # FAB's BaseApi takes an unmapped method's *name* as its permission: map them all
    method_permission_name = dict(API_CRUD, assign="assign", plan_item_add="plan",
                                  plan_item_put="plan", plan_item_delete="plan",
                                  succeed="develop", fail="develop")
    openapi_spec_tag = "opportunity"
    datamodel = SQLAInterface(Opportunity)
    list_columns = _API_COLUMNS
    show_columns = _API_COLUMNS
    add_columns = list(wf.EDITABLE)
    edit_columns = list(wf.EDITABLE)
    search_columns = ["number", "customer_name", "summary", "status", "source",
                      "assignee_id", "created_by_fk"]
    order_columns = ["id", "number", "customer_name", "success_rate", "created_on",
                     "assigned_on", "status"]
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
    @api_errors
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
        opp = wf.create(db.session, current_actor(), _json_body())
        db.session.commit()
        return self._ok(201, opp)

    @expose("/<int:pk>", methods=["PUT"])
    @protect()
    @safe
    @api_errors
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
        opp = wf.update_opportunity(db.session, current_actor(), pk, _json_body())
        db.session.commit()
        return self._ok(200, opp)

    @expose("/<int:pk>", methods=["DELETE"])
    @protect()
    @safe
    @api_errors
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
        db.session.commit()
        return self.response(200, message=_("删除成功"))

    @expose("/<int:pk>/assign", methods=["POST"])
    @protect()
    @safe
    @permission_name("assign")
    @api_errors
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
        data = _json_body()
        opp = wf.assign(db.session, current_actor(), pk, data.get("assignee_id"))
        db.session.commit()
        return self._ok(200, opp, message=_("指派成功"))

    @expose("/<int:pk>/plan_items", methods=["POST"])
    @protect()
    @safe
    @permission_name("plan")
    @api_errors
    def plan_item_add(self, pk):
        """Add a plan item ``{"date": "2007-12-13", "content": "..."}``.
        ---
        post:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer}}
          responses:
            201: {description: added}
        """
        item = wf.add_plan_item(db.session, current_actor(), pk, _json_body())
        db.session.commit()
        return self.response(201, id=item.id, result=plan_item_json(item))

    @expose("/<int:pk>/plan_items/<int:item_id>", methods=["PUT"])
    @protect()
    @safe
    @permission_name("plan")
    @api_errors
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
        item = wf.update_plan_item(db.session, current_actor(), pk, item_id, _json_body())
        db.session.commit()
        return self.response(200, id=item.id, result=plan_item_json(item))

    @expose("/<int:pk>/plan_items/<int:item_id>", methods=["DELETE"])
    @protect()
    @safe
    @permission_name("plan")
    @api_errors
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
        db.session.commit()
        return self.response(200, message=_("删除成功"))

    @expose("/<int:pk>/succeed", methods=["POST"])
    @protect()
    @safe
    @permission_name("develop")
    @api_errors
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
        data = request.get_json(silent=True)
        data = data if isinstance(data, dict) else {}
        create_anyway = data.get("create_anyway", False)
        if not isinstance(create_anyway, bool):
            raise ValidationError(_l("create_anyway 必须是 true 或 false。"),
                                  field="create_anyway")
        opp, customer = wf.succeed(db.session, current_actor(), pk,
                                   link_customer_id=data.get("link_customer_id"),
                                   create_anyway=create_anyway)
        db.session.commit()
        return self._ok(200, opp, customer_id=customer.id, customer_number=customer.number)

    @expose("/<int:pk>/fail", methods=["POST"])
    @protect()
    @safe
    @permission_name("develop")
    @api_errors
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
        db.session.commit()
        return self._ok(200, opp)


def register(appbuilder):
    appbuilder.add_view(OpportunityView, "Opportunities", label=_l("销售机会管理"),
                        icon="fa-lightbulb-o", category="Marketing")
    appbuilder.add_view(MyPlanView, "MyPlans", label=_l("我的开发计划"),
                        icon="fa-tasks", category="Marketing")
    appbuilder.add_api(OpportunityApi)

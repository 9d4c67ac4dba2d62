"""营销管理: 销售机会管理 (list/add/edit/delete/show), 指派, 批量指派, 客户开发计划,
执行计划, 开发成功/终止开发, 我的开发计划 (HTML). The REST resource is app/api/opportunities.py.

Thin: every rule lives in ``app/workflows/opportunities.py`` (``require_<step>`` /
``can_<step>``, and ``may`` for the buttons); this module parses input, calls it and
renders the result. ``html_step`` commits a successful step and rolls back a refused one.
"""
from datetime import datetime
from types import SimpleNamespace

from flask import abort, flash, g, redirect, request, url_for
from flask_appbuilder import ModelView, expose
from flask_appbuilder.fieldwidgets import BS3TextFieldWidget, Select2Widget
from flask_appbuilder.models.sqla.filters import FilterEqualFunction
from flask_appbuilder.models.sqla.interface import SQLAInterface
from flask_appbuilder.security.decorators import has_access, permission_name
from flask_appbuilder.widgets import ListWidget
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from markupsafe import Markup, escape
from wtforms import SelectField, StringField

from ..api.base import html_step
from ..extensions import db
from ..models import Opportunity
from ..workflows import opportunities as wf
from ..workflows.names import display_name
from ..workflows.actors import EXECUTIVE, MANAGER, SUPERVISOR
from ..workflows.customers import status_label as customer_status
from ..workflows.errors import ValidationError
from .common import VIEW_CRUD, GuardedModelView, current_actor, show_form_errors
from .export import ExportMixin, chunked
from .lists import ListMixin, Tab, equals, mine
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
    return display_name(user)


def _row_may(actor, row, assignee_id=None):
    """``wf.may`` for a list row (FAB gives its values, not the record)."""
    creator, assignee = row.get("created_by"), row.get("assignee")
    opp = SimpleNamespace(status=row.get("status"), number=row.get("number"),
                          created_by_fk=creator.id if creator else None,
                          assignee_id=assignee.id if assignee else assignee_id)
    return wf.may(actor, opp)


def _row_ops(pk, may, with_show=False):
    """The buttons of one list row: [(kind, label, url)] (kind: link | succeed | fail)."""
    ops = [("link", _("详情"), url_for("OpportunityView.show", pk=pk))] if with_show else []
    if may["assign"]:
        ops.append(("link", _("指派"), url_for("OpportunityView.assign", pk=pk)))
    if may["plan"]:
        ops.append(("link", _("制定计划"), url_for("OpportunityView.plan", pk=pk)))
    if may["execute"]:
        ops.append(("link", _("执行计划"), url_for("OpportunityView.execute", pk=pk)))
    if may["succeed"]:
        ops.append(("succeed", _("开发成功"), url_for("OpportunityView.succeed", pk=pk)))
    if may["fail"]:
        ops.append(("fail", _("终止开发"), url_for("OpportunityView.fail", pk=pk)))
    return ops


class OpportunityListWidget(ListWidget):
    """FAB's list plus an 操作 column (指派 / 制定计划 / 执行计划 / 开发成功 / 终止开发)
    and, for whoever may assign, a 批量指派 button."""

    template = "opportunities/list_widget.html"

    def __call__(self, **kwargs):
        actor = current_actor()
        view = self.template_args.get("modelview_name")
        with_show = view != "OpportunityView"
        # 我的开发计划 lists only the actor's own (its base filter): they are the assignee
        mine = actor.id if view == "MyPlanView" else None
        kwargs["row_may"] = lambda row: _row_may(actor, row, mine)
        kwargs["row_ops"] = lambda pk, may: _row_ops(pk, may, with_show)
        kwargs["bulk_assign_url"] = (url_for("OpportunityView.bulk_assign")
                                     if view == "OpportunityView" and wf.can_assign(actor) else None)
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
    quick_search_columns = ["customer_name", "summary", "number"]
    sort_columns = {"created_by": "created_by.first_name", "assignee": "assignee.first_name",
                    "assigned_on": "assigned_on", "summary": "summary"}
    page_size = 20


class OpportunityView(ListMixin, ExportMixin, _OpportunityColumns, GuardedModelView):
    """销售机会管理. Add/edit/delete go through the workflow (not FAB's populate_obj)."""

    list_tabs = [Tab("mine", _l("我的"), mine("created_by_fk", "assignee_id")),
                 Tab("unassigned", _l("未指派"), equals("status", wf.UNASSIGNED)),
                 Tab("developing", _l("开发中"), equals("status", wf.ASSIGNED)),
                 Tab("all", _l("全部"))]
    default_tab = "all"

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
    show_template = "opportunities/show.html"
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
        # the edit form (GET) and the delete confirmation: the workflow's rule (403 / 409)
        {"edit": wf.require_edit, "delete": wf.require_delete}[action](current_actor(), item)

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
            except ValidationError as e:
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
            except ValidationError as e:
                self._show_error(form, e)
            else:
                flash(self.edit_row_message, "success")
                return None
        else:
            form = self.edit_form.refresh(obj=item)
        self._system_fields(form, item)
        return self._get_edit_widget(form=form)

    def _delete(self, pk):
        number = wf.delete_opportunity(db.session, current_actor(), int(pk))
        flash(_("删除成功：销售机会 %(number)s", number=number), "success")

    @expose("/add", methods=["GET", "POST"])
    @has_access
    @html_step
    def add(self):
        return _with_status(super().add())

    @expose("/edit/<pk>", methods=["GET", "POST"])
    @has_access
    @html_step
    def edit(self, pk):
        return _with_status(super().edit(pk))

    @expose("/delete/<pk>", methods=["GET", "POST"])
    @has_access
    @html_step
    def delete(self, pk):
        return super().delete(pk)

    def post_add_redirect(self):
        return redirect(url_for("OpportunityView.list"))

    # ---- show: details + plan items + the buttons the user may use ---------------------

    @expose("/show/<pk>", methods=["GET"])
    @has_access
    def show(self, pk):
        return self._show_page(self._deserialize_pk_if_composite(pk))

    def _show_page(self, pk, forecast_errors=None, forecast_values=None):
        widgets = self._show(pk)                      # 404 when there is no such row
        opp = self.datamodel.get(pk, self._base_filters)
        return self.render_template(self.show_template, pk=pk, title=self.show_title,
                                    widgets=widgets, related_views=self._related_views,
                                    opp=opp, may=wf.may(current_actor(), opp),
                                    forecast_errors=dict(forecast_errors or ()),
                                    forecast_values=forecast_values)

    # ---- 更新预计成交 (开发中) -------------------------------------------------------------

    @expose("/forecast/<int:pk>", methods=["POST"])
    @has_access
    @permission_name("plan")
    @html_step
    def forecast(self, pk):
        """The small form of the show page: 预计金额, 预计成交日期, 成功机率."""
        data = {f: request.form.get(f, "") for f in wf.FORECAST_FIELDS if f in request.form}
        try:
            wf.update_forecast(db.session, current_actor(), pk, data)
        except ValidationError as e:                  # the form again, every problem shown
            flash("；".join(dict.fromkeys(str(m) for _f, m in e.errors)), "danger")
            return self._show_page(pk, forecast_errors=[(f, str(m)) for f, m in e.errors],
                                   forecast_values=data), 400
        flash(_("预计成交已更新"), "success")
        back = request.referrer or ""
        if "/opportunity/board" in back:
            return redirect(back)
        return redirect(url_for("OpportunityView.show", pk=pk))

    # ---- 指派 ---------------------------------------------------------------------------

    def _page(self, template, opp, status=200, **kw):
        html = self.render_template(template, opp=opp, may=wf.may(current_actor(), opp),
                                    labels=LABELS, fmt_time=_fmt_time, fmt_user=_fmt_user,
                                    status_html=_fmt_status(opp.status), **kw)
        return html, status

    @expose("/assign/<int:pk>", methods=["GET", "POST"])
    @has_access
    @permission_name("assign")
    @html_step
    def assign(self, pk):
        actor = current_actor()
        error, selected = None, None
        if request.method == "POST":
            selected = request.form.get("assignee_id")
            opp = wf.get(db.session, pk)               # one load; wf.assign checks the rule
            try:
                wf.assign(db.session, actor, opp, selected)
            except ValidationError as e:               # the chosen user: show the form again
                error = e.message
            else:
                flash(_("指派成功"), "success")
                return redirect(url_for("OpportunityView.list"))
        else:
            opp = wf.for_assign(db.session, actor, pk)  # one load, one check (403 / 409)
        return self._page("opportunities/assign.html", opp, status=400 if error else 200,
                          managers=wf.assignable_managers(db.session), error=error,
                          selected=selected, now=datetime.now().strftime("%Y-%m-%d %H:%M"),
                          title=_("指派销售机会"))

    # ---- 批量指派 -----------------------------------------------------------------------

    @expose("/bulk_assign", methods=["GET", "POST"])
    @has_access
    @permission_name("assign")
    @html_step
    def bulk_assign(self):
        """销售主管 ticks several 未指派 opportunities and assigns them to one 客户经理;
        every row goes through the 指派 step and gets its own result."""
        actor = current_actor()
        wf.require_assign(actor)                       # 403 before anything is read
        error, results, selected, ticked = None, None, None, []
        if request.method == "POST":
            selected = request.form.get("assignee_id")
            ticked = request.form.getlist("ids")
            try:
                results = wf.assign_many(db.session, actor, ticked, selected)
            except ValidationError as e:               # no rows / wrong 客户经理: nothing changed
                error = e.message
        search = request.values.get("q", "")
        html = self.render_template(
            "opportunities/bulk_assign.html", title=_("批量指派销售机会"), error=error,
            results=results, rows=wf.unassigned(db.session, search), search=search,
            managers=wf.assignable_managers(db.session), selected=selected,
            ticked={str(t) for t in ticked} if error else set(),
            fmt_time=_fmt_time, fmt_user=_fmt_user, max_rows=wf.MAX_BULK)
        return html, 400 if error else 200

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
    @html_step
    def plan(self, pk):
        return self._plan_page(pk, "opportunities/plan.html")

    @expose("/execute/<int:pk>", methods=["GET"])
    @has_access
    @permission_name("develop")
    @html_step
    def execute(self, pk):
        return self._plan_page(pk, "opportunities/execute.html")

    def _plan_step(self, pk, template, step, ok_message, values=None):
        try:
            step()
        except ValidationError as e:
            return self._plan_page(pk, template, status=400, error=e.message, values=values)
        flash(ok_message, "success")
        target = "OpportunityView.plan" if template.endswith("plan.html") else "OpportunityView.execute"
        return redirect(url_for(target, pk=pk))

    @expose("/plan/<int:pk>/add", methods=["POST"])
    @has_access
    @permission_name("plan")
    @html_step
    def plan_add(self, pk):
        data = {"date": request.form.get("date", ""), "content": request.form.get("content", "")}
        return self._plan_step(
            pk, "opportunities/plan.html",
            lambda: wf.add_plan_item(db.session, current_actor(), pk, data),
            _("保存成功"), values=data)

    @expose("/plan/<int:pk>/item/<int:item_id>/edit", methods=["POST"])
    @has_access
    @permission_name("plan")
    @html_step
    def plan_edit(self, pk, item_id):
        data = {"content": request.form.get("content", "")}
        if "date" in request.form:
            data["date"] = request.form["date"]
        return self._plan_step(
            pk, "opportunities/plan.html",
            lambda: wf.update_plan_item(db.session, current_actor(), pk, item_id, data),
            _("保存成功"))

    @expose("/plan/<int:pk>/item/<int:item_id>/delete", methods=["POST"])
    @has_access
    @permission_name("plan")
    @html_step
    def plan_delete(self, pk, item_id):
        return self._plan_step(
            pk, "opportunities/plan.html",
            lambda: wf.delete_plan_item(db.session, current_actor(), pk, item_id),
            _("删除成功"))

    @expose("/execute/<int:pk>/item/<int:item_id>", methods=["POST"])
    @has_access
    @permission_name("develop")
    @html_step
    def execute_item(self, pk, item_id):
        data = {"result": request.form.get("result", "")}
        return self._plan_step(
            pk, "opportunities/execute.html",
            lambda: wf.update_plan_item(db.session, current_actor(), pk, item_id, data),
            _("执行效果已保存"))

    # ---- 开发成功 / 终止开发 ---------------------------------------------------------------

    @expose("/succeed/<int:pk>", methods=["POST"])
    @has_access
    @permission_name("develop")
    @html_step
    def succeed(self, pk):
        link = request.form.get("link_customer_id") or None
        try:
            opp, customer = wf.succeed(db.session, current_actor(), pk, link_customer_id=link,
                                       create_anyway=bool(request.form.get("create_anyway")))
        except wf.DuplicateCustomer as e:
            # a customer of that name exists (nothing written): the user chooses
            # (link / create anyway)
            return self._page("opportunities/duplicate.html", wf.get(db.session, pk), status=409,
                              error=e, customer_status=customer_status,
                              title=_("开发成功：已有同名客户"))
        url = f"/customer/show/{customer.id}"
        text = _("开发成功：已关联到已有客户 %(number)s %(name)s，") if link else \
            _("开发成功：已创建客户 %(number)s %(name)s，")
        flash(Markup(text) % {"number": escape(customer.number), "name": escape(customer.name)}
              + Markup('<a href="%s">%s</a>') % (url, _("查看客户")), "success")
        return redirect(url_for("OpportunityView.show", pk=pk))

    @expose("/fail/<int:pk>", methods=["POST"])
    @has_access
    @permission_name("develop")
    @html_step
    def fail(self, pk):
        opp = wf.fail(db.session, current_actor(), pk)
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


class MyPlanView(ListMixin, ExportMixin, _OpportunityColumns, ModelView):
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
    list_tabs = [Tab("developing", _l("开发中"), equals("status", wf.ASSIGNED)),
                 Tab("all", _l("全部"))]
    default_tab = "all"
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


def register(appbuilder):
    appbuilder.add_view(OpportunityView, "Opportunities", label=_l("销售机会管理"),
                        icon="fa-lightbulb-o", category="Marketing")
    appbuilder.add_view(MyPlanView, "MyPlans", label=_l("我的开发计划"),
                        icon="fa-tasks", category="Marketing")

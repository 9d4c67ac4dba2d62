"""服务管理: 服务创建, 服务分配 (with 批量分配), 服务处理, 服务反馈, 服务归档 and the
customer page's 客户服务 section. The ``service`` REST resource is app/api/service.py.

Thin: every rule is in ``app/workflows/service.py`` (``can_<step>`` for what a page
shows, through the templates' ``may`` dict; the steps themselves check
``require_<step>``); these views parse the input, call the workflow and render.
``html_step`` commits a success and turns a domain error into the Chinese error page.
"""
from flask import flash, jsonify, redirect, request, url_for
from flask_appbuilder import BaseView, expose
from flask_appbuilder.security.decorators import has_access, permission_name
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from markupsafe import Markup

from ..api.base import html_read, html_step
from ..extensions import db
from ..models import Customer
from ..workflows import service as wf
from ..workflows import sla
from ..workflows.actors import EXECUTIVE, MANAGER, SUPERVISOR
from ..workflows.errors import ValidationError
from .common import VIEW_CRUD, current_actor
from .export import export_response
from .lists import chosen_tab
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


def _service_list(which, list_key):
    """The tab (``?tab=``, else the user's last choice on ``list_key``, else the
    default) and the search/filters (``search``, ``priority``, ``overdue``) of a
    service list: (tab, raw args, checked filters or None, error or None)."""
    keys = [k for k, _label in wf.TABS[which]]
    tab = chosen_tab(list_key, request.args.get("tab"), keys, wf.DEFAULT_TABS[which])
    raw = {k: request.args.get(k, "") for k in wf.ASSIGN_FILTERS}
    try:
        return tab, raw, wf.parse_assign_filters(db.session, **raw), None
    except ValidationError as e:
        return tab, raw, None, e


def _list_page(view, template, which, list_key, fetch):
    """服务处理 / 服务反馈: tabs, the search form and a page of ``fetch(page, filters,
    tab)``; a bad filter shows its message (400)."""
    page = _page_arg()
    tab, raw, filters, error = _service_list(which, list_key)
    count, rows = 0, []
    if error is None:
        count, rows = fetch(page, filters, tab)
    pargs = {k: v for k, v in raw.items() if v}
    return view.render_template(
        template, rows=rows, count=count, page=page, tab=tab, tabs=wf.TABS[which],
        args=raw, pargs=pargs, error=error, priorities=wf.priorities(db.session),
        **_common()), (400 if error else 200)


def _sla_state(ticket):
    return sla.state(ticket, wf._now())


def _common(**kw):
    """Helpers every service template uses."""
    return dict(status_label=wf.status_label, action_label=wf.action_label,
                user_name=wf.user_name, page_size=PAGE_SIZE, sla_state=_sla_state,
                sla_text=sla.state_text, **kw)


def _customer_of(value):
    """The customer a form or a search names by id, if it exists (for display)."""
    try:
        return db.session.get(Customer, int(value)) if value else None
    except (TypeError, ValueError, OverflowError):
        return None


# ---- 服务创建 --------------------------------------------------------------------------

class ServiceCreateView(BaseView):
    route_base = "/service"
    class_permission_name = "Service"             # 服务创建 = can_add on Service
    method_permission_name = {"create": "add", "customers": "add"}
    default_view = "create"

    def _form(self, values=None, error=None, status=200):
        values = values or {}
        actor = current_actor()
        return self.render_template(
            "service/create.html", values=values, error=error,
            customer=_customer_of(values.get("customer_id")),
            types=wf.service_types(db.session), priorities=wf.priorities(db.session),
            actor=actor, may=wf.may(actor), **_common()), status

    @expose("/create", methods=["GET", "POST"])
    @has_access
    @html_step
    def create(self):
        wf.require_create(current_actor())
        if request.method == "GET":
            return self._form({"customer_id": request.args.get("customer_id", "")})
        data = {f: request.form.get(f, "") for f in wf.CREATE_FIELDS}
        try:
            ticket = wf.create(db.session, current_actor(), data)
        except ValidationError as e:
            return self._form(data, e, 400)
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
    # 调整优先级 and 批量分配 are part of 服务分配 (can_assign): the same function decides
    # who handles a ticket and how urgently
    method_permission_name = {"list": "assign", "assign": "assign", "reassign": "assign",
                              "priority": "assign", "bulk": "assign"}
    default_view = "list"

    def _page(self, source, results=None, bulk_error=None, selected=(), status=200):
        """The list of a tab with the search box and filters taken from ``source``
        (the query string, or the bulk form); a bad filter shows its message (400)."""
        actor = current_actor()
        wf.require_assign(actor)
        try:
            page = max(int(source.get("page", 0) or 0), 0)
        except (TypeError, ValueError):
            page = 0
        tab = source.get("tab", "new")
        if tab not in dict(ASSIGN_TABS):
            tab = "new"
        raw = {k: source.get(k, "") for k in wf.ASSIGN_FILTERS}
        error, count, rows = None, 0, []
        try:
            filters = wf.parse_assign_filters(db.session, **raw)
            if tab == "new":
                count, rows = wf.to_assign(db.session, page, PAGE_SIZE, filters)
            else:
                count, rows = wf.to_reassign(db.session, only_stuck=(tab == "stuck"), page=page,
                                             page_size=PAGE_SIZE, filters=filters)
        except ValidationError as e:
            error, status = e, 400
        return self.render_template(
            "service/assign.html", rows=rows, count=count, page=page, tab=tab, tabs=ASSIGN_TABS,
            stuck=wf.count_stuck(db.session), users=wf.assignable_users(db.session),
            stuck_ids={t.id for t in rows if wf.needs_reassignment(t)},
            args=raw, pargs={k: v for k, v in raw.items() if v}, error=error,
            priorities=wf.priorities(db.session), results=results, bulk_error=bulk_error,
            selected={str(i) for i in selected}, bulk_max=wf.BULK_MAX,
            may=wf.may(actor), **_common()), status

    @expose("/", methods=["GET"])
    @has_access
    @html_step
    def list(self):
        """Tabs: ``?tab=new`` the created tickets (default); ``?tab=stuck`` assigned
        tickets whose assignee can no longer handle them; ``?tab=assigned`` every
        assigned, not yet handled ticket (the stuck ones first, marked). Each tab takes
        ``search`` (编号, 概要 or customer name), ``priority`` and ``overdue`` (1/0)."""
        return self._page(request.args)

    @expose("/bulk", methods=["POST"])
    @has_access
    @html_step
    def bulk(self):
        """批量分配 the ticked ``ids`` to ``assignee_id``: the list again, with one result
        per ticket above it (assigned, or refused and why)."""
        ids = request.form.getlist("ids")
        try:
            results = wf.bulk_assign(db.session, current_actor(), ids,
                                     request.form.get("assignee_id"))
        except ValidationError as e:
            return self._page(request.form, bulk_error=e, selected=ids, status=400)
        return self._page(request.form, results=results)

    @expose("/<int:pk>", methods=["POST"])
    @has_access
    @html_step
    def assign(self, pk):
        ticket = wf.assign(db.session, current_actor(), pk, request.form.get("assignee_id"))
        flash(_("服务 %(number)s 已分配给 %(name)s。", number=ticket.number,
                name=wf.user_name(ticket.assignee)), "success")
        return redirect(url_for("ServiceAssignView.list"))

    @expose("/<int:pk>/reassign", methods=["POST"])
    @has_access
    @html_step
    def reassign(self, pk):
        """重新分配 an assigned, not yet handled ticket (from the list or the ticket page)."""
        ticket = wf.reassign(db.session, current_actor(), pk, request.form.get("assignee_id"),
                             request.form.get("from_assignee_id"))
        flash(_("服务 %(number)s 已重新分配给 %(name)s。", number=ticket.number,
                name=wf.user_name(ticket.assignee)), "success")
        back = request.form.get("back", "")
        if back == "show":
            return redirect(url_for("ServiceArchiveView.show", pk=pk))
        return redirect(url_for("ServiceAssignView.list",
                                tab=back if back in dict(ASSIGN_TABS) else "assigned"))

    @expose("/<int:pk>/priority", methods=["POST"])
    @has_access
    @html_step
    def priority(self, pk):
        """调整优先级 of a ticket not yet handled (the control on the ticket page)."""
        ticket = wf.change_priority(db.session, current_actor(), pk, request.form.get("priority"),
                                    request.form.get("from_priority"))
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
    @html_read
    def list(self):
        """Tabs ``?tab=all|overdue|returned`` (remembered per user) and the search of
        every service list: ``search`` (编号, 概要 or customer name), ``priority``,
        ``overdue``."""
        actor = current_actor()
        return _list_page(self, "service/handle_list.html", "handle", "ServiceHandleView",
                          lambda page, filters, tab: wf.to_handle(
                              db.session, actor, page, PAGE_SIZE, filters, tab))

    @expose("/<int:pk>", methods=["GET", "POST"])
    @has_access
    @html_step
    def handle(self, pk):
        actor = current_actor()
        if request.method == "POST":
            try:
                ticket = wf.handle(db.session, actor, pk, request.form.get("handling"))
            except ValidationError as e:
                db.session.rollback()  # before the page reads the ticket again
                return self._page(pk, actor, e, request.form.get("handling", ""), 400)
            flash(_("服务 %(number)s 的处理已保存。", number=ticket.number), "success")
            return redirect(url_for("ServiceHandleView.list"))
        return self._page(pk, actor)

    def _page(self, pk, actor, error=None, handling="", status=200):
        ticket = wf.get(db.session, pk)
        wf.require_handle(actor, ticket)  # same rule as the POST: 403 / 409 page
        return self.render_template(
            "service/handle.html", t=ticket, error=error, handling=handling,
            events=wf.history(db.session, ticket.id), may=wf.may(actor, ticket),
            **_common()), status


# ---- 服务反馈 --------------------------------------------------------------------------

class ServiceFeedbackView(BaseView):
    route_base = "/service/feedback"
    class_permission_name = "Service"
    method_permission_name = {"list": "feedback", "feedback": "feedback"}
    default_view = "list"

    @expose("/", methods=["GET"])
    @has_access
    @html_read
    def list(self):
        """Tabs ``?tab=all|created|handled`` (remembered per user) and the search of
        every service list (``search``, ``priority``, ``overdue``)."""
        actor = current_actor()
        return _list_page(self, "service/feedback_list.html", "feedback", "ServiceFeedbackView",
                          lambda page, filters, tab: wf.to_feedback(
                              db.session, actor, page, PAGE_SIZE, filters, tab))

    @expose("/<int:pk>", methods=["GET", "POST"])
    @has_access
    @html_step
    def feedback(self, pk):
        actor = current_actor()
        if request.method == "POST":
            result, score = request.form.get("result"), request.form.get("satisfaction")
            try:
                ticket = wf.feedback(db.session, actor, pk, result, score)
            except ValidationError as e:
                db.session.rollback()  # before the page reads the ticket again
                return self._page(pk, actor, e, {"result": result or "",
                                                 "satisfaction": score or ""}, 400)
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
            events=wf.history(db.session, ticket.id), may=wf.may(actor, ticket),
            **_common()), status


# ---- 服务归档 --------------------------------------------------------------------------

class ServiceArchiveView(BaseView):
    route_base = "/service/archive"
    class_permission_name = "Service"
    method_permission_name = VIEW_CRUD
    default_view = "list"

    # status=all: every status (the drill-down of 客户服务分析; shown as the 全部 tab,
    # not remembered); search/priority/overdue: the filter of every service list
    ARGS = ("customer", "customer_id", "summary", "service_type", "date_from", "date_to",
            "status") + wf.ASSIGN_FILTERS

    def _tab(self):
        """?tab= (remembered per user), else the last choice, else 已归档; the
        drill-down's ``status=all`` shows 全部 without changing the remembered tab."""
        if request.args.get("status", "").strip() == "all":
            return "all"
        return chosen_tab("ServiceArchiveView", request.args.get("tab"),
                          [k for k, _label in wf.ARCHIVE_TABS], wf.DEFAULT_TABS["archive"])

    @expose("/", methods=["GET"])
    @has_access
    @html_step
    def list(self):
        wf.require_view(current_actor())
        page = _page_arg()
        args = {k: request.args.get(k, "") for k in self.ARGS}
        tab = self._tab()
        error, count, rows = None, 0, []
        try:
            count, rows = wf.search_archive(db.session, page=page, page_size=PAGE_SIZE,
                                            tab=tab, **args)
        except ValidationError as e:
            error = e
        customer = _customer_of(args["customer_id"]) if args["customer_id"].isdigit() else None
        pargs = {k: v for k, v in args.items() if v}
        if "status" not in pargs:
            pargs["tab"] = tab
        return self.render_template(
            "service/archive.html", rows=rows, count=count, page=page, args=args, error=error,
            pargs=pargs, tab=tab, tabs=wf.ARCHIVE_TABS,
            tab_args={k: v for k, v in pargs.items() if k not in ("tab", "status")},
            priorities=wf.priorities(db.session),
            types=wf.service_types(db.session), customer=customer, **_common()), \
            (400 if error else 200)

    @expose("/export/<fmt>/", methods=["GET"])
    @has_access
    @permission_name("list")
    @html_read
    def export_list(self, fmt):
        """导出 CSV / XLSX: every archived ticket the current search selects (no
        paging), streamed in chunks, with priority, deadlines and 是否逾期; a bad filter
        gives the list's Chinese 400 message."""
        wf.require_view(current_actor())
        q = wf.archive_query(db.session, tab=self._tab(),
                             **{k: request.args.get(k, "") for k in self.ARGS})
        return export_response(fmt, str(_l("服务归档")), "service_archive", wf.export_headers(),
                               wf.export_rows(db.session, q))

    @expose("/<int:pk>", methods=["GET"])
    @has_access
    @html_step
    def show(self, pk):
        actor = current_actor()
        ticket = wf.get_for_view(db.session, actor, pk)
        may = wf.may(actor, ticket)
        return self.render_template(
            "service/show.html", t=ticket, events=wf.history(db.session, ticket.id),
            may=may, stuck=wf.needs_reassignment(ticket),
            priorities=wf.priorities(db.session) if may["priority"] else [],
            users=wf.assignable_users(db.session) if may["reassign"] else [], **_common())


# ---- customer page section ------------------------------------------------------------------

@customer_section(order=50, key="service", title=_l("客户服务"))
def service_section(customer, actor):
    count, rows = wf.of_customer(db.session, customer.id, limit=PAGE_SIZE)
    if not count:
        return None
    from flask import render_template
    return Markup(render_template("service/_customer_section.html", customer=customer,
                                  rows=rows, count=count, may=wf.may(actor), **_common()))


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

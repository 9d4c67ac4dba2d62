"""客户管理 › 客户流失管理: the warnings list, a warning's page (暂缓流失 / 确认流失),
and the customer page section 流失记录 (the ``churn`` REST resource:
app/api/churn.py).

The rules live in app/workflows/churn.py; these views only parse input, call it
and render (``html_step`` commits). 客户经理 see the warnings of their own customers; 销售主管,
高管 and admin see all; 高管 only read.
"""
from datetime import date

from flask import flash, redirect, render_template, request, url_for
from flask_appbuilder import BaseView, expose
from flask_appbuilder.security.decorators import has_access, permission_name
from flask_babel import lazy_gettext as _l
from markupsafe import Markup

from ..extensions import db
from ..workflows import churn as wf
from ..workflows.actors import EXECUTIVE, MANAGER, SUPERVISOR
from ..workflows.errors import ValidationError
from ..api.base import html_read, html_step, lenient_int
from .common import current_actor
from .export import chunked, export_response
from .lists import chosen_tab
from .sections import customer_section

ORDER = 40
# One permission per function on "Churn" (pages, API, menu): can_list 查看预警,
# can_measure 暂缓流失措施, can_confirm 确认流失.
RIGHTS = {
    EXECUTIVE: [("Churn", "can_list")],
    SUPERVISOR: [("Churn", "can_list|can_measure|can_confirm")],
    MANAGER: [("Churn", "can_list|can_measure|can_confirm")],
}

STATUS_FILTERS = {
    "open": ("warning", "delaying"), "warning": ("warning",), "delaying": ("delaying",),
    "lost": ("lost",), "recovered": ("recovered",), "all": None,
}
STATUS_TABS = [("open", _l("待处理")), ("warning", _l("预警")), ("delaying", _l("暂缓流失")),
               ("lost", _l("已流失")), ("recovered", _l("已恢复")), ("all", _l("全部"))]
PAGE_SIZE = 20

LABELS = {
    "id": _l("编号"), "customer_id": _l("客户"), "manager_id": _l("客户经理"),
    "last_order_date": _l("上次下单时间"), "warned_on": _l("预警时间"), "reason": _l("流失原因"),
    "confirmed_on": _l("确认流失时间"), "status": _l("状态"), "measures": _l("暂缓措施"),
}


def _fmt_dt(value):
    return value.strftime("%Y-%m-%d %H:%M") if value else ""


def _view_context(warnings):
    """Measures, author and manager names for a page of warnings: 2 queries."""
    measures = wf.measures_of(db.session, [w.id for w in warnings])
    ids = {m.created_by_fk for ms in measures.values() for m in ms}
    ids |= {w.manager_id for w in warnings} | {w.customer.manager_id for w in warnings}
    return measures, wf.user_names(db.session, ids)


class ChurnView(BaseView):
    route_base = "/churn"
    class_permission_name = "Churn"
    method_permission_name = {"show": "list"}
    default_view = "list"

    @expose("/list/")
    @has_access
    @html_step
    def list(self):
        actor = current_actor()
        tab = chosen_tab("ChurnView", request.args.get("status"), list(STATUS_FILTERS), "open")
        statuses, name = self._filters()
        extra, filters = self._extra_filters()
        page = lenient_int(request.args.get("page"))
        count, warnings = wf.list_warnings(db.session, actor, statuses, name,
                                           page=page, page_size=PAGE_SIZE, **filters)
        measures, names = _view_context(warnings)
        pages = max((count + PAGE_SIZE - 1) // PAGE_SIZE, 1)
        return self.render_template(
            "churn/list.html", warnings=warnings, measures=measures, names=names, count=count,
            tab=tab, tabs=STATUS_TABS, customer=name, page=page, pages=pages, extra=extra,
            manager_name=(wf.user_names(db.session, {filters["manager_id"]}).get(
                filters["manager_id"], "") if filters.get("manager_id") else None),
            today=date.today(), wf=wf, fmt_dt=_fmt_dt, title=_l("客户流失管理"))

    @expose("/export/<fmt>/")
    @has_access
    @permission_name("list")
    @html_read
    def export_list(self, fmt):
        """导出 CSV / XLSX: every warning of the current tab and search (the list's own
        query and row rights, no paging), streamed; measures and names per chunk."""
        actor, (statuses, name) = current_actor(), self._filters()
        filters = self._extra_filters()[1]
        headers = [_l("客户编号"), _l("客户名称"), _l("客户经理"), _l("上次下单时间"),
                   _l("预警时间"), _l("状态"), _l("暂缓措施"), _l("流失原因"), _l("确认流失时间")]

        def rows():
            for chunk in chunked(wf.iter_warnings(db.session, actor, statuses, name, **filters)):
                measures, names = _view_context(chunk)
                for w in chunk:
                    yield [w.customer.number, w.customer.name,
                           names.get(w.customer.manager_id, ""), w.last_order_date,
                           w.warned_on, str(wf.status_label(w.status)),
                           "\n".join(f"{_fmt_dt(m.created_on)} {names.get(m.created_by_fk, '')}："
                                     f"{m.text}" for m in measures.get(w.id, [])),
                           w.reason or "", w.confirmed_on]  # real datetimes in the file
        return export_response(fmt, str(_l("客户流失预警")), "churn", headers, rows())

    @staticmethod
    def _extra_filters():
        """(the args to keep in links, the workflow filters): 客户经理 (``manager_id``)
        and the 确认流失 dates (``confirmed_from`` / ``confirmed_to``), as 客户流失分析's
        drill-down sends them; a malformed value is a 400 in Chinese."""
        from ..workflows.dates import parse_ymd
        extra, filters = {}, {}
        raw = (request.args.get("manager_id") or "").strip()
        if raw:
            if not (raw.isascii() and raw.isdigit() and len(raw) <= 10) or int(raw) > 2**31 - 1:
                raise ValidationError(_l("客户经理编号 manager_id 必须是正整数。"),
                                      field="manager_id")
            extra["manager_id"], filters["manager_id"] = raw, int(raw)
        for key, label in (("confirmed_from", _l("确认流失开始日期")),
                           ("confirmed_to", _l("确认流失结束日期"))):
            day = parse_ymd(request.args.get(key), label, key, required=False)
            if day is not None:
                extra[key], filters[key] = day.isoformat(), day
        return extra, filters

    @staticmethod
    def _filters():
        tab = chosen_tab("ChurnView", request.args.get("status"), list(STATUS_FILTERS), "open")
        return STATUS_FILTERS[tab], \
            (request.args.get("customer") or "").strip()

    @expose("/show/<int:pk>")
    @has_access
    @html_step
    def show(self, pk):
        return self._show_page(pk)

    def _show_page(self, pk, status=200, error=None, values=None):
        """The warning page; after a refused measure/reason it shows the error and keeps
        the typed text in its box (nothing the user wrote is lost)."""
        actor = current_actor()
        w = wf.get_warning(db.session, actor, pk)
        earlier = wf.earlier_warnings(db.session, w)
        measures, names = _view_context([w, *earlier])
        return self.render_template(
            "churn/show.html", w=w, measures=measures[w.id], names=names,
            earlier=earlier, earlier_measures=measures,
            can_act=wf.can_act(actor, w) and w.status in ("warning", "delaying"),
            today=date.today(), wf=wf, fmt_dt=_fmt_dt, title=_l("客户流失预警"),
            error=error, values=values or {}), status

    def _step(self, pk, field, step, ok_message):
        text = request.form.get(field)
        try:
            step(text)
        except ValidationError as e:
            db.session.rollback()
            return self._show_page(pk, status=400, error=e, values={field: text or ""})
        flash(str(ok_message), "success")
        return redirect(url_for("ChurnView.show", pk=pk))

    @expose("/measure/<int:pk>", methods=["POST"])
    @has_access
    @html_step
    def measure(self, pk):
        return self._step(pk, "measure", lambda text: wf.add_measure(
            db.session, current_actor(), pk, text), _l("暂缓措施已保存。"))

    @expose("/confirm/<int:pk>", methods=["POST"])
    @has_access
    @html_step
    def confirm(self, pk):
        return self._step(pk, "reason", lambda text: wf.confirm(
            db.session, current_actor(), pk, text), _l("已确认流失，客户已标记为已流失。"))


@customer_section(order=60, key="churn", title=_l("流失记录"))
def churn_section(customer, actor):
    warnings = wf.warnings_of_customer(db.session, actor, customer.id)
    if not warnings:
        return None
    measures, names = _view_context(warnings)
    return Markup(render_template(
        "churn/_customer_section.html", warnings=warnings, measures=measures, names=names,
        today=date.today(), wf=wf, fmt_dt=_fmt_dt))


def register(appbuilder):
    appbuilder.add_view(ChurnView, "Churn", label=_l("客户流失管理"), icon="fa-user-times",
                        category="Customers")

"""统计报表: four report pages (table + ECharts chart + CSV/XLSX download) and the
``report`` REST resource: ``GET /api/v1/report/<name>?...&format=json|csv|xlsx``.

Only 销售主管, 高管 and admin see them (客户经理 gets 403). The numbers come
from app/reports (SQL aggregation, pandas shaping); this module only parses the
request and renders.
"""
from flask import Response, abort, current_app, request, url_for
from flask_appbuilder import BaseView, expose
from flask_appbuilder.api import BaseApi, protect, safe
from flask_appbuilder.security.decorators import has_access, permission_name
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from .. import reports
from ..extensions import db
from ..reports.common import BY_CHOICES, CSV_MIME, XLSX_MIME
from ..workflows.actors import EXECUTIVE, SUPERVISOR
from ..workflows.errors import DomainError
from .common import api_errors
from .sales import money

ORDER = 45
MENU = [  # (report name, menu name, label, icon)
    ("contribution", "ContributionReport", _l("客户贡献分析"), "fa-bar-chart"),
    ("composition", "CompositionReport", _l("客户构成分析"), "fa-pie-chart"),
    ("service", "ServiceReport", _l("客户服务分析"), "fa-life-ring"),
    ("churn", "ChurnReport", _l("客户流失分析"), "fa-user-times"),
]
# One permission on "Report" (pages, API, menu): can_report 统计报表.
RIGHTS = {role: [("Report", "can_report")] for role in (EXECUTIVE, SUPERVISOR)}

PAGE_SIZE = 50


def file_response(report, fmt):
    zone = current_app.config.get("BABEL_DEFAULT_TIMEZONE")
    if fmt == "csv":
        body, mime = report.to_csv(zone), CSV_MIME
    else:
        body, mime = report.to_xlsx(zone), XLSX_MIME
    resp = Response(body)
    resp.content_type = mime  # exactly one charset (mimetype= would add a second)
    resp.headers["Content-Disposition"] = report.content_disposition(fmt)
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _display(key, value):
    """A cell as the HTML table shows it."""
    if value is None:
        return ""
    if key == "amount":
        return money(value)
    if key == "percent":
        return f"{value:.2f}%"
    if key == "on_time_percent":
        return f"{value:.1f}%"
    return reports.cell_text(value)


def echarts_option(chart):
    """An ECharts option from a report's chart data (bar, horizontal bar or pie)."""
    title = {"text": str(chart["title"]), "left": "center", "textStyle": {"fontSize": 14}}
    name = str(chart["series_name"])
    if chart["type"] == "pie":
        return {
            "title": title,
            "tooltip": {"trigger": "item", "formatter": _("{b}：{c}（{d}%）")},
            "legend": {"bottom": 0, "type": "scroll"},
            "series": [{"name": name, "type": "pie", "radius": ["30%", "62%"],
                        "center": ["50%", "52%"],
                        "label": {"formatter": _("{b}\n{c}（{d}%）")},
                        "data": [{"name": str(c), "value": v}
                                 for c, v in zip(chart["categories"], chart["values"])]}],
        }
    cats = [str(c) for c in chart["categories"]]
    long_labels = any(len(c) > 6 for c in cats)
    series = [{"name": name, "type": "bar", "data": chart["values"], "barMaxWidth": 40,
               "label": {"show": len(cats) <= 12, "position": "right" if long_labels else "top"}}]
    if long_labels:  # customer names: horizontal bars, largest on top
        return {
            "title": title, "tooltip": {"trigger": "axis"},
            "grid": {"left": 10, "right": 90, "top": 40, "bottom": 10, "containLabel": True},
            "xAxis": {"type": "value"},
            "yAxis": {"type": "category", "data": cats[::-1],
                      "axisLabel": {"width": 220, "overflow": "truncate"}},
            "series": [dict(series[0], data=chart["values"][::-1])],
        }
    return {
        "title": title, "tooltip": {"trigger": "axis"},
        "grid": {"left": 10, "right": 20, "top": 50, "bottom": 10, "containLabel": True},
        "xAxis": {"type": "category", "data": cats, "axisLabel": {"interval": 0}},
        "yAxis": {"type": "value", "name": name, "minInterval": 1},
        "series": series,
    }


class ReportView(BaseView):
    route_base = "/reports"
    class_permission_name = "Report"
    default_view = "index"

    @expose("/")
    @has_access
    @permission_name("report")
    def index(self):
        from flask import redirect
        return redirect(url_for("ReportView.report", name="contribution"))

    @expose("/<name>/")
    @has_access
    @permission_name("report")
    def report(self, name):
        if name not in reports.REPORTS:
            abort(404)
        module = reports.REPORTS[name]
        args = {k: v for k, v in request.args.items() if k in module.FILTERS + ("format",)}
        fmt = (request.args.get("format") or "html").lower()
        if fmt == "html":
            args.pop("format", None)
        error = None
        try:
            report = reports.build(db.session, name, args)
        except DomainError as e:
            db.session.rollback()
            error = str(e.message)
            report = reports.build(db.session, name, {})  # show the unfiltered page
        if error is None and fmt in ("csv", "xlsx"):
            return file_response(report, fmt)
        page = request.args.get("page", "0")
        page = int(page) if page.isdigit() else 0
        n = len(report.df)
        pages = max(1, (n + PAGE_SIZE - 1) // PAGE_SIZE)
        page = min(page, pages - 1)
        records = report.df.iloc[page * PAGE_SIZE:(page + 1) * PAGE_SIZE].to_dict("records")
        rows = [[_display(k, r[k]) for k in report.columns] for r in records]
        total = ([_display(k, report.total.get(k)) for k in report.columns]
                 if report.total else None)
        keep = {k: v for k, v in args.items() if v and k != "format"}
        return self.render_template(
            "reports/report.html", report=report, name=name, menu=MENU,
            title=report.title, filters=module.FILTERS, values=request.args if error else keep,
            by_choices=BY_CHOICES, rows=rows, total=total, count=n, page=page, pages=pages,
            error=error, option=echarts_option(report.chart), keep=keep,
            headers=[str(v) for v in report.columns.values()],
            numeric=[k in ("amount", "count", "percent", "overdue", "on_time_percent")
                     for k in report.columns],
        ), (400 if error else 200)


class ReportApi(BaseApi):
    resource_name = "report"
    class_permission_name = "Report"
    method_permission_name = {"get": "report"}
    allow_browser_login = True
    openapi_spec_tag = "Reports"

    @expose("/<name>", methods=["GET"])
    @protect()
    @safe
    @api_errors
    def get(self, name):
        """统计报表 as JSON ``{"rows": [...]}``, CSV or XLSX.
        ---
        get:
          summary: 统计报表
          parameters:
          - in: path
            name: name
            schema: {type: string, enum: [contribution, composition, service, churn]}
          - {in: query, name: customer, schema: {type: string}}
          - {in: query, name: year, schema: {type: integer}}
          - {in: query, name: by, schema: {type: string, enum: [level, credit, satisfaction]}}
          - {in: query, name: manager, schema: {type: string}}
          - {in: query, name: format, schema: {type: string, enum: [json, csv, xlsx]}}
          responses:
            200: {description: rows}
            400: {description: bad filter}
            403: {description: forbidden}
            404: {description: no such report}
        """
        report = reports.build(db.session, name, request.args)
        fmt = report.params["format"]
        if fmt in ("csv", "xlsx"):
            return file_response(report, fmt)
        body = {"rows": report.json_rows()}
        if report.total:
            body["total"] = report.json_total()
        return self.response(200, **body)


def register(appbuilder):
    appbuilder.add_view_no_menu(ReportView)
    for name, menu_name, label, icon in MENU:
        appbuilder.add_link(menu_name, label=label, href=f"/reports/{name}/", icon=icon,
                            category="Reports")
    appbuilder.add_api(ReportApi)


__all__ = ["ReportView", "ReportApi", "_"]

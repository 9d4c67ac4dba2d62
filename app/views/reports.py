"""统计报表: four report pages (date range + comparison, ECharts chart with drill-down,
sortable paged table with totals, CSV/XLSX download). The ``report`` REST resource
is app/api/reports.py.

Only 销售主管, 高管 and admin see them (客户经理 gets 403). The numbers come
from app/reports (SQL aggregation, pandas shaping); this module only parses the
request and renders.
"""
from datetime import date

from flask import Response, abort, current_app, redirect, request, url_for
from flask_appbuilder import BaseView, expose
from flask_appbuilder.security.decorators import has_access, permission_name
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from .. import reports
from ..extensions import db
from ..reports.common import BY_CHOICES, CSV_MIME, XLSX_MIME
from ..reports.period import COMPARE_CHOICES, presets
from ..workflows.actors import EXECUTIVE, SUPERVISOR
from ..workflows.errors import DomainError
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
# the query args a page keeps in its links (sort, page and format are set per link)
KEEP = ("customer", "manager", "year", "by", "from", "to", "compare", "page_size")


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


def display(table, key, value):
    """A cell as the HTML table shows it."""
    v = table.value(key, value)
    if v is None:
        return "—" if table.kind(key) == "change" else ""
    kind = table.kind(key)
    if kind == "money":
        return money(v)
    if kind == "change":
        return f"{v:+.1f}%"
    if kind == "pct2":
        return f"{v:.2f}%"
    if kind == "pct1":
        return f"{v:.1f}%"
    if kind == "num1":
        return f"{v:.1f}"
    if kind == "num2":
        return f"{v:.2f}"
    return reports.cell_text(v)


def table_view(table, df=None, links=None):
    """What the template needs of a table: headers, formatted rows, total."""
    df = table.df if df is None else df
    links = table.links if links is None else links
    keys = list(table.columns)
    rows = [{"cells": [display(table, k, r[k]) for k in keys],
             "link": links[i] if links else None} for i, r in enumerate(table.records(df))]
    return {
        "key": table.key, "title": str(table.title), "keys": keys,
        "headers": [str(v) for v in table.columns.values()],
        "numeric": [table.kind(k) != "text" and table.kind(k) != "date" for k in keys],
        "rows": rows,
        "total": ([display(table, k, table.total.get(k)) for k in keys] if table.total else None),
    }


def _finite(values):
    """Chart values as JSON can carry them: NaN/∞ (an average over no rows) → null
    (ECharts leaves a gap), numpy numbers → Python numbers."""
    out = []
    for v in values:
        try:
            f = float(v)
        except (TypeError, ValueError):
            out.append(None)
            continue
        out.append(None if f != f or f in (float("inf"), float("-inf"))
                   else (int(f) if isinstance(v, int) else f))
    return out


def echarts_option(chart):
    """(ECharts option, links in the order of the drawn data) of a report's chart:
    bar (horizontal for long labels), grouped bars with a comparison, line or pie."""
    title = {"text": str(chart["title"]), "left": "center", "textStyle": {"fontSize": 14}}
    series = [(name, _finite(values)) for name, values in (chart.get("series") or [])]
    links = chart.get("links")
    cats = [str(c) for c in chart["categories"]]
    if chart["type"] == "pie":
        name, values = series[0]
        return {
            "title": title,
            "tooltip": {"trigger": "item", "formatter": _("{b}：{c}（{d}%）")},
            "legend": {"bottom": 0, "type": "scroll"},
            "series": [{"name": name, "type": "pie", "radius": ["30%", "62%"],
                        "center": ["50%", "52%"], "cursor": "pointer" if links else "default",
                        "label": {"formatter": _("{b}\n{c}（{d}%）")},
                        "data": [{"name": c, "value": v} for c, v in zip(cats, values)]}],
        }, links
    kind = "line" if chart["type"] == "line" else "bar"
    many = len(series) > 1
    out = [{"name": name, "type": kind, "data": values, "barMaxWidth": 40,
            "connectNulls": True,
            "label": {"show": len(cats) <= 12 and not many}} for name, values in series]
    legend = {"top": 24} if many else None
    long_labels = any(len(c) > 6 for c in cats) and kind == "bar"
    if long_labels:  # customer names: horizontal bars, largest on top
        for s in out:
            s["data"] = s["data"][::-1]
            s["label"]["position"] = "right"
        option = {
            "title": title, "tooltip": {"trigger": "axis"},
            "grid": {"left": 10, "right": 90, "top": 56 if many else 40, "bottom": 10,
                     "containLabel": True},
            # amounts up to millions: ECharts would print every tick's label even where
            # they overlap in the narrow plot left of the names; it drops those instead
            "xAxis": {"type": "value", "splitNumber": 4, "axisLabel": {"hideOverlap": True}},
            "yAxis": {"type": "category", "data": cats[::-1],
                      "axisLabel": {"width": 220, "overflow": "truncate"}},
            "series": out,
        }
        links = links[::-1] if links else links
    else:
        for s in out:
            s["label"]["position"] = "top"
        y = {"type": "value", "minInterval": 1, "axisLabel": {"hideOverlap": True}}
        if chart.get("max"):
            y.update(max=chart["max"], minInterval=None)
        option = {
            "title": title, "tooltip": {"trigger": "axis"},
            "grid": {"left": 10, "right": 20, "top": 64 if many else 50, "bottom": 10,
                     "containLabel": True},
            "xAxis": {"type": "category", "data": cats, "axisLabel": {"interval": 0}},
            "yAxis": y, "series": out,
        }
    if legend:
        option["legend"] = legend
    return option, links


def _has_data(chart):
    return bool(chart) and any(any(v for v in vals if v) for _, vals in chart.get("series", []))


class ReportView(BaseView):
    route_base = "/reports"
    class_permission_name = "Report"
    default_view = "index"

    @expose("/")
    @has_access
    @permission_name("report")
    def index(self):
        return redirect(url_for("ReportView.report", name="contribution"))

    @expose("/<name>/")
    @has_access
    @permission_name("report")
    def report(self, name):
        if name not in reports.REPORTS:
            abort(404)
        module = reports.REPORTS[name]
        args = {k: v for k, v in request.args.items()}
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
        keep = {k: v for k, v in args.items() if k in KEEP and v} if not error else {}
        main = table_view(report.main, report.page_frame(), report.page_links())
        sort_links = []
        for k in report.main.columns:
            desc = not (report.sort == k and report.order == "desc")
            sort_links.append(url_for("ReportView.report", name=name, sort=k,
                                      order="desc" if desc else "asc", **keep))
        charts = []
        if _has_data(report.chart):
            option, links = echarts_option(report.chart)
            charts.append({"id": "crm-report-chart", "option": option, "links": links,
                           "height": 520 if name == "contribution" else 420})
        extras = []
        for t in report.extras:
            view = table_view(t)
            if t.chart and _has_data(t.chart):
                option, links = echarts_option(dict(t.chart, links=t.links))
                view["chart"] = {"id": f"crm-chart-{t.key}", "option": option, "links": links,
                                 "height": 360}
                charts.append(view["chart"])
            extras.append(view)
        paging = dict(keep, sort=report.sort, order=report.order) if report.sort else dict(keep)
        period_keep = {k: v for k, v in keep.items() if k not in ("from", "to", "year")}
        return self.render_template(
            "reports/report.html", report=report, name=name, menu=MENU, title=report.title,
            filters=module.FILTERS, values=request.args if error else keep,
            by_choices=BY_CHOICES, compare_choices=COMPARE_CHOICES, main=main, extras=extras,
            count=report.count, page=report.page, pages=report.pages,
            page_size=report.page_size, error=error, charts=charts, keep=keep, paging=paging,
            sort_links=sort_links, sort=report.sort, order=report.order,
            presets=[(k, label, p.start.isoformat(), p.end.isoformat())
                     for k, label, p in presets(date.today())],
            period_keep=period_keep, period_label=report.period.label(),
            compare_label=(_("%(period)s（%(kind)s）", period=report.compare_period.label(),
                             kind=COMPARE_CHOICES[report.compare]) if report.compare else None),
        ), (400 if error else 200)


def register(appbuilder):
    appbuilder.add_view_no_menu(ReportView)
    for name, menu_name, label, icon in MENU:
        appbuilder.add_link(menu_name, label=label, href=f"/reports/{name}/", icon=icon,
                            category="Reports")


__all__ = ["ReportView", "_"]

"""工作台 (the home page after login), the rows behind each tile, notifications (the bell,
its list page, mark read, mail switches) and their REST twins:

* ``GET /api/v1/dashboard/`` — the signed-in user's tiles (counts) and, per role, the
  load table, KPI series and system status;
* ``GET /api/v1/notification/`` (own only), ``POST /api/v1/notification/<id>/read``,
  ``POST /api/v1/notification/read_all``, ``GET|PUT /api/v1/notification/settings``
  (those two live in app/api/dashboard.py).

The rules live in app/workflows/dashboard.py and app/workflows/notifications.py.
"""
import time
from datetime import datetime

from flask import current_app, flash, g, redirect, request, url_for
from flask_appbuilder import BaseView, IndexView, expose
from flask_appbuilder.security.decorators import has_access
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from ..extensions import db
from ..workflows import dashboard as dwf
from ..workflows import notifications as nwf
from ..workflows.actors import ADMIN, EXECUTIVE, MANAGER, SUPERVISOR
from ..workflows.errors import ValidationError
from ..api.base import html_step
from .common import current_actor

ORDER = 5
# One function, one permission: 工作台与通知 = can_list on "Dashboard" (pages and API);
# what a user then sees is their own (the workflows decide).
RIGHTS = {role: [("Dashboard", "can_list")] for role in (EXECUTIVE, SUPERVISOR, MANAGER)}
_ALL_LIST = {"list": "list", "get": "list", "get_list": "list", "read": "list", "read_all": "list",
             "settings": "list", "put_settings": "list"}
PAGE_SIZE = 50
KPI_SECONDS = 3600
_kpi_cache = {}


def business_today():
    """Today in the configured zone (Asia/Shanghai by default), not the server's."""
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(current_app.config.get("BABEL_DEFAULT_TIMEZONE") or "Asia/Shanghai")
    return datetime.now(zone).date()


def _page():
    try:
        return max(0, min(int(request.args.get("page", 0)), 100000))
    except (TypeError, ValueError):
        raise ValidationError(_l("页码必须是 0 或正整数，例如 page=2。"), field="page")


def _manager_role_id():
    role = current_app.appbuilder.sm.find_role(MANAGER)
    return role.id if role else -1


def _kpis(today):
    """KPI series for 高管/销售主管; the order totals read the sales system, cached per
    process for KPI_SECONDS (the figures move by the day, not by the second)."""
    now = datetime.now()
    key = ("orders", today)
    hit = _kpi_cache.get(key)
    if hit is None or hit[0] < time.time():
        with db.engines["sales"].connect() as conn:
            orders = dwf.orders_by_month(conn, today)
        _kpi_cache.clear()
        _kpi_cache[key] = hit = (time.time() + KPI_SECONDS, orders)
    return {
        "orders_by_month": hit[1],
        "new_customers_by_month": dwf.new_customers_by_month(db.session, today),
        "churn_by_quarter": dwf.churn_by_quarter(db.session, today),
        "satisfaction_avg": dwf.satisfaction_avg(db.session, now),
        "open_tickets_by_age": dwf.open_tickets_by_age(db.session, now),
    }


def _system(now):
    cfg = current_app.config
    jobs = {}
    for job, label in (("churn", _("客户流失检查")), ("mail_fetch", _("收取邮件")),
                       ("backup", _("备份")), ("digest", _("每日计划提醒")),
                       ("sla", _("服务超时升级")), ("rollup", _("订单汇总刷新"))):
        run = dwf.last_job(db.session, job)
        jobs[job] = {"label": label,
                     "started_on": run.started_on.isoformat(timespec="seconds") if run else None,
                     "ok": run.ok if run else None, "summary": run.summary if run else None}
    return {"jobs": jobs, "failed_mails": dwf.failed_mail_counts(db.session),
            "locked_accounts": [dict(a, since=a["since"].isoformat(timespec="seconds") if a["since"] else None)
                                for a in dwf.locked_accounts(db.session, cfg.get("LOCKOUT_ATTEMPTS", 5),
                                                             cfg.get("LOCKOUT_MINUTES", 15), now)]}


def dashboard_data(actor):
    today, now = business_today(), datetime.now()
    data = {"today": today.isoformat(), "counts": dwf.counts(db.session, actor, today),
            "tiles": [{"key": m.key, "label": str(m.label), "group": str(m.group), "warn": m.warn,
                       "entity": m.entity} for m in dwf.metrics_for(actor)],
            "unread_notifications": nwf.unread_count(db.session, actor.id)}
    if "tickets_mine" in data["counts"]:
        data["oldest_ticket_days"] = dwf.oldest_ticket_days(db.session, actor, now)
    if actor.is_supervisor or actor.is_admin:
        data["manager_load"] = dwf.manager_load(db.session, _manager_role_id())
    if actor.is_supervisor or actor.is_executive or actor.is_admin:
        data["kpi"] = _kpis(today)
    if actor.is_admin:
        data["system"] = _system(now)
        data["sla_gaps"] = dwf.sla_gaps(db.session, actor)
    return data


class CrmIndexView(IndexView):
    """The home page: the 工作台 for a signed-in user, the login prompt otherwise."""

    index_template = "index.html"

    @expose("/")
    def index(self):
        if g.user is None or not g.user.is_authenticated:
            return self.render_template(self.index_template, appbuilder=self.appbuilder, data=None)
        return self.render_template(self.index_template, appbuilder=self.appbuilder,
                                    data=dashboard_data(current_actor()))


class DashboardView(BaseView):
    class_permission_name = "Dashboard"
    method_permission_name = _ALL_LIST
    """The rows behind a 工作台 tile (same query as its count)."""

    route_base = "/dashboard"
    default_view = "list"

    @expose("/list/<key>")
    @has_access
    @html_step
    def list(self, key):
        page = _page()
        today = business_today()
        metric, items, total = dwf.rows(db.session, current_actor(), key, today, page, PAGE_SIZE)
        return self.render_template("dashboard/list.html", metric=metric, items=items, total=total,
                                    page=page, page_size=PAGE_SIZE, today=today, now=datetime.now(),
                                    title=str(metric.label))


class NotificationView(BaseView):
    class_permission_name = "Dashboard"
    method_permission_name = _ALL_LIST
    route_base = "/notifications"
    default_view = "list"

    @expose("/")
    @has_access
    @html_step
    def list(self):
        page = _page()
        unread = request.args.get("unread") == "1"
        items, total = nwf.for_user(db.session, g.user.id, unread, page, PAGE_SIZE)
        return self.render_template("dashboard/notifications.html", items=items, total=total,
                                    page=page, page_size=PAGE_SIZE, unread=unread,
                                    kind_label=nwf.kind_label, title=_("通知"))

    @expose("/<int:pk>/read", methods=["POST"])
    @has_access
    @html_step
    def read(self, pk):
        n = nwf.mark_read(db.session, g.user.id, pk)
        if request.form.get("go") and n.link and n.link.startswith("/") and not n.link.startswith("//"):
            return redirect(n.link)
        return redirect(url_for("NotificationView.list"))

    @expose("/read_all", methods=["POST"])
    @has_access
    @html_step
    def read_all(self):
        count = nwf.mark_all_read(db.session, g.user.id)
        flash(_("已将 %(n)d 条通知标为已读。", n=count), "success")
        return redirect(url_for("NotificationView.list"))

    @expose("/settings", methods=["GET", "POST"])
    @has_access
    @html_step
    def settings(self):
        if request.method == "POST":
            values = {k: request.form.get(f"mail_{k}") == "1" for k in nwf.KIND_LABELS}
            nwf.save_settings(db.session, g.user.id, values)
            flash(_("通知设置已保存。"), "success")
            return redirect(url_for("NotificationView.settings"))
        return self.render_template("dashboard/settings.html",
                                    values=nwf.settings(db.session, g.user.id),
                                    labels=nwf.KIND_LABELS, title=_("通知设置"))


def register(appbuilder):
    appbuilder.add_view_no_menu(DashboardView)
    appbuilder.add_view_no_menu(NotificationView)

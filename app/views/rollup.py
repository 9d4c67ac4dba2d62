"""订单汇总 page (``/rollup/``): when the order rollup was built, and for the
系统管理员 the 刷新 button (``POST /rollup/refresh``). The REST twin is
app/api/rollup.py; the rules live in app/workflows/rollup.py.

One function, one permission each on the view menu ``Rollup``: ``can_list`` (the
status: 系统管理员, 高管, 销售主管 — whoever reads the reports) and ``can_refresh``
(系统管理员 only; the admin role has every permission).
"""
from flask import flash, redirect, url_for
from flask_appbuilder import BaseView, expose
from flask_appbuilder.security.decorators import has_access
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from ..api.base import html_step
from ..extensions import db
from ..workflows import rollup as wf
from ..workflows.actors import EXECUTIVE, SUPERVISOR
from .common import current_actor

ORDER = 60
RIGHTS = {role: [("Rollup", "can_list")] for role in (EXECUTIVE, SUPERVISOR)}
PERMISSIONS = {"list": "list", "refresh": "refresh", "get": "list"}


class RollupView(BaseView):
    """The rollup's state and the 刷新 button."""

    class_permission_name = "Rollup"
    method_permission_name = PERMISSIONS
    route_base = "/rollup"
    default_view = "list"

    @expose("/")
    @has_access
    def list(self):
        actor = current_actor()
        return self.render_template("rollup/status.html", state=wf.status(db.session),
                                    may={"refresh": wf.can_refresh(actor)},
                                    title=_("订单汇总"))

    @expose("/refresh", methods=["POST"])
    @has_access
    @html_step
    def refresh(self):
        state = wf.refresh_now(db.session, current_actor())
        flash(_("订单汇总已刷新：%(n)s 个客户，用时 %(s).1f 秒。", n=f"{state['customers']:,}",
                s=state["seconds"]), "success")
        return redirect(url_for("RollupView.list"))


def register(appbuilder):
    appbuilder.add_view(RollupView, "Rollup", label=_l("订单汇总"), icon="fa-database",
                        category="Reports")

"""全局搜索: the navbar's box and the results page ``/search/?q=…&kind=…``
(``GET /api/v1/search/?q=…&kind=…&limit=…``: app/api/search.py, through ``run``).

Thin: matching and the read rules live in app/workflows/search.py. Here: which kinds
the user may open (the ``can_list`` of each kind's function — no list permission, no
results of that kind), and where each hit links to.
"""
from flask import request, url_for
from flask_appbuilder import BaseView, expose
from flask_appbuilder.security.decorators import has_access
from flask_babel import gettext as _

from ..extensions import db
from ..workflows import search as wf
from ..workflows.actors import EXECUTIVE, MANAGER, SUPERVISOR
from ..workflows.errors import ValidationError
from .common import current_actor
from .documents import doc_settings

ORDER = 6
# One function, one permission: 全局搜索 = can_list on "Search" (page and API); what a
# user then finds is what each module lets them read.
RIGHTS = {role: [("Search", "can_list")] for role in (EXECUTIVE, SUPERVISOR, MANAGER)}
ALL_LIST = {"index": "list", "get": "list"}
PAGE_LIMIT = 20


def allowed_kinds(appbuilder, kind=None):
    """The kinds the signed-in user may open (``kind`` alone when given)."""
    sm = appbuilder.sm
    keys = [kind] if kind else list(wf.KINDS)
    return [k for k in keys if sm.has_access("can_list", wf.KINDS[k].function)]


def link(kind, row):
    if kind == "customer":
        return url_for("CustomerView.show", pk=row.id)
    if kind == "contact":
        return url_for("ContactView.list", customer_id=row.customer_id)
    if kind == "opportunity":
        return url_for("OpportunityView.show", pk=row.id)
    if kind == "ticket":
        return url_for("ServiceArchiveView.show", pk=row.id)
    if kind == "document":
        return url_for("DocumentView.customer", customer_id=row.customer_id,
                       folder=row.folder_id or "all")
    return url_for("MailView.show", pk=row.id)


def run(appbuilder, q, kind, limit):
    """{kind: {...}} with plain hits (label, count, items of {id, title, detail, url})."""
    kind = wf.clean_kind(kind)
    q = wf.clean_query(q)
    kinds = allowed_kinds(appbuilder, kind)
    found = wf.search(db.session, current_actor(), q, kinds, limit,
                      document_scope=doc_settings().read_scope)
    groups = {}
    for k, hit in found.items():
        items = []
        for row in hit["items"]:
            title, detail = wf.describe(k, row)
            items.append({"id": row.id, "title": title, "detail": detail, "url": link(k, row)})
        groups[k] = {"label": str(wf.KINDS[k].label), "count": hit["count"],
                     "capped": hit["capped"], "items": items}
    return q, kind, groups


class SearchView(BaseView):
    class_permission_name = "Search"
    method_permission_name = ALL_LIST
    route_base = "/search"
    default_view = "index"

    @expose("/")
    @has_access
    def index(self):
        raw, kind = request.args.get("q", ""), request.args.get("kind", "")
        error, groups, q, status = None, {}, raw, 200
        if raw.strip():
            try:
                q, kind, groups = run(self.appbuilder, raw, kind, PAGE_LIMIT)
            except ValidationError as e:
                db.session.rollback()
                error, status = e.message, 400
                q = raw[:wf.MAX_LEN * 2]
        kinds = [(k, str(v.label)) for k, v in wf.KINDS.items()
                 if k in allowed_kinds(self.appbuilder)]
        return self.render_template(
            "search/results.html", q=q, kind=kind or "", groups=groups, error=error,
            kinds=kinds, total=sum(g["count"] for g in groups.values()),
            title=_("搜索“%(q)s”", q=q) if q.strip() else _("搜索")), status


def register(appbuilder):
    appbuilder.add_view_no_menu(SearchView)

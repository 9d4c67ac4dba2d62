"""客户管理 › 导入客户 / 导入联系人 / 导入记录 and 合并客户 (the ``import`` REST
resource: app/api/imports.py, sharing ``run_commit`` and the helpers here).

Thin views over app/workflows/imports.py: upload → preview (errors per row and
column, duplicates with the existing record and a choice) → commit (one
transaction; the page shows a progress bar fed by a small JSON endpoint) →
result with the counts and the CSV report. 合并客户 is at
``/customer/merge?survivor=<id>&merged=<id>`` (销售主管/admin), linked from the
customer page's 合并记录 section.
"""
import json
import os

from flask import (
    Response, abort, current_app, flash, jsonify, redirect, render_template, request,
    send_file, url_for,
)
from flask_appbuilder import BaseView, expose
from flask_appbuilder.security.decorators import has_access, permission_name
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from markupsafe import Markup
from sqlalchemy import func, select

from ..api.base import commit_step, html_step, lenient_int
from ..extensions import db
from ..models import (
    Activity, ChurnWarning, Contact, Customer, DictItem, Document, MailMessage, ServiceTicket,
)
from ..workflows import customers as cwf
from ..workflows import imports as wf
from ..workflows.actors import MANAGER, SUPERVISOR
from ..workflows.errors import DomainError, NotFound, ValidationError
from ..workflows.names import display_name
from .common import current_actor
from .errors import error_response
from .sections import customer_section

ORDER = 25
# One permission per function on "Import" (pages, API, menu): can_upload 上传导入文件
# (导入客户, 导入联系人, 模板, 重新对应列), can_list 导入记录 (and a job's report),
# can_commit 提交导入, can_merge 合并客户.
RIGHTS = {
    SUPERVISOR: [("Import", "can_upload|can_list|can_commit|can_merge")],
    MANAGER: [("Import", "can_upload|can_list|can_commit")],
}
PAGE_SIZE = 50


def store_dir():
    return current_app.config.get("IMPORT_DIR") or os.path.join(current_app.instance_path,
                                                                "imports")


def _progress_path(job):
    return os.path.join(wf.job_dir(store_dir(), job.id), "progress.json")


def _write_progress(path, **data):
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


def mapping_arg(text):
    if text in (None, ""):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        raise ValidationError(_l("列对应关系必须是 JSON 对象，例如 {\"公司\": \"name\"}。"),
                              field="mapping")
    return value


def run_commit(actor, job_id, default_action, actions):
    """提交导入 (HTML and REST): the import is one transaction. Two commits here on
    purpose (``commit_step``): the progress file may say "done" only once the rows
    are committed, and a failed import is rolled back but its 导入失败 status is
    committed before the 409 answer (which rolls back whatever else)."""
    job = wf.get_job(db.session, actor, job_id)
    progress_path = _progress_path(job)
    _write_progress(progress_path, state="running", done=0, total=job.total_rows)
    try:
        job = wf.commit(db.session, actor, job.id, default_action, actions,
                        progress=lambda done, total: _write_progress(
                            progress_path, state="running", done=done, total=total))
        commit_step()
    except wf.ImportFailed as e:
        db.session.rollback()
        wf.mark_failed(db.session, job_id, e.message)
        commit_step()
        _write_progress(progress_path, state="failed", done=0, total=job.total_rows)
        raise
    except DomainError:
        db.session.rollback()
        _write_progress(progress_path, state="idle", done=0, total=job.total_rows)
        raise
    _write_progress(progress_path, state="done", done=job.total_rows, total=job.total_rows)
    return job


def _manager_choices():
    """Active users with the role 客户经理 (a handful): the 默认客户经理 select."""
    sm = current_app.appbuilder.sm
    role = sm.find_role(MANAGER)
    users = [u for u in (role.user if role else []) if u.active]
    return [(u.id, display_name(u), u.username)
            for u in sorted(users, key=lambda u: u.id)]


# ---- HTML: import -----------------------------------------------------------------------------

class ImportView(BaseView):
    route_base = "/imports"
    class_permission_name = "Import"
    method_permission_name = {"show": "list", "progress": "list", "report": "list"}
    default_view = "jobs"

    def _upload(self, kind):
        actor = current_actor()
        error = None
        if request.method == "POST":
            upload = request.files.get("file")
            try:
                if upload is None or not upload.filename:
                    raise ValidationError(_l("请选择要导入的文件。"), field="file")
                job = wf.create_import(
                    db.session, actor, kind, upload.filename, upload.stream, store_dir(),
                    mapping=mapping_arg(request.form.get("mapping")),
                    options={"default_manager_id": request.form.get("default_manager_id")})
                return redirect(url_for("ImportView.show", pk=job.id))
            except ValidationError as e:
                db.session.rollback()
                error = str(e.message)
        title = _("导入客户") if kind == wf.CUSTOMER else _("导入联系人")
        return self.render_template(
            "imports/upload.html", title=title, kind=kind, error=error, actor=actor,
            managers=_manager_choices() if (actor.is_admin or actor.is_supervisor) else [],
            columns=[wf.field_label(kind, f) for f in wf.TEMPLATE_COLUMNS[kind]],
            max_rows=wf.MAX_ROWS), (400 if error else 200)

    @expose("/customers", methods=["GET", "POST"])
    @has_access
    @permission_name("upload")
    @html_step
    def customers(self):
        return self._upload(wf.CUSTOMER)

    @expose("/contacts", methods=["GET", "POST"])
    @has_access
    @permission_name("upload")
    @html_step
    def contacts(self):
        return self._upload(wf.CONTACT)

    @expose("/template/<kind>.csv")
    @has_access
    @permission_name("upload")
    def template(self, kind):
        if kind not in wf.KINDS:
            abort(404)
        from ..reports.common import CSV_MIME, content_disposition
        resp = Response(wf.template_csv(kind).encode("utf-8"))
        resp.content_type = CSV_MIME
        name = "客户导入模板.csv" if kind == wf.CUSTOMER else "联系人导入模板.csv"
        resp.headers["Content-Disposition"] = content_disposition(name, f"{kind}-template.csv")
        return resp

    @expose("/list/")
    @has_access
    @permission_name("list")
    def jobs(self):
        actor = current_actor()
        page = lenient_int(request.args.get("page"))
        count, jobs = wf.list_jobs(db.session, actor, page=page, page_size=PAGE_SIZE)
        names = _user_names({j.created_by_fk for j in jobs})
        return self.render_template(
            "imports/list.html", title=_("导入记录"), jobs=jobs, count=count, page=page,
            pages=max(1, -(-count // PAGE_SIZE)), names=names, wf=wf)

    @expose("/<int:pk>")
    @has_access
    @permission_name("show")
    @html_step
    def show(self, pk):
        actor = current_actor()
        job = wf.get_job(db.session, actor, pk)
        data = wf.summary(job)
        names = _user_names({job.created_by_fk})
        if job.status != wf.PREVIEW:
            return self.render_template(
                "imports/result.html", title=_("导入结果"), job=job, data=data, wf=wf,
                names=names, has_report=os.path.exists(wf.report_path(job)))
        epage = lenient_int(request.args.get("epage"))
        dpage = lenient_int(request.args.get("dpage"))
        ecount, errors = wf.error_rows(job, epage, PAGE_SIZE)
        dcount, dups = wf.duplicate_rows(db.session, job, dpage, PAGE_SIZE)
        may_commit = job.created_by_fk == actor.id or actor.is_admin
        return self.render_template(
            "imports/preview.html", title=_("导入预览"), job=job, data=data, wf=wf, names=names,
            errors=errors, ecount=ecount, epage=epage, epages=max(1, -(-ecount // PAGE_SIZE)),
            dups=dups, dcount=dcount, dpage=dpage, dpages=max(1, -(-dcount // PAGE_SIZE)),
            may_commit=may_commit, fields=list(wf.headers_for(job.kind)),
            field_label=lambda f: wf.field_label(job.kind, f),
            status_label=cwf.status_label)

    @expose("/<int:pk>/remap", methods=["POST"])
    @has_access
    @permission_name("upload")
    @html_step
    def remap(self, pk):
        """Re-read the same file with another column mapping (a new preview)."""
        actor = current_actor()
        old = wf.get_job(db.session, actor, pk)
        if old.status != wf.PREVIEW:
            abort(409)
        header_count = len(wf.summary(old).get("columns", []))
        mapping = {str(i + 1): request.form.get(f"col_{i}", "") for i in range(header_count)}
        folder = wf.job_dir(store_dir(), old.id)
        src = next((os.path.join(folder, n) for n in ("source.csv", "source.xlsx")
                    if os.path.exists(os.path.join(folder, n))), None)
        if src is None:
            abort(409)
        ext = src.rsplit(".", 1)[-1]
        name = old.file_name if old.file_name.lower().endswith(ext) else f"{old.file_name}.{ext}"
        options = wf.summary(old).get("options") or {}
        job = wf.create_import(db.session, actor, old.kind, name, src, store_dir(),
                               mapping=mapping, options=options)
        wf.mark_failed(db.session, old.id, _("已重新设置列对应关系，见导入 #%(n)d。", n=job.id))
        return redirect(url_for("ImportView.show", pk=job.id))

    @expose("/<int:pk>/commit", methods=["POST"])
    @has_access
    @permission_name("commit")
    @html_step
    def commit(self, pk):
        actions = {}
        for key, value in request.form.items():
            if key.startswith("action_") and value:
                actions[key[7:]] = value
        try:
            run_commit(current_actor(), pk, request.form.get("default_action") or wf.SKIP, actions)
        except wf.ImportFailed as e:
            flash(str(e.message), "danger")
            return redirect(url_for("ImportView.show", pk=pk))
        flash(_("导入完成。"), "success")
        return redirect(url_for("ImportView.show", pk=pk))

    @expose("/<int:pk>/progress")
    @has_access
    @permission_name("show")
    @html_step
    def progress(self, pk):
        job = wf.get_job(db.session, current_actor(), pk)
        data = {"state": "idle", "done": 0, "total": job.total_rows}
        try:
            with open(_progress_path(job)) as fh:
                data.update(json.load(fh))
        except (OSError, ValueError):
            pass
        data["status"] = job.status
        return jsonify(data)

    @expose("/<int:pk>/report.csv")
    @has_access
    @permission_name("show")
    @html_step
    def report(self, pk):
        return send_report(wf.get_job(db.session, current_actor(), pk))


def send_report(job):
    path = wf.report_path(job)
    if job.status != wf.COMMITTED or not os.path.exists(path):
        raise NotFound(_l("这次导入没有结果报告。"))
    from ..reports.common import CSV_MIME, content_disposition
    resp = send_file(path, mimetype="text/csv", max_age=0)
    resp.content_type = CSV_MIME  # exactly one charset
    resp.headers["Content-Disposition"] = content_disposition(
        f"导入结果_{job.id}.csv", f"import-{job.id}-report.csv")
    return resp


def _user_names(ids):
    from ..workflows.churn import user_names
    return user_names(db.session, ids)


# ---- HTML: merge ---------------------------------------------------------------------------------

def _find_customer(text):
    """A customer by id or by 客户编号 (also a merged-away number → its survivor)."""
    text = (text or "").strip()
    if not text:
        return None
    c = None
    if text.isdigit():
        c = db.session.get(Customer, int(text))
    if c is None:
        c = db.session.scalar(select(Customer).where(Customer.number == text))
    if c is None:
        raise NotFound(_l("客户“%(c)s”不存在。", c=text))
    return c


def _related_counts(customer_id):
    counts = {}
    for model, label in ((Contact, _l("联系人")), (Activity, _l("交往记录")),
                         (ServiceTicket, _l("客户服务")), (Document, _l("文档")),
                         (MailMessage, _l("邮件")), (ChurnWarning, _l("流失记录"))):
        counts[str(label)] = db.session.scalar(
            select(func.count()).select_from(model).where(model.customer_id == customer_id))
    return counts


def _display(customer, field):
    col = wf.merge_column(field)
    value = getattr(customer, col)
    if col in ("region_id", "level_id") and value:
        item = db.session.get(DictItem, value)
        return item.item if item else value
    if col == "manager_id" and value:
        return _user_names({value}).get(value, value)
    return "" if value is None else value


class MergeView(BaseView):
    route_base = "/customer"
    default_view = "merge"
    class_permission_name = "Import"

    @expose("/merge", methods=["GET", "POST"])
    @has_access
    @permission_name("merge")
    @html_step
    def merge(self):
        actor = current_actor()
        if not wf.can_merge(actor):
            return error_response(403, _("只有销售主管或系统管理员可以合并客户。"))
        if request.method == "POST":
            choices = {f: request.form.get(f"field_{f}", wf.SURVIVOR) for f in wf.MERGE_FIELDS}
            result = wf.merge(db.session, actor, request.form.get("survivor_id"),
                              request.form.get("merged_id"), choices,
                              confirm_lost=request.form.get("confirm_lost") == "y")
            flash(_("合并成功：客户 %(number)s 已合并到本客户。", number=result["alias"]), "success")
            return redirect(f"/customer/show/{result['survivor_id']}")
        survivor = _find_customer(request.args.get("survivor"))
        merged = _find_customer(request.args.get("merged"))
        rows = []
        if survivor and merged:
            for f in wf.MERGE_FIELDS:
                a, b = _display(survivor, f), _display(merged, f)
                rows.append({"field": f, "label": cwf.LABELS[f], "survivor": a, "merged": b,
                             "default": wf.MERGED if (a in ("", None) and b not in ("", None))
                             else wf.SURVIVOR, "same": a == b})
        return self.render_template(
            "imports/merge.html", title=_("合并客户"), survivor=survivor, merged=merged, rows=rows,
            counts=({"s": _related_counts(survivor.id), "m": _related_counts(merged.id)}
                    if survivor and merged else None),
            status_label=cwf.status_label,
            args={"survivor": request.args.get("survivor", ""),
                  "merged": request.args.get("merged", "")})


@customer_section(order=90, key="merge", title=_l("合并记录"))
def merge_section(customer, actor):
    aliases = wf.merge_history(db.session, customer.id)
    into = db.session.get(Customer, customer.merged_into_id) if customer.merged_into_id else None
    may_merge = wf.can_merge(actor) and customer.status != cwf.MERGED
    if not aliases and into is None and not may_merge:
        return None
    return Markup(render_template("imports/_customer_section.html", customer=customer,
                                  aliases=aliases, into=into, may_merge=may_merge))


def register(appbuilder):
    appbuilder.add_view(ImportView, "ImportCustomers", label=_l("导入客户"), icon="fa-upload",
                        category="Customers", href="/imports/customers")
    appbuilder.add_link("ImportContacts", label=_l("导入联系人"), href="/imports/contacts",
                        icon="fa-address-book", category="Customers")
    appbuilder.add_link("ImportJobs", label=_l("导入记录"), href="/imports/list/",
                        icon="fa-history", category="Customers")
    appbuilder.add_view_no_menu(MergeView)

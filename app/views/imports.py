"""客户管理 › 导入客户 / 导入联系人 / 导入记录, 合并客户 and the ``import`` REST resource.

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
from flask_appbuilder.api import BaseApi, protect, safe
from flask_appbuilder.security.decorators import has_access, permission_name
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from markupsafe import Markup
from sqlalchemy import func, select

from ..extensions import db
from ..models import (
    Activity, ChurnWarning, Contact, Customer, DictItem, Document, MailMessage, ServiceTicket,
)
from ..workflows import customers as cwf
from ..workflows import imports as wf
from ..workflows.actors import MANAGER, SUPERVISOR
from ..workflows.errors import DomainError, NotFound, ValidationError
from .common import api_errors, current_actor, html_errors
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


def _int(value, default=0):
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return default


def _mapping_arg(text):
    if text in (None, ""):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        raise ValidationError(_l("列对应关系必须是 JSON 对象，例如 {\"公司\": \"name\"}。"),
                              field="mapping")
    return value


def run_commit(actor, job_id, default_action, actions):
    """Commit in one transaction; on failure roll back, record it, re-raise (409)."""
    job = wf.get_job(db.session, actor, job_id)
    progress_path = _progress_path(job)
    _write_progress(progress_path, state="running", done=0, total=job.total_rows)
    try:
        job = wf.commit(db.session, actor, job.id, default_action, actions,
                        progress=lambda done, total: _write_progress(
                            progress_path, state="running", done=done, total=total))
        db.session.commit()
    except wf.ImportFailed as e:
        db.session.rollback()
        wf.mark_failed(db.session, job_id, e.message)
        db.session.commit()
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
    return [(u.id, f"{u.first_name or ''}{u.last_name or ''}" or u.username, u.username)
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
                    mapping=_mapping_arg(request.form.get("mapping")),
                    options={"default_manager_id": request.form.get("default_manager_id")})
                db.session.commit()
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
    @html_errors
    def customers(self):
        return self._upload(wf.CUSTOMER)

    @expose("/contacts", methods=["GET", "POST"])
    @has_access
    @permission_name("upload")
    @html_errors
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
        page = _int(request.args.get("page"))
        count, jobs = wf.list_jobs(db.session, actor, page=page, page_size=PAGE_SIZE)
        names = _user_names({j.created_by_fk for j in jobs})
        return self.render_template(
            "imports/list.html", title=_("导入记录"), jobs=jobs, count=count, page=page,
            pages=max(1, -(-count // PAGE_SIZE)), names=names, wf=wf)

    @expose("/<int:pk>")
    @has_access
    @permission_name("show")
    @html_errors
    def show(self, pk):
        actor = current_actor()
        job = wf.get_job(db.session, actor, pk)
        data = wf.summary(job)
        names = _user_names({job.created_by_fk})
        if job.status != wf.PREVIEW:
            return self.render_template(
                "imports/result.html", title=_("导入结果"), job=job, data=data, wf=wf,
                names=names, has_report=os.path.exists(wf.report_path(job)))
        epage, dpage = _int(request.args.get("epage")), _int(request.args.get("dpage"))
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
    @html_errors
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
        db.session.commit()
        return redirect(url_for("ImportView.show", pk=job.id))

    @expose("/<int:pk>/commit", methods=["POST"])
    @has_access
    @permission_name("commit")
    @html_errors
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
    @html_errors
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
    @html_errors
    def report(self, pk):
        return _send_report(wf.get_job(db.session, current_actor(), pk))


def _send_report(job):
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
    @html_errors
    def merge(self):
        actor = current_actor()
        if not wf.can_merge(actor):
            return error_response(403, _("只有销售主管或系统管理员可以合并客户。"))
        if request.method == "POST":
            choices = {f: request.form.get(f"field_{f}", wf.SURVIVOR) for f in wf.MERGE_FIELDS}
            result = wf.merge(db.session, actor, request.form.get("survivor_id"),
                              request.form.get("merged_id"), choices,
                              confirm_lost=request.form.get("confirm_lost") == "y")
            db.session.commit()
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


# ---- REST ----------------------------------------------------------------------------------------

class ImportApi(BaseApi):
    """``/api/v1/import``: upload → preview → commit, the result report, and merge."""

    resource_name = "import"
    class_permission_name = "Import"
    # FAB's BaseApi takes an unmapped method's *name* as its permission: map them all
    method_permission_name = {"customers": "upload", "contacts": "upload", "get": "list",
                              "report": "list", "commit": "commit", "merge": "merge"}
    allow_browser_login = True
    openapi_spec_tag = "Import"

    def _upload(self, kind):
        upload = request.files.get("file")
        if upload is None or not upload.filename:
            raise ValidationError(_l("请选择要导入的文件（multipart 字段 file）。"), field="file")
        job = wf.create_import(db.session, current_actor(), kind, upload.filename, upload.stream,
                               store_dir(), mapping=_mapping_arg(request.form.get("mapping")),
                               options={"default_manager_id":
                                        request.form.get("default_manager_id")})
        db.session.commit()
        return self.response(201, **wf.preview_json(db.session, job))

    @expose("/customers", methods=["POST"])
    @protect()
    @safe
    @permission_name("upload")
    @api_errors
    def customers(self):
        """Upload a customer file; answers the preview.
        ---
        post:
          requestBody:
            content:
              multipart/form-data:
                schema:
                  type: object
                  properties:
                    file: {type: string, format: binary}
                    mapping: {type: string, description: 'JSON {表头或列号: 字段}'}
                    default_manager_id: {type: integer}
          responses:
            201: {description: '{id, status, preview: {total, new, duplicates, errors, ...}}'}
            400: {description: bad file}
            403: {description: forbidden}
        """
        return self._upload(wf.CUSTOMER)

    @expose("/contacts", methods=["POST"])
    @protect()
    @safe
    @permission_name("upload")
    @api_errors
    def contacts(self):
        """Upload a contact file; answers the preview.
        ---
        post:
          requestBody:
            content:
              multipart/form-data:
                schema:
                  type: object
                  properties:
                    file: {type: string, format: binary}
                    mapping: {type: string}
          responses:
            201: {description: the preview}
        """
        return self._upload(wf.CONTACT)

    @expose("/<int:pk>", methods=["GET"])
    @protect()
    @safe
    @permission_name("get")
    @api_errors
    def get(self, pk):
        """The preview (status preview) or the result of an import.
        ---
        get:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer}}
          responses:
            200: {description: the import}
            404: {description: not found}
        """
        job = wf.get_job(db.session, current_actor(), pk)
        return self.response(200, **wf.preview_json(db.session, job))

    @expose("/<int:pk>/commit", methods=["POST"])
    @protect()
    @safe
    @permission_name("commit")
    @api_errors
    def commit(self, pk):
        """Commit: ``{"default_action": "skip|update|overwrite", "actions": {"12": "overwrite"}}``.
        ---
        post:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer}}
          requestBody:
            content:
              application/json:
                schema:
                  type: object
                  properties:
                    default_action: {type: string, enum: [skip, update, overwrite]}
                    actions: {type: object, additionalProperties: {type: string}}
          responses:
            200: {description: the counts}
            409: {description: "already committed, or failed (nothing written)"}
        """
        body = request.get_json(silent=True)
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise ValidationError(_l("请求体必须是 JSON 对象。"))
        actions = body.get("actions") or {}
        if not isinstance(actions, dict):
            raise ValidationError(_l("actions 必须是 {行号: 处理方式} 形式的对象。"), field="actions")
        job = run_commit(current_actor(), pk, body.get("default_action") or wf.SKIP, actions)
        out = wf.preview_json(db.session, job)
        out["report_url"] = url_for("ImportApi.report", pk=job.id)
        return self.response(200, **out)

    @expose("/<int:pk>/report", methods=["GET"])
    @protect()
    @safe
    @permission_name("get")
    @api_errors
    def report(self, pk):
        """The result report (CSV, UTF-8 with BOM: 行号, 结果, 原因, 记录).
        ---
        get:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer}}
          responses:
            200: {description: text/csv}
        """
        return _send_report(wf.get_job(db.session, current_actor(), pk))

    @expose("/merge", methods=["POST"])
    @protect()
    @safe
    @permission_name("merge")
    @api_errors
    def merge(self):
        """Merge two customers (销售主管/admin).
        ---
        post:
          requestBody:
            content:
              application/json:
                schema:
                  type: object
                  properties:
                    survivor_id: {type: integer}
                    merged_id: {type: integer}
                    fields: {type: object, additionalProperties: {type: string, enum: [survivor, merged]}}
                    confirm_lost: {type: boolean}
          responses:
            200: {description: what moved}
            403: {description: forbidden}
            409: {description: "self-merge, merged or lost customer"}
        """
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise ValidationError(_l("请求体必须是 JSON 对象。"))
        result = wf.merge(db.session, current_actor(), body.get("survivor_id"),
                          body.get("merged_id"), body.get("fields") or {},
                          confirm_lost=bool(body.get("confirm_lost")))
        db.session.commit()
        return self.response(200, **result)


def register(appbuilder):
    appbuilder.add_view(ImportView, "ImportCustomers", label=_l("导入客户"), icon="fa-upload",
                        category="Customers", href="/imports/customers")
    appbuilder.add_link("ImportContacts", label=_l("导入联系人"), href="/imports/contacts",
                        icon="fa-address-book", category="Customers")
    appbuilder.add_link("ImportJobs", label=_l("导入记录"), href="/imports/list/",
                        icon="fa-history", category="Customers")
    appbuilder.add_view_no_menu(MergeView)
    appbuilder.add_api(ImportApi)

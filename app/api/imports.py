"""``/api/v1/import``: upload → preview → commit, the result report, and merge
(the "Import" permissions of the pages; the rules in app/workflows/imports/).
``run_commit`` is shared with the HTML page (app/views/imports.py)."""
from flask import request, url_for
from flask_appbuilder import expose
from flask_appbuilder.api import BaseApi, protect
from flask_appbuilder.security.decorators import permission_name
from flask_babel import lazy_gettext as _l

from ..extensions import db
from ..views.common import current_actor
from ..views.imports import mapping_arg, run_commit, send_report, store_dir
from ..workflows import imports as wf
from ..workflows.errors import ValidationError
from .base import api_step, json_body

ORDER = 25


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
                               store_dir(), mapping=mapping_arg(request.form.get("mapping")),
                               options={"default_manager_id":
                                        request.form.get("default_manager_id")})
        return self.response(201, **wf.preview_json(db.session, job))

    @expose("/customers", methods=["POST"])
    @protect()
    @permission_name("upload")
    @api_step
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
    @permission_name("upload")
    @api_step
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
    @permission_name("get")
    @api_step
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
    @permission_name("commit")
    @api_step
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
        body = json_body() if request.get_data() else {}     # no body: the defaults
        actions = body.get("actions") or {}
        if not isinstance(actions, dict):
            raise ValidationError(_l("actions 必须是 {行号: 处理方式} 形式的对象。"), field="actions")
        job = run_commit(current_actor(), pk, body.get("default_action") or wf.SKIP, actions)
        out = wf.preview_json(db.session, job)
        out["report_url"] = url_for("ImportApi.report", pk=job.id)
        return self.response(200, **out)

    @expose("/<int:pk>/report", methods=["GET"])
    @protect()
    @permission_name("get")
    @api_step
    def report(self, pk):
        """The result report (CSV, UTF-8 with BOM: 行号, 结果, 原因, 记录).
        ---
        get:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer}}
          responses:
            200: {description: text/csv}
        """
        return send_report(wf.get_job(db.session, current_actor(), pk))

    @expose("/merge", methods=["POST"])
    @protect()
    @permission_name("merge")
    @api_step
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
        body = json_body()
        result = wf.merge(db.session, current_actor(), body.get("survivor_id"),
                          body.get("merged_id"), body.get("fields") or {},
                          confirm_lost=bool(body.get("confirm_lost")))
        return self.response(200, **result)



def register(appbuilder):
    appbuilder.add_api(ImportApi)

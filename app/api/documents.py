"""``/api/v1/document``: list, metadata, download, upload, delete, folders.

Thin like every API here (app/api/base.py): the rules are in
app/workflows/documents.py, the shared request helpers (upload names, search
criteria, sending a file) in app/views/documents.py.
"""
from flask import request
from flask_appbuilder import expose
from flask_appbuilder.api import BaseApi, protect
from flask_babel import lazy_gettext as _l

from ..extensions import db
from ..views.common import current_actor
from ..views.documents import doc_settings, search_from, send_document, too_large, upload_name
from ..workflows import documents as wf
from ..workflows.errors import ValidationError
from .base import api_step, int_arg, json_body

ORDER = 80


class DocumentApi(BaseApi):
    resource_name = "document"
    allow_browser_login = True
    openapi_spec_tag = "document"
    class_permission_name = "Document"
    method_permission_name = {"get_list": "list", "get": "list", "download": "list",
                              "folders": "list", "post": "add", "create_folder": "add",
                              "delete": "delete"}
    # before the merge (``crm init`` moves roles from these to the above)
    previous_method_permission_name = {"get_list": "get", "get": "get", "download": "get",
                                       "folders": "get", "post": "post",
                                       "create_folder": "post", "delete": "delete"}

    def create_blueprint(self, appbuilder, *args, **kwargs):
        bp = super().create_blueprint(appbuilder, *args, **kwargs)
        bp.register_error_handler(413, too_large)
        return bp

    @expose("/", methods=["GET"])
    @protect()
    @api_step
    def get_list(self):
        """Documents the caller may read, newest first. ``search``: the 快速搜索 of the
        文档管理 page (every word in the file name or the customer name; ``%``, ``_``,
        ``\\`` literal; at most 100 characters, else 400); ``tab``: all | mine (uploaded
        by me) | my_customers (of the customers I manage).
        ---
        get:
          parameters:
          - {in: query, name: search, schema: {type: string, maxLength: 100}, description: "快速搜索：文件名、客户名称（每个词都要出现）"}
          - {in: query, name: tab, schema: {type: string, enum: [all, mine, my_customers]}, description: "全部 / 我上传的 / 我的客户（缺省 all）"}
          - {in: query, name: customer_id, schema: {type: integer}}
          - {in: query, name: folder_id, schema: {type: integer}, description: 0 = root}
          - {in: query, name: name, schema: {type: string}}
          - {in: query, name: customer, schema: {type: string}}
          - {in: query, name: uploader, schema: {type: string}}
          - {in: query, name: date_from, schema: {type: string, format: date}}
          - {in: query, name: date_to, schema: {type: string, format: date}}
          - {in: query, name: page, schema: {type: integer}}
          - {in: query, name: page_size, schema: {type: integer}}
          responses:
            200: {description: "{count, result: [document]}"}
            400: {$ref: '#/components/responses/400'}
            403: {$ref: '#/components/responses/403'}
        """
        actor = current_actor()
        cfg = doc_settings()
        criteria = search_from(request.args, text_arg="search")
        if request.args.get("customer_id"):
            customer = wf.get_customer(db.session, request.args["customer_id"])
            criteria.customer_id = customer.id  # still limited to what the caller may read
        if request.args.get("folder_id") not in (None, ""):
            criteria.folder_id = int_arg(request.args, "folder_id", field="folder_id")
        page = int_arg(request.args, "page")
        size = int_arg(request.args, "page_size", 50, 1, 100)
        count, docs = wf.search(db.session, actor, criteria, page, size, cfg=cfg)
        return self.response(200, count=count, result=[wf.to_json(d) for d in docs])

    @expose("/<int:pk>", methods=["GET"])
    @protect()
    @api_step
    def get(self, pk):
        """Metadata of one document.
        ---
        get:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer}}
          responses:
            200: {description: document}
            403: {$ref: '#/components/responses/403'}
            404: {$ref: '#/components/responses/404'}
        """
        doc = wf.readable_document(db.session, current_actor(), pk, cfg=doc_settings())
        path = wf.folder_paths(wf.folders_of(db.session, doc.customer_id)).get(doc.folder_id)
        return self.response(200, result=wf.to_json(doc, path))

    @expose("/<int:pk>/download", methods=["GET"])
    @protect()
    @api_step
    def download(self, pk):
        """The content with its original name (``?inline=1`` previews PDF/images).
        ---
        get:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer}}
          - {in: query, name: inline, schema: {type: boolean}}
          responses:
            200: {description: the file}
            403: {$ref: '#/components/responses/403'}
            404: {$ref: '#/components/responses/404'}
        """
        doc = wf.readable_document(db.session, current_actor(), pk, cfg=doc_settings())
        inline = request.args.get("inline", "").lower() in ("1", "true", "yes")
        return send_document(doc, inline=inline and wf.is_previewable(doc))

    @expose("/", methods=["POST"])
    @protect()
    @api_step
    def post(self):
        """Upload one or more files (multipart/form-data).
        ---
        post:
          requestBody:
            content:
              multipart/form-data:
                schema:
                  type: object
                  properties:
                    customer_id: {type: integer}
                    folder_id: {type: integer}
                    new_folder: {type: string}
                    opportunity_id: {type: integer}
                    service_id: {type: integer}
                    file: {type: array, items: {type: string, format: binary}}
                  required: [customer_id, file]
          responses:
            201: {description: "{ids, result: [document]}"}
            400: {$ref: '#/components/responses/400'}
            403: {$ref: '#/components/responses/403'}
            413: {description: too large}
        """
        if not request.form.get("customer_id"):
            raise ValidationError(_l("请指定客户（customer_id）。"), "customer_id")
        files = [(upload_name(f), f.stream)
                 for key in ("file", "files") for f in request.files.getlist(key)
                 if f and f.filename]
        docs = wf.store(db.session, current_actor(), request.form.get("customer_id"), files,
                        folder_id=request.form.get("folder_id"),
                        opportunity_id=request.form.get("opportunity_id"),
                        service_id=request.form.get("service_id"),
                        new_folder=request.form.get("new_folder"), cfg=doc_settings())
        return self.response(201, ids=[d.id for d in docs], result=[wf.to_json(d) for d in docs])

    @expose("/<int:pk>", methods=["DELETE"])
    @protect()
    @api_step
    def delete(self, pk):
        """Delete one document version.
        ---
        delete:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer}}
          responses:
            200: {description: deleted}
            403: {$ref: '#/components/responses/403'}
            404: {$ref: '#/components/responses/404'}
        """
        wf.delete(db.session, current_actor(), pk, cfg=doc_settings())
        return self.response(200, message=str(_l("删除成功")))

    @expose("/folders", methods=["GET"])
    @protect()
    @api_step
    def folders(self):
        """Folders of a customer (``?customer_id=``).
        ---
        get:
          parameters:
          - {in: query, name: customer_id, required: true, schema: {type: integer}}
          responses:
            200: {description: "{result: [folder]}"}
        """
        actor = current_actor()
        customer = wf.get_customer(db.session, request.args.get("customer_id"))
        if not wf.can_upload(actor, customer):
            wf.require_read_customer_documents(actor, customer, cfg=doc_settings())
        folders = wf.folders_of(db.session, customer.id)
        paths = wf.folder_paths(folders)
        return self.response(200, count=len(folders),
                             result=[wf.folder_json(f, paths.get(f.id)) for f in folders])

    @expose("/folders", methods=["POST"])
    @protect()
    @api_step
    def create_folder(self):
        """Create a folder ``{customer_id, name, parent_id?}``.
        ---
        post:
          requestBody:
            content:
              application/json:
                schema:
                  type: object
                  properties:
                    customer_id: {type: integer}
                    name: {type: string}
                    parent_id: {type: integer}
          responses:
            201: {description: folder}
            409: {description: exists}
        """
        data = json_body() if request.is_json else request.form.to_dict()
        if not data.get("customer_id"):
            raise ValidationError(_l("请指定客户（customer_id）。"), "customer_id")
        folder = wf.create_folder(db.session, current_actor(), data.get("customer_id"),
                                  data.get("name"), data.get("parent_id"))
        paths = wf.folder_paths(wf.folders_of(db.session, folder.customer_id))
        return self.response(201, id=folder.id, result=wf.folder_json(folder, paths.get(folder.id)))



def register(appbuilder):
    appbuilder.add_api(DocumentApi)

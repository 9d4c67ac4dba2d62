"""文档 › 文档管理: the global document list, a customer's document browser (folders,
upload, versions), downloads/previews, the customer page section (the ``document`` REST resource: app/api/documents.py).
Thin: every rule lives in app/workflows/documents.py.
"""
import re
import unicodedata
from urllib.parse import quote

from flask import current_app, flash, redirect, render_template, request, send_file, url_for
from flask_appbuilder import BaseView, expose
from flask_appbuilder.security.decorators import has_access
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from markupsafe import Markup

from ..api.base import html_read, html_step, int_arg
from ..extensions import db
from ..workflows import documents as wf
from ..workflows.actors import EXECUTIVE, MANAGER, SUPERVISOR
from ..workflows.dates import parse_ymd
from ..workflows.errors import ValidationError
from ..workflows.names import display_name
from .common import current_actor
from .errors import error_response
from .lists import chosen_tab, list_bar
from .sections import customer_section

ORDER = 80
# One permission per function on "Document" (pages, API, menu): can_list 查看/下载,
# can_add 上传/新建文件夹, can_delete 删除 (the workflow decides whose document).
RIGHTS = {
    EXECUTIVE: [("Document", "can_list")],
    SUPERVISOR: [("Document", "can_list|can_add|can_delete")],
    MANAGER: [("Document", "can_list|can_add|can_delete")],
}
PAGE_SIZE = 50


def _customer_url(customer_id):
    return f"/customer/show/{customer_id}"


def doc_settings():
    """The documents workflow's settings, from this app's config."""
    return wf.settings(current_app.config, current_app.instance_path)


def too_large(_e):
    cfg = doc_settings()
    return error_response(413, _("上传的内容太大：一次最多 %(n)d 个文件，每个文件不超过 %(limit)s。",
                                 n=cfg.max_files, limit=wf.human_size(cfg.max_bytes)))


def _upload_limit():
    """Runs before CSRF parses the form: let uploads through up to our own limit even
    when Flask's MAX_CONTENT_LENGTH is smaller (the per-file limit is checked while
    streaming)."""
    path = request.path
    if request.method == "POST" and (
            (path.startswith("/documents/customer/") and path.endswith("/upload"))
            or path.rstrip("/") == "/api/v1/document"):
        cfg = doc_settings()
        request.max_content_length = cfg.max_bytes * cfg.max_files + wf.MB


_FILENAME_PARAM = re.compile(r'(?i)(?:^|;)\s*filename\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


def upload_name(storage):
    """The file name exactly as the client sent it.

    Werkzeug treats a backslash inside the quoted ``filename="…"`` as an escape and drops
    it, so ``..\\..\\boot.ini.txt`` arrived as ``....boot.ini.txt``. Browsers send
    backslashes literally (they percent-encode only ``"``, CR and LF), so when the raw
    header holds a backslash that raw value is used, and the documents workflow refuses
    the name (400: a name may not contain a path)."""
    raw = storage.headers.get("Content-Disposition", "") if storage.headers else ""
    m = _FILENAME_PARAM.search(raw)
    if m:
        value = m.group(1).strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if "\\" in value:
            return value
    return storage.filename


def content_disposition(doc, inline):
    """RFC 6266/5987: an ASCII fallback (``document-<id>.<ext>`` when the name has no
    ASCII letters, e.g. 采购合同.pdf) plus ``filename*=UTF-8''…`` with the exact name."""
    stem, dot, ext = doc.name.rpartition(".")
    if not dot:
        stem, ext = doc.name, ""
    ascii_stem = re.sub(r"[^A-Za-z0-9._-]+", "_",
                        unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode())
    ascii_ext = re.sub(r"[^A-Za-z0-9]+", "", ext)
    if not re.search(r"[A-Za-z0-9]", ascii_stem):
        ascii_stem = f"document-{doc.id}"
    fallback = ascii_stem + (f".{ascii_ext}" if ascii_ext else "")
    kind = "inline" if inline else "attachment"
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(doc.name, safe='')}"


def send_document(doc, inline):
    path = wf.open_blob(doc, cfg=doc_settings())
    resp = send_file(path, mimetype=doc.mime, as_attachment=not inline,
                     download_name=doc.name, conditional=True, etag=doc.sha256, max_age=0)
    resp.headers["Content-Disposition"] = content_disposition(doc, inline)
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Cache-Control"] = "private, no-cache"
    if inline and doc.mime.startswith("image/"):
        # an image opened on its own: nothing but the image may load
        resp.headers["Content-Security-Policy"] = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'"
    return resp


def search_from(args, text_arg="q", tab=None):
    """The criteria of a document list from the query string: the 快速搜索 is
    ``text_arg`` (``q`` on the page, ``search`` in the API)."""
    return wf.Search(text=args.get(text_arg, ""), tab=tab if tab is not None else args.get("tab", ""),
                     name=args.get("name", "").strip(), customer=args.get("customer", "").strip(),
                     uploader=args.get("uploader", "").strip(),
                     date_from=parse_ymd(args.get("date_from"), _l("上传日期（起）"), "date_from",
                                         required=False),
                     date_to=parse_ymd(args.get("date_to"), _l("上传日期（止）"), "date_to",
                                       required=False))


def _helpers():
    return {"human_size": wf.human_size, "user_name": display_name,
            "previewable": wf.is_previewable, "customer_url": _customer_url,
            "type_label": wf.type_label}


class DocumentView(BaseView):
    route_base = "/documents"
    default_view = "list"
    class_permission_name = "Document"
    method_permission_name = {"list": "list", "customer": "list", "download": "list",
                              "preview": "list", "upload": "add", "create_folder": "add",
                              "delete": "delete"}
    previous_method_permission_name = method_permission_name

    def create_blueprint(self, appbuilder, endpoint=None, static_folder=None):
        bp = super().create_blueprint(appbuilder, endpoint, static_folder)
        bp.register_error_handler(413, too_large)
        return bp

    @expose("/list/")
    @has_access
    @html_step
    def list(self):
        """``?q=`` 快速搜索 (file name, customer name), tabs ``?tab=all|mine|my_customers``
        (remembered per user), the detailed filters; a bad one shows its message (400)."""
        actor = current_actor()
        tab = chosen_tab("DocumentView", request.args.get("tab"), [k for k, _label in wf.TABS],
                         wf.DEFAULT_TAB)
        page = int_arg(request.args, "page")
        error, count, docs = None, 0, []
        try:
            criteria = search_from(request.args, tab=tab)
            count, docs = wf.search(db.session, actor, criteria, page, PAGE_SIZE,
                                    cfg=doc_settings())
        except ValidationError as e:
            error = e
        pages = max((count + PAGE_SIZE - 1) // PAGE_SIZE, 1)
        args = dict({k: v for k, v in request.args.items() if k != "page"}, tab=tab)
        bar = list_bar(wf.TABS, tab, request.args.get("q", ""), [_l("文件名"), _l("客户名称")])
        return self.render_template("documents/list.html", docs=docs, count=count, page=page,
                                    pages=pages, args=args, criteria=request.args, bar=bar,
                                    error=error, title=_("文档管理"), **_helpers()), \
            (400 if error else 200)

    @expose("/customer/<int:customer_id>")
    @has_access
    @html_step
    def customer(self, customer_id):
        actor = current_actor()
        cfg = doc_settings()
        customer = wf.get_customer(db.session, customer_id)
        readable = wf.can_read_documents_of(actor, customer, cfg.read_scope)
        may_upload = wf.can_upload(actor, customer)
        if not readable and not may_upload:
            wf.require_read_customer_documents(actor, customer, cfg=cfg)
        folders = wf.folders_of(db.session, customer.id)
        paths = wf.folder_paths(folders)
        tree = wf.folder_tree(folders)
        counts = wf.counts_by_folder(db.session, customer.id) if readable else {}
        selected = request.args.get("folder", "all")
        if selected not in ("all", "0") and not (selected.isdigit() and int(selected) in paths):
            selected = "all"
        docs = []
        if readable:
            docs = wf.customer_documents(
                db.session, customer.id,
                folder_id=None if selected in ("all", "0") else int(selected),
                all_folders=selected == "all", limit=1000)
        opps, tickets = wf.link_choices(db.session, customer) if may_upload else ([], [])
        return self.render_template(
            "documents/customer.html", customer=customer, folders=tree, paths=paths,
            counts=counts, docs=docs, selected=selected, readable=readable,
            may_upload=may_upload, opportunities=opps, tickets=tickets, actor=actor,
            can_delete=lambda d: wf.can_delete(actor, d, customer),
            cfg=cfg, title=_("%(name)s 的文档", name=customer.name), **_helpers())

    @expose("/customer/<int:customer_id>/upload", methods=["POST"])
    @has_access
    @html_step
    def upload(self, customer_id):
        files = [(upload_name(f), f.stream) for f in request.files.getlist("file") if f and f.filename]
        docs = wf.store(db.session, current_actor(), customer_id, files,
                        folder_id=request.form.get("folder_id"),
                        opportunity_id=request.form.get("opportunity_id"),
                        service_id=request.form.get("service_id"),
                        new_folder=request.form.get("new_folder"), cfg=doc_settings())
        flash(_("上传成功：%(names)s", names=str(_l("、")).join(
            _("%(name)s（%(detail)s）", name=d.name, detail=f"v{d.version}") for d in docs)),
              "success")
        folder = docs[0].folder_id if docs and docs[0].folder_id else "all"
        return redirect(url_for("DocumentView.customer", customer_id=customer_id, folder=folder))

    @expose("/customer/<int:customer_id>/folder", methods=["POST"])
    @has_access
    @html_step
    def create_folder(self, customer_id):
        folder = wf.create_folder(db.session, current_actor(), customer_id,
                                  request.form.get("name"), request.form.get("parent_id"))
        flash(_("文件夹“%(name)s”已创建。", name=folder.name), "success")
        return redirect(url_for("DocumentView.customer", customer_id=customer_id,
                                folder=folder.id))

    @expose("/download/<int:pk>")
    @has_access
    @html_read
    def download(self, pk):
        doc = wf.readable_document(db.session, current_actor(), pk, cfg=doc_settings())
        return send_document(doc, inline=False)

    @expose("/preview/<int:pk>")
    @has_access
    @html_read
    def preview(self, pk):
        doc = wf.readable_document(db.session, current_actor(), pk, cfg=doc_settings())
        return send_document(doc, inline=wf.is_previewable(doc))

    @expose("/delete/<int:pk>", methods=["POST"])
    @has_access
    @html_step
    def delete(self, pk):
        doc = wf.delete(db.session, current_actor(), pk, cfg=doc_settings())
        flash(_("删除成功：%(name)s（v%(v)d）", name=doc.name, v=doc.version), "success")
        nxt = request.form.get("next") or ""
        if not nxt.startswith("/") or nxt.startswith("//"):
            nxt = url_for("DocumentView.customer", customer_id=doc.customer_id)
        return redirect(nxt)


# ---- customer page section --------------------------------------------------------------

@customer_section(order=70, key="documents", title=_l("文档"))
def documents_section(customer, actor):
    cfg = doc_settings()
    readable = wf.can_read_documents_of(actor, customer, cfg.read_scope)
    may_upload = wf.can_upload(actor, customer)
    if not readable:
        return None
    counts = wf.counts_by_folder(db.session, customer.id)
    folders = wf.folders_of(db.session, customer.id)
    total = sum(counts.values())
    if not total and not folders and not may_upload:
        return None
    paths = wf.folder_paths(folders)
    docs = []
    if total:
        count, docs = wf.search(db.session, actor, wf.Search(customer_id=customer.id), 0, 10,
                                cfg=cfg)
    return Markup(render_template(
        "documents/_customer_section.html", customer=customer, docs=docs, total=total,
        folders=wf.folder_tree(folders), paths=paths, counts=counts, may_upload=may_upload,
        **_helpers()))


def register(appbuilder):
    appbuilder.add_view(DocumentView, "DocumentList", label=_l("文档管理"), icon="fa-file-text-o",
                        category="Documents")
    app = current_app._get_current_object()
    funcs = app.before_request_funcs.setdefault(None, [])
    if _upload_limit not in funcs:
        funcs.insert(0, _upload_limit)


__all__ = ["DocumentView", "documents_section"]

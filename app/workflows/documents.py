"""文档管理 rules: folders, uploads (versions, content-addressed blobs), reads, deletes.

DESIGN.md §5.6. Plain functions over a SQLAlchemy session and an ``Actor``; the
HTML views and the REST API both call them and commit afterwards.

Store layout: ``DOCUMENT_DIR/<sha[:2]>/<sha[2:4]>/<sha256>`` (the mail module reads
blobs at that path too, see ``blob_path``); uploads are first streamed into
``DOCUMENT_DIR/tmp`` while hashing and counting. A file is only moved into the store
*after* the database commit succeeded, and a blob file is only removed after the
commit that deleted its last reference — both are done by SQLAlchemy session hooks
(``after_commit`` / ``after_transaction_end``) under a file lock, so a rejected or
rolled-back upload leaves no file and no row, and a concurrent upload of the same
content never loses its file.

Rights (see docs/modules/documents.md for the reasoning):

* read (list, metadata, download, preview): with ``DOCUMENT_READ_SCOPE="restricted"``
  (default) the customer's 客户经理, 销售主管, 高管, admin and the uploader; with
  ``"customer"`` everyone who may read the customer (all staff, DESIGN §5.3);
* upload / create folders: whoever maintains the customer (its 客户经理, 销售主管, admin);
* delete: the uploader, the customer's 客户经理, admin.
"""
import codecs
import fcntl
import hashlib
import os
import re
import uuid
import zipfile
from dataclasses import dataclass
from datetime import datetime

import filetype
from flask_babel import lazy_gettext as _l
from sqlalchemy import and_, delete as sql_delete, event, false, func, or_, select, true
from sqlalchemy.orm import Session

from ..models import (Customer, Document, DocumentBlob, DocumentFolder, Opportunity,
                      ServiceTicket)
from . import events, quick_search
from .errors import Conflict, Forbidden, NotFound, ValidationError
from .names import check_file_name_chars, check_name
from .rights import can_manage_customer, can_read_customer

ENTITY = "document"
CHUNK = 64 * 1024
MB = 1024 * 1024

DEFAULT_MAX_BYTES = 20 * MB
DEFAULT_MAX_FILES = 20
DEFAULT_ALLOWED_TYPES = ("pdf", "doc", "docx", "xls", "xlsx", "ppt", "pptx",
                         "png", "jpg", "jpeg", "gif", "webp", "txt", "csv", "zip")
READ_SCOPES = ("restricted", "customer")

# extension → (content family, mime, label)
TYPES = {
    "pdf": ("pdf", "application/pdf", "PDF"),
    "doc": ("ole", "application/msword", "Word"),
    "xls": ("ole", "application/vnd.ms-excel", "Excel"),
    "ppt": ("ole", "application/vnd.ms-powerpoint", "PowerPoint"),
    "docx": ("docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
             "Word"),
    "xlsx": ("xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
             "Excel"),
    "pptx": ("pptx",
             "application/vnd.openxmlformats-officedocument.presentationml.presentation",
             "PowerPoint"),
    "png": ("png", "image/png", "PNG"),
    "jpg": ("jpg", "image/jpeg", "JPEG"),
    "jpeg": ("jpg", "image/jpeg", "JPEG"),
    "gif": ("gif", "image/gif", "GIF"),
    "webp": ("webp", "image/webp", "WebP"),
    "txt": ("text", "text/plain", "TXT"),
    "csv": ("text", "text/csv", "CSV"),
    "zip": ("zip", "application/zip", "ZIP"),
}
PREVIEW_MIMES = {"application/pdf", "image/png", "image/jpeg", "image/gif", "image/webp"}
OOXML = {"word/": "docx", "xl/": "xlsx", "ppt/": "pptx"}
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
EXECUTABLES = {"exe", "elf", "wasm", "deb", "rpm", "crx", "swf"}

NAME_MAX = 255
FOLDER_MAX = 128
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DRIVE = re.compile(r"^[A-Za-z]:")


# ---- settings ---------------------------------------------------------------------

@dataclass(frozen=True)
class Settings:
    directory: str
    max_bytes: int = DEFAULT_MAX_BYTES
    allowed: tuple = DEFAULT_ALLOWED_TYPES
    max_files: int = DEFAULT_MAX_FILES
    read_scope: str = "restricted"


def settings(config, instance_path="."):
    """The document settings from a config mapping (the caller passes app.config;
    defaults when a key is missing; no DOCUMENT_DIR: <instance_path>/documents)."""
    cfg = config
    directory = cfg.get("DOCUMENT_DIR") or os.path.join(instance_path, "documents")
    allowed = cfg.get("DOCUMENT_ALLOWED_TYPES", DEFAULT_ALLOWED_TYPES)
    if isinstance(allowed, str):
        allowed = [a for a in re.split(r"[\s,;]+", allowed) if a]
    allowed = tuple(a.lower().lstrip(".") for a in allowed if a.lower().lstrip(".") in TYPES)
    scope = cfg.get("DOCUMENT_READ_SCOPE", "restricted")
    return Settings(directory=os.path.abspath(directory),
                    max_bytes=int(cfg.get("DOCUMENT_MAX_BYTES", DEFAULT_MAX_BYTES)),
                    allowed=allowed,
                    max_files=int(cfg.get("DOCUMENT_MAX_FILES", DEFAULT_MAX_FILES)),
                    read_scope=scope if scope in READ_SCOPES else "restricted")


def blob_path(directory, sha):
    """Where the content with this sha256 lives (shared with the mail module)."""
    return os.path.join(directory, sha[:2], sha[2:4], sha)


def human_size(n):
    if n is None:
        return ""
    if n < 1024:
        return f"{n} B"
    if n < MB:
        return f"{n / 1024:.1f} KB"
    return f"{n / MB:.1f} MB"


def type_label(doc):
    """A short type name for lists (PDF, Word, Excel, PNG …)."""
    t = TYPES.get(extension(doc.name or ""))
    return t[2] if t and t[1] == doc.mime else doc.mime


def is_previewable(doc):
    return doc.mime in PREVIEW_MIMES


class TooLarge(ValidationError):
    status = 413


# ---- rights -----------------------------------------------------------------------

def can_upload(actor, customer):
    """Upload and create folders: the customer's 客户经理, 销售主管, admin."""
    return can_manage_customer(actor, customer)


def can_read_documents_of(actor, customer, scope="restricted"):
    """May the actor see *all* documents of this customer?"""
    if not can_read_customer(actor, customer):
        return False
    if scope == "customer":
        return True
    return actor.sees_all or customer.manager_id == actor.id


def can_read(actor, doc, customer, scope="restricted"):
    return (can_read_documents_of(actor, customer, scope)
            or (doc.created_by_fk == actor.id and bool(actor.roles)))


def can_delete(actor, doc, customer):
    """Delete: the uploader, the customer's 客户经理, admin."""
    return actor.is_admin or doc.created_by_fk == actor.id or customer.manager_id == actor.id


def readable_clause(actor, scope="restricted"):
    """A WHERE clause limiting Document rows to those the actor may read
    (use on a query joined to Customer)."""
    if not actor.roles:
        return false()
    if scope == "customer" or actor.sees_all:
        return true()
    return or_(Customer.manager_id == actor.id, Document.created_by_fk == actor.id)


# ---- names --------------------------------------------------------------------------

def clean_file_name(name, field="file"):
    """The original name, unchanged, or ValidationError for names with path parts."""
    if name is None or not str(name).strip():
        raise ValidationError(_l("文件名不能为空。"), field)
    name = str(name)
    if "/" in name or "\\" in name or "\x00" in name or _DRIVE.match(name):
        raise ValidationError(_l("文件名“%(name)s”不合法：文件名不能包含路径（/、\\ 或盘符）。",
                                 name=name.replace("\x00", "\\0")), field)
    if _CONTROL.search(name):
        raise ValidationError(_l("文件名不能包含控制字符。"), field)
    check_file_name_chars(name, field)  # bidi overrides (合同\u202egpj.pdf), other Cc/Cf
    if name.strip() in (".", ".."):
        raise ValidationError(_l("文件名“%(name)s”不合法。", name=name), field)
    if len(name) > NAME_MAX:
        raise ValidationError(_l("文件名太长（最多 %(n)d 个字符）。", n=NAME_MAX), field)
    return name


def extension(name):
    base = name.rsplit("/", 1)[-1]
    if "." not in base.strip("."):
        return ""
    return base.rsplit(".", 1)[-1].lower()


def clean_folder_name(name):
    name = (name or "").strip()
    if not name:
        raise ValidationError(_l("文件夹名称不能为空。"), "name")
    if "/" in name or "\\" in name or _CONTROL.search(name) or name in (".", ".."):
        raise ValidationError(_l("文件夹名称不能包含 /、\\ 或控制字符。"), "name")
    check_name(name, "name", _l("文件夹名称"))
    if len(name) > FOLDER_MAX:
        raise ValidationError(_l("文件夹名称太长（最多 %(n)d 个字符）。", n=FOLDER_MAX), "name")
    return name


# ---- lookups --------------------------------------------------------------------------

def get_customer(session, customer_id, lock=False):
    try:
        customer_id = int(customer_id)
    except (TypeError, ValueError):
        raise ValidationError(_l("请指定客户（customer_id）。"), "customer_id")
    q = select(Customer).where(Customer.id == customer_id)
    if lock:
        # serialises version numbers and folder names per customer (PostgreSQL row lock;
        # SQLite writers are serialised by the database lock anyway)
        q = q.with_for_update()
    customer = session.scalar(q)
    if customer is None:
        raise NotFound(_l("客户不存在。"))
    return customer


def get_folder(session, customer, folder_id, field="folder_id"):
    if folder_id in (None, "", 0, "0"):
        return None
    try:
        folder_id = int(folder_id)
    except (TypeError, ValueError):
        raise ValidationError(_l("文件夹编号无效。"), field)
    folder = session.get(DocumentFolder, folder_id)
    if folder is None or folder.customer_id != customer.id:
        raise ValidationError(_l("文件夹不存在或不属于该客户。"), field)
    return folder


def get_document(session, doc_id):
    try:
        doc_id = int(doc_id)
    except (TypeError, ValueError):
        raise NotFound(_l("文档不存在。"))
    doc = session.get(Document, doc_id)
    if doc is None:
        raise NotFound(_l("文档不存在。"))
    return doc


def readable_document(session, actor, doc_id, *, cfg):
    """The document if the actor may read it: NotFound (404) / Forbidden (403)."""
    doc = get_document(session, doc_id)
    customer = session.get(Customer, doc.customer_id)
    if not can_read(actor, doc, customer, cfg.read_scope):
        raise Forbidden(_l("您无权查看该客户的文档。"))
    return doc


def require_read_customer_documents(actor, customer, *, cfg):
    if not can_read_documents_of(actor, customer, cfg.read_scope):
        raise Forbidden(_l("您无权查看该客户的文档：只有该客户的客户经理、销售主管、高管和系统管理员可以查看。"))


def require_upload(actor, customer):
    if not can_upload(actor, customer):
        raise Forbidden(_l("只有该客户的客户经理、销售主管或系统管理员可以上传文档、新建文件夹。"))


def _link(session, customer, opportunity_id, service_id):
    opp_id = svc_id = None
    if opportunity_id not in (None, "", 0, "0"):
        try:
            opp = session.get(Opportunity, int(opportunity_id))
        except (TypeError, ValueError):
            opp = None
        if opp is None or not (opp.customer_id == customer.id or (
                opp.customer_id is None and opp.customer_name == customer.name)):
            raise ValidationError(_l("销售机会不存在或不属于该客户。"), "opportunity_id")
        opp_id = opp.id
    if service_id not in (None, "", 0, "0"):
        try:
            svc = session.get(ServiceTicket, int(service_id))
        except (TypeError, ValueError):
            svc = None
        if svc is None or svc.customer_id != customer.id:
            raise ValidationError(_l("服务单不存在或不属于该客户。"), "service_id")
        svc_id = svc.id
    return opp_id, svc_id


def link_choices(session, customer, limit=200):
    """(opportunities, service tickets) of a customer for the upload form (bounded)."""
    opps = session.scalars(
        select(Opportunity).where(or_(Opportunity.customer_id == customer.id,
                                      and_(Opportunity.customer_id.is_(None),
                                           Opportunity.customer_name == customer.name)))
        .order_by(Opportunity.id.desc()).limit(limit)).all()
    tickets = session.scalars(
        select(ServiceTicket).where(ServiceTicket.customer_id == customer.id)
        .order_by(ServiceTicket.id.desc()).limit(limit)).all()
    return opps, tickets


# ---- folders --------------------------------------------------------------------------

def folders_of(session, customer_id):
    return session.scalars(select(DocumentFolder).where(DocumentFolder.customer_id == customer_id)
                           .order_by(DocumentFolder.name, DocumentFolder.id)).all()


def folder_paths(folders):
    """{folder_id: "合同 / 2026"} for a customer's folders."""
    by_id = {f.id: f for f in folders}
    out = {}

    def path(f, depth=0):
        if f.id in out:
            return out[f.id]
        parent = by_id.get(f.parent_id)
        p = f.name if parent is None or depth > 50 else f"{path(parent, depth + 1)} / {f.name}"
        out[f.id] = p
        return p

    for f in folders:
        path(f)
    return out


def folder_tree(folders):
    """[(folder, depth)] in tree order."""
    children = {}
    for f in folders:
        children.setdefault(f.parent_id, []).append(f)
    out = []

    def walk(parent_id, depth):
        for f in sorted(children.get(parent_id, []), key=lambda x: (x.name, x.id)):
            out.append((f, depth))
            if depth < 50:
                walk(f.id, depth + 1)

    walk(None, 0)
    return out


def create_folder(session, actor, customer_id, name, parent_id=None):
    customer = get_customer(session, customer_id, lock=True)
    require_upload(actor, customer)
    name = clean_folder_name(name)
    parent = get_folder(session, customer, parent_id, "parent_id")
    exists = session.scalar(select(DocumentFolder.id).where(
        DocumentFolder.customer_id == customer.id,
        DocumentFolder.parent_id.is_(None) if parent is None
        else DocumentFolder.parent_id == parent.id,
        DocumentFolder.name == name))
    if exists:
        raise Conflict(_l("文件夹“%(name)s”已存在。", name=name))
    folder = DocumentFolder(customer_id=customer.id, parent_id=parent.id if parent else None,
                            name=name)
    folder.created_by_fk = folder.changed_by_fk = actor.id
    session.add(folder)
    session.flush()
    return folder


def find_or_create_folder(session, actor, customer, name, parent):
    name = clean_folder_name(name)
    existing = session.scalar(select(DocumentFolder).where(
        DocumentFolder.customer_id == customer.id,
        DocumentFolder.parent_id.is_(None) if parent is None
        else DocumentFolder.parent_id == parent.id,
        DocumentFolder.name == name))
    if existing:
        return existing
    return create_folder(session, actor, customer.id, name, parent.id if parent else None)


# ---- content checks -------------------------------------------------------------------

def _is_text(path):
    """UTF-8 (with or without BOM) or GBK text without NUL/binary control bytes."""
    for encoding in ("utf-8-sig", "gbk"):
        dec = codecs.getincrementaldecoder(encoding)()
        try:
            with open(path, "rb") as fh:
                while True:
                    chunk = fh.read(CHUNK)
                    if not chunk:
                        dec.decode(b"", final=True)
                        break
                    text = dec.decode(chunk)
                    if re.search(r"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f]", text):
                        return False
            return True
        except UnicodeDecodeError:
            continue
    return False


def sniff(path, head):
    """The content family of a file: pdf/ole/docx/xlsx/pptx/zip/png/jpg/gif/webp,
    another filetype kind (e.g. "exe"), "text", or None."""
    if head.startswith(b"%PDF-"):
        return "pdf"
    if head.startswith(OLE_MAGIC):
        return "ole"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError, ValueError):
            return "broken-zip"
        if "[Content_Types].xml" in names:
            for prefix, kind in OOXML.items():
                if any(n.startswith(prefix) for n in names):
                    return kind
        return "zip"
    kind = filetype.guess(head)
    if kind is not None:
        ext = kind.extension
        return "jpg" if ext == "jpeg" else ext
    if _is_text(path):
        return "text"
    return None


def _describe(family):
    if family in EXECUTABLES:
        return _l("可执行程序（%(kind)s）", kind=family)
    if family == "text":
        return _l("纯文本")
    if family == "ole":
        return _l("Office 97-2003 文档")
    if family in ("docx", "xlsx", "pptx"):
        return family
    if family == "broken-zip":
        return _l("已损坏的压缩包")
    if family is None:
        return _l("无法识别的二进制内容")
    return family


def check_type(name, path, head, cfg):
    """(mime) if the extension is allowed and matches the content, else ValidationError."""
    ext = extension(name)
    allowed = ", ".join(cfg.allowed)
    if not ext:
        raise ValidationError(_l("文件“%(name)s”没有扩展名，无法确定类型。允许的类型：%(allowed)s。",
                                 name=name, allowed=allowed), "file")
    if ext not in cfg.allowed:
        raise ValidationError(_l("不允许上传 .%(ext)s 类型的文件（%(name)s）。允许的类型：%(allowed)s。",
                                 ext=ext, name=name, allowed=allowed), "file")
    expected, mime, _label = TYPES[ext]
    family = sniff(path, head)
    ok = family == expected or (expected == "zip" and family in ("docx", "xlsx", "pptx"))
    if not ok:
        raise ValidationError(_l("文件“%(name)s”的内容与扩展名 .%(ext)s 不符（检测到的内容：%(kind)s），已拒绝上传。",
                                 name=name, ext=ext, kind=_describe(family)), "file")
    return mime


# ---- store ------------------------------------------------------------------------------

_PENDING_ADD = "crm_document_pending_add"      # [(tmp path, final path)]
_PENDING_DEL = "crm_document_pending_delete"   # [(sha, final path, directory)]
_PLACED = "crm_document_placed"                # [(sha, final path, directory)]


def _place(session, directory, pending):
    """Crash safety: hard-link each new blob into the store *before* the commit, so a
    committed row always has its file even if the process dies right after the
    commit (a death before the commit leaves at most an unreferenced blob file,
    never a row without its file). The temp file stays until after the commit; a
    rollback removes the links it made unless a committed row uses that content."""
    fh = _lock(directory)
    try:
        for tmp, final in pending:
            if not os.path.exists(final):
                os.makedirs(os.path.dirname(final), exist_ok=True)
                os.link(tmp, final)
                session.info.setdefault(_PLACED, []).append(
                    (os.path.basename(final), final, directory))
    finally:
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


def _unplace(session, placed):
    fh = _lock(placed[0][2])
    try:
        bind = session.get_bind(mapper=DocumentBlob.__mapper__)
        with bind.connect() as conn:
            for sha, path, _d in placed:
                alive = conn.execute(select(DocumentBlob.sha256)
                                     .where(DocumentBlob.sha256 == sha)).first()
                if alive is None:
                    _unlink(path)
    finally:
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


def _lock(directory):
    os.makedirs(directory, exist_ok=True)
    fh = open(os.path.join(directory, ".lock"), "a+")
    fcntl.flock(fh, fcntl.LOCK_EX)
    return fh


def _spool(stream, tmp_dir, max_bytes, name):
    """Copy ``stream`` into a temp file: (path, sha256, size, head)."""
    os.makedirs(tmp_dir, exist_ok=True)
    tmp = os.path.join(tmp_dir, f"{uuid.uuid4().hex}.part")
    digest = hashlib.sha256()
    size = 0
    head = b""
    try:
        with open(tmp, "wb") as out:
            while True:
                chunk = stream.read(CHUNK)
                if not chunk:
                    break
                size += len(chunk)
                if size > max_bytes:
                    raise TooLarge(_l("文件“%(name)s”太大：上限为 %(limit)s。",
                                      name=name, limit=human_size(max_bytes)), "file")
                if len(head) < 8192:
                    head += chunk[:8192 - len(head)]
                digest.update(chunk)
                out.write(chunk)
    except BaseException:
        _unlink(tmp)
        raise
    if size == 0:
        _unlink(tmp)
        raise ValidationError(_l("文件“%(name)s”是空文件，不能上传。", name=name), "file")
    return tmp, digest.hexdigest(), size, head


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def store(session, actor, customer_id, files, folder_id=None, opportunity_id=None,
          service_id=None, new_folder=None, *, cfg):
    """Upload ``files`` = [(original name, binary stream)] to a customer.

    All or nothing: the first rejected file raises (naming the file and why) and
    nothing is stored. Returns the new Document rows (flushed, not committed).
    """
    customer = get_customer(session, customer_id, lock=True)
    require_upload(actor, customer)
    files = [(n, s) for n, s in files if s is not None and (n or "") != ""] if files else []
    if not files:
        raise ValidationError(_l("请选择要上传的文件。"), "file")
    if len(files) > cfg.max_files:
        raise ValidationError(_l("一次最多上传 %(n)d 个文件。", n=cfg.max_files), "file")
    names = [clean_file_name(n) for n, _s in files]
    folder = get_folder(session, customer, folder_id)
    opp_id, svc_id = _link(session, customer, opportunity_id, service_id)
    if new_folder and str(new_folder).strip():
        folder = find_or_create_folder(session, actor, customer, new_folder, folder)

    tmp_dir = os.path.join(cfg.directory, "tmp")
    spooled = []
    try:
        for name, (_n, stream) in zip(names, files):
            tmp, sha, size, head = _spool(stream, tmp_dir, cfg.max_bytes, name)
            spooled.append(tmp)
            mime = check_type(name, tmp, head, cfg)
            spooled[-1] = (tmp, sha, size, mime, name)
        docs = []
        pending = []
        now = datetime.now()
        new_blobs = set()
        for tmp, sha, size, mime, name in spooled:
            blob = session.get(DocumentBlob, sha)
            if blob is None and sha not in new_blobs:
                session.add(DocumentBlob(sha256=sha, size=size, mime=mime, created_on=now))
                new_blobs.add(sha)
            pending.append((tmp, blob_path(cfg.directory, sha)))
            version = (session.scalar(select(func.max(Document.version)).where(
                Document.customer_id == customer.id,
                Document.folder_id.is_(None) if folder is None
                else Document.folder_id == folder.id,
                Document.name == name)) or 0) + 1
            doc = Document(customer_id=customer.id, folder_id=folder.id if folder else None,
                           opportunity_id=opp_id, service_id=svc_id, name=name,
                           version=version, sha256=sha, size=size, mime=mime)
            doc.created_by_fk = doc.changed_by_fk = actor.id
            session.add(doc)
            session.flush()
            events.record_event(session, ENTITY, doc.id, "upload", note=_note(doc, customer),
                                actor_id=actor.id)
            docs.append(doc)
        session.info.setdefault(_PENDING_ADD, []).extend(pending)
        session.flush()
        _place(session, cfg.directory, pending)
        return docs
    except BaseException:
        for item in spooled:
            _unlink(item[0] if isinstance(item, tuple) else item)
        raise


def _note(doc, customer):
    return f"{doc.name} v{doc.version} (customer {customer.number or customer.id})"


# ---- delete -----------------------------------------------------------------------------

def delete(session, actor, doc_id, *, cfg):
    """Delete one document version; the last reference also removes the blob
    (row now, file after the commit). Records a WorkflowEvent."""
    doc = get_document(session, doc_id)
    customer = session.get(Customer, doc.customer_id)
    if not can_delete(actor, doc, customer):
        raise Forbidden(_l("只有上传者、该客户的客户经理或系统管理员可以删除文档。"))
    sha, note = doc.sha256, _note(doc, customer)
    result = session.execute(sql_delete(Document).where(Document.id == doc.id)
                             .execution_options(synchronize_session=False))
    if result.rowcount != 1:
        raise Conflict(_l("文档已被删除。"))
    session.expunge(doc)
    events.record_event(session, ENTITY, doc.id, "delete", note=note, actor_id=actor.id)
    still = session.scalar(select(func.count()).select_from(Document)
                           .where(Document.sha256 == sha))
    if not still:
        session.execute(sql_delete(DocumentBlob).where(DocumentBlob.sha256 == sha)
                        .execution_options(synchronize_session=False))
        session.info.setdefault(_PENDING_DEL, []).append(
            (sha, blob_path(cfg.directory, sha), cfg.directory))
    return doc


# ---- file operations after the transaction ----------------------------------------------

@event.listens_for(Session, "after_commit")
def _after_commit(session):
    session.info.pop(_PLACED, None)
    adds = session.info.pop(_PENDING_ADD, None)
    dels = session.info.pop(_PENDING_DEL, None)
    if not adds and not dels:
        return
    if adds:
        directory = os.path.dirname(os.path.dirname(adds[0][0]))
    else:
        directory = dels[0][2]
    fh = _lock(directory)
    try:
        if dels:
            bind = session.get_bind(mapper=DocumentBlob.__mapper__)
            with bind.connect() as conn:
                for sha, path, _d in dels:
                    alive = conn.execute(select(DocumentBlob.sha256)
                                         .where(DocumentBlob.sha256 == sha)).first()
                    if alive is None:
                        _unlink(path)
        for tmp, final in adds or ():
            if os.path.exists(final):
                _unlink(tmp)
            else:
                os.makedirs(os.path.dirname(final), exist_ok=True)
                os.replace(tmp, final)
    finally:
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


@event.listens_for(Session, "after_transaction_end")
def _after_transaction_end(session, transaction):
    if transaction.parent is not None:
        return
    # anything still pending here was rolled back or abandoned: drop the temp files
    for tmp, _final in session.info.pop(_PENDING_ADD, None) or ():
        _unlink(tmp)
    session.info.pop(_PENDING_DEL, None)
    placed = session.info.pop(_PLACED, None)
    if placed:
        _unplace(session, placed)


def open_blob(doc, *, cfg):
    """Absolute path of the stored content (never shown to users)."""
    path = blob_path(cfg.directory, doc.sha256)
    if not os.path.isfile(path):
        raise NotFound(_l("文档内容缺失，请联系系统管理员从备份恢复。"))
    return path


# ---- queries -------------------------------------------------------------------------------

# 文档管理's tabs (the page remembers each user's last choice)
TABS = (("all", _l("全部")), ("mine", _l("我上传的")), ("my_customers", _l("我的客户")))
DEFAULT_TAB = "all"


def parse_tab(tab):
    """A tab key of 文档管理: empty → ``all``; unknown → ValidationError (400)."""
    keys = [k for k, _label in TABS]
    if tab in (None, ""):
        return DEFAULT_TAB
    if tab not in keys:
        raise ValidationError(_l("tab 只能是 %(keys)s 之一。", keys=", ".join(keys)), field="tab")
    return tab


def search_condition(text, dialect="postgresql"):
    """快速搜索 of the document list: every word in the file name or the customer's
    name (a query joined to Customer); None for no text."""
    return quick_search.condition([Document.name, Customer.name], text, dialect)


@dataclass
class Search:
    """The criteria of :func:`search`; ``text``: the 快速搜索 (file name, customer
    name), ``tab``: one of ``TABS`` (``mine`` uploaded by the actor, ``my_customers``
    documents of the customers the actor manages)."""
    text: str = ""
    tab: str = DEFAULT_TAB
    name: str = ""
    customer: str = ""
    uploader: str = ""
    date_from: object = None
    date_to: object = None
    customer_id: object = None
    folder_id: object = None


def _user_model():
    return Document.created_by.property.mapper.class_


def search(session, actor, criteria, page=0, page_size=50, *, cfg):
    """(count, [Document]) readable by the actor, newest first; one count + one page query
    (customer and uploader joined in)."""
    from sqlalchemy.orm import contains_eager

    User = _user_model()
    q = (select(Document).join(Customer, Customer.id == Document.customer_id)
         .join(User, User.id == Document.created_by_fk)
         .where(readable_clause(actor, cfg.read_scope)))
    text = quick_search.parse(criteria.text, field="search")
    cond = search_condition(text, quick_search.dialect_of(session))
    if cond is not None:
        q = q.where(cond)
    tab = parse_tab(criteria.tab)
    if tab == "mine":
        q = q.where(Document.created_by_fk == actor.id)
    elif tab == "my_customers":
        q = q.where(Customer.manager_id == actor.id)
    if criteria.name:
        q = q.where(Document.name.contains(criteria.name.strip(), autoescape=True))
    if criteria.customer:
        q = q.where(or_(Customer.name.contains(criteria.customer.strip(), autoescape=True),
                        Customer.number == criteria.customer.strip()))
    if criteria.uploader:
        u = criteria.uploader.strip()
        q = q.where(or_(User.username.contains(u, autoescape=True),
                        (func.coalesce(User.first_name, "") + func.coalesce(User.last_name, ""))
                        .contains(u, autoescape=True)))
    if criteria.date_from:
        q = q.where(Document.created_on >= datetime.combine(criteria.date_from, datetime.min.time()))
    if criteria.date_to:
        q = q.where(Document.created_on < datetime.combine(criteria.date_to, datetime.max.time()))
    if criteria.customer_id not in (None, ""):
        q = q.where(Document.customer_id == int(criteria.customer_id))
    if criteria.folder_id not in (None, ""):
        fid = int(criteria.folder_id)
        q = q.where(Document.folder_id.is_(None) if fid == 0 else Document.folder_id == fid)
    count = session.scalar(select(func.count()).select_from(q.subquery()))
    rows = session.scalars(
        q.options(contains_eager(Document.customer), contains_eager(Document.created_by))
        .order_by(Document.created_on.desc(), Document.id.desc())
        .limit(page_size).offset(page * page_size)).unique().all()
    return count, rows


def customer_documents(session, customer_id, folder_id=None, all_folders=False, limit=None):
    """Documents of a customer, in one folder (None = root) or all, by name then newest
    version first; the uploader is eager-loaded."""
    from sqlalchemy.orm import joinedload

    q = select(Document).where(Document.customer_id == customer_id)
    if not all_folders:
        q = q.where(Document.folder_id.is_(None) if folder_id is None
                    else Document.folder_id == folder_id)
    q = q.options(joinedload(Document.created_by)).order_by(
        Document.folder_id, Document.name, Document.version.desc())
    if limit:
        q = q.limit(limit)
    return session.scalars(q).all()


def counts_by_folder(session, customer_id):
    rows = session.execute(select(Document.folder_id, func.count())
                           .where(Document.customer_id == customer_id)
                           .group_by(Document.folder_id)).all()
    return {fid: n for fid, n in rows}


def to_json(doc, folder_path=None):
    return {
        "id": doc.id, "customer_id": doc.customer_id, "folder_id": doc.folder_id,
        "folder": folder_path, "opportunity_id": doc.opportunity_id,
        "service_id": doc.service_id, "name": doc.name, "version": doc.version,
        "size": doc.size, "mime": doc.mime, "sha256": doc.sha256,
        "uploader_id": doc.created_by_fk,
        "uploaded_on": doc.created_on.isoformat(timespec="seconds") if doc.created_on else None,
    }


def folder_json(folder, path=None):
    return {"id": folder.id, "customer_id": folder.customer_id, "parent_id": folder.parent_id,
            "name": folder.name, "path": path or folder.name}

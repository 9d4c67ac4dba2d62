"""导入客户 / 导入联系人 (bulk import from CSV/XLSX) and 合并客户 (merge two customers).

Import in two steps, both plain functions over a session + ``Actor``:

1. ``create_import`` reads the uploaded file (CSV in UTF-8, UTF-8 with BOM or
   GBK/GB18030, or XLSX), maps its columns to fields (Chinese headers of our
   forms/exports and English API field names are recognised; ``mapping``
   overrides), validates EVERY row with the customer module's own rules
   (``customers.clean`` / ``customers.clean_contact``) and finds duplicates — all
   WITHOUT writing a customer. The parsed rows, their errors and duplicates are
   staged in a small SQLite file ``<store>/<job id>/staging.sqlite3`` (streamed:
   memory does not grow with the file), and an ``ImportJob`` (status
   ``preview``) records who/when/file/counts.
2. ``commit`` applies the user's choice for duplicates (``skip`` /
   ``update`` = fill only empty fields / ``overwrite``) and writes everything in
   the caller's ONE transaction with bulk statements, chunk by chunk (numbers are
   reserved as one block via ``numbering.next_value(by=N)``). Any failure → the
   caller rolls back → nothing written (``mark_failed`` records it). A CSV report
   (UTF-8 with BOM: 行号, 结果, 原因) is written next to the staging file.

Duplicate rules (customers): same 客户编号 (incl. numbers kept as aliases after a
merge), same 营业执照注册号, same 国税登记号, or the same *normalised* name
(NFKC full-width → half-width, case, spaces and punctuation removed, and the
suffixes 股份有限公司/有限责任公司/有限公司/股份公司/公司 treated alike). Rows of the
same file that match each other are flagged too (the later ones are not imported).

``merge`` (销售主管/admin) folds one customer into another in one transaction.
"""
import codecs
import csv
import json
import os
import re
import shutil
import sqlite3
import unicodedata
from datetime import date, datetime, time
from decimal import Decimal

from flask_babel import lazy_gettext as _l
from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.exc import DBAPIError

from ..models import (
    Activity, ChurnWarning, Contact, Customer, CustomerNumberAlias, DictItem, Document,
    DocumentFolder, ImportJob, MailMessage, Opportunity, ServiceTicket,
)
from ..models.customer import CHURN_OPEN
from ..models.dictionary import LEVEL, REGION
from . import customers as cwf
from . import events, numbering, spreadsheet
from .errors import Conflict, DomainError, Forbidden, NotFound, ValidationError

CUSTOMER, CONTACT = "customer", "contact"
KINDS = (CUSTOMER, CONTACT)
PREVIEW, COMMITTED, FAILED = "preview", "committed", "failed"
STATUS_LABELS = {PREVIEW: _l("待确认"), COMMITTED: _l("已导入"), FAILED: _l("导入失败")}
KIND_LABELS = {CUSTOMER: _l("客户"), CONTACT: _l("联系人")}
SKIP, UPDATE, OVERWRITE = "skip", "update", "overwrite"
ACTIONS = (SKIP, UPDATE, OVERWRITE)
ACTION_LABELS = {SKIP: _l("跳过"), UPDATE: _l("只补充空字段"), OVERWRITE: _l("覆盖")}
OUTCOME_LABELS = {"created": _l("新建"), "updated": _l("更新"), "skipped": _l("跳过"),
                  "failed": _l("失败")}
DUP_BY_LABELS = {"number": _l("客户编号相同"), "license": _l("营业执照注册号相同"),
                 "tax": _l("国税登记号相同"), "name": _l("名称相同"),
                 "contact": _l("同一客户下姓名相同")}

CHUNK = 2000                 # rows per bulk statement / staging batch
SAMPLE = 500                 # problem rows kept in the job's report for the preview page
MAX_ROWS = 200_000
MAX_BYTES = 100 * 1024 * 1024
EXTENSIONS = ("csv", "txt", "xlsx", "xlsm")

# ---- columns ----------------------------------------------------------------------------

# field -> header texts recognised (our labels and export headers, common variants, API names)
CUSTOMER_HEADERS = {
    "number": ["客户编号", "编号", "number"],
    "name": ["名称", "客户名称", "公司名称", "单位名称", "企业名称", "name"],
    "region": ["地区", "region"],
    "manager": ["客户经理", "manager", "manager_id"],
    "level": ["客户等级", "等级", "level"],
    "satisfaction": ["客户满意度", "满意度", "satisfaction"],
    "credit": ["客户信用度", "信用度", "credit"],
    "address": ["地址", "address"],
    "zip_code": ["邮政编码", "邮编", "zip_code"],
    "phone": ["电话", "联系电话", "phone"],
    "fax": ["传真", "fax"],
    "website": ["网址", "网站", "website"],
    "license_no": ["营业执照注册号", "营业执照号", "统一社会信用代码", "license_no"],
    "legal_person": ["法人", "法定代表人", "legal_person"],
    "registered_capital": ["注册资金(万元)", "注册资金", "注册资本", "registered_capital"],
    "annual_turnover": ["年营业额", "annual_turnover"],
    "bank": ["开户银行", "bank"],
    "bank_account": ["银行帐号", "银行账号", "bank_account"],
    "local_tax_no": ["地税登记号", "local_tax_no"],
    "national_tax_no": ["国税登记号", "national_tax_no"],
    "status": ["状态", "status"],          # read, never written (status has its own workflow)
    "id": ["序号", "id"],                   # ignored
}
CONTACT_HEADERS = {
    "customer_number": ["客户编号", "customer_number", "number"],
    "customer_name": ["客户名称", "客户", "公司名称", "单位名称", "customer", "customer_name"],
    "customer_id": ["customer_id", "客户序号"],
    "name": ["姓名", "联系人", "联系人姓名", "name"],
    "gender": ["性别", "gender"],
    "position": ["职位", "职务", "position"],
    "office_phone": ["办公电话", "office_phone"],
    "mobile": ["手机", "手机号码", "mobile"],
    "email": ["电子邮件", "邮箱", "电子邮箱", "email", "e-mail"],
    "memo": ["备注", "memo"],
    "id": ["序号", "id"],
}
IGNORED_FIELDS = ("status", "id")
FIELD_LABELS = {
    CUSTOMER: dict(cwf.LABELS, manager=_l("客户经理"), number=_l("客户编号")),
    CONTACT: dict(cwf.CONTACT_LABELS, customer_number=_l("客户编号"),
                  customer_name=_l("客户名称"), customer_id=_l("客户序号"),
                  customer=_l("客户")),
}
# the columns of a template file, in order
TEMPLATE_COLUMNS = {
    CUSTOMER: ["name", "region", "manager", "level", "satisfaction", "credit", "address",
               "zip_code", "phone", "fax", "website", "license_no", "legal_person",
               "registered_capital", "annual_turnover", "bank", "bank_account",
               "local_tax_no", "national_tax_no"],
    CONTACT: ["customer_number", "customer_name", "name", "gender", "position",
              "office_phone", "mobile", "email", "memo"],
}
# customer columns written by an import (region/level/manager as ids)
CUSTOMER_COLUMNS = ("name", "region_id", "manager_id", "level_id", "satisfaction", "credit",
                    "address", "zip_code", "phone", "fax", "website", "license_no",
                    "legal_person", "registered_capital", "annual_turnover", "bank",
                    "bank_account", "local_tax_no", "national_tax_no")
MONEY_COLUMNS = ("registered_capital", "annual_turnover")


def headers_for(kind):
    return CUSTOMER_HEADERS if kind == CUSTOMER else CONTACT_HEADERS


def field_label(kind, field):
    return str(FIELD_LABELS[kind].get(field, field))


def _norm_header(text):
    text = unicodedata.normalize("NFKC", str(text or "")).strip().lower()
    return re.sub(r"[\s*]", "", text)


def auto_mapping(kind, header):
    """{column index: field} for the recognised headers."""
    known = {}
    for field, names in headers_for(kind).items():
        for n in names:
            known.setdefault(_norm_header(n), field)
    # and the labels of the interface's language: the English template's headers
    for field in TEMPLATE_COLUMNS[kind]:
        known.setdefault(_norm_header(field_label(kind, field)), field)
    out, seen = {}, set()
    for i, h in enumerate(header):
        field = known.get(_norm_header(h))
        if field and field not in seen:
            out[i] = field
            seen.add(field)
    return out


def _apply_mapping(kind, header, mapping):
    """The automatic mapping, overridden by ``mapping`` ({header text or column number
    (1-based) or index: field or "" to ignore})."""
    cols = auto_mapping(kind, header)
    if not mapping:
        return cols
    if not isinstance(mapping, dict):
        raise ValidationError(_l("列对应关系必须是 JSON 对象，例如 {\"公司\": \"name\"}。"),
                              field="mapping")
    fields = headers_for(kind)
    by_header = {_norm_header(h): i for i, h in enumerate(header)}
    for key, field in mapping.items():
        idx = by_header.get(_norm_header(key))
        if idx is None and str(key).strip().isdigit():
            idx = int(str(key).strip()) - 1
        if idx is None or not 0 <= idx < len(header):
            raise ValidationError(_l("列对应关系中的列“%(col)s”在文件中不存在。", col=key),
                                  field="mapping")
        if field in (None, ""):
            cols.pop(idx, None)
            continue
        if field not in fields:
            raise ValidationError(_l("列对应关系中的字段“%(field)s”无效。", field=field),
                                  field="mapping")
        for i, f in list(cols.items()):
            if f == field:
                del cols[i]
        cols[idx] = field
    return cols


# ---- reading files --------------------------------------------------------------------------

def detect_encoding(path):
    """'utf-8-sig' when the whole file decodes as UTF-8 (with or without BOM), else
    'gb18030' (a superset of GBK/GB2312: what Excel in China writes). Streamed."""
    dec = codecs.getincrementaldecoder("utf-8-sig")()
    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(1 << 20)
            try:
                dec.decode(chunk, final=not chunk)
            except UnicodeDecodeError:
                return "gb18030"
            if not chunk:
                return "utf-8-sig"


def _cell(value):
    if value is None:
        return ""
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d") if value.time() == time() else value.isoformat(" ")
    if isinstance(value, date):
        return value.isoformat()
    return str(value).replace("\u3000", " ").strip()


def file_format(file_name):
    ext = (file_name or "").rsplit(".", 1)[-1].lower() if "." in (file_name or "") else ""
    if ext not in EXTENSIONS:
        raise ValidationError(_l("只支持 CSV（.csv）和 Excel（.xlsx）文件。"), field="file")
    return "xlsx" if ext.startswith("xls") else "csv"


def iter_rows(path, fmt):
    """Yield (row number, [cell text]) — row 1 is the header; blank rows skipped."""
    if fmt == "xlsx":
        from openpyxl import load_workbook
        try:
            wb = load_workbook(path, read_only=True, data_only=True)
        except Exception:
            raise ValidationError(_l("无法读取这个 Excel 文件：请确认它是 .xlsx 格式且未加密。"),
                                  field="file")
        try:
            ws = wb.worksheets[0]
            for n, row in enumerate(ws.iter_rows(values_only=True), 1):
                cells = [_cell(v) for v in row]
                if any(cells):
                    yield n, cells
        finally:
            wb.close()
        return
    enc = detect_encoding(path)
    with open(path, encoding=enc, newline="") as fh:
        first = fh.readline()
        delimiter = "\t" if first.count("\t") > first.count(",") else ","
        fh.seek(0)
        try:
            for n, row in enumerate(csv.reader(fh, delimiter=delimiter), 1):
                cells = [c.replace("\u3000", " ").strip() for c in row]
                if any(cells):
                    yield n, cells
        except csv.Error:
            raise ValidationError(_l("CSV 文件格式有误（引号不匹配），无法读取。"), field="file")


# ---- normalisation (duplicate keys) -----------------------------------------------------------

_SUFFIXES = ("股份有限公司", "有限责任公司", "有限公司", "股份公司", "公司")
_PUNCT = re.compile(r"[\W_]+", re.UNICODE)


def normalize_name(name):
    """Key for duplicate names: NFKC (full-width → half-width), lower case, no spaces or
    punctuation, and 有限公司 / 有限责任公司 / (股份)有限公司 / 公司 treated alike."""
    if not name:
        return None
    s = _PUNCT.sub("", unicodedata.normalize("NFKC", str(name)).lower())
    for suffix in _SUFFIXES:
        if s.endswith(suffix) and len(s) > len(suffix):
            s = s[:-len(suffix)]
            break
    return s or None


def normalize_code(value):
    """营业执照注册号 / 国税登记号: NFKC, no spaces or dashes, upper case."""
    if not value:
        return None
    s = re.sub(r"[\s\-_]", "", unicodedata.normalize("NFKC", str(value))).upper()
    return s or None


# ---- staging (a SQLite file per import) ---------------------------------------------------------

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE rows (
    line INTEGER PRIMARY KEY, data TEXT NOT NULL, raw TEXT NOT NULL, errors TEXT, missing TEXT,
    k_number TEXT, k_license TEXT, k_tax TEXT, k_name TEXT, customer_id INTEGER,
    dup_id INTEGER, dup_by TEXT, dup_of INTEGER, blocked TEXT);
CREATE TABLE existing (id INTEGER, number TEXT, name TEXT, license TEXT, tax TEXT,
    manager_id INTEGER, status TEXT);
CREATE TABLE contacts (id INTEGER, customer_id INTEGER, k_name TEXT);
"""
_INDEXES = """
CREATE INDEX ix_rows_number ON rows (k_number, line);
CREATE INDEX ix_rows_license ON rows (k_license, line);
CREATE INDEX ix_rows_tax ON rows (k_tax, line);
CREATE INDEX ix_rows_name ON rows (k_name, line);
CREATE INDEX ix_rows_dup ON rows (dup_id, line);
CREATE INDEX ix_rows_cust ON rows (customer_id, k_name, line);
CREATE INDEX ix_ex_number ON existing (number);
CREATE INDEX ix_ex_license ON existing (license);
CREATE INDEX ix_ex_tax ON existing (tax);
CREATE INDEX ix_ex_name ON existing (name);
CREATE INDEX ix_ex_id ON existing (id);
CREATE INDEX ix_contacts ON contacts (customer_id, k_name);
"""


def _connect(path):
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-8000")   # ≤ 8 MB page cache
    return conn


def job_dir(store_dir, job_id):
    return os.path.join(store_dir, str(int(job_id)))


def _to_json(values):
    return json.dumps({k: (str(v) if isinstance(v, Decimal) else v) for k, v in values.items()},
                      ensure_ascii=False)


def _from_json(text):
    values = json.loads(text)
    for k in MONEY_COLUMNS:
        if values.get(k) is not None:
            values[k] = Decimal(values[k])
    return values


# ---- rights ----------------------------------------------------------------------------------

def can_import(actor):
    return actor.is_admin or actor.is_supervisor or actor.is_manager


def sees_all_imports(actor):
    return actor.is_admin or actor.is_supervisor


def can_merge(actor):
    return actor.is_admin or actor.is_supervisor


def get_job(session, actor, job_id):
    try:
        job = session.get(ImportJob, int(job_id))
    except (TypeError, ValueError):
        job = None
    if job is None:
        raise NotFound(_l("导入记录不存在。"))
    if not (sees_all_imports(actor) or job.created_by_fk == actor.id):
        raise Forbidden(_l("只能查看自己的导入记录。"))
    return job


def list_jobs(session, actor, page=0, page_size=20):
    q = select(ImportJob)
    if not sees_all_imports(actor):
        q = q.where(ImportJob.created_by_fk == actor.id)
    count = session.scalar(select(func.count()).select_from(q.subquery()))
    rows = session.scalars(q.order_by(ImportJob.id.desc()).limit(page_size)
                           .offset(page * page_size)).all()
    return count, rows


# ---- step 1: upload + preview ------------------------------------------------------------------

class _Lookups:
    """Dictionary items and users, read once per import (no query per row)."""

    def __init__(self, session):
        self.items = {}
        self.refs = {}
        # strong references keep these objects in the session's identity map, so the
        # session.get() calls of customers.clean() cost no query per row
        self.keep = list(session.scalars(select(DictItem).where(
            DictItem.type.in_((REGION, LEVEL)))))
        for item in self.keep:
            self.items[(item.type, item.item)] = item.id
        self.users = {}
        self.user_ids = set()
        names = {}
        users = list(session.scalars(select(cwf.User)))
        self.keep.extend(users)
        for u in users:
            self.user_ids.add(u.id)
            self.users[u.username] = u.id
            display = f"{u.first_name or ''}{u.last_name or ''}"
            if display:
                names.setdefault(display, set()).add(u.id)
        for display, ids in names.items():
            if len(ids) == 1:
                self.users.setdefault(display, next(iter(ids)))

    def user(self, text):
        """A user id for a username, a display name or a number; None when unknown."""
        if text in self.users:
            return self.users[text]
        if text.isdigit() and int(text) in self.user_ids:
            return int(text)
        return None


def _errors_of(fn, data):
    """Call a ``clean`` function field by field to collect every error: {field: message}."""
    errors = {}
    for key, value in data.items():
        try:
            fn({key: value})
        except ValidationError as e:
            errors[e.field or key] = str(e.message)
    return errors


_REF_KEYS = ("region", "region_id", "level", "level_id", "manager_id")
_ERROR_FIELD = {"manager_id": "manager", "region_id": "region", "level_id": "level"}


def _validate_customer(session, actor, look, raw, options):
    """(values, errors, missing) for one row; values are the cleaned columns."""
    data, errors = {}, {}
    for field in ("name", "address", "zip_code", "phone", "fax", "website", "license_no",
                  "legal_person", "bank", "bank_account", "local_tax_no", "national_tax_no",
                  "satisfaction", "credit", "registered_capital", "annual_turnover"):
        if raw.get(field):
            data[field] = raw[field]
    for field, type_ in (("region", REGION), ("level", LEVEL)):
        text = raw.get(field)
        if text:
            pk = look.items.get((type_, text))
            if pk is None:
                data[field] = text          # clean() says why, in the form's words
            else:
                data[f"{field}_id"] = pk
    manager = raw.get("manager")
    if manager:
        uid = look.user(manager)
        if uid is None:
            errors["manager"] = str(_l("客户经理“%(name)s”不是系统中的用户（请填写用户名或姓名）。",
                                       name=manager))
        elif not (actor.is_admin or actor.is_supervisor) and uid != actor.id:
            errors["manager"] = str(_l("客户经理只能导入自己负责的客户；客户经理一栏请留空或填写自己。"))
        else:
            data["manager_id"] = uid
    elif not (actor.is_admin or actor.is_supervisor):
        data["manager_id"] = actor.id
    elif options.get("default_manager_id"):
        data["manager_id"] = options["default_manager_id"]
    # the references (dictionary items, user) repeat from row to row: clean() checks each
    # distinct combination once; the other fields go through clean() on every row
    refs = {k: data.pop(k) for k in _REF_KEYS if k in data}
    ref_key = tuple(sorted(refs.items()))
    checked = look.refs.get(ref_key)
    if checked is None:
        try:
            checked = (cwf.clean(session, refs), {})
        except ValidationError:
            checked = ({}, _errors_of(lambda d: cwf.clean(session, d), refs))
        look.refs[ref_key] = checked
    try:
        values = dict(cwf.clean(session, data), **checked[0])
        more = checked[1]
    except ValidationError:
        values = {}
        more = dict(_errors_of(lambda d: cwf.clean(session, d), data), **checked[1])
    for k, msg in more.items():
        errors.setdefault(_ERROR_FIELD.get(k, k), msg)
    data.update(refs)
    if errors:
        given = set(data) | {f"{f}_id" for f in ("region", "level") if f in data}
        missing = [c for c in cwf.REQUIRED if c not in given
                   and (c[:-3] if c.endswith("_id") else c) not in errors]
        return None, errors, missing or None
    missing = [c for c in cwf.REQUIRED if values.get(c) in (None, "")]
    return values, None, missing or None


def _validate_contact(raw):
    data = {f: raw[f] for f in cwf.CONTACT_FIELDS if raw.get(f)}
    try:
        values = cwf.clean_contact(data, partial=True)
    except ValidationError:
        errors = _errors_of(lambda d: cwf.clean_contact(d, partial=True), data)
        missing = [f for f in cwf.CONTACT_REQUIRED if f not in data and f not in errors]
        return None, errors, missing or None
    missing = [f for f in cwf.CONTACT_REQUIRED if not values.get(f)]
    return values, None, missing or None


def create_import(session, actor, kind, file_name, source, store_dir, mapping=None,
                  options=None, progress=None):
    """Save ``source`` (a path or a binary file object), validate every row, detect
    duplicates; stage the result and record an ``ImportJob`` (status preview).
    Writes no customer or contact. The caller commits (or rolls back)."""
    if not can_import(actor):
        raise Forbidden(_l("只有客户经理、销售主管或系统管理员可以导入。"))
    if kind not in KINDS:
        raise NotFound(_l("不支持的导入类型。"))
    file_name = os.path.basename(str(file_name or "").replace("\\", "/")).strip()
    if not file_name:
        raise ValidationError(_l("请选择要导入的文件。"), field="file")
    fmt = file_format(file_name)
    options = dict(options or {})
    if options.get("default_manager_id") not in (None, ""):
        if not (actor.is_admin or actor.is_supervisor):
            options["default_manager_id"] = actor.id
        else:
            try:
                options["default_manager_id"] = cwf.clean(
                    session, {"manager_id": options["default_manager_id"]})["manager_id"]
            except ValidationError as e:
                raise ValidationError(e.message, field="default_manager_id")
    else:
        options.pop("default_manager_id", None)
    progress = progress or (lambda stage, n: None)

    job = ImportJob(kind=kind, file_name=file_name[:255], status=PREVIEW,
                    created_by_fk=actor.id, changed_by_fk=actor.id)
    session.add(job)
    session.flush()
    folder = job_dir(store_dir, job.id)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    try:
        src = os.path.join(folder, f"source.{'xlsx' if fmt == 'xlsx' else 'csv'}")
        _save(source, src)
        staging = os.path.join(folder, "staging.sqlite3")
        summary = _stage(session, actor, kind, fmt, src, staging, mapping, options, progress)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    summary["options"] = {k: v for k, v in options.items() if k == "default_manager_id"}
    # Core UPDATE: AuditMixin's ORM onupdate would take changed_by from flask.g
    session.execute(update(ImportJob).where(ImportJob.id == job.id).values(
        staged_path=staging, total_rows=summary["total"], failed_count=summary["errors"],
        report=json.dumps(summary, ensure_ascii=False), changed_on=datetime.now(),
        changed_by_fk=actor.id).execution_options(synchronize_session=False))
    session.refresh(job)
    return job


def _save(source, dest):
    size = 0
    if isinstance(source, (str, os.PathLike)):
        shutil.copyfile(source, dest)
        size = os.path.getsize(dest)
    else:
        with open(dest, "wb") as out:
            while True:
                chunk = source.read(1 << 20)
                if not chunk:
                    break
                size += len(chunk)
                if size > MAX_BYTES:
                    raise ValidationError(_l("文件太大：最多 %(n)d MB。", n=MAX_BYTES // 1048576),
                                          field="file")
                out.write(chunk)
    if size == 0:
        raise ValidationError(_l("文件是空的。"), field="file")


def _stage(session, actor, kind, fmt, src, staging, mapping, options, progress):
    conn = _connect(staging)
    try:
        conn.executescript(_SCHEMA)
        rows = iter_rows(src, fmt)
        try:
            _, header = next(rows)
        except StopIteration:
            raise ValidationError(_l("文件中没有数据。"), field="file")
        cols = _apply_mapping(kind, header, mapping)
        fields = set(cols.values())
        if kind == CUSTOMER and "name" not in fields:
            raise ValidationError(_l("文件中找不到“名称”列：请检查表头，或指定列对应关系。"),
                                  field="mapping")
        if kind == CONTACT and not fields & {"customer_number", "customer_name", "customer_id"}:
            raise ValidationError(_l("文件中找不到“客户编号”或“客户名称”列：联系人必须指明所属客户。"),
                                  field="mapping")
        if kind == CONTACT and "name" not in fields:
            raise ValidationError(_l("文件中找不到“姓名”列。"), field="mapping")
        look = _Lookups(session)
        total = 0
        batch = []
        for line, cells in rows:
            total += 1
            if total > MAX_ROWS:
                raise ValidationError(_l("一次最多导入 %(n)d 行，请分成几个文件。", n=MAX_ROWS),
                                      field="file")
            raw = {f: (cells[i] if i < len(cells) else "") for i, f in cols.items()
                   if f not in IGNORED_FIELDS}
            batch.append(_stage_row(session, actor, kind, look, line, raw, options))
            if len(batch) >= CHUNK:
                _insert_rows(conn, batch)
                batch = []
                progress("parse", total)
        _insert_rows(conn, batch)
        if total == 0:
            raise ValidationError(_l("文件中只有表头，没有数据行。"), field="file")
        conn.executescript(_INDEXES)
        if kind == CUSTOMER:
            _load_existing_customers(session, conn)
            _customer_duplicates(conn, actor)
        else:
            _load_existing_customers(session, conn)
            _resolve_contact_customers(conn, actor)
            _load_existing_contacts(session, conn)
            _contact_duplicates(conn)
        conn.execute("INSERT INTO meta VALUES ('columns', ?)", (json.dumps(
            {str(i): f for i, f in cols.items()}),))
        conn.commit()
        return _summary(session, conn, kind, header, cols, total)
    finally:
        conn.close()


def _stage_row(session, actor, kind, look, line, raw, options):
    if kind == CUSTOMER:
        values, errors, missing = _validate_customer(session, actor, look, raw, options)
        keys = (raw.get("number") or None, normalize_code(raw.get("license_no")),
                normalize_code(raw.get("national_tax_no")), normalize_name(raw.get("name")))
    else:
        values, errors, missing = _validate_contact(raw)
        keys = (raw.get("customer_number") or None, raw.get("customer_id") or None, None,
                normalize_name(raw.get("customer_name")))
    return (line, _to_json(values or {}), json.dumps(raw, ensure_ascii=False),
            json.dumps(errors, ensure_ascii=False) if errors else None,
            json.dumps(missing) if missing else None, *keys)


def _insert_rows(conn, batch):
    if batch:
        conn.executemany("INSERT INTO rows (line, data, raw, errors, missing, k_number, "
                         "k_license, k_tax, k_name) VALUES (?,?,?,?,?,?,?,?,?)", batch)


def _load_existing_customers(session, conn):
    """Stream the CRM's customers (not merged ones) and the alias numbers into staging."""
    C = Customer.__table__
    stmt = (select(C.c.id, C.c.number, C.c.name, C.c.license_no, C.c.national_tax_no,
                   C.c.manager_id, C.c.status).where(C.c.status != cwf.MERGED)
            .execution_options(yield_per=CHUNK))
    batch = []
    for r in session.execute(stmt):
        batch.append((r[0], r[1], normalize_name(r[2]), normalize_code(r[3]),
                      normalize_code(r[4]), r[5], r[6]))
        if len(batch) >= CHUNK:
            conn.executemany("INSERT INTO existing VALUES (?,?,?,?,?,?,?)", batch)
            batch = []
    A = CustomerNumberAlias.__table__
    for r in session.execute(select(A.c.number, C.c.id, C.c.manager_id, C.c.status)
                             .join(C, C.c.id == A.c.customer_id)):
        batch.append((r[1], r[0], None, None, None, r[2], r[3]))
    if batch:
        conn.executemany("INSERT INTO existing VALUES (?,?,?,?,?,?,?)", batch)


def _customer_duplicates(conn, actor):
    # 1. rows of the file matching earlier valid rows (by any key)
    for key in ("k_number", "k_license", "k_tax", "k_name"):
        conn.execute(f"""
            UPDATE rows SET dup_of = (SELECT MIN(r2.line) FROM rows r2
                WHERE r2.{key} = rows.{key} AND r2.line < rows.line AND r2.errors IS NULL)
            WHERE errors IS NULL AND dup_of IS NULL AND {key} IS NOT NULL""")
    # 2. existing customers: 客户编号 > 营业执照注册号 > 国税登记号 > 名称
    for key, col, by in (("k_number", "number", "number"), ("k_license", "license", "license"),
                         ("k_tax", "tax", "tax"), ("k_name", "name", "name")):
        conn.execute(f"""
            UPDATE rows SET dup_by = ?, dup_id = (SELECT MIN(e.id) FROM existing e
                WHERE e.{col} = rows.{key})
            WHERE dup_id IS NULL AND {key} IS NOT NULL
              AND EXISTS (SELECT 1 FROM existing e WHERE e.{col} = rows.{key})""", (by,))
    # 3. two rows updating the same existing customer: the later one is a duplicate
    conn.execute("""
        UPDATE rows SET dup_of = (SELECT MIN(r2.line) FROM rows r2
            WHERE r2.dup_id = rows.dup_id AND r2.line < rows.line AND r2.errors IS NULL)
        WHERE errors IS NULL AND dup_of IS NULL AND dup_id IS NOT NULL""")
    # 4. duplicates that can only be skipped
    conn.execute("""UPDATE rows SET blocked = 'not_normal' WHERE dup_id IN
                    (SELECT id FROM existing WHERE status != 'normal')""")
    if not (actor.is_admin or actor.is_supervisor):
        conn.execute("""UPDATE rows SET blocked = 'foreign' WHERE blocked IS NULL AND dup_id IN
                        (SELECT id FROM existing WHERE manager_id != ?)""", (actor.id,))
    _missing_to_errors(conn, "dup_id IS NULL", cwf.LABELS)


def _chunks(conn, columns, where):
    """Staged rows in chunks (keyset paging: the caller may update rows in between)."""
    last = -1
    while True:
        rows = conn.execute(f"SELECT line, {columns} FROM rows WHERE line > ? AND ({where}) "
                            f"ORDER BY line LIMIT ?", (last, CHUNK)).fetchall()
        if not rows:
            return
        yield rows
        last = rows[-1][0]


def _missing_to_errors(conn, where, labels):
    """Required fields missing: an error for the rows that would be created."""
    for chunk in _chunks(conn, "missing, errors", f"missing IS NOT NULL AND {where}"):
        updates = []
        for line, missing, old in chunk:
            errors = json.loads(old) if old else {}
            for col in json.loads(missing):
                field = col[:-3] if col.endswith("_id") else col
                errors.setdefault(field, str(_l("%(field)s不能为空。", field=labels[field])))
            updates.append((json.dumps(errors, ensure_ascii=False), line))
        conn.executemany("UPDATE rows SET errors = ? WHERE line = ?", updates)


def _resolve_contact_customers(conn, actor):
    """The customer of each contact row: by 客户编号, customer_id, else a unique name."""
    conn.execute("""UPDATE rows SET customer_id = (SELECT MIN(e.id) FROM existing e
                    WHERE e.number = rows.k_number) WHERE k_number IS NOT NULL""")
    conn.execute("""UPDATE rows SET customer_id = (SELECT MIN(e.id) FROM existing e
                    WHERE e.id = CAST(rows.k_license AS INTEGER))
                    WHERE customer_id IS NULL AND k_number IS NULL AND k_license IS NOT NULL""")
    conn.execute("""UPDATE rows SET blocked = 'ambiguous' WHERE customer_id IS NULL
                    AND k_number IS NULL AND k_license IS NULL AND k_name IS NOT NULL AND
                    (SELECT COUNT(DISTINCT e.id) FROM existing e WHERE e.name = rows.k_name) > 1""")
    conn.execute("""UPDATE rows SET customer_id = (SELECT MIN(e.id) FROM existing e
                    WHERE e.name = rows.k_name) WHERE customer_id IS NULL AND blocked IS NULL
                    AND k_number IS NULL AND k_license IS NULL AND k_name IS NOT NULL""")
    conn.execute("""UPDATE rows SET blocked = 'not_found' WHERE customer_id IS NULL
                    AND blocked IS NULL""")
    conn.execute("""UPDATE rows SET blocked = 'not_normal' WHERE blocked IS NULL AND customer_id IN
                    (SELECT id FROM existing WHERE status != 'normal')""")
    if not (actor.is_admin or actor.is_supervisor):
        conn.execute("""UPDATE rows SET blocked = 'foreign' WHERE blocked IS NULL AND customer_id IN
                        (SELECT id FROM existing WHERE manager_id != ?)""", (actor.id,))
    # contact rows re-use k_name for the contact's own name from here on
    for chunk in _chunks(conn, "data", "1 = 1"):
        conn.executemany("UPDATE rows SET k_name = ? WHERE line = ?",
                         [(normalize_name(json.loads(d).get("name")) or None, line)
                          for line, d in chunk])
    # a customer problem is an error of the row (on its customer column)
    for chunk in _chunks(conn, "blocked, errors, raw", "blocked IS NOT NULL"):
        _customer_errors(conn, chunk)


def _customer_errors(conn, chunk):
    updates = []
    for line, blocked, errors, raw in chunk:
        errs = json.loads(errors) if errors else {}
        raw = json.loads(raw)
        col = ("customer_number" if raw.get("customer_number") else
               "customer_id" if raw.get("customer_id") else "customer_name")
        who = raw.get(col) or ""
        errs[col] = str({
            "ambiguous": _l("有多个名称相同的客户“%(c)s”，请填写客户编号。", c=who),
            "not_found": _l("客户“%(c)s”不存在。", c=who) if who else _l("请填写客户编号或客户名称。"),
            "not_normal": _l("客户“%(c)s”已流失或已合并，不能导入联系人。", c=who),
            "foreign": _l("只能为自己负责的客户导入联系人。"),
        }[blocked])
        updates.append((json.dumps(errs, ensure_ascii=False), line))
    conn.executemany("UPDATE rows SET errors = ?, blocked = NULL WHERE line = ?", updates)


def _load_existing_contacts(session, conn):
    """Contacts of the customers the file refers to (chunks of ids), for duplicates."""
    ids = [r[0] for r in conn.execute("SELECT DISTINCT customer_id FROM rows "
                                      "WHERE customer_id IS NOT NULL")]
    for i in range(0, len(ids), 500):
        part = ids[i:i + 500]
        rows = session.execute(select(Contact.id, Contact.customer_id, Contact.name)
                               .where(Contact.customer_id.in_(part))).all()
        conn.executemany("INSERT INTO contacts VALUES (?,?,?)",
                         [(r[0], r[1], normalize_name(r[2])) for r in rows])


def _contact_duplicates(conn):
    conn.execute("""
        UPDATE rows SET dup_of = (SELECT MIN(r2.line) FROM rows r2 WHERE r2.errors IS NULL
            AND r2.customer_id = rows.customer_id AND r2.k_name = rows.k_name
            AND r2.line < rows.line)
        WHERE errors IS NULL AND k_name IS NOT NULL""")
    conn.execute("""
        UPDATE rows SET dup_by = 'contact', dup_id = (SELECT MIN(c.id) FROM contacts c
            WHERE c.customer_id = rows.customer_id AND c.k_name = rows.k_name)
        WHERE k_name IS NOT NULL AND EXISTS (SELECT 1 FROM contacts c
            WHERE c.customer_id = rows.customer_id AND c.k_name = rows.k_name)""")
    _missing_to_errors(conn, "dup_id IS NULL", cwf.CONTACT_LABELS)


def _summary(session, conn, kind, header, cols, total):
    one = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
    errors = one("SELECT COUNT(*) FROM rows WHERE errors IS NOT NULL")
    in_file = one("SELECT COUNT(*) FROM rows WHERE errors IS NULL AND dup_of IS NOT NULL")
    dups = one("SELECT COUNT(*) FROM rows WHERE errors IS NULL AND dup_of IS NULL "
               "AND dup_id IS NOT NULL")
    return {
        "kind": kind, "total": total, "errors": errors, "in_file_duplicates": in_file,
        "duplicates": dups, "new": total - errors - in_file - dups,
        "columns": [{"index": i, "header": h, "field": cols.get(i),
                     "label": field_label(kind, cols[i]) if i in cols else None}
                    for i, h in enumerate(header)],
    }


# ---- reading the preview ------------------------------------------------------------------------

def _open(job):
    if not job.staged_path or not os.path.exists(job.staged_path):
        raise Conflict(_l("这次导入的暂存数据已不存在，请重新上传文件。"))
    return _connect(job.staged_path)


def summary(job):
    data = json.loads(job.report) if job.report else {}
    return data


def error_rows(job, page=0, page_size=50):
    """(count, [{"row", "errors": [{"field", "label", "message"}]}]) with errors, paged."""
    conn = _open(job)
    try:
        count = conn.execute("SELECT COUNT(*) FROM rows WHERE errors IS NOT NULL").fetchone()[0]
        rows = conn.execute("SELECT line, errors FROM rows WHERE errors IS NOT NULL ORDER BY line "
                            "LIMIT ? OFFSET ?", (page_size, page * page_size)).fetchall()
    finally:
        conn.close()
    return count, [{"row": line, "errors": [
        {"field": f, "label": field_label(job.kind, f), "message": m}
        for f, m in json.loads(errs).items()]} for line, errs in rows]


def duplicate_rows(session, job, page=0, page_size=50):
    """(count, rows) of the rows matching an existing record or an earlier row of the
    file, with the existing record for comparison."""
    conn = _open(job)
    try:
        where = "errors IS NULL AND (dup_id IS NOT NULL OR dup_of IS NOT NULL)"
        count = conn.execute(f"SELECT COUNT(*) FROM rows WHERE {where}").fetchone()[0]
        rows = conn.execute(f"SELECT line, raw, dup_id, dup_by, dup_of, blocked FROM rows "
                            f"WHERE {where} ORDER BY line LIMIT ? OFFSET ?",
                            (page_size, page * page_size)).fetchall()
    finally:
        conn.close()
    ids = {r[2] for r in rows if r[2] and r[4] is None}
    model = Customer if job.kind == CUSTOMER else Contact
    found = {o.id: o for o in session.scalars(select(model).where(model.id.in_(ids)))} if ids else {}
    out = []
    for line, raw, dup_id, dup_by, dup_of, blocked in rows:
        raw = json.loads(raw)
        item = {"row": line, "name": raw.get("name"), "values": raw, "in_file_of": dup_of,
                "existing": None, "match": str(DUP_BY_LABELS.get(dup_by, "")) if dup_by else None,
                "can_update": dup_of is None and blocked is None, "blocked": None}
        if dup_of is not None:
            item["blocked"] = str(_l("与文件第 %(n)d 行是同一%(what)s，不会导入。", n=dup_of,
                                     what=KIND_LABELS[job.kind]))
        elif blocked:
            item["blocked"] = str(_BLOCKED[blocked])
        o = found.get(dup_id)
        if o is not None:
            item["existing"] = (_customer_brief(o) if job.kind == CUSTOMER else
                                {"id": o.id, "customer_id": o.customer_id, "name": o.name,
                                 **{f: getattr(o, f) for f in cwf.CONTACT_FIELDS}})
        out.append(item)
    return count, out


_BLOCKED = {
    "not_normal": _l("已有的客户不是“正常”状态（已流失），只能跳过。"),
    "foreign": _l("已有的客户属于其他客户经理，只能跳过。"),
}


def _customer_brief(c):
    return {"id": c.id, "number": c.number, "name": c.name, "status": c.status,
            "manager_id": c.manager_id, "license_no": c.license_no,
            "national_tax_no": c.national_tax_no, "phone": c.phone, "address": c.address,
            "legal_person": c.legal_person}


def preview_json(session, job, page_size=100):
    data = summary(job)
    out = {"id": job.id, "kind": job.kind, "file_name": job.file_name, "status": job.status,
           "total_rows": job.total_rows, "created_on": _iso(job.created_on),
           "created_by_id": job.created_by_fk, "committed_on": _iso(job.committed_on),
           "created": job.created_count, "updated": job.updated_count,
           "skipped": job.skipped_count, "failed": job.failed_count}
    if job.status == PREVIEW and job.staged_path and os.path.exists(job.staged_path):
        _, errs = error_rows(job, 0, page_size)
        _, dups = duplicate_rows(session, job, 0, page_size)
        out["preview"] = {k: data.get(k) for k in ("total", "new", "duplicates",
                                                    "in_file_duplicates", "errors", "columns")}
        out["preview"]["error_rows"] = errs
        out["preview"]["duplicate_rows"] = dups
    if data.get("message"):
        out["message"] = data["message"]
    return out


def _iso(value):
    return value.isoformat(timespec="seconds") if value else None


# ---- step 2: commit ------------------------------------------------------------------------------

def report_path(job):
    return os.path.join(os.path.dirname(job.staged_path or ""), "report.csv")


def _actions(default_action, actions):
    if default_action in (None, ""):
        default_action = SKIP
    if default_action not in ACTIONS:
        raise ValidationError(_l("重复记录的处理方式只能是 skip（跳过）、update（只补充空字段）"
                                 "或 overwrite（覆盖）。"), field="default_action")
    per_row = {}
    for key, value in (actions or {}).items():
        try:
            line = int(key)
        except (TypeError, ValueError):
            raise ValidationError(_l("行号“%(row)s”无效。", row=key), field="actions")
        if value not in ACTIONS:
            raise ValidationError(_l("第 %(row)d 行的处理方式无效。", row=line), field="actions")
        per_row[line] = value
    return default_action, per_row


def commit(session, actor, job_id, default_action=SKIP, actions=None, progress=None, now=None):
    """Write the staged import in the caller's transaction (all or nothing).

    ``default_action`` applies to every duplicate without an entry in ``actions``
    ({row number: action}). Returns the job with its counts. The caller commits,
    or rolls back and calls ``mark_failed``."""
    job = get_job(session, actor, job_id)
    if job.created_by_fk != actor.id and not actor.is_admin:
        raise Forbidden(_l("只有上传文件的人可以确认这次导入。"))
    if job.status != PREVIEW:
        raise Conflict(_l("这次导入的状态是“%(status)s”，不能再次确认。",
                          status=STATUS_LABELS.get(job.status, job.status)))
    default_action, per_row = _actions(default_action, actions)
    conn = _open(job)
    now = now or datetime.now().replace(microsecond=0)
    progress = progress or (lambda done, total: None)
    # compare-and-set: two clicks on 确认导入 → one import, the other 409
    events.compare_and_set(session, ImportJob, job.id, (PREVIEW,),
                           {"status": COMMITTED, "committed_on": now, "changed_on": now,
                            "changed_by_fk": actor.id},
                           _l("这次导入已被确认或正在进行，请刷新页面。"))
    tmp = report_path(job) + ".tmp"
    counts = {"created": 0, "updated": 0, "skipped": 0, "failed": 0}
    try:
        with open(tmp, "w", encoding="utf-8-sig", newline="") as fh:
            out = spreadsheet.csv_writer(fh)  # text from the file cannot become a formula
            out.writerow([_l("行号"), _l("结果"), _l("原因"), _l("记录")])
            writer = _CustomerWriter if job.kind == CUSTOMER else _ContactWriter
            writer(session, actor, job, conn, default_action, per_row, now, out, counts,
                   progress).run()
    except (DomainError, DBAPIError) as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        reason = e.message if isinstance(e, DomainError) else str(e.orig).strip().splitlines()[0]
        raise ImportFailed(_l("导入失败，没有写入任何数据：%(reason)s", reason=reason))
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    finally:
        conn.close()
    os.replace(tmp, report_path(job))
    data = summary(job)
    data["result"] = dict(counts, default_action=default_action)
    session.execute(update(ImportJob).where(ImportJob.id == job.id).values(
        created_count=counts["created"], updated_count=counts["updated"],
        skipped_count=counts["skipped"], failed_count=counts["failed"],
        report=json.dumps(data, ensure_ascii=False), changed_on=now, changed_by_fk=actor.id)
        .execution_options(synchronize_session=False))
    events.record_event(session, "import", job.id, "commit", PREVIEW, COMMITTED,
                        note=f"{job.file_name}: 新建 {counts['created']}，更新 {counts['updated']}，"
                             f"跳过 {counts['skipped']}，失败 {counts['failed']}",
                        actor_id=actor.id)
    session.flush()
    session.refresh(job)
    return job


class ImportFailed(Conflict):
    """Writing the import failed; the caller rolls back (nothing written) and calls
    ``mark_failed``."""


def mark_failed(session, job_id, message, actor_id=None):
    """After a rolled-back commit: record the failure (in a new transaction)."""
    job = session.get(ImportJob, job_id)
    if job is None:
        return
    data = summary(job)
    data["message"] = str(message)
    session.execute(update(ImportJob).where(ImportJob.id == job.id).values(
        status=FAILED, report=json.dumps(data, ensure_ascii=False), changed_on=datetime.now(),
        changed_by_fk=actor_id or job.created_by_fk).execution_options(synchronize_session=False))
    session.flush()
    session.refresh(job)


class _Writer:
    def __init__(self, session, actor, job, conn, default_action, per_row, now, out, counts,
                 progress):
        self.s, self.actor, self.job, self.conn = session, actor, job, conn
        self.default, self.per_row, self.now = default_action, per_row, now
        self.out, self.counts, self.progress = out, counts, progress
        self.privileged = actor.is_admin or actor.is_supervisor
        self.labels = {k: str(v) for k, v in OUTCOME_LABELS.items()}

    def outcome(self, line, what, reason="", record=""):
        self.counts[what] += 1
        self.out.writerow([line, self.labels[what], reason, record])

    def run(self):
        total = self.conn.execute("SELECT COUNT(*) FROM rows").fetchone()[0]
        self.prepare()
        cur = self.conn.execute("SELECT line, data, errors, dup_id, dup_of, blocked, customer_id "
                                "FROM rows ORDER BY line")
        done = 0
        while True:
            chunk = cur.fetchmany(CHUNK)
            if not chunk:
                break
            self.chunk(chunk)
            done += len(chunk)
            self.progress(done, total)

    def classify(self, row):
        """'failed'/'skipped' with a reason, or ('create'|'update'|'overwrite', None)."""
        line, data, errors, dup_id, dup_of, blocked, _ = row
        if errors:
            return "failed", "；".join(json.loads(errors).values())
        if dup_of is not None:
            return "failed", str(_l("与文件第 %(n)d 行重复，未导入。", n=dup_of))
        if dup_id is None:
            return "create", None
        if blocked:
            return "skipped", str(_BLOCKED[blocked])
        action = self.per_row.get(line, self.default)
        if action == SKIP:
            return "skipped", str(_l("与已有记录重复，按选择跳过。"))
        return action, None

    def prepare(self):
        pass


class _CustomerWriter(_Writer):
    def prepare(self):
        n = self.conn.execute("SELECT COUNT(*) FROM rows WHERE errors IS NULL AND dup_of IS NULL "
                              "AND dup_id IS NULL").fetchone()[0]
        self.day = self.now.date()
        self.next_seq = None
        if n:
            last = numbering.next_value(
                self.s, f"{numbering.PREFIX_CUSTOMER}{self.day:%Y%m%d}", by=n)
            self.next_seq = last - n + 1

    def chunk(self, rows):
        inserts, updates = [], []
        for row in rows:
            kind, reason = self.classify(row)
            if kind in ("failed", "skipped"):
                self.outcome(row[0], kind, reason)
            elif kind == "create":
                values = _from_json(row[1])
                number = numbering.format_number(numbering.PREFIX_CUSTOMER, self.day,
                                                 self.next_seq)
                self.next_seq += 1
                inserts.append(dict({c: values.get(c) for c in CUSTOMER_COLUMNS},
                                    number=number, status=cwf.NORMAL, import_id=self.job.id,
                                    created_on=self.now, changed_on=self.now,
                                    created_by_fk=self.actor.id, changed_by_fk=self.actor.id))
                self.outcome(row[0], "created", "", number)
            else:
                updates.append((row[0], kind, row[3], _from_json(row[1])))
        if inserts:
            self.s.execute(insert(Customer.__table__), inserts)
        if updates:
            self.apply_updates(updates)

    def apply_updates(self, updates):
        C = Customer.__table__
        ids = {u[2] for u in updates}
        # lock the rows; they must still be normal (and the manager's own) at write time
        current = {r.id: r for r in self.s.execute(
            select(C).where(C.c.id.in_(ids)).with_for_update())}
        groups = {}
        for line, action, cid, values in updates:
            cur = current.get(cid)
            if cur is None or cur.status != cwf.NORMAL or (
                    not self.privileged and cur.manager_id != self.actor.id):
                raise Conflict(_l("第 %(row)d 行对应的客户在导入期间被他人修改了状态或客户经理，"
                                  "导入已取消，请重新上传。", row=line))
            values = {c: v for c, v in values.items() if c in CUSTOMER_COLUMNS and v is not None}
            if not self.privileged:
                values.pop("manager_id", None)
            if action == UPDATE:
                changes = {c: v for c, v in values.items() if getattr(cur, c) in (None, "")}
            else:
                changes = {c: v for c, v in values.items() if getattr(cur, c) != v}
            if not changes:
                self.outcome(line, "skipped", str(_l("没有需要更新的字段。")), cur.number)
                continue
            groups.setdefault(tuple(sorted(changes)), []).append(dict(
                {f"v_{c}": v for c, v in changes.items()}, b_id=cid))
            self.outcome(line, "updated", str(_l("更新了：%(fields)s", fields="、".join(
                field_label(CUSTOMER, c[:-3] if c.endswith("_id") else c)
                for c in sorted(changes)))), cur.number)
        for cols, params in groups.items():
            stmt = (update(C).where(C.c.id == bindparam("b_id"))
                    .values(dict({c: bindparam(f"v_{c}") for c in cols},
                                 changed_on=self.now, changed_by_fk=self.actor.id)))
            self.s.execute(stmt, params)


class _ContactWriter(_Writer):
    def chunk(self, rows):
        inserts, updates = [], []
        todo = []
        for row in rows:
            kind, reason = self.classify(row)
            if kind in ("failed", "skipped"):
                self.outcome(row[0], kind, reason)
            else:
                todo.append((row, kind))
        # the customers must still be normal (and the manager's own) at write time
        cids = {row[6] for row, _ in todo}
        if cids:
            q = select(Customer.id).where(Customer.id.in_(cids), Customer.status == cwf.NORMAL)
            if not self.privileged:
                q = q.where(Customer.manager_id == self.actor.id)
            ok = set(self.s.scalars(q.with_for_update()))
            if ok != cids:
                raise Conflict(_l("有客户在导入期间被他人修改了状态或客户经理，导入已取消，请重新上传。"))
        for row, kind in todo:
            values = _from_json(row[1])
            if kind == "create":
                inserts.append(dict({f: values.get(f) for f in cwf.CONTACT_FIELDS},
                                    customer_id=row[6], created_on=self.now,
                                    changed_on=self.now, created_by_fk=self.actor.id,
                                    changed_by_fk=self.actor.id))
                self.outcome(row[0], "created", "", values.get("name"))
            else:
                updates.append((row[0], kind, row[3], values))
        if inserts:
            self.s.execute(insert(Contact.__table__), inserts)
        if updates:
            T = Contact.__table__
            current = {r.id: r for r in self.s.execute(
                select(T).where(T.c.id.in_({u[2] for u in updates})))}
            for line, action, pk, values in updates:
                cur = current.get(pk)
                values = {f: v for f, v in values.items() if v is not None}
                if action == UPDATE:
                    changes = {f: v for f, v in values.items() if getattr(cur, f) in (None, "")}
                else:
                    changes = {f: v for f, v in values.items() if getattr(cur, f) != v}
                if cur is None or not changes:
                    self.outcome(line, "skipped", str(_l("没有需要更新的字段。")))
                    continue
                self.s.execute(update(T).where(T.c.id == pk).values(
                    **changes, changed_on=self.now, changed_by_fk=self.actor.id))
                self.outcome(line, "updated", str(_l("更新了：%(fields)s", fields="、".join(
                    field_label(CONTACT, f) for f in sorted(changes)))), cur.name)


def template_csv(kind):
    """A UTF-8-with-BOM CSV with the Chinese headers (a file to fill in)."""
    return spreadsheet.csv_text([field_label(kind, f) for f in TEMPLATE_COLUMNS[kind]])


# ---- merge ---------------------------------------------------------------------------------------

# customer fields chosen one by one (API names; region/level/manager map to their columns)
MERGE_FIELDS = ("name", "region", "manager_id", "level", "satisfaction", "credit", "address",
                "zip_code", "phone", "fax", "website", "license_no", "legal_person",
                "registered_capital", "annual_turnover", "bank", "bank_account",
                "local_tax_no", "national_tax_no")
_MERGE_COLUMN = {"region": "region_id", "level": "level_id"}
SURVIVOR, MERGED = "survivor", "merged"
# records that follow the customer (model, label for the summary)
MOVED = ((Contact, "contacts"), (Activity, "activities"), (ServiceTicket, "services"),
         (Document, "documents"), (DocumentFolder, "folders"), (MailMessage, "mail"),
         (ChurnWarning, "churn"), (Opportunity, "opportunities"))


def merge_column(field):
    return _MERGE_COLUMN.get(field, field)


def _int_id(value, field):
    try:
        if isinstance(value, bool):
            raise ValueError
        return int(value)
    except (TypeError, ValueError):
        raise ValidationError(_l("请指定要合并的两个客户（客户序号）。"), field=field)


def merge(session, actor, survivor_id, merged_id, field_choices=None, confirm_lost=False,
          now=None):
    """Fold customer ``merged_id`` into ``survivor_id`` (one transaction, the caller
    commits). ``field_choices`` = {field: "survivor" | "merged"} (default survivor).

    Contacts, activities, service tickets, documents and folders, mail, churn
    warnings and opportunities move to the survivor; the merged customer's number
    (and the numbers already aliased to it) become aliases of the survivor, so its
    orders in the sales system count for the survivor; the merged customer keeps
    its row with status ``merged`` and ``merged_into_id``. Returns a summary dict."""
    if not can_merge(actor):
        raise Forbidden(_l("只有销售主管或系统管理员可以合并客户。"))
    sid, mid = _int_id(survivor_id, "survivor_id"), _int_id(merged_id, "merged_id")
    if sid == mid:
        raise Conflict(_l("不能把客户合并到它自己。"))
    found = {c.id: c for c in session.scalars(
        select(Customer).where(Customer.id.in_((sid, mid))).order_by(Customer.id)
        .with_for_update())}
    if sid not in found or mid not in found:
        raise NotFound(_l("客户不存在。"))
    survivor, merged = found[sid], found[mid]
    for c in (survivor, merged):
        if c.status == cwf.MERGED:
            raise Conflict(_l("客户 %(number)s %(name)s 已经合并到其他客户，不能再合并。",
                              number=c.number, name=c.name))
    if not confirm_lost:
        for c in (survivor, merged):
            if c.status == cwf.LOST:
                raise Conflict(_l("客户 %(number)s %(name)s 已流失；如确实要合并，请确认合并已流失的客户。",
                                  number=c.number, name=c.name))
    choices = field_choices or {}
    if not isinstance(choices, dict):
        raise ValidationError(_l("字段选择必须是 JSON 对象。"), field="fields")
    values = {}
    for field, choice in choices.items():
        if field not in MERGE_FIELDS:
            raise ValidationError(_l("字段“%(field)s”不能在合并时选择。",
                                     field=cwf.LABELS.get(field, field)), field="fields")
        if choice not in (SURVIVOR, MERGED):
            raise ValidationError(_l("字段“%(field)s”的取值只能是 survivor（保留客户）或 merged（被合并客户）。",
                                     field=cwf.LABELS.get(field, field)), field="fields")
        if choice == MERGED:
            col = merge_column(field)
            if getattr(merged, col) != getattr(survivor, col):
                values[col] = getattr(merged, col)
    W = ChurnWarning
    open_ = session.execute(select(W.customer_id).where(W.customer_id.in_((sid, mid)),
                                                        W.status.in_(CHURN_OPEN))).all()
    if len({r[0] for r in open_}) == 2:
        raise Conflict(_l("两个客户都有未处理的流失预警，请先处理其中一个后再合并。"))
    now = now or datetime.now().replace(microsecond=0)
    from_status, survivor_status = merged.status, survivor.status

    moved = {}
    # folders: a top-level folder with the same name as one of the survivor's is renamed
    F = DocumentFolder
    taken = set(session.scalars(select(F.name).where(F.customer_id == sid, F.parent_id.is_(None))))
    for folder in session.scalars(select(F).where(F.customer_id == mid, F.parent_id.is_(None))):
        if folder.name in taken:
            folder.name = f"{folder.name}（{merged.number}）"[:128]
    session.flush()
    for model, key in MOVED:
        result = session.execute(update(model).where(model.customer_id == mid)
                                 .values(customer_id=sid)
                                 .execution_options(synchronize_session=False))
        moved[key] = result.rowcount
    A = CustomerNumberAlias
    moved["aliases"] = session.execute(
        update(A).where(A.customer_id == mid).values(customer_id=sid, changed_on=now,
                                                     changed_by_fk=actor.id)
        .execution_options(synchronize_session=False)).rowcount
    session.add(A(number=merged.number, customer_id=sid, merged_from_id=mid,
                  note=f"{merged.name} 于 {now:%Y-%m-%d} 合并到 {survivor.number} {survivor.name}",
                  created_on=now, changed_on=now, created_by_fk=actor.id,
                  changed_by_fk=actor.id))
    events.compare_and_set(session, Customer, mid, (cwf.NORMAL, cwf.LOST),
                           {"status": cwf.MERGED, "merged_into_id": sid, "changed_on": now,
                            "changed_by_fk": actor.id},
                           _l("被合并的客户刚刚被他人修改，请刷新后再试。"))
    events.compare_and_set(session, Customer, sid, (survivor_status,),
                           dict(values, changed_on=now, changed_by_fk=actor.id),
                           _l("保留的客户刚刚被他人修改，请刷新后再试。"))
    events.record_event(session, "customer", sid, "merge", survivor_status, survivor_status,
                        note=f"合并了客户 {merged.number} {merged.name}", actor_id=actor.id)
    events.record_event(session, "customer", mid, "merged", from_status, cwf.MERGED,
                        note=f"合并到客户 {survivor.number} {survivor.name}", actor_id=actor.id)
    session.flush()
    session.expire_all()
    return {"survivor_id": sid, "merged_id": mid, "moved": moved,
            "fields": sorted(values), "alias": merged.number}


def merge_history(session, customer_id):
    """The numbers aliased to a customer (newest first) and the customers merged into it."""
    A = CustomerNumberAlias
    aliases = session.scalars(select(A).where(A.customer_id == customer_id)
                              .order_by(A.created_on.desc())).all()
    return aliases

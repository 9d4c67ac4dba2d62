"""The vocabulary of an import: kinds, statuses, duplicate choices, limits, and
the columns (Chinese headers and API field names → fields, the column mapping)."""
import re
import unicodedata

from flask_babel import lazy_gettext as _l

from ...models.imports import IMPORT_STATUS_LABELS
from .. import customers as cwf
from .. import spreadsheet
from ..errors import ValidationError

CUSTOMER, CONTACT = "customer", "contact"
KINDS = (CUSTOMER, CONTACT)
PREVIEW, COMMITTED, FAILED = "preview", "committed", "failed"
STATUS_LABELS = IMPORT_STATUS_LABELS       # the model's vocabulary (models/imports.py)
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




def template_csv(kind):
    """A UTF-8-with-BOM CSV with the Chinese headers (a file to fill in)."""
    return spreadsheet.csv_text([field_label(kind, f) for f in TEMPLATE_COLUMNS[kind]])

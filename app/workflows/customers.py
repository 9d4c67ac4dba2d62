"""客户管理 rules: customer information, contacts (联系人) and interaction records (交往记录).

DESIGN.md §4, §5.3. Plain functions over a SQLAlchemy session and an ``Actor``;
the HTML views and the REST API both call them and commit afterwards. A failing
step raises a DomainError (Chinese message) before anything is written, or the
caller rolls back, so nothing is half-written.

Rules:

* all staff read all customers;
* the customer's 客户经理, 销售主管 and admin maintain a customer (info, contacts,
  activities) — ``rights.can_manage_customer``; only a 销售主管/admin changes the
  客户经理 of a customer;
* only ``normal`` customers are changed (``lost``/``merged`` are read-only → 409); the
  update is ``UPDATE … WHERE status = 'normal'``, so it cannot slip past a
  concurrent 确认流失;
* 销售主管/admin create customers for any active user; a 客户经理 creates them for
  himself only; the 客户编号 comes from ``numbering`` (KH + date + sequence);
* the * fields of §4 are required in the form: a customer created from an
  opportunity starts incomplete, and its first edit must fill what is missing;
* contacts and activities belong to one customer for good (never moved).
"""
import re
from datetime import datetime
from decimal import Decimal, InvalidOperation
from urllib.parse import urlsplit

from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select, update

from ..models import Activity, Contact, Customer, DictItem
from ..models.dictionary import LEVEL, REGION
from ..models.customer import CUSTOMER_STATUS_LABELS
from . import dates, numbering, quick_search
from .errors import Collect, Conflict, Forbidden, NotFound, ValidationError
from .names import check_name, clean_text
from .rights import can_manage_customer

NORMAL, LOST, MERGED = "normal", "lost", "merged"
STATUS_LABELS = CUSTOMER_STATUS_LABELS         # the model's vocabulary (models/customer.py)

LABELS = {
    "id": _l("序号"), "number": _l("客户编号"), "name": _l("名称"), "region": _l("地区"),
    "region_id": _l("地区"), "manager": _l("客户经理"), "manager_id": _l("客户经理"),
    "level": _l("客户等级"), "level_id": _l("客户等级"), "satisfaction": _l("客户满意度"),
    "credit": _l("客户信用度"), "address": _l("地址"), "zip_code": _l("邮政编码"),
    "phone": _l("电话"), "fax": _l("传真"), "website": _l("网址"),
    "license_no": _l("营业执照注册号"), "legal_person": _l("法人"),
    "registered_capital": _l("注册资金(万元)"), "annual_turnover": _l("年营业额"),
    "bank": _l("开户银行"), "bank_account": _l("银行帐号"), "local_tax_no": _l("地税登记号"),
    "national_tax_no": _l("国税登记号"), "status": _l("状态"),
}
CONTACT_LABELS = {
    "id": _l("序号"), "customer_id": _l("客户"), "name": _l("姓名"), "gender": _l("性别"),
    "position": _l("职位"), "office_phone": _l("办公电话"), "mobile": _l("手机"),
    "email": _l("电子邮件"), "memo": _l("备注"),
}
ACTIVITY_LABELS = {
    "id": _l("序号"), "customer_id": _l("客户"), "date": _l("日期"), "place": _l("地点"),
    "summary": _l("概要"), "detail": _l("详细信息"), "memo": _l("备注"),
}

# customer fields a user fills in (in form order); region/level/manager are references
TEXT_FIELDS = ("name", "address", "zip_code", "phone", "fax", "website", "license_no",
               "legal_person", "bank", "bank_account", "local_tax_no", "national_tax_no")
FIELDS = ("name", "region", "manager_id", "level", "satisfaction", "credit", "address",
          "zip_code", "phone", "fax", "website", "license_no", "legal_person",
          "registered_capital", "annual_turnover", "bank", "bank_account", "local_tax_no",
          "national_tax_no")
# the * fields of DESIGN.md §4 (columns): required in the form
REQUIRED = ("name", "region_id", "manager_id", "level_id", "satisfaction", "credit",
            "address", "zip_code", "phone", "legal_person", "bank", "bank_account")
MAX_LEN = {"name": 128, "address": 255, "zip_code": 6, "phone": 32, "fax": 32,
           "website": 255, "license_no": 64, "legal_person": 64, "bank": 128,
           "bank_account": 64, "local_tax_no": 64, "national_tax_no": 64}
# keys a client may send back unchanged (a GET result PUT back), never change
SYSTEM_FIELDS = ("id", "number", "status")

CONTACT_FIELDS = ("name", "gender", "position", "office_phone", "mobile", "email", "memo")
CONTACT_REQUIRED = ("name", "gender", "position", "office_phone")
CONTACT_MAX_LEN = {"name": 64, "gender": 2, "position": 64, "office_phone": 32, "mobile": 32,
                   "email": 255, "memo": 4000}
GENDERS = ("男", "女")   # stored values; shown through Babel (GENDER_LABELS)
GENDER_LABELS = {"男": _l("男"), "女": _l("女")}

ACTIVITY_FIELDS = ("date", "place", "summary", "detail", "memo")
ACTIVITY_REQUIRED = ("date", "place", "summary", "detail")
ACTIVITY_MAX_LEN = {"place": 128, "summary": 255, "detail": 8000, "memo": 4000}

ZIP_RE = re.compile(r"^\d{6}$")
MOBILE_RE = re.compile(r"^(\+?86-?)?1[3-9]\d{9}$")
# 010-12345678, 0755-1234567, (010)12345678, 62345678, +86-10-12345678, 010-12345678-123 / 转123
LANDLINE_RE = re.compile(
    r"^((\+?86-?)?(\(0?\d{2,3}\)|0?\d{2,3}-)|0\d{2,3})?[1-9]\d{6,7}((-|转|ext\.?|#)\d{1,6})?$",
    re.IGNORECASE)
SERVICE_RE = re.compile(r"^[48]00-?\d{3}-?\d{4}$")  # 400-810-8888
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

# FAB's user model, reached through our mapping (workflows import no FAB modules)
User = Customer.manager.property.mapper.class_


def status_label(status):
    return STATUS_LABELS.get(status, status or "")


# ---- who may do what: one ``can_<step>`` / ``require_<step>`` per step ------------------
# HTML views, the REST API and (through ``may``) the templates use only these.

def can_create(actor):
    """新建客户: 客户经理 (for himself), 销售主管, admin."""
    return actor.is_admin or actor.is_supervisor or actor.is_manager


def require_create(actor):
    if not can_create(actor):
        raise Forbidden(_l("只有客户经理、销售主管或系统管理员可以新建客户。"))


def can_reassign(actor, customer=None):
    """Only 销售主管 and admin change a customer's 客户经理."""
    return actor.is_admin or actor.is_supervisor


def require_reassign(actor, customer=None):
    if not can_reassign(actor, customer):
        raise Forbidden(_l("只有销售主管或系统管理员可以更换客户经理。"))


def can_edit(actor, customer):
    """编辑客户信息 (and every write on its contacts and 交往记录): the customer's
    客户经理, 销售主管, admin — and only while the customer is ``normal``."""
    return customer.status == NORMAL and can_manage_customer(actor, customer)


def require_writable(actor, customer):
    """The actor manages the customer, and it is ``normal`` (else 403 / 409)."""
    if not can_manage_customer(actor, customer):
        raise Forbidden(_l("只有该客户的客户经理、销售主管或系统管理员可以进行此操作。"))
    if customer.status != NORMAL:
        raise _not_normal(customer)


def require_edit(actor, customer):
    require_writable(actor, customer)


# contacts and 交往记录 follow their customer: whoever may edit it maintains them
def can_add_contact(actor, customer):
    return can_edit(actor, customer)


def require_add_contact(actor, customer):
    require_writable(actor, customer)


def can_edit_contact(actor, customer, contact=None):
    return can_edit(actor, customer)


def require_edit_contact(actor, customer, contact=None):
    require_writable(actor, customer)


def can_delete_contact(actor, customer, contact=None):
    return can_edit(actor, customer)


def require_delete_contact(actor, customer, contact=None):
    require_writable(actor, customer)


def can_add_activity(actor, customer):
    return can_edit(actor, customer)


def require_add_activity(actor, customer):
    require_writable(actor, customer)


def can_edit_activity(actor, customer, activity=None):
    return can_edit(actor, customer)


def require_edit_activity(actor, customer, activity=None):
    require_writable(actor, customer)


def may(actor, customer=None):
    """The steps the actor may take on ``customer`` — the ``may`` dict of the
    templates (``may.edit``, ``may.add_contact`` …); without a customer only the
    steps that need none (``create``, ``reassign``)."""
    out = {"create": can_create(actor), "reassign": can_reassign(actor)}
    if customer is not None:
        out.update(edit=can_edit(actor, customer),
                   add_contact=can_add_contact(actor, customer),
                   edit_contact=can_edit_contact(actor, customer),
                   delete_contact=can_delete_contact(actor, customer),
                   add_activity=can_add_activity(actor, customer),
                   edit_activity=can_edit_activity(actor, customer))
    return out


def _not_normal(customer):
    return Conflict(_l("客户 %(number)s 当前状态为“%(status)s”，客户信息、联系人和交往记录只能查看，不能修改。",
                       number=customer.number, status=status_label(customer.status)))


# ---- input parsing ------------------------------------------------------------------------

def _required(label, field):
    return ValidationError(_l("%(field)s不能为空。", field=label), field=field)


def _text(data, field, labels, max_len):
    return clean_text(data.get(field), labels[field], field, max_len)


def valid_phone(value):
    v = re.sub(r"[\s\u3000]", "", value).replace("－", "-").replace("（", "(").replace("）", ")")
    return bool(MOBILE_RE.match(v) or LANDLINE_RE.match(v) or SERVICE_RE.match(v))


def check_phone(value, field, labels):
    """The phone rule of every module (customers, contacts, opportunities): a landline
    (010-12345678), a mobile (13800138000) or a 400/800 service number."""
    if value and not valid_phone(value):
        raise ValidationError(
            _l("%(field)s格式不正确：请填写固定电话（如 010-12345678）或手机号码（如 13800138000）。",
               field=labels[field]), field=field)
    return value


_phone = check_phone


def _website(value):
    if not value:
        return value
    parts = urlsplit(value)
    host = parts.hostname or ""
    if (parts.scheme.lower() not in ("http", "https") or not host or " " in value
            or not ("." in host or host == "localhost")):
        raise ValidationError(
            _l("网址格式不正确：请以 http:// 或 https:// 开头，例如 https://www.example.com。"),
            field="website")
    return value


def _int_1_5(value, field):
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        value = None
    elif isinstance(value, float) and value.is_integer():
        value = int(value)
    elif isinstance(value, str) and re.fullmatch(r"\s*\d\s*", value):
        value = int(value)
    if not isinstance(value, int) or not 1 <= value <= 5:
        raise ValidationError(_l("%(field)s必须是 1 到 5 之间的整数。", field=LABELS[field]),
                              field=field)
    return value


def _money(value, field, digits):
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        value = "x"
    try:
        d = Decimal(str(value).strip().replace(",", ""))
    except InvalidOperation:
        d = None
    if d is None or not d.is_finite() or d < 0 or d >= Decimal(10) ** digits:
        raise ValidationError(_l("%(field)s必须是不小于 0 的数字。", field=LABELS[field]),
                              field=field)
    return d.quantize(Decimal("0.01"))


def _id(value):
    if value is None or value == "" or value == "__None":
        return None
    if isinstance(value, bool):
        raise ValueError(value)
    return int(value)


def _dict_ref(session, data, field, type_):
    """``region``/``level`` as the item text (API) or ``region_id``/``level_id`` (forms)."""
    if field in data:
        text = data[field]
        if text is None or (isinstance(text, str) and not text.strip()):
            return None
        if not isinstance(text, str):
            raise ValidationError(_l("%(field)s请填写数据字典中的条目文字，例如“北京”。",
                                     field=LABELS[field]), field=field)
        item = session.scalar(select(DictItem).where(DictItem.type == type_,
                                                     DictItem.item == text.strip()))
        if item is None:
            raise ValidationError(_l("“%(text)s”不是有效的%(type)s，请从数据字典中选择。",
                                     text=text.strip(), type=type_), field=field)
        return item.id
    try:
        pk = _id(data.get(f"{field}_id"))
    except (TypeError, ValueError):
        pk = -1
    if pk is None:
        return None
    item = session.get(DictItem, pk) if pk > 0 else None
    if item is None or item.type != type_:
        raise ValidationError(_l("请从数据字典“%(type)s”中选择%(field)s。", type=type_,
                                 field=LABELS[field]), field=field)
    return item.id


def _manager(session, value):
    try:
        pk = _id(value)
    except (TypeError, ValueError):
        raise ValidationError(_l("客户经理的用户编号必须是整数。"), field="manager_id")
    if pk is None:
        return None
    user = session.get(User, pk)
    if user is None:
        raise ValidationError(_l("客户经理对应的用户不存在。"), field="manager_id")
    if not user.active:
        raise ValidationError(_l("用户“%(name)s”已停用，不能担任客户经理。", name=user.username),
                              field="manager_id")
    return user.id


def clean(session, data, current=None, complete=False):
    """Validate the customer fields present in ``data``; return {column: value}.

    Accepts ``region``/``level`` as dictionary item text or ``region_id``/``level_id``
    as item ids. ``current`` (the customer being edited) lets a client send back the
    system fields (id, number, status) unchanged.
    """
    allowed = set(FIELDS) | {"region_id", "level_id"}
    for key, value in data.items():
        if key in SYSTEM_FIELDS:
            if current is not None and value == getattr(current, key):
                continue
            msg = {"id": _l("序号由系统分配，不能填写或修改。"),
                   "number": _l("客户编号由系统自动生成，不能填写或修改。"),
                   "status": _l("客户状态不能直接修改：客户流失请通过客户流失管理确认。")}[key]
            raise ValidationError(msg, field=key)
        if key not in allowed:
            raise ValidationError(
                _l("字段“%(field)s”不能由用户填写或修改。", field=LABELS.get(key, key)), field=key)
    out = {}
    errs = Collect()          # every field is checked; all problems are reported at once
    for f in TEXT_FIELDS:
        if f in data:
            with errs:
                # 邮政编码: its format check below says what is wrong
                out[f] = _text(data, f, LABELS, 100 if f == "zip_code" else MAX_LEN[f])
    with errs:
        if out.get("name"):  # it ends up in mail and lists: no CR/LF or invisible characters
            check_name(out["name"], "name", LABELS["name"])
    with errs:
        if out.get("zip_code") and not ZIP_RE.match(out["zip_code"]):
            raise ValidationError(_l("邮政编码必须是 6 位数字，例如 100080。"), field="zip_code")
    for f in ("phone", "fax"):
        with errs:
            if out.get(f):
                _phone(out[f], f, LABELS)
    with errs:
        if out.get("website"):
            _website(out["website"])
    for f, type_ in (("region", REGION), ("level", LEVEL)):
        if f in data or f"{f}_id" in data:
            with errs:
                out[f"{f}_id"] = _dict_ref(session, data, f, type_)
    if "manager_id" in data:
        with errs:
            out["manager_id"] = _manager(session, data["manager_id"])
    for f in ("satisfaction", "credit"):
        if f in data:
            with errs:
                out[f] = _int_1_5(data[f], f)
    for f, digits in (("registered_capital", 14), ("annual_turnover", 16)):
        if f in data:
            with errs:
                out[f] = _money(data[f], f, digits)
    if complete:
        # the * fields must be filled in the resulting record; a field already
        # reported as wrong is not reported again as missing
        with errs:
            _require_complete(out, current, skip=errs.fields())
    errs.raise_any()
    return out


def _require_complete(values, current=None, skip=()):
    """The * fields must be filled in the resulting record (every missing one named)."""
    errs = Collect()
    for col in REQUIRED:
        value = values[col] if col in values else (getattr(current, col) if current else None)
        field = col[:-3] if col in ("region_id", "level_id") else col
        if (value is None or value == "") and field not in skip and col not in skip:
            with errs:
                raise _required(LABELS[field], field)
    errs.raise_any()


# ---- customers ----------------------------------------------------------------------------

def get(session, customer_id):
    try:
        customer = session.get(Customer, int(customer_id)) if customer_id is not None else None
    except (TypeError, ValueError):
        customer = None
    if customer is None:
        raise NotFound(_l("客户不存在。"))
    return customer


def _audit(actor):
    return {"changed_by_fk": actor.id, "changed_on": datetime.now()}


def create(session, actor, data):
    """A new ``normal`` customer with an automatic 客户编号 (KH + date + sequence)."""
    require_create(actor)
    if not can_reassign(actor):
        data = dict(data)
        given = data.get("manager_id")
        if given in (None, "", "__None"):
            data["manager_id"] = actor.id
        elif str(given) != str(actor.id):
            raise Forbidden(_l("客户经理只能为自己新建客户；为其他人新建请联系销售主管。"))
    values = clean(session, data, complete=True)
    customer = Customer(**values, number=numbering.next_number(session, numbering.PREFIX_CUSTOMER),
                        status=NORMAL, created_by_fk=actor.id, changed_by_fk=actor.id)
    session.add(customer)
    session.flush()
    return customer


def update_customer(session, actor, customer_id, data):
    """Edit a ``normal`` customer (its 客户经理, 销售主管, admin); the result must be complete."""
    customer = get(session, customer_id)
    require_edit(actor, customer)
    values = clean(session, data, current=customer, complete=True)
    if "manager_id" in values and values["manager_id"] != customer.manager_id:
        require_reassign(actor, customer)
    where = [Customer.id == customer.id, Customer.status == NORMAL]
    if not (actor.is_admin or actor.is_supervisor):
        where.append(Customer.manager_id == actor.id)  # still his customer at write time
    result = session.execute(update(Customer).where(*where).values(**values, **_audit(actor))
                             .execution_options(synchronize_session=False))
    if result.rowcount != 1:
        raise Conflict(_l("客户 %(number)s 的状态或客户经理刚刚被他人修改，请刷新后再试。",
                          number=customer.number))
    session.refresh(customer)
    return customer


def _lock_normal(session, customer):
    """Hold the customer row while a contact/activity is written, and make sure it is
    still ``normal`` (a concurrent 确认流失 wins or loses as a whole)."""
    row = session.execute(select(Customer.id).where(Customer.id == customer.id,
                                                    Customer.status == NORMAL)
                          .with_for_update()).first()
    if row is None:
        session.refresh(customer)
        raise _not_normal(customer)


def _check_not_moved(data, owner_id, what):
    if "customer_id" not in data:
        return
    try:
        same = _id(data["customer_id"]) == owner_id
    except (TypeError, ValueError):
        same = False
    if not same:
        raise ValidationError(_l("%(what)s属于创建它的客户，不能转移到其他客户。", what=what),
                              field="customer_id")


def owner_id_of(session, data):
    """The ``customer_id`` a new contact/activity is for (popped from ``data``):
    required, an integer, an existing customer (else ValidationError on the field)."""
    raw = data.pop("customer_id", None)
    if raw in (None, ""):
        raise ValidationError(_l("客户不能为空（customer_id）。"), field="customer_id")
    try:
        pk = _id(raw)
    except (TypeError, ValueError):
        raise ValidationError(_l("客户编号 customer_id 必须是整数。"), field="customer_id")
    if session.get(Customer, pk) is None:
        raise ValidationError(_l("客户不存在。"), field="customer_id")
    return pk


# ---- contacts -----------------------------------------------------------------------------

def contact_search_condition(text, dialect="postgresql"):
    """快速搜索 of a customer's contacts: every word in 姓名, 办公电话, 手机 or 电子邮件
    (any case, ``%``/``_``/``\\`` literal); None for no text."""
    return quick_search.condition([Contact.name, Contact.office_phone, Contact.mobile,
                                   Contact.email], text, dialect)


def contacts_of(session, customer_id, text=None):
    """The customer's contacts in the order they were added; ``text``: the 快速搜索
    (:func:`contact_search_condition`; at most 100 characters, else 400)."""
    q = select(Contact).where(Contact.customer_id == customer_id)
    cond = contact_search_condition(quick_search.parse(text, field="q"),
                                    quick_search.dialect_of(session))
    if cond is not None:
        q = q.where(cond)
    return session.scalars(q.order_by(Contact.id)).all()


def clean_contact(data, partial=False):
    for key in data:
        if key not in CONTACT_FIELDS and key not in ("id", "customer_id"):
            raise ValidationError(_l("字段“%(field)s”不能由用户填写或修改。",
                                     field=CONTACT_LABELS.get(key, key)), field=key)
    out = {}
    errs = Collect()          # every field is checked; all problems are reported at once
    for f in CONTACT_FIELDS:
        with errs:
            if f not in data:
                if not partial and f in CONTACT_REQUIRED:
                    raise _required(CONTACT_LABELS[f], f)
                continue
            v = _text(data, f, CONTACT_LABELS, CONTACT_MAX_LEN[f] if f != "gender" else 10)
            if f in CONTACT_REQUIRED and not v:
                raise _required(CONTACT_LABELS[f], f)
            out[f] = v
    with errs:
        if out.get("name"):  # shown as a mail recipient's name: no CR/LF or invisible characters
            check_name(out["name"], "name", CONTACT_LABELS["name"])
    with errs:
        if out.get("gender") and out["gender"] not in GENDERS:
            raise ValidationError(_l("性别只能是“男”或“女”。"), field="gender")
    with errs:
        if out.get("office_phone"):
            _phone(out["office_phone"], "office_phone", CONTACT_LABELS)
    with errs:
        if out.get("mobile"):
            m = re.sub(r"[\s-]", "", out["mobile"])
            if not MOBILE_RE.match(m):
                raise ValidationError(_l("手机格式不正确：应为 11 位手机号码，例如 13800138000。"),
                                      field="mobile")
    with errs:
        if out.get("email") and not EMAIL_RE.match(out["email"]):
            raise ValidationError(_l("电子邮件格式不正确，例如 zhangsan@example.com。"),
                                  field="email")
    errs.raise_any()
    return out


def get_contact(session, contact_id, customer_id=None):
    try:
        contact = session.get(Contact, int(contact_id))
    except (TypeError, ValueError):
        contact = None
    if contact is None or (customer_id is not None and contact.customer_id != int(customer_id)):
        raise NotFound(_l("联系人不存在。"))
    return contact


def add_contact(session, actor, customer_id, data):
    customer = get(session, customer_id)
    require_add_contact(actor, customer)
    _check_not_moved(data, customer.id, _l("联系人"))
    values = clean_contact(data)
    _lock_normal(session, customer)
    contact = Contact(customer_id=customer.id, **values, created_by_fk=actor.id,
                      changed_by_fk=actor.id)
    session.add(contact)
    session.flush()
    return contact


def update_contact(session, actor, contact_id, data, customer_id=None):
    contact = get_contact(session, contact_id, customer_id)
    customer = get(session, contact.customer_id)
    require_edit_contact(actor, customer, contact)
    _check_not_moved(data, customer.id, _l("联系人"))
    if "id" in data and str(data["id"]) != str(contact.id):
        raise ValidationError(_l("序号由系统分配，不能修改。"), field="id")
    values = clean_contact(data, partial=True)
    _lock_normal(session, customer)
    for k, v in values.items():
        setattr(contact, k, v)
    contact.changed_by_fk = actor.id
    session.flush()
    return contact


def delete_contact(session, actor, contact_id, customer_id=None):
    contact = get_contact(session, contact_id, customer_id)
    customer = get(session, contact.customer_id)
    require_delete_contact(actor, customer, contact)
    _lock_normal(session, customer)
    name = contact.name
    session.delete(contact)
    session.flush()
    return name


# ---- activities (交往记录) -------------------------------------------------------------------

def activities_of(session, customer_id, page=0, page_size=20):
    """(count, activities) newest first, one page."""
    where = Activity.customer_id == customer_id
    count = session.scalar(select(func.count()).select_from(Activity).where(where))
    rows = session.scalars(select(Activity).where(where)
                           .order_by(Activity.date.desc(), Activity.id.desc())
                           .limit(page_size).offset(page * page_size)).all()
    return count, rows


def clean_activity(data, partial=False):
    for key in data:
        if key not in ACTIVITY_FIELDS and key not in ("id", "customer_id"):
            raise ValidationError(_l("字段“%(field)s”不能由用户填写或修改。",
                                     field=ACTIVITY_LABELS.get(key, key)), field=key)
    out = {}
    errs = Collect()          # every field is checked; all problems are reported at once
    for f in ACTIVITY_FIELDS:
        with errs:
            if f not in data:
                if not partial and f in ACTIVITY_REQUIRED:
                    raise _required(ACTIVITY_LABELS[f], f)
                continue
            if f == "date":
                out[f] = dates.parse_ymd(data[f], ACTIVITY_LABELS[f], f)
                continue
            v = _text(data, f, ACTIVITY_LABELS, ACTIVITY_MAX_LEN[f])
            if f in ACTIVITY_REQUIRED and not v:
                raise _required(ACTIVITY_LABELS[f], f)
            out[f] = v
    errs.raise_any()
    return out


def get_activity(session, activity_id, customer_id=None):
    try:
        activity = session.get(Activity, int(activity_id))
    except (TypeError, ValueError):
        activity = None
    if activity is None or (customer_id is not None and activity.customer_id != int(customer_id)):
        raise NotFound(_l("交往记录不存在。"))
    return activity


def add_activity(session, actor, customer_id, data):
    customer = get(session, customer_id)
    require_add_activity(actor, customer)
    _check_not_moved(data, customer.id, _l("交往记录"))
    values = clean_activity(data)
    _lock_normal(session, customer)
    activity = Activity(customer_id=customer.id, **values, created_by_fk=actor.id,
                        changed_by_fk=actor.id)
    session.add(activity)
    session.flush()
    return activity


def update_activity(session, actor, activity_id, data, customer_id=None):
    """Change any field; the required ones (日期, 地点, 概要, 详细信息) never become empty."""
    activity = get_activity(session, activity_id, customer_id)
    customer = get(session, activity.customer_id)
    require_edit_activity(actor, customer, activity)
    _check_not_moved(data, customer.id, _l("交往记录"))
    if "id" in data and str(data["id"]) != str(activity.id):
        raise ValidationError(_l("序号由系统分配，不能修改。"), field="id")
    values = clean_activity(data, partial=True)
    _lock_normal(session, customer)
    for k, v in values.items():
        setattr(activity, k, v)
    activity.changed_by_fk = actor.id
    session.flush()
    return activity

"""Step 1, one row: validated with the customer module's own rules
(``customers.clean`` / ``customers.clean_contact``), references (地区, 等级, 客户经理)
looked up once per import."""

from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from ...models import (
    DictItem,
)
from ...models.dictionary import LEVEL, REGION
from .. import customers as cwf
from ..errors import ValidationError

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

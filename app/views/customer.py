"""客户管理: 客户信息 (list/search, 我的客户, the customer page, add/edit), 联系人 and
交往记录 per customer, 历史订单 on the customer page, and the ``customer``,
``contact``, ``activity`` REST resources.

Thin: every rule lives in ``app/workflows/customers.py``; this module parses
input, calls it, commits, and renders or serializes the result. The customer page
is ``/customer/show/<pk>`` (other modules link to it); after 基本信息, 联系人, 交往记录
and 历史订单 it shows the sections other modules register in ``sections.py``.
"""
from datetime import date
from decimal import Decimal

from flask import abort, flash, g, redirect, request, url_for
from flask_appbuilder import BaseView, expose
from flask_appbuilder.api import protect, safe
from flask_appbuilder.fieldwidgets import BS3TextFieldWidget, Select2Widget
from flask_appbuilder.models.sqla.filters import FilterEqual
from flask_appbuilder.models.sqla.interface import SQLAInterface
from flask_appbuilder.security.decorators import has_access, permission_name
from flask_appbuilder.widgets import ListWidget
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.orm import joinedload, noload
from wtforms import SelectField, StringField
from wtforms.validators import DataRequired

from ..extensions import db
from ..models import Activity, Contact, Customer, DictItem
from ..models.dictionary import LEVEL, REGION
from ..workflows import customers as wf
from ..workflows import dictionary as dict_wf
from ..workflows import sales as sales_wf
from ..workflows.actors import EXECUTIVE, MANAGER, SUPERVISOR
from ..workflows import opportunities as opp_wf
from ..workflows.errors import DomainError, ValidationError
from ..workflows.rights import can_manage_customer
from .common import (CrmModelRestApi, GuardedModelView, api_errors, current_actor, html_errors,
                     show_form_errors)
from .common import VIEW_CRUD
from .export import ExportMixin, export_response
from .sales import money
from .sections import render_sections

ORDER = 20

# One permission per function (pages, API, menu): can_list 查看 / can_add 新建 /
# can_edit 编辑 (/ can_delete 删除) on "Customer" (客户信息, 我的客户), "Contact" (联系人)
# and "Activity" (交往记录).
RIGHTS = {
    EXECUTIVE: [("Customer|Contact|Activity", "can_list")],
    SUPERVISOR: [("Customer|Contact|Activity", "can_list|can_add|can_edit|can_delete")],
    MANAGER: [("Customer|Contact|Activity", "can_list|can_add|can_edit|can_delete")],
}

MAX_PAGE_SIZE = 100
ORDERS_PAGE_SIZE = 10
ACTIVITIES_ON_PAGE = 10
ACTIVITIES_PAGE_SIZE = 20

LABELS = dict(wf.LABELS, operations=_l("操作"), created_on=_l("建档时间"))


def fmt_user(user):
    if user is None:
        return ""
    return f"{user.first_name or ''}{user.last_name or ''}" or user.username


def fmt_status(value):
    return Markup('<span class="crm-status crm-status-%s">%s</span>') % (
        value or "", wf.status_label(value))


def fmt_time(value):
    return value.strftime("%Y-%m-%d %H:%M") if value else ""


def _int_arg(name, default=0):
    try:
        return max(0, int(request.args.get(name, default)))
    except (TypeError, ValueError):
        return default


class CustomerInterface(SQLAInterface):
    """Lists load region, level and manager in the same query (no N+1) and never
    the contacts collection (``lazy="selectin"`` on the model)."""

    eager = True

    def __init__(self, obj, session=None, eager=True):
        super().__init__(obj, session)
        self.eager = eager

    def apply_all(self, query, *args, **kwargs):
        query = super().apply_all(query, *args, **kwargs)
        if self.obj is not Customer:  # FAB builds related interfaces with this class too
            return query
        opts = [noload(Customer.contacts)]
        if self.eager:
            opts += [joinedload(Customer.region), joinedload(Customer.level),
                     joinedload(Customer.manager)]
        return query.options(*opts)


# ---- 客户信息: list / show / add / edit ------------------------------------------------------

class CustomerListWidget(ListWidget):
    """FAB's list; the name links to the customer page, the edit icon is shown only
    where the user may edit (the server checks again on every write)."""

    template = "customer/list_widget.html"

    def __call__(self, **kwargs):
        actor = current_actor()

        def row_can_edit(row):
            manager = row.get("manager")
            return row.get("status") == wf.NORMAL and (
                actor.is_admin or actor.is_supervisor
                or (manager is not None and manager.id == actor.id))
        kwargs["row_can_edit"] = row_can_edit
        return super().__call__(**kwargs)


def _readonly(label):
    return StringField(label, widget=BS3TextFieldWidget(), render_kw={"readonly": True})


def _int_or_none(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _score_field(label):
    return SelectField(label, choices=[("", _l("请选择"))] + [(str(i), str(i)) for i in range(1, 6)],
                       coerce=_int_or_none, widget=Select2Widget(), validators=[DataRequired()],
                       description=_l("1 到 5，5 为最高"))


_FORM_COLUMNS = ["number", "name", "region", "manager", "level", "satisfaction", "credit",
                 "address", "zip_code", "phone", "fax", "website", "license_no", "legal_person",
                 "registered_capital", "annual_turnover", "bank", "bank_account", "local_tax_no",
                 "national_tax_no"]
_REL_FILTERS = {"region": [["type", FilterEqual, REGION]],
                "level": [["type", FilterEqual, LEVEL]],
                "manager": [["active", FilterEqual, True]]}


class CustomerView(ExportMixin, GuardedModelView):
    """客户信息. Add/edit go through the workflow (not FAB's populate_obj); no delete."""

    datamodel = CustomerInterface(Customer)

    def export_rows(self):
        """Streamed export of the filtered list, selecting only the exported columns
        (Core rows with outer joins) instead of whole ORM objects: ~8x faster at 100k."""
        from flask_appbuilder.security.sqla.models import User
        from flask_appbuilder.urltools import get_filter_args, get_order_args
        from sqlalchemy.orm import aliased

        assert list(self.list_columns) == ["number", "name", "region", "manager", "level",
                                           "satisfaction", "credit", "status"]
        dm = self.datamodel
        filters = dm.get_filters(self.search_columns)
        get_filter_args(filters)
        joined = filters.get_joined_filters(self._base_filters)
        oc, od = get_order_args().get(self.__class__.__name__, ("", ""))
        if oc not in (self.order_columns or []):
            oc, od = self.base_order
        query = joined.apply_all(dm.session.query(Customer))
        col = getattr(Customer, oc)
        query = query.order_by(col.desc() if od == "desc" else col.asc(), Customer.id.desc())
        region, level, manager = aliased(DictItem), aliased(DictItem), aliased(User)
        query = (query.outerjoin(region, region.id == Customer.region_id)
                 .outerjoin(level, level.id == Customer.level_id)
                 .outerjoin(manager, manager.id == Customer.manager_id)
                 .with_entities(Customer.number, Customer.name, region.item, manager.first_name,
                                manager.last_name, manager.username, level.item,
                                Customer.satisfaction, Customer.credit, Customer.status)
                 .execution_options(yield_per=self.export_chunk))
        labels = {}
        for number, name, reg, fn, ln, un, lev, sat, credit, status in query:
            label = labels.get(status)
            if label is None:
                label = labels[status] = str(wf.status_label(status))
            yield [number, name, reg, f"{fn or ''}{ln or ''}" or un or "", lev, sat, credit, label]
    route_base = "/customer"
    class_permission_name = "Customer"
    method_permission_name = VIEW_CRUD
    exclude_route_methods = {"action", "action_post", "download"}   # no @action, no files
    list_title = _l("客户信息")
    show_title = _l("客户详情")
    add_title = _l("新建客户")
    edit_title = _l("编辑客户信息")
    base_permissions = ["can_list", "can_add", "can_edit"]
    label_columns = LABELS
    list_columns = ["number", "name", "region", "manager", "level", "satisfaction", "credit",
                    "status"]
    show_columns = ["number", "name", "region", "manager", "level", "satisfaction", "credit",
                    "address", "zip_code", "phone", "fax", "website", "license_no",
                    "legal_person", "registered_capital", "annual_turnover", "bank",
                    "bank_account", "local_tax_no", "national_tax_no", "status"]
    # satisfaction, credit, created_on: the drill-down of 客户构成分析 (app/reports/composition.py)
    search_columns = ["number", "name", "region", "manager", "level", "status", "satisfaction",
                      "credit", "created_on"]
    order_columns = ["number", "name", "satisfaction", "credit", "status"]
    base_order = ("id", "desc")
    page_size = 20
    search_form_query_rel_fields = _REL_FILTERS
    add_form_query_rel_fields = _REL_FILTERS
    edit_form_query_rel_fields = _REL_FILTERS
    search_form_extra_fields = {"status": SelectField(
        _l("状态"), choices=list(wf.STATUS_LABELS.items()), widget=Select2Widget())}
    add_columns = _FORM_COLUMNS
    edit_columns = _FORM_COLUMNS
    add_form_extra_fields = {"number": _readonly(_l("客户编号")),
                             "satisfaction": _score_field(_l("客户满意度")),
                             "credit": _score_field(_l("客户信用度"))}
    edit_form_extra_fields = add_form_extra_fields
    validators_columns = {c: [DataRequired()] for c in
                          ("name", "region", "level", "address", "zip_code", "phone",
                           "legal_person", "bank", "bank_account")}
    description_columns = {
        "zip_code": _l("6 位数字，例如 100080"),
        "phone": _l("固定电话如 010-12345678，或手机号码如 13800138000"),
        "fax": _l("格式同电话"),
        "website": _l("以 http:// 或 https:// 开头"),
        "registered_capital": _l("单位：万元"),
        "annual_turnover": _l("单位：元"),
        "manager": _l("只有销售主管或系统管理员可以更换客户经理"),
    }
    formatters_columns = {"status": fmt_status, "manager": fmt_user}
    export_formatters = {"status": lambda v: str(wf.status_label(v)), "manager": fmt_user}
    list_widget = CustomerListWidget
    add_row_message = _l("保存成功")
    edit_row_message = _l("保存成功")

    # ---- list: bounded page size; 我的客户 ---------------------------------------------------

    def _get_list_widget(self, filters, actions=None, order_column="", order_direction="",
                         page=None, page_size=None, widgets=None, **kwargs):
        page_size = max(1, min(page_size or self.page_size, MAX_PAGE_SIZE))
        return super()._get_list_widget(filters, actions=actions, order_column=order_column,
                                        order_direction=order_direction, page=page,
                                        page_size=page_size, widgets=widgets, **kwargs)

    @expose("/list/")
    @has_access
    def list(self):
        if request.args.get("_flt_0_manager") != str(g.user.id):
            return super().list()
        self.update_redirect()
        return self.render_template(self.list_template, title=_("我的客户"), widgets=self._list())

    @expose("/mine")
    @has_access
    @permission_name("list")
    def mine(self):
        """我的客户: the list filtered on 客户经理 = me (the filter shows in the search form)."""
        return redirect(url_for("CustomerView.list", _flt_0_manager=g.user.id))

    # ---- the customer page -------------------------------------------------------------------

    @expose("/show/<pk>", methods=["GET"])
    @has_access
    @html_errors
    def show(self, pk):
        actor = current_actor()
        customer = None
        if str(pk).isdigit():
            customer = db.session.scalar(
                select(Customer).options(joinedload(Customer.region), joinedload(Customer.level),
                                         joinedload(Customer.manager))
                .where(Customer.id == int(pk)))
        if customer is None:
            abort(404)
        contacts = wf.contacts_of(db.session, customer.id)
        act_count, activities = wf.activities_of(db.session, customer.id,
                                                 page_size=ACTIVITIES_ON_PAGE)
        orders_page = _int_arg("orders_page")
        order_count, orders = sales_wf.orders_of_customer(
            db.session, customer.number, page=orders_page, page_size=ORDERS_PAGE_SIZE)
        pages = max(1, -(-order_count // ORDERS_PAGE_SIZE))
        sections = render_sections(customer, actor)
        origins = opp_wf.of_customer(db.session, customer.id)
        missing = [str(LABELS[f[:-3] if f.endswith("_id") else f]) for f in wf.REQUIRED
                   if getattr(customer, f) in (None, "")]
        return self.render_template(
            "customer/show.html", title=_("客户详情"), c=customer, actor=actor, wf=wf,
            labels=LABELS, contacts=contacts, activities=activities, act_count=act_count,
            orders=orders, order_count=order_count, orders_page=orders_page, pages=pages,
            sections=sections, missing=missing, origins=origins, may_edit=wf.can_edit(actor, customer),
            may_manage=can_manage_customer(actor, customer), money=money,
            fmt_user=fmt_user, fmt_status=fmt_status, fmt_time=fmt_time)

    # ---- add / edit through the workflow ------------------------------------------------------

    def check_row(self, item, action):
        if action == "edit":
            wf.require_writable(current_actor(), item)

    @staticmethod
    def _form_data():
        f = request.form
        data = {k: f.get(k, "") for k in wf.TEXT_FIELDS}
        for k in ("satisfaction", "credit", "registered_capital", "annual_turnover"):
            data[k] = f.get(k, "")
        data["region_id"] = f.get("region", "")
        data["level_id"] = f.get("level", "")
        if "manager" in f:  # a disabled select (客户经理 editing) sends nothing: unchanged
            data["manager_id"] = f.get("manager", "")
        return data

    @staticmethod
    def _show_error(form, e):
        show_form_errors(form, e, {"manager_id": "manager", "region_id": "region",
                                   "level_id": "level"})
        g.crm_form_status = e.status

    @staticmethod
    def _lock_manager(form, actor):
        if not wf.can_reassign(actor):
            form.manager.render_kw = {"disabled": True}

    def _add(self):
        actor = current_actor()
        form = self.add_form.refresh()
        if request.method == "POST":
            try:
                customer = wf.create(db.session, actor, self._form_data())
                db.session.commit()
            except DomainError as e:
                db.session.rollback()
                if e.status != 400:
                    raise
                self._show_error(form, e)
            else:
                flash(_("保存成功：客户 %(number)s %(name)s", number=customer.number,
                        name=customer.name), "success")
                return None
        form.number.data = _("保存时自动生成")
        if not wf.can_reassign(actor) or (request.method == "GET" and form.manager.data is None):
            form.manager.data = db.session.get(wf.User, actor.id)
        self._lock_manager(form, actor)
        return self._get_add_widget(form=form)

    def _edit(self, pk):
        actor = current_actor()
        item = self.datamodel.get(pk, self._base_filters)
        if item is None:
            abort(404)
        if request.method == "POST":
            form = self.edit_form.refresh(obj=item)
            try:
                wf.update_customer(db.session, actor, item.id, self._form_data())
                db.session.commit()
            except DomainError as e:
                db.session.rollback()
                if e.status != 400:
                    raise
                self._show_error(form, e)
            else:
                flash(self.edit_row_message, "success")
                return None
            item = self.datamodel.get(pk)
        else:
            form = self.edit_form.refresh(obj=item)
        form.number.data = item.number
        self._lock_manager(form, actor)
        return self._get_edit_widget(form=form)

    @expose("/add", methods=["GET", "POST"])
    @has_access
    @html_errors
    def add(self):
        if not wf.can_create(current_actor()):
            raise wf.Forbidden(_l("只有客户经理、销售主管或系统管理员可以新建客户。"))
        return _with_status(super().add())

    @expose("/edit/<pk>", methods=["GET", "POST"])
    @has_access
    @html_errors
    def edit(self, pk):
        return _with_status(super().edit(pk))

    def post_add_redirect(self):
        return redirect(url_for("CustomerView.list"))

    def post_edit_redirect(self):
        return redirect(url_for("CustomerView.list"))


def _with_status(resp):
    status = g.pop("crm_form_status", None)
    if status and isinstance(resp, str):
        return resp, status
    return resp


# ---- 联系人 / 交往记录 per customer (the customer id always comes from the URL) ---------------

def _back(customer):
    return f"/customer/show/{customer.id}"


class ContactView(BaseView):
    """联系人 of one customer: list, add, edit, delete (its 客户经理, 销售主管, admin)."""

    route_base = "/contacts"
    class_permission_name = "Contact"
    default_view = "list"

    def _page(self, template, customer, status=200, **kw):
        actor = current_actor()
        return self.render_template(
            template, c=customer, actor=actor, may_manage=wf.can_edit(actor, customer),
            labels=wf.CONTACT_LABELS, back=_back(customer), status_label=wf.status_label,
            genders=wf.GENDERS,
            positions=[i.item for i in dict_wf.items_of(db.session, "职位")], **kw), status

    @expose("/customer/<int:customer_id>")
    @has_access
    @permission_name("list")
    @html_errors
    def list(self, customer_id):
        customer = wf.get(db.session, customer_id)
        return self._page("customer/contacts.html", customer, title=_("联系人"),
                          contacts=wf.contacts_of(db.session, customer.id))

    @expose("/customer/<int:customer_id>/export/<fmt>/")
    @has_access
    @permission_name("list")
    @html_errors
    def export_list(self, customer_id, fmt):
        """导出 CSV / XLSX: the customer's contacts, as the list shows them."""
        customer = wf.get(db.session, customer_id)
        headers = [_l("客户编号"), _l("客户名称")] + [wf.CONTACT_LABELS[f]
                                                 for f in wf.CONTACT_FIELDS]
        rows = ([customer.number, customer.name] + [getattr(c, f) or "" for f in wf.CONTACT_FIELDS]
                for c in wf.contacts_of(db.session, customer.id))
        return export_response(fmt, str(_l("%(name)s 的联系人", name=customer.name)),
                               f"contacts_{customer.id}", headers, rows)

    def _form(self, customer, contact, step):
        """GET shows the form, POST saves through ``step(data)``; 400 re-shows it."""
        actor = current_actor()
        wf.require_writable(actor, customer)
        values = {f: getattr(contact, f) or "" for f in wf.CONTACT_FIELDS} if contact else {}
        error = None
        if request.method == "POST":
            values = {f: request.form.get(f, "") for f in wf.CONTACT_FIELDS}
            try:
                step(values)
                db.session.commit()
            except ValidationError as e:
                db.session.rollback()
                error = e
            else:
                flash(_("保存成功"), "success")
                return redirect(url_for("ContactView.list", customer_id=customer.id))
        title = _("编辑联系人") if contact else _("新建联系人")
        return self._page("customer/contact_form.html", customer, status=400 if error else 200,
                          contact=contact, values=values, error=error, title=title)

    @expose("/customer/<int:customer_id>/add", methods=["GET", "POST"])
    @has_access
    @permission_name("add")
    @html_errors
    def add(self, customer_id):
        customer = wf.get(db.session, customer_id)
        return self._form(customer, None, lambda data: wf.add_contact(
            db.session, current_actor(), customer.id, data))

    @expose("/<int:pk>/edit", methods=["GET", "POST"])
    @has_access
    @permission_name("edit")
    @html_errors
    def edit(self, pk):
        contact = wf.get_contact(db.session, pk)
        customer = wf.get(db.session, contact.customer_id)
        return self._form(customer, contact, lambda data: wf.update_contact(
            db.session, current_actor(), contact.id, data, customer_id=customer.id))

    @expose("/<int:pk>/delete", methods=["POST"])
    @has_access
    @permission_name("delete")
    @html_errors
    def delete(self, pk):
        contact = wf.get_contact(db.session, pk)
        customer_id = contact.customer_id
        name = wf.delete_contact(db.session, current_actor(), pk)
        db.session.commit()
        flash(_("删除成功：联系人 %(name)s", name=name), "success")
        return redirect(url_for("ContactView.list", customer_id=customer_id))


class ActivityView(BaseView):
    """交往记录 of one customer: list (paged, newest first), add, edit."""

    route_base = "/activities"
    class_permission_name = "Activity"
    default_view = "list"

    def _page(self, template, customer, status=200, **kw):
        actor = current_actor()
        return self.render_template(
            template, c=customer, actor=actor, may_manage=wf.can_edit(actor, customer),
            labels=wf.ACTIVITY_LABELS, back=_back(customer),
            status_label=wf.status_label, **kw), status

    @expose("/customer/<int:customer_id>")
    @has_access
    @permission_name("list")
    @html_errors
    def list(self, customer_id):
        customer = wf.get(db.session, customer_id)
        page = _int_arg("page")
        count, rows = wf.activities_of(db.session, customer.id, page=page,
                                       page_size=ACTIVITIES_PAGE_SIZE)
        pages = max(1, -(-count // ACTIVITIES_PAGE_SIZE))
        return self._page("customer/activities.html", customer, title=_("交往记录"),
                          rows=rows, count=count,
                          page=page, pages=pages)

    def _form(self, customer, activity, step):
        actor = current_actor()
        wf.require_writable(actor, customer)
        if activity:
            values = {f: getattr(activity, f) or "" for f in wf.ACTIVITY_FIELDS}
            values["date"] = activity.date.isoformat()
        else:
            values = {"date": date.today().isoformat()}
        error = None
        if request.method == "POST":
            values = {f: request.form.get(f, "") for f in wf.ACTIVITY_FIELDS}
            try:
                step(values)
                db.session.commit()
            except ValidationError as e:
                db.session.rollback()
                error = e
            else:
                flash(_("保存成功"), "success")
                return redirect(url_for("ActivityView.list", customer_id=customer.id))
        title = _("编辑交往记录") if activity else _("新建交往记录")
        return self._page("customer/activity_form.html", customer, status=400 if error else 200,
                          activity=activity, values=values, error=error, title=title)

    @expose("/customer/<int:customer_id>/add", methods=["GET", "POST"])
    @has_access
    @permission_name("add")
    @html_errors
    def add(self, customer_id):
        customer = wf.get(db.session, customer_id)
        return self._form(customer, None, lambda data: wf.add_activity(
            db.session, current_actor(), customer.id, data))

    @expose("/<int:pk>/edit", methods=["GET", "POST"])
    @has_access
    @permission_name("edit")
    @html_errors
    def edit(self, pk):
        activity = wf.get_activity(db.session, pk)
        customer = wf.get(db.session, activity.customer_id)
        return self._form(customer, activity, lambda data: wf.update_activity(
            db.session, current_actor(), activity.id, data, customer_id=customer.id))


# ---- REST ----------------------------------------------------------------------------------

CUSTOMER_API_FIELDS = ["id", "number", "name", "region", "manager_id", "level", "satisfaction",
                       "credit", "address", "zip_code", "phone", "fax", "website", "license_no",
                       "legal_person", "registered_capital", "annual_turnover", "bank",
                       "bank_account", "local_tax_no", "national_tax_no", "status"]
_CUSTOMER_COLUMNS = [{"region": "region_id", "level": "level_id"}.get(c, c)
                     for c in CUSTOMER_API_FIELDS]
_MONEY = ("registered_capital", "annual_turnover")


def _money_text(value):
    return None if value is None else f"{Decimal(value):.2f}"


def _dict_texts(ids):
    ids = {i for i in ids if i is not None}
    if not ids:
        return {}
    return dict(db.session.execute(select(DictItem.id, DictItem.item)
                                   .where(DictItem.id.in_(ids))).all())


def customer_json(c):
    """The §8 fields of a customer; region/level as the dictionary item text."""
    out = {f: getattr(c, f) for f in CUSTOMER_API_FIELDS if f not in ("region", "level")}
    out["region"] = c.region.item if c.region else None
    out["level"] = c.level.item if c.level else None
    for f in _MONEY:
        out[f] = _money_text(out[f])
    return out


def _rows_to_api(rows):
    texts = _dict_texts([r.get(k) for r in rows for k in ("region_id", "level_id")])
    for row in rows:
        for key in ("region", "level"):
            if f"{key}_id" in row:
                row[key] = texts.get(row.pop(f"{key}_id"))
        for f in _MONEY:
            if f in row:
                row[f] = _money_text(row[f])


def _json_body():
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ValidationError(_l("请求体必须是 JSON 对象。"))
    return data


def _customer_id_of(data):
    """The ``customer_id`` of a new contact/activity: required, an existing customer."""
    raw = data.pop("customer_id", None)
    if raw in (None, ""):
        raise ValidationError(_l("客户不能为空（customer_id）。"), field="customer_id")
    try:
        pk = int(raw)
        if isinstance(raw, bool):
            raise ValueError(raw)
    except (TypeError, ValueError):
        raise ValidationError(_l("客户编号 customer_id 必须是整数。"), field="customer_id")
    if db.session.get(Customer, pk) is None:
        raise ValidationError(_l("客户不存在。"), field="customer_id")
    return pk


class _Api(CrmModelRestApi):
    def response_401(self):
        return self.response(401, message=_("请先登录。"))

    def response_403(self):
        return self.response(403, message=_("无权执行此操作：您的角色没有这项权限。"))


class CustomerApi(_Api):
    """``/api/v1/customer``: list/get/create/edit (no delete: 405). region/level are the
    dictionary item text. Filter e.g. ``(filters:!((col:manager_id,opr:eq,value:3)))``.
    A customer's orders: ``/api/v1/order/?q=(filters:!((col:customer_number,opr:eq,value:KH…)))``."""

    resource_name = "customer"
    class_permission_name = "Customer"
    openapi_spec_tag = "customer"
    datamodel = CustomerInterface(Customer, eager=False)
    include_route_methods = {"get", "get_list", "info", "post", "put"}
    list_columns = _CUSTOMER_COLUMNS
    show_columns = _CUSTOMER_COLUMNS
    add_columns = [c for c in _CUSTOMER_COLUMNS if c not in ("id", "number", "status")]
    edit_columns = add_columns
    search_columns = ["number", "name", "region_id", "level_id", "manager_id", "status",
                      "satisfaction", "credit", "phone", "license_no"]
    order_columns = ["id", "number", "name", "satisfaction", "credit", "status"]
    base_order = ("id", "desc")
    label_columns = wf.LABELS

    def pre_get_list(self, data):
        _rows_to_api(data.get("result", []))
        if "list_columns" in data:
            data["list_columns"] = CUSTOMER_API_FIELDS

    def pre_get(self, data):
        _rows_to_api([data.get("result", {})])
        if "show_columns" in data:
            data["show_columns"] = CUSTOMER_API_FIELDS

    def _ok(self, code, customer):
        db.session.refresh(customer)
        return self.response(code, id=customer.id, result=customer_json(customer),
                             message=_("保存成功"))

    @expose("/", methods=["POST"])
    @protect()
    @safe
    @api_errors
    def post(self):
        """Create a customer (number automatic; a 客户经理 only for himself).
        ---
        post:
          requestBody:
            content:
              application/json:
                schema: {type: object}
                example: {name: 北京某某科技有限公司, region: 北京, level: 大客户, manager_id: 3,
                          satisfaction: 4, credit: 4, address: 北京市海淀区中关村大街1号,
                          zip_code: "100080", phone: 010-62345678, legal_person: 王五,
                          bank: 中国银行, bank_account: "6216600000000000001"}
          responses:
            201: {description: created}
            400: {$ref: '#/components/responses/400'}
            403: {description: not allowed}
        """
        customer = wf.create(db.session, current_actor(), _json_body())
        db.session.commit()
        return self._ok(201, customer)

    @expose("/<int:pk>", methods=["PUT"])
    @protect()
    @safe
    @api_errors
    def put(self, pk):
        """Edit a ``normal`` customer (its 客户经理, 销售主管, admin); only the fields given.
        ---
        put:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer}}
          responses:
            200: {description: saved}
            400: {$ref: '#/components/responses/400'}
            403: {description: not your customer}
            404: {$ref: '#/components/responses/404'}
            409: {description: the customer is lost}
        """
        customer = wf.update_customer(db.session, current_actor(), pk, _json_body())
        db.session.commit()
        return self._ok(200, customer)


def contact_json(c):
    return {f: getattr(c, f) for f in ["id", "customer_id", *wf.CONTACT_FIELDS]}


def activity_json(a):
    out = {f: getattr(a, f) for f in ["id", "customer_id", *wf.ACTIVITY_FIELDS]}
    out["date"] = a.date.isoformat()
    return out


class ContactApi(_Api):
    """``/api/v1/contact``: a customer's contacts (filter ``customer_id``); writes only on
    customers the user manages; ``customer_id`` never changes."""

    resource_name = "contact"
    class_permission_name = "Contact"
    openapi_spec_tag = "contact"
    datamodel = SQLAInterface(Contact)
    list_columns = ["id", "customer_id", *wf.CONTACT_FIELDS]
    show_columns = list_columns
    add_columns = list_columns[1:]
    edit_columns = list_columns[1:]
    search_columns = ["customer_id", "name", "gender", "position", "office_phone", "mobile",
                      "email"]
    order_columns = ["id", "customer_id", "name"]
    base_order = ("id", "asc")
    label_columns = wf.CONTACT_LABELS

    @expose("/", methods=["POST"])
    @protect()
    @safe
    @api_errors
    def post(self):
        """Add a contact ``{customer_id, name, gender, position, office_phone, ...}``.
        ---
        post:
          responses:
            201: {description: created}
            400: {$ref: '#/components/responses/400'}
            403: {description: not your customer}
            409: {description: the customer is lost}
        """
        data = _json_body()
        customer_id = _customer_id_of(data)
        contact = wf.add_contact(db.session, current_actor(), customer_id, data)
        db.session.commit()
        return self.response(201, id=contact.id, result=contact_json(contact))

    @expose("/<int:pk>", methods=["PUT"])
    @protect()
    @safe
    @api_errors
    def put(self, pk):
        """Change fields of a contact (a different ``customer_id`` is refused: 400).
        ---
        put:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer}}
          responses:
            200: {description: saved}
        """
        contact = wf.update_contact(db.session, current_actor(), pk, _json_body())
        db.session.commit()
        return self.response(200, id=contact.id, result=contact_json(contact))

    @expose("/<int:pk>", methods=["DELETE"])
    @protect()
    @safe
    @api_errors
    def delete(self, pk):
        """Delete a contact.
        ---
        delete:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer}}
          responses:
            200: {description: deleted}
        """
        wf.delete_contact(db.session, current_actor(), pk)
        db.session.commit()
        return self.response(200, message=_("删除成功"))


class ActivityApi(_Api):
    """``/api/v1/activity``: a customer's 交往记录 (filter ``customer_id``); add and edit
    on customers the user manages; records are not deleted (405)."""

    resource_name = "activity"
    class_permission_name = "Activity"
    openapi_spec_tag = "activity"
    datamodel = SQLAInterface(Activity)
    include_route_methods = {"get", "get_list", "info", "post", "put"}
    list_columns = ["id", "customer_id", *wf.ACTIVITY_FIELDS]
    show_columns = list_columns
    add_columns = list_columns[1:]
    edit_columns = list_columns[1:]
    search_columns = ["customer_id", "date", "place", "summary"]
    order_columns = ["id", "customer_id", "date"]
    base_order = ("date", "desc")
    label_columns = wf.ACTIVITY_LABELS

    @expose("/", methods=["POST"])
    @protect()
    @safe
    @api_errors
    def post(self):
        """Add a record ``{customer_id, date, place, summary, detail, memo?}``.
        ---
        post:
          responses:
            201: {description: created}
            400: {$ref: '#/components/responses/400'}
            403: {description: not your customer}
            409: {description: the customer is lost}
        """
        data = _json_body()
        customer_id = _customer_id_of(data)
        activity = wf.add_activity(db.session, current_actor(), customer_id, data)
        db.session.commit()
        return self.response(201, id=activity.id, result=activity_json(activity))

    @expose("/<int:pk>", methods=["PUT"])
    @protect()
    @safe
    @api_errors
    def put(self, pk):
        """Change fields of a record; 日期/地点/概要/详细信息 cannot become empty.
        ---
        put:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer}}
          responses:
            200: {description: saved}
        """
        activity = wf.update_activity(db.session, current_actor(), pk, _json_body())
        db.session.commit()
        return self.response(200, id=activity.id, result=activity_json(activity))


def register(appbuilder):
    appbuilder.add_view(CustomerView, "CustomerInfo", label=_l("客户信息"), icon="fa-building",
                        category="Customers")
    appbuilder.add_link("MyCustomers", label=_l("我的客户"), href="/customer/mine",
                        icon="fa-user", category="Customers")
    appbuilder.add_view_no_menu(ContactView)
    appbuilder.add_view_no_menu(ActivityView)
    appbuilder.add_api(CustomerApi)
    appbuilder.add_api(ContactApi)
    appbuilder.add_api(ActivityApi)

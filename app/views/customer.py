"""客户管理 pages: 客户信息 (list/search, 我的客户, the customer page, add/edit), 联系人 and
交往记录 per customer, 历史订单 and 客户动态 on the customer page. The REST resources
(``customer``, ``contact``, ``activity``) are in ``app/api/customers.py``.

Thin: every rule lives in ``app/workflows/customers.py`` (who may: ``can_<step>`` /
``require_<step>``; templates get the precomputed ``may`` dict), the feed in
``app/workflows/timeline.py``; ``html_step`` (app/api/base.py) commits a step. The
customer page is ``/customer/show/<pk>`` (other modules link to it; templates use the
``customer_link(id)`` helper); after 基本信息, 联系人, 交往记录 and 历史订单 it shows the
sections other modules register in ``sections.py`` and the 客户动态 feed.
"""
from datetime import date
from types import SimpleNamespace

from flask import abort, current_app, flash, g, redirect, request, url_for
from flask_appbuilder import BaseView, expose
from flask_appbuilder.fieldwidgets import BS3TextFieldWidget, Select2Widget
from flask_appbuilder.models.sqla.filters import FilterEqual
from flask_appbuilder.models.sqla.interface import SQLAInterface
from flask_appbuilder.security.decorators import has_access, permission_name
from flask_appbuilder.widgets import ListWidget
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from markupsafe import Markup, escape
from sqlalchemy import select
from sqlalchemy.orm import joinedload, noload
from wtforms import SelectField, StringField
from wtforms.validators import DataRequired

from ..api.base import html_read, html_step
from ..extensions import db
from ..models import Customer, DictItem
from ..models.dictionary import LEVEL, REGION
from ..workflows import customers as wf
from ..workflows import dictionary as dict_wf
from ..workflows import documents as docs_wf
from ..workflows import opportunities as opp_wf
from ..workflows import sales as sales_wf
from ..workflows import timeline as tl_wf
from ..workflows.names import display_name
from ..workflows.actors import EXECUTIVE, MANAGER, SUPERVISOR
from ..workflows.errors import DomainError, ValidationError
from ..workflows.spreadsheet import Labels, StatementRows
from .common import GuardedModelView, choices_without_count, current_actor, show_form_errors
from .common import VIEW_CRUD
from .export import ExportMixin, export_response
from .lists import ListMixin, Tab, list_bar, mine
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
    return display_name(user)


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
            return wf.can_edit(actor, SimpleNamespace(
                status=row.get("status"), manager_id=manager.id if manager is not None else None))
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


class CustomerView(ListMixin, ExportMixin, GuardedModelView):
    """客户信息. Add/edit go through the workflow (not FAB's populate_obj); no delete."""

    datamodel = CustomerInterface(Customer)
    quick_search_columns = ["name", "number", "phone"]
    list_tabs = [Tab("mine", _l("我的"), mine("manager_id")), Tab("all", _l("全部"))]
    default_tab = "all"
    sort_columns = {"region": "region.item", "manager": "manager.first_name",
                    "level": "level.item"}

    def export_rows(self):
        """Streamed export of the filtered list, selecting only the exported columns
        (outer joins) instead of whole ORM objects, run on the connection: the manager's
        name and the status label are computed in SQL, so on PostgreSQL the database
        writes the CSV itself (COPY, ``StatementRows``) and elsewhere the rows are plain
        tuples the CSV writer takes column by column (100k rows: the ORM layer and a
        per-row generator were half the time)."""
        from flask_appbuilder.security.sqla.models import User
        from flask_appbuilder.urltools import get_filter_args, get_order_args
        from sqlalchemy import case, func, literal, select
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
        query = self.order_query(query, oc, od)
        region, level, manager = aliased(DictItem), aliased(DictItem), aliased(User)
        # 「名姓」 as the list shows it, else the user name, else empty
        full = func.coalesce(manager.first_name, "") + func.coalesce(manager.last_name, "")
        manager_name = func.coalesce(func.nullif(full, ""), manager.username, "")
        status = case({code: literal(str(label)) for code, label in wf.STATUS_LABELS.items()},
                      value=Customer.status, else_=func.coalesce(Customer.status, ""))
        coded = query.with_entities(Customer.number, Customer.name, Customer.region_id,
                                    Customer.manager_id, Customer.level_id,
                                    Customer.satisfaction, Customer.credit, Customer.status)

        def decoders(conn):
            """The joined texts of the statement below, as lookup tables."""
            items = dict(conn.execute(select(DictItem.id, DictItem.item)).all())
            names = {uid: (f"{first or ''}{last or ''}" or username or "")
                     for uid, first, last, username in conn.execute(
                         select(User.id, User.first_name, User.last_name, User.username))}
            labels = Labels({code: str(label) for code, label in wf.STATUS_LABELS.items()})
            return {2: items, 3: names, 4: items, 7: labels}

        query = (query.outerjoin(region, region.id == Customer.region_id)
                 .outerjoin(level, level.id == Customer.level_id)
                 .outerjoin(manager, manager.id == Customer.manager_id)
                 .with_entities(Customer.number, Customer.name, region.item, manager_name,
                                level.item, Customer.satisfaction, Customer.credit, status))
        return StatementRows(
            lambda: dm.session.connection(bind_arguments={"mapper": Customer.__mapper__}),
            query.statement, self.export_chunk, coded=(coded.statement, decoders))
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

    def _init_forms(self):
        super()._init_forms()
        choices_without_count(self.search_form, self.datamodel, self.search_form_query_rel_fields)

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
    @html_read
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
        timeline, timeline_error, status = None, None, 200
        try:
            timeline = timeline_page(customer, actor, request.args.get("tl_kind"),
                                     request.args.get("tl_page"), None)
        except ValidationError as e:
            timeline_error, status = e.message, 400
        return self.render_template(
            "customer/show.html", title=_("客户详情"), c=customer, may=wf.may(actor, customer),
            labels=LABELS, contacts=contacts, activities=activities, act_count=act_count,
            orders=orders, order_count=order_count, orders_page=orders_page, pages=pages,
            sections=sections, missing=missing, origins=origins, money=money,
            timeline=timeline, timeline_error=timeline_error,
            timeline_kinds=[(k, tl_wf.KIND_LABELS[k]) for k in allowed_kinds()],
            timeline_arg=request.args.get("tl_kind") or "",
            fmt_user=fmt_user, fmt_status=fmt_status, fmt_time=fmt_time), status

    # ---- add / edit through the workflow ------------------------------------------------------

    def check_row(self, item, action):
        if action == "edit":
            wf.require_edit(current_actor(), item)

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
            except DomainError as e:
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
            except DomainError as e:
                if e.status != 400:
                    raise
                db.session.rollback()      # the form is shown again from the stored record
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
    @html_step
    def add(self):
        wf.require_create(current_actor())
        return _with_status(super().add())

    @expose("/edit/<pk>", methods=["GET", "POST"])
    @has_access
    @html_step
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
        return self.render_template(
            template, c=customer, may=wf.may(current_actor(), customer),
            labels=wf.CONTACT_LABELS, back=_back(customer), status_label=wf.status_label,
            genders=wf.GENDERS,
            positions=[i.item for i in dict_wf.items_of(db.session, "职位")], **kw), status

    @expose("/customer/<int:customer_id>")
    @has_access
    @permission_name("list")
    @html_read
    def list(self, customer_id):
        """``?q=`` 快速搜索 (姓名, 电话, 手机, 电子邮件); too long: the message (400)."""
        customer = wf.get(db.session, customer_id)
        q = request.args.get("q", "")
        try:
            contacts, error = wf.contacts_of(db.session, customer.id, q), None
        except ValidationError as e:
            contacts, error = [], e
        return self._page("customer/contacts.html", customer, status=400 if error else 200,
                          title=_("联系人"), contacts=contacts, error=error,
                          bar=list_bar((), None, q, [wf.CONTACT_LABELS[f] for f in (
                              "name", "office_phone", "mobile", "email")]))

    @expose("/customer/<int:customer_id>/export/<fmt>/")
    @has_access
    @permission_name("list")
    @html_read
    def export_list(self, customer_id, fmt):
        """导出 CSV / XLSX: the customer's contacts, as the list shows them."""
        customer = wf.get(db.session, customer_id)
        headers = [_l("客户编号"), _l("客户名称")] + [wf.CONTACT_LABELS[f]
                                                 for f in wf.CONTACT_FIELDS]
        rows = ([customer.number, customer.name] + [getattr(c, f) or "" for f in wf.CONTACT_FIELDS]
                for c in wf.contacts_of(db.session, customer.id, request.args.get("q")))
        return export_response(fmt, str(_l("%(name)s 的联系人", name=customer.name)),
                               f"contacts_{customer.id}", headers, rows)

    def _form(self, customer, contact, step):
        """GET shows the form, POST saves through ``step(data)``; 400 re-shows it
        (``html_step`` commits a success and rolls back the 400)."""
        actor = current_actor()
        if contact:
            wf.require_edit_contact(actor, customer, contact)
        else:
            wf.require_add_contact(actor, customer)
        values = {f: getattr(contact, f) or "" for f in wf.CONTACT_FIELDS} if contact else {}
        error = None
        if request.method == "POST":
            values = {f: request.form.get(f, "") for f in wf.CONTACT_FIELDS}
            try:
                step(values)
            except ValidationError as e:
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
    @html_step
    def add(self, customer_id):
        customer = wf.get(db.session, customer_id)
        return self._form(customer, None, lambda data: wf.add_contact(
            db.session, current_actor(), customer.id, data))

    @expose("/<int:pk>/edit", methods=["GET", "POST"])
    @has_access
    @permission_name("edit")
    @html_step
    def edit(self, pk):
        contact = wf.get_contact(db.session, pk)
        customer = wf.get(db.session, contact.customer_id)
        return self._form(customer, contact, lambda data: wf.update_contact(
            db.session, current_actor(), contact.id, data, customer_id=customer.id))

    @expose("/<int:pk>/delete", methods=["POST"])
    @has_access
    @permission_name("delete")
    @html_step
    def delete(self, pk):
        contact = wf.get_contact(db.session, pk)
        customer_id = contact.customer_id
        name = wf.delete_contact(db.session, current_actor(), pk)
        flash(_("删除成功：联系人 %(name)s", name=name), "success")
        return redirect(url_for("ContactView.list", customer_id=customer_id))


class ActivityView(BaseView):
    """交往记录 of one customer: list (paged, newest first), add, edit."""

    route_base = "/activities"
    class_permission_name = "Activity"
    default_view = "list"

    def _page(self, template, customer, status=200, **kw):
        return self.render_template(
            template, c=customer, may=wf.may(current_actor(), customer),
            labels=wf.ACTIVITY_LABELS, back=_back(customer),
            status_label=wf.status_label, **kw), status

    @expose("/customer/<int:customer_id>")
    @has_access
    @permission_name("list")
    @html_read
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
        if activity:
            wf.require_edit_activity(actor, customer, activity)
        else:
            wf.require_add_activity(actor, customer)
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
            except ValidationError as e:
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
    @html_step
    def add(self, customer_id):
        customer = wf.get(db.session, customer_id)
        return self._form(customer, None, lambda data: wf.add_activity(
            db.session, current_actor(), customer.id, data))

    @expose("/<int:pk>/edit", methods=["GET", "POST"])
    @has_access
    @permission_name("edit")
    @html_step
    def edit(self, pk):
        activity = wf.get_activity(db.session, pk)
        customer = wf.get(db.session, activity.customer_id)
        return self._form(customer, activity, lambda data: wf.update_activity(
            db.session, current_actor(), activity.id, data, customer_id=customer.id))


# ---- 客户动态 (the feed on the customer page and /api/v1/customer/<id>/timeline) -------------

def allowed_kinds():
    """The feed kinds the signed-in user may open (the ``can_list`` of each kind's function)."""
    sm = current_app.appbuilder.sm
    return [k for k in tl_wf.KINDS if sm.has_access("can_list", tl_wf.FUNCTIONS[k])]


def entry_url(customer, e):
    """Where a feed entry links to (the record's own page)."""
    if e.kind == "activity":
        return url_for("ActivityView.list", customer_id=customer.id) + f"#activity-{e.id}"
    if e.kind == "ticket":
        return url_for("ServiceArchiveView.show", pk=e.id)
    if e.kind == "mail":
        return url_for("MailView.show", pk=e.id)
    if e.kind == "document":
        return url_for("DocumentView.download", pk=e.id)
    if e.kind == "opportunity":
        return url_for("OpportunityView.show", pk=e.id)
    if e.kind == "churn":
        return url_for("ChurnView.show", pk=e.id)
    if e.kind == "measure":
        return url_for("ChurnView.show", pk=e.ref["warning_id"])
    if current_app.appbuilder.sm.has_access("can_list", "Audit"):
        return url_for("AuditView.show", pk=e.id)
    return url_for("CustomerView.show", pk=customer.id) + "#basic"


def timeline_page(customer, actor, kind, page, page_size):
    """One page of the customer's feed (``timeline.feed``), each entry with its link.
    Bad ``kind``/``page``/``page_size`` → ValidationError (400)."""
    feed = tl_wf.feed(db.session, actor, customer, allowed_kinds(), kind, page, page_size,
                      document_scope=docs_wf.settings(current_app.config).read_scope)
    for e in feed.entries:
        e.url = entry_url(customer, e)
    return feed


def customer_link(customer_id):
    """``{{ customer_link(opp.customer_id) }}``: a link to the customer page, named
    「名称（编号）」 — for any template that shows a customer id (e.g. the opportunity
    page: the customer it became). Empty for None; a missing customer shows its id."""
    if not customer_id:
        return ""
    row = db.session.execute(select(Customer.name, Customer.number)
                             .where(Customer.id == customer_id)).first()
    label = _("%(name)s（%(detail)s）", name=row.name, detail=row.number) if row \
        else f"#{customer_id}"
    return Markup('<a class="crm-customer-link" href="%s">%s</a>') % (
        url_for("CustomerView.show", pk=customer_id), escape(label))


def register(appbuilder):
    appbuilder.add_view(CustomerView, "CustomerInfo", label=_l("客户信息"), icon="fa-building",
                        category="Customers")
    appbuilder.add_link("MyCustomers", label=_l("我的客户"), href="/customer/mine",
                        icon="fa-user", category="Customers")
    appbuilder.add_view_no_menu(ContactView)
    appbuilder.add_view_no_menu(ActivityView)
    current_app.jinja_env.globals["customer_link"] = customer_link

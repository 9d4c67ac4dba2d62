"""基础数据 › 数据字典: the screens (the ``dict_item`` REST resource: app/api/dictionary.py)."""
from flask import flash, redirect, request
from flask_appbuilder import action
from flask_appbuilder.models.sqla.interface import SQLAInterface
from flask_appbuilder.widgets import ListWidget
from flask_babel import lazy_gettext as _l
from wtforms import BooleanField

from ..extensions import db
from ..models import DictItem
from ..workflows import dictionary as wf
from ..workflows.actors import EXECUTIVE, MANAGER, SUPERVISOR
from ..workflows.errors import DomainError
from ..api.base import html_step
from .common import GuardedModelView, current_actor
from .common import VIEW_CRUD
from .export import ExportMixin
from .lists import ListMixin

ORDER = 50
# One permission per function on "DictItem" (pages, API, menu): can_list 查看 (all
# roles), can_add / can_edit / can_delete and the action lock (系统管理员 only).
RIGHTS = {role: [("DictItem", "can_list")] for role in (EXECUTIVE, SUPERVISOR, MANAGER)}

LABELS = {
    "id": _l("编号"), "type": _l("类别"), "item": _l("条目"), "value": _l("值"),
    "editable": _l("是否可编辑"),
}


class DictItemListWidget(ListWidget):
    """编辑/删除 only on editable items (a locked item can only be viewed)."""

    template = "widgets/row_rights_list.html"

    def __call__(self, **kwargs):
        kwargs["row_rights"] = lambda row: (bool(row.get("editable")),) * 2
        return super().__call__(**kwargs)


class DictItemView(ListMixin, ExportMixin, GuardedModelView):
    quick_search_columns = ["type", "item", "value"]
    sort_columns = {"editable": "editable"}
    datamodel = SQLAInterface(DictItem)
    route_base = "/dictitem"
    class_permission_name = "DictItem"
    method_permission_name = VIEW_CRUD
    exclude_route_methods = {"download"}  # no file columns: FAB's download answers 500
    list_title = _l("数据字典")
    show_title = _l("查看数据字典条目")
    add_title = _l("新建数据字典条目")
    edit_title = _l("编辑数据字典条目")
    label_columns = LABELS
    list_columns = ["id", "type", "item", "value", "editable"]
    show_columns = list_columns
    add_columns = ["type", "item", "value", "editable"]
    # FAB made the checkbox required (a NOT NULL column): unticked could not be sent
    add_form_extra_fields = {"editable": BooleanField(
        _l("是否可编辑"), default=True,
        description=_l("不勾选：条目创建后只能查看，不能修改或删除。"))}
    edit_columns = ["type", "item", "value"]
    list_widget = DictItemListWidget
    search_columns = ["type", "item", "value", "editable"]
    order_columns = ["id", "type", "item", "value"]
    base_order = ("type", "asc")
    page_size = 50
    add_row_message = _l("保存成功")
    edit_row_message = _l("保存成功")
    delete_row_message = _l("删除成功")
    formatters_columns = {"editable": lambda v: _l("是") if v else _l("否")}
    export_formatters = {"editable": lambda v: _l("是") if v else _l("否")}

    def check_row(self, item, action):
        if action in ("edit", "delete"):
            wf._check_editable(item)

    def _validate(self, item, action):
        wf.clean({"type": item.type, "item": item.item, "value": item.value})

    def pre_delete(self, item):
        wf._check_editable(item)

    @action("lock", _l("设为不可编辑"), _l("设为不可编辑后只能查看，不能再修改或删除。确定吗？"),
            "fa-lock", single=True)
    @html_step
    def lock(self, items):
        items = [i for i in (items if isinstance(items, list) else [items]) if i is not None]
        actor = current_actor()
        done = 0
        # one savepoint per item: a refused item is left out, the others are locked;
        # html_step commits them together
        for item in items:
            try:
                with db.session.begin_nested():
                    wf.lock(db.session, item.id, actor.id)
                done += 1
            except DomainError as e:
                flash(f"{item.type}/{item.item}: {e.message}", "danger")
        if done:
            flash(_l("已设为不可编辑：%(n)d 条", n=done), "success")
        return redirect(request.referrer or self.get_redirect())


def register(appbuilder):
    appbuilder.add_view(DictItemView, "DictItems", label=_l("数据字典"), icon="fa-book",
                        category="BaseData")

"""基础数据 › 数据字典: screens and the ``dict_item`` REST resource."""
from flask import flash, redirect, request
from flask_appbuilder import action, expose
from flask_appbuilder.api import protect, safe
from flask_appbuilder.models.sqla.interface import SQLAInterface
from flask_appbuilder.widgets import ListWidget
from flask_babel import lazy_gettext as _l
from wtforms import BooleanField

from ..extensions import db
from ..models import DictItem
from ..workflows import dictionary as wf
from ..workflows.actors import EXECUTIVE, MANAGER, SUPERVISOR
from ..workflows.errors import DomainError
from .common import CrmModelRestApi, GuardedModelView, api_errors, current_actor
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
    def lock(self, items):
        items = [i for i in (items if isinstance(items, list) else [items]) if i is not None]
        actor = current_actor()
        done = 0
        for item in items:
            try:
                wf.lock(db.session, item.id, actor.id)
                db.session.commit()
                done += 1
            except DomainError as e:
                db.session.rollback()
                flash(f"{item.type}/{item.item}: {e.message}", "danger")
        if done:
            flash(_l("已设为不可编辑：%(n)d 条", n=done), "success")
        return redirect(request.referrer or self.get_redirect())


class DictItemApi(CrmModelRestApi):
    resource_name = "dict_item"
    class_permission_name = "DictItem"
    datamodel = SQLAInterface(DictItem)
    list_columns = ["id", "type", "item", "value", "editable"]
    show_columns = list_columns
    add_columns = ["type", "item", "value", "editable"]
    edit_columns = ["type", "item", "value", "editable"]
    search_columns = ["type", "item", "value", "editable"]
    order_columns = ["id", "type", "item", "value"]
    label_columns = LABELS

    @expose("/", methods=["POST"])
    @protect()
    @safe
    @api_errors
    def post(self):
        """Add a dictionary item ``{type, item, value?, editable?}`` (系统管理员).
        ---
        post:
          requestBody:
            required: true
            content:
              application/json:
                schema: {$ref: '#/components/schemas/DictItemApi.post'}
          responses:
            201: {description: created}
            400: {$ref: '#/components/responses/400'}
            401: {$ref: '#/components/responses/401'}
            403: {description: not allowed}
        """
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            return self.response_400(message=str(_l("请求体必须是 JSON 对象。")))
        item = wf.create(db.session, data, current_actor().id)
        db.session.commit()
        return self.response(201, id=item.id, result=self._dump(item))

    @expose("/<int:pk>", methods=["PUT"])
    @protect()
    @safe
    @api_errors
    def put(self, pk):
        """Change an editable item (only the fields given).
        ---
        put:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer}}
          requestBody:
            required: true
            content:
              application/json:
                schema: {$ref: '#/components/schemas/DictItemApi.put'}
          responses:
            200: {description: saved}
            400: {$ref: '#/components/responses/400'}
            403: {description: not allowed}
            404: {$ref: '#/components/responses/404'}
            409: {description: the item is not editable}
        """
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            return self.response_400(message=str(_l("请求体必须是 JSON 对象。")))
        item = wf.update(db.session, pk, data, current_actor().id)
        db.session.commit()
        return self.response(200, result=self._dump(item))

    @expose("/<int:pk>", methods=["DELETE"])
    @protect()
    @safe
    @api_errors
    def delete(self, pk):
        """Delete an editable item that nothing uses.
        ---
        delete:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer}}
          responses:
            200: {description: deleted}
            403: {description: not allowed}
            404: {$ref: '#/components/responses/404'}
            409: {description: the item is not editable or still in use}
        """
        wf.delete(db.session, pk)
        db.session.commit()
        return self.response(200, message=str(_l("删除成功")))

    @staticmethod
    def _dump(item):
        return {"id": item.id, "type": item.type, "item": item.item, "value": item.value,
                "editable": item.editable}


def register(appbuilder):
    appbuilder.add_view(DictItemView, "DictItems", label=_l("数据字典"), icon="fa-book",
                        category="BaseData")
    appbuilder.add_api(DictItemApi)

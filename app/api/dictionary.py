"""``/api/v1/dict_item``: the 数据字典 (read: every role; add/edit/delete: 系统管理员
— the same "DictItem" permissions as the pages; the rules in app/workflows/dictionary.py)."""
from flask_appbuilder import expose
from flask_appbuilder.api import protect
from flask_appbuilder.models.sqla.interface import SQLAInterface
from flask_babel import lazy_gettext as _l

from ..extensions import db
from ..models import DictItem
from ..views.common import CrmModelRestApi, current_actor
from ..views.dictionary import LABELS
from ..workflows import dictionary as wf
from .base import api_step, json_body

ORDER = 50


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
    @api_step
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
        item = wf.create(db.session, json_body(), current_actor().id)
        return self.response(201, id=item.id, result=self._dump(item))

    @expose("/<int:pk>", methods=["PUT"])
    @protect()
    @api_step
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
        item = wf.update(db.session, pk, json_body(), current_actor().id)
        return self.response(200, result=self._dump(item))

    @expose("/<int:pk>", methods=["DELETE"])
    @protect()
    @api_step
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
        return self.response(200, message=str(_l("删除成功")))

    @staticmethod
    def _dump(item):
        return {"id": item.id, "type": item.type, "item": item.item, "value": item.value,
                "editable": item.editable}



def register(appbuilder):
    appbuilder.add_api(DictItemApi)

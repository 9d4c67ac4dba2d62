"""``/api/v1/churn``: the 客户流失 warnings (list/one/_info), 暂缓流失 (measures) and
确认流失 (confirm), with the pages' "Churn" permissions; 客户经理 see their own
customers' warnings (the workflow's ``visible_filter``)."""
from flask_appbuilder import expose
from flask_appbuilder.api import protect
from flask_appbuilder.models.filters import BaseFilter
from flask_appbuilder.models.sqla.interface import SQLAInterface

from ..extensions import db
from ..models import ChurnWarning
from ..views.churn import LABELS
from ..views.common import API_CRUD, CrmModelRestApi, current_actor
from ..workflows import churn as wf
from .base import api_step, json_body

ORDER = 40


class VisibleChurnFilter(BaseFilter):
    """客户经理 see the warnings of their own customers; the others see all."""
    name = "visible"
    arg_name = "visible"

    def apply(self, query, value):
        cond = wf.visible_filter(current_actor())
        return query if cond is None else query.filter(cond)


class ChurnApi(CrmModelRestApi):
    resource_name = "churn"
    class_permission_name = "Churn"
    method_permission_name = dict(API_CRUD, measures="measure")
    datamodel = SQLAInterface(ChurnWarning)
    include_route_methods = {"get", "get_list", "info", "measures", "confirm"}
    list_columns = ["id", "customer_id", "manager_id", "last_order_date", "warned_on", "reason",
                    "confirmed_on", "status"]
    show_columns = list_columns
    search_columns = ["customer_id", "manager_id", "status", "warned_on", "last_order_date"]
    order_columns = ["id", "warned_on", "last_order_date", "status"]
    base_order = ("id", "desc")
    base_filters = [["id", VisibleChurnFilter, lambda: None]]
    label_columns = LABELS

    def _add_measures(self, pks, rows):
        measures = wf.measures_of(db.session, pks)
        for pk, row in zip(pks, rows):
            row["measures"] = wf.measures_json(measures.get(pk, []))

    def pre_get_list(self, data):
        self._add_measures(data.get("ids", []), data.get("result", []))

    def pre_get(self, data):
        self._add_measures([data.get("id")], [data["result"]])

    def _result(self, code, pk):
        db.session.expire_all()
        w = db.session.get(ChurnWarning, pk)
        return self.response(code, id=pk, result=wf.to_json(w, wf.measures_of(db.session, [pk])[pk]))

    @expose("/<int:pk>/measures", methods=["POST"])
    @protect()
    @api_step
    def measures(self, pk):
        """暂缓流失: append a measure ``{"measure": "..."}`` (the first one → delaying).
        ---
        post:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer}}
          requestBody:
            content:
              application/json:
                schema: {type: object, properties: {measure: {type: string}}, required: [measure]}
          responses:
            201: {description: the warning with its measures}
            400: {$ref: '#/components/responses/400'}
            403: {$ref: '#/components/responses/403'}
            404: {$ref: '#/components/responses/404'}
            409: {description: wrong state}
        """
        wf.add_measure(db.session, current_actor(), pk, json_body().get("measure"))
        return self._result(201, pk)

    @expose("/<int:pk>/confirm", methods=["POST"])
    @protect()
    @api_step
    def confirm(self, pk):
        """确认流失 ``{"reason": "..."}``: needs at least one measure; customer → lost.
        ---
        post:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer}}
          requestBody:
            content:
              application/json:
                schema: {type: object, properties: {reason: {type: string}}, required: [reason]}
          responses:
            200: {description: the confirmed warning}
            400: {$ref: '#/components/responses/400'}
            403: {$ref: '#/components/responses/403'}
            404: {$ref: '#/components/responses/404'}
            409: {description: wrong state or no measure yet}
        """
        wf.confirm(db.session, current_actor(), pk, json_body().get("reason"))
        return self._result(200, pk)



def register(appbuilder):
    appbuilder.add_api(ChurnApi)

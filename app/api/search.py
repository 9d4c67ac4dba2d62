"""``GET /api/v1/search/?q=…&kind=…&limit=…``: 全局搜索 as JSON (the same ``run``
as the results page, app/views/search.py; permission "Search" can_list)."""
from flask import request
from flask_appbuilder import expose
from flask_appbuilder.api import BaseApi, protect

from ..views.search import ALL_LIST, run
from ..workflows import search as wf
from .base import api_step

ORDER = 6


class SearchApi(BaseApi):
    class_permission_name = "Search"
    method_permission_name = ALL_LIST
    resource_name = "search"
    openapi_spec_tag = "全局搜索"

    @expose("/", methods=["GET"])
    @protect()
    @api_step
    def get(self):
        """Search what the signed-in user may read, grouped by kind.
        ---
        get:
          parameters:
          - {in: query, name: q, required: true, description: 'plain text (not rison), 1–100 characters, substring match', schema: {type: string, minLength: 1, maxLength: 100}, example: 科技}
          - {in: query, name: kind, schema: {type: string, enum: [all, customer, contact, opportunity, ticket, document, mail]}}
          - {in: query, name: limit, schema: {type: integer, minimum: 1, maximum: 100}}
          responses:
            200:
              description: hits grouped by kind (count exact up to 1000, then capped)
              content:
                application/json:
                  schema: {type: object, properties: {q: {type: string}, result: {type: object, additionalProperties: {type: object, properties: {label: {type: string}, count: {type: integer}, capped: {type: boolean}, items: {type: array, items: {type: object}}}}}}}
            400: {$ref: '#/components/responses/400'}
            401: {$ref: '#/components/responses/401'}
        """
        limit = wf.clean_limit(request.args.get("limit"))
        q, kind, groups = run(self.appbuilder, request.args.get("q", ""),
                              request.args.get("kind", ""), limit)
        return self.response(200, q=q, kind=kind or "all", result=groups)



def register(appbuilder):
    appbuilder.add_api(SearchApi)

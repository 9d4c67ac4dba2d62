"""The OpenAPI document (``GET /api/v1/_openapi``) and Swagger UI (``/swagger/v1``).

FAB registers its own ``OpenApi``/``SwaggerView`` unless ``FAB_ADD_OPENAPI_VIEWS``
is off (config.py turns it off); these subclasses keep FAB's class names, hence its
endpoint and permission names (``can_get`` on ``OpenApi``, ``can_show`` on
``SwaggerView``), and pass the generated document through ``app.api_spec.finish``
(valid OpenAPI 3.0, truthful schemas, rison ``q``). Every role may read the
document and open Swagger UI: what each one may then *call* is still decided by its
rights on the APIs themselves.
"""
from flask import current_app
from flask_appbuilder.api import BaseApi, expose, protect, safe
from flask_appbuilder.api.manager import OpenApi as FabOpenApi
from flask_appbuilder.api.manager import SwaggerView as FabSwaggerView

from ..workflows.actors import EXECUTIVE, MANAGER, SUPERVISOR

ORDER = 99
RIGHTS = {role: [("OpenApi", "can_get"), ("SwaggerView", "can_show")]
          for role in (EXECUTIVE, SUPERVISOR, MANAGER)}


class OpenApi(FabOpenApi):
    """FAB's ``/api/<version>/_openapi`` with the corrections of ``app.api_spec``."""

    @expose("/<version>/_openapi")
    @protect()
    @safe
    def get(self, version):
        """The OpenAPI 3.0 document of one API version (``v1``).
        ---
        get:
          description: >-
            The OpenAPI document of an API version
          parameters:
          - in: path
            schema:
              type: string
              enum: [v1]
            name: version
            required: true
          responses:
            200:
              description: The OpenAPI document
              content:
                application/json:
                  schema:
                    type: object
            404:
              $ref: '#/components/responses/404'
        """
        from ..api_spec import finish

        api_spec = self._create_api_spec(version)
        found = False
        for base_api in current_app.appbuilder.baseviews:
            if isinstance(base_api, BaseApi) and base_api.version == version:
                base_api.add_api_spec(api_spec)
                found = True
        if not found:
            return self.response_404()
        return self.response(200, **finish(api_spec.to_dict(), current_app.appbuilder))


class SwaggerView(FabSwaggerView):
    """FAB's Swagger UI page (its template carries the CSP nonce)."""


def register(appbuilder):
    if current_app.config.get("FAB_API_SWAGGER_UI"):
        appbuilder.add_api(OpenApi)
        appbuilder.add_view_no_menu(SwaggerView)

"""``GET /api/v1/rollup/`` (the order rollup's state, ``refreshed_at``) and
``POST /api/v1/rollup/refresh`` (系统管理员: rebuild it now). Permissions as the
page (app/views/rollup.py): ``can_list`` / ``can_refresh`` · ``Rollup``."""
from flask_appbuilder.api import BaseApi, expose, protect, safe

from ..extensions import db
from ..views.common import current_actor
from ..views.rollup import PERMISSIONS
from ..workflows import rollup as wf
from .base import api_step

ORDER = 60


class RollupApi(BaseApi):
    class_permission_name = "Rollup"
    method_permission_name = PERMISSIONS
    resource_name = "rollup"
    openapi_spec_tag = "订单汇总"

    @expose("/", methods=["GET"])
    @protect()
    @safe
    def get(self):
        """The rollup in place: when it was built (``refreshed_at``, null before the
        first refresh), its row counts and how long the refresh took.
        ---
        get:
          responses:
            200:
              description: the rollup's state
              content:
                application/json:
                  schema: {$ref: '#/components/schemas/RollupState'}
            401: {$ref: '#/components/responses/401'}
            403: {$ref: '#/components/responses/403'}
        """
        return self.response(200, result=wf.to_json(wf.status(db.session)))

    @expose("/refresh", methods=["POST"])
    @protect()
    @safe
    @api_step
    def refresh(self):
        """Rebuild the rollup from the sales system now (系统管理员); 409 while another
        refresh runs.
        ---
        post:
          responses:
            200:
              description: the new state
              content:
                application/json:
                  schema: {$ref: '#/components/schemas/RollupState'}
            401: {$ref: '#/components/responses/401'}
            403: {$ref: '#/components/responses/403'}
            409: {description: another refresh is running}
        """
        state = wf.refresh_now(db.session, current_actor())
        return self.response(200, result=wf.to_json(state))


def register(appbuilder):
    appbuilder.add_api(RollupApi)

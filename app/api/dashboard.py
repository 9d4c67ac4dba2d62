"""REST twins of the 工作台 and the notifications (app/views/dashboard.py has the pages):

* ``GET /api/v1/dashboard/`` — the signed-in user's tiles (counts) and, per role, the
  load table, KPI series, system status and (admin) the unconfigured 服务时限;
* ``GET /api/v1/notification/`` (own only), ``POST /api/v1/notification/<id>/read``,
  ``POST /api/v1/notification/read_all``, ``GET|PUT /api/v1/notification/settings``.

The rules live in app/workflows/dashboard.py and app/workflows/notifications.py.
"""
from flask import g, request
from flask_appbuilder import expose
from flask_appbuilder.api import BaseApi, protect

from ..extensions import db
from ..views.common import current_actor
from ..views.dashboard import _ALL_LIST, PAGE_SIZE, _page, dashboard_data
from ..workflows import notifications as nwf
from .base import api_step

ORDER = 5


class DashboardApi(BaseApi):
    class_permission_name = "Dashboard"
    method_permission_name = _ALL_LIST
    resource_name = "dashboard"
    openapi_spec_tag = "工作台"

    @expose("/", methods=["GET"])
    @protect()
    @api_step
    def get(self):
        """The signed-in user's 工作台: counts per tile and, per role, load, KPI, system.
        ---
        get:
          responses:
            200:
              description: counts (and per role manager_load, kpi, system)
              content:
                application/json:
                  schema: {type: object, properties: {today: {type: string}, counts: {type: object, additionalProperties: {type: integer}}, unread_notifications: {type: integer}}}
            401: {$ref: '#/components/responses/401'}
        """
        return self.response(200, **dashboard_data(current_actor()))


class NotificationApi(BaseApi):
    class_permission_name = "Dashboard"
    method_permission_name = _ALL_LIST
    resource_name = "notification"
    openapi_spec_tag = "通知"

    @expose("/", methods=["GET"])
    @protect()
    @api_step
    def get_list(self):
        """The signed-in user's notifications, newest first (never another user's).
        ---
        get:
          parameters:
          - {in: query, name: page, schema: {type: integer, minimum: 0}}
          - {in: query, name: unread, schema: {type: integer, enum: [0, 1]}}
          responses:
            200:
              description: notifications
              content:
                application/json:
                  schema: {type: object, properties: {count: {type: integer}, unread: {type: integer}, result: {type: array, items: {type: object}}}}
            400: {$ref: '#/components/responses/400'}
            401: {$ref: '#/components/responses/401'}
        """
        items, total = nwf.for_user(db.session, g.user.id, request.args.get("unread") == "1",
                                    _page(), PAGE_SIZE)
        return self.response(200, count=total, unread=nwf.unread_count(db.session, g.user.id),
                             result=[nwf.to_json(n) for n in items])

    @expose("/<int:pk>/read", methods=["POST"])
    @protect()
    @api_step
    def read(self, pk):
        """Mark one of one's own notifications read (another user's: 403).
        ---
        post:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer}}
          responses:
            200: {description: the notification}
            401: {$ref: '#/components/responses/401'}
            403: {$ref: '#/components/responses/403'}
            404: {$ref: '#/components/responses/404'}
        """
        n = nwf.mark_read(db.session, g.user.id, pk)
        db.session.refresh(n)     # read_on was set by an UPDATE
        return self.response(200, result=nwf.to_json(n))

    @expose("/read_all", methods=["POST"])
    @protect()
    @api_step
    def read_all(self):
        """Mark all of one's own notifications read.
        ---
        post:
          responses:
            200: {description: how many were marked}
            401: {$ref: '#/components/responses/401'}
        """
        count = nwf.mark_all_read(db.session, g.user.id)
        return self.response(200, marked=count)

    @expose("/settings", methods=["GET"])
    @protect()
    @api_step
    def settings(self):
        """Which notification kinds also come by mail.
        ---
        get:
          responses:
            200: {description: "{kind: true|false}"}
            401: {$ref: '#/components/responses/401'}
        """
        return self.response(200, result=nwf.settings(db.session, g.user.id))

    @expose("/settings", methods=["PUT"])
    @protect()
    @api_step
    def put_settings(self):
        """Switch mail per kind: ``{"ticket_assigned": false, ...}``.
        ---
        put:
          requestBody:
            content:
              application/json:
                schema: {type: object, additionalProperties: {type: boolean}}
          responses:
            200: {description: the settings}
            400: {$ref: '#/components/responses/400'}
            401: {$ref: '#/components/responses/401'}
        """
        # not json_body(): the workflow names what a settings object must look like
        data = request.get_json(silent=True)
        result = nwf.save_settings(db.session, g.user.id, data)
        return self.response(200, result=result)


def register(appbuilder):
    appbuilder.add_api(DashboardApi)
    appbuilder.add_api(NotificationApi)

"""用户目录: the read-only ``user`` REST resource (id, username, name, roles,
active) for picking assignees. Never exposes password hashes or e-mail internals.
No HTML page of its own, so the function's RIGHTS are declared here."""
from flask import request
from flask_appbuilder import expose
from flask_appbuilder.api import BaseApi, protect
from sqlalchemy import func, select

from ..extensions import db
from ..models import Role, User
from ..workflows.actors import EXECUTIVE, MANAGER, SUPERVISOR
from ..workflows.names import display_name
from .base import api_step, int_arg

ORDER = 90
# Every signed-in user reads the directory and keeps their own profile: FAB's 个人信息
# page, 修改个人信息 and 修改密码 (own password only; the complexity rule applies).
RIGHTS = {role: [("UserDirectory", "can_list"),
                 ("UserDBModelView", "can_userinfo|userinfoedit|resetmypassword"),
                 ("UserInfoEditView|ResetMyPasswordView", "can_this_form_get|can_this_form_post")]
          for role in (EXECUTIVE, SUPERVISOR, MANAGER)}


def user_json(u):
    return {"id": u.id, "username": u.username, "name": display_name(u),
            "roles": [r.name for r in u.roles], "active": bool(u.active),
            "email": u.email}


class UserDirectoryApi(BaseApi):
    resource_name = "user"
    class_permission_name = "UserDirectory"     # 用户目录 = can_list
    method_permission_name = {"get_list": "list", "get": "list"}
    allow_browser_login = True
    openapi_spec_tag = "user"

    @expose("/", methods=["GET"])
    @protect()
    @api_step
    def get_list(self):
        """List users, optionally ``?role=客户经理&active=true``, paged.
        ---
        get:
          parameters:
          - {in: query, name: role, schema: {type: string}}
          - {in: query, name: active, schema: {type: boolean}}
          - {in: query, name: page, schema: {type: integer}}
          - {in: query, name: page_size, schema: {type: integer}}
          responses:
            200: {description: users}
            401: {$ref: '#/components/responses/401'}
        """
        q = select(User)
        role = request.args.get("role")
        if role:
            q = q.where(User.roles.any(Role.name == role))
        active = request.args.get("active")
        if active is not None:
            q = q.where(User.active.is_(active.lower() in ("1", "true", "yes")))
        page = int_arg(request.args, "page")
        size = int_arg(request.args, "page_size", 100, 1, 100)
        count = db.session.scalar(select(func.count()).select_from(q.subquery()))
        users = db.session.scalars(q.order_by(User.id).limit(size).offset(page * size)).all()
        return self.response(200, count=count, result=[user_json(u) for u in users])

    @expose("/<int:pk>", methods=["GET"])
    @protect()
    @api_step
    def get(self, pk):
        """One user.
        ---
        get:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer}}
          responses:
            200: {description: user}
            404: {$ref: '#/components/responses/404'}
        """
        u = db.session.get(User, pk)
        if u is None:
            return self.response_404()
        return self.response(200, result=user_json(u))


def register(appbuilder):
    appbuilder.add_api(UserDirectoryApi)

"""Roles and rights.

The rights matrix of DESIGN.md §3 is declared by the view modules: each has a
``RIGHTS`` dict ``{role: [(view_name_regex, permission_regex), ...]}``.
``init_roles`` writes them into FAB's tables (not FAB_ROLES), so admins can edit
roles in the security UI. A (role, permission, view) pair is granted at most once
ever (recorded in crm_role_grant): re-running init adds rights of new views but
never re-adds what an admin removed.
"""
import re
import secrets

from flask import g, has_request_context
from flask_appbuilder.actions import action
from flask_appbuilder.widgets import ListWidget, ShowWidget
from flask_appbuilder.fieldwidgets import BS3PasswordFieldWidget
from flask_appbuilder.forms import DynamicForm
from flask_appbuilder.security.views import ResetMyPasswordView as FabResetMyPasswordView
from flask_appbuilder.validators import PasswordComplexityValidator
from flask_appbuilder.security.sqla.manager import SecurityManager
from flask_appbuilder.security.views import (
    PermissionModelView, PermissionViewModelView, RoleModelView, UserDBModelView,
    UserGroupModelView, ViewMenuModelView,
)
from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from wtforms import PasswordField
from wtforms.validators import DataRequired, EqualTo

from .models import RoleGrant
from .models.user import SYSTEM_USERNAME
from .views.common import ACTION_LABELS, SafeActionsMixin
from .views.user_names import NAME_VALIDATORS, UserInfoEditView
from .workflows.actors import ADMIN, EXECUTIVE, MANAGER, ROLES, SUPERVISOR, role_label  # noqa: F401


def password_complexity(password):
    """New and changed passwords: at least 8 characters with letters and digits."""
    from flask_babel import gettext as _
    from wtforms import ValidationError

    pw = password or ""
    if len(pw) < 8 or not re.search(r"[A-Za-z]", pw) or not re.search(r"\d", pw):
        raise ValidationError(_("密码至少 8 位，并且必须同时包含字母和数字。"))


# FAB's ``download`` route serves UPLOAD_FOLDER files; these views have no file
# column, so it only ever answered 500 (KeyError: UPLOAD_FOLDER): not registered.
# Views without any @action do not register FAB's action routes either.
NO_FILES = {"download"}
NO_ACTIONS = {"action", "action_post", "download"}


class CrmUserDBModelView(SafeActionsMixin, UserDBModelView):
    """FAB's user list plus the failed-login counter and an 解锁账号 action."""

    class_permission_name = "UserDBModelView"   # keep FAB's permission names
    exclude_route_methods = NO_FILES
    list_columns = ["first_name", "last_name", "username", "email", "active", "roles",
                    "fail_login_count"]
    # a stable order (FAB sets none, and PostgreSQL returns the rows in any order)
    base_order = ("username", "asc")
    # this project keeps the 姓 in FAB's first_name and the 名 in last_name (seed,
    # crm create-user, every "姓名" display): the form says so, 姓 before 名
    label_columns = dict(UserDBModelView.label_columns, fail_login_count=_l("连续登录失败次数"),
                         first_name=_l("姓"), last_name=_l("名"), get_full_name=_l("姓名"))
    validators_columns = dict(UserDBModelView.validators_columns, **NAME_VALIDATORS)  # no CR/LF …
    # FAB's help texts are English (its catalogue has none of them)
    description_columns = {
        "first_name": _l("用户的姓，例如“张”"),
        "last_name": _l("用户的名，例如“伟”"),
        "username": _l("登录用的用户名"),
        "password": _l("登录密码：至少 8 位，同时包含字母和数字"),
        "conf_password": _l("再输入一次密码以确认"),
        "active": _l("不要删除离职或暂停使用的用户（操作记录要保留），取消勾选即可停用"),
        "email": _l("用户的电子邮箱，用于发送和接收邮件"),
        "roles": _l("用户的角色；角色决定用户能使用哪些功能"),
        "groups": _l("用户所属的用户组；用户组关联一组角色"),
    }
    # Chinese values instead of Python's (True / None / [高管])
    formatters_columns = {
        "active": lambda v: _l("是") if v else _l("否"),
        "roles": lambda roles: str(_l("、")).join(role_label(r.name) for r in roles or []),
        "fail_login_count": lambda v: v or 0,
        "last_login": lambda v: v.strftime("%Y-%m-%d %H:%M") if v else "",
        "created_on": lambda v: v.strftime("%Y-%m-%d %H:%M") if v else "",
        "changed_on": lambda v: v.strftime("%Y-%m-%d %H:%M") if v else "",
    }

    # after saving, the user list (FAB went back to its page history, often "/")
    def post_add_redirect(self):
        from flask import redirect, url_for
        return redirect(url_for(f"{self.endpoint}.list"))

    post_edit_redirect = post_add_redirect

    def _delete(self, pk):
        """FAB's delete, except when the database refuses it: a user who has
        操作记录 (or created other records) stays — the records keep naming who did
        what — and the admin is told why in Chinese (FAB flashed an empty message)."""
        from flask import abort, flash
        from flask_appbuilder.exceptions import DatabaseException

        item = self.datamodel.get(pk, self._base_filters)
        if not item:
            abort(404)
        try:
            self.pre_delete(item)
        except Exception as e:
            flash(str(e), "danger")
            return
        try:
            self.datamodel.delete(item)
        except DatabaseException:
            flash(_l("用户“%(name)s”已有操作记录或创建过业务数据，不能删除（操作记录必须保留）；"
                     "如需禁止其登录，请编辑该用户并取消“是否激活”。", name=item.username), "danger")
        else:
            self.post_delete(item)
            flash(self.delete_row_message, "success")
        self.update_redirect()

    @action("unlock", _l("解锁账号"), _l("清除所选用户的登录失败次数并解锁？"), "fa-unlock")
    def unlock(self, items):
        from flask import flash, redirect

        items = [u for u in (items if isinstance(items, list) else [items]) if u is not None]
        for user in items:
            self.appbuilder.sm.unlock_user(user)
        flash(_l("已解锁 %(n)d 个账号", n=len(items)), "success")
        return redirect(self.get_redirect())


class CrmRoleModelView(SafeActionsMixin, RoleModelView):
    """The role list shows names only (the permissions are on the show/edit pages)."""

    class_permission_name = "RoleModelView"
    exclude_route_methods = NO_FILES
    list_columns = ["name"]
    description_columns = {
        "name": _l("角色名称，例如“客户经理”"),
        "permissions": _l("该角色可以使用的功能；每一项写作“功能 · 操作”，带“（接口）”的是 REST 接口的权限"),
    }

    def post_add_redirect(self):
        from flask import redirect, url_for
        return redirect(url_for(f"{self.endpoint}.list"))

    post_edit_redirect = post_add_redirect

    # FAB's RoleListWidget prints the raw name (for FAB_ROLES builtin roles, unused
    # here); the plain list applies formatters: built-in role names in the UI language
    list_widget = ListWidget
    show_widget = ShowWidget
    formatters_columns = {"name": lambda name: role_label(name)}

    @action("copyrole", _l("复制角色"), _l("复制所选角色（连同其权限）？"), icon="fa-copy",
            single=False)
    def copy_role(self, items):
        """FAB's copy iterates ``items``; from the show page it gets one role (a
        TypeError), and a second copy of the same role broke the unique name."""
        from flask import flash, redirect

        items = [r for r in (items if isinstance(items, list) else [items]) if r is not None]
        self.update_redirect()
        sm = self.appbuilder.sm
        taken = {r.name for r in sm.get_all_roles()}
        copied = []
        for role in items:
            base = f"{role.name[:50]} 副本"
            name, n = base, 1
            while name in taken:
                n += 1
                name = f"{base}{n}"
            taken.add(name)
            new_role = role.__class__()
            new_role.name = name
            new_role.permissions = list(role.permissions)
            try:
                self.datamodel.add(new_role)          # commits (rolls back on error)
            except SQLAlchemyError:
                flash(_l("复制角色“%(name)s”失败，请重试。", name=role.name), "danger")
                continue
            copied.append(name)
        if copied:
            flash(_l("已复制为：%(names)s", names=str(_l("、")).join(copied)), "success")
        return redirect(self.get_redirect())


class CrmUserGroupModelView(UserGroupModelView):
    class_permission_name = "UserGroupModelView"
    exclude_route_methods = NO_ACTIONS


class CrmPermissionModelView(PermissionModelView):
    class_permission_name = "PermissionModelView"
    exclude_route_methods = NO_ACTIONS


class CrmViewMenuModelView(ViewMenuModelView):
    class_permission_name = "ViewMenuModelView"
    exclude_route_methods = NO_ACTIONS


class CrmPermissionViewModelView(PermissionViewModelView):
    class_permission_name = "PermissionViewModelView"
    exclude_route_methods = NO_ACTIONS


class ChangeMyPasswordForm(DynamicForm):
    """修改自己的密码: the current password first (FAB's form has none, so a borrowed
    session could take the account over)."""

    current_password = PasswordField(
        _l("当前密码"), validators=[DataRequired(message=_l("请输入当前密码。"))],
        widget=BS3PasswordFieldWidget())
    password = PasswordField(
        _l("新密码"), description=_l("至少 8 位，并且同时包含字母和数字。"),
        validators=[DataRequired(message=_l("请输入新密码。")), PasswordComplexityValidator()],
        widget=BS3PasswordFieldWidget())
    conf_password = PasswordField(
        _l("确认新密码"), description=_l("再输入一次新密码。"),
        validators=[EqualTo("password", message=_l("两次输入的新密码不一致。"))],
        widget=BS3PasswordFieldWidget())

    def validate_current_password(self, field):
        from flask import current_app, g
        from wtforms import ValidationError

        sm = current_app.appbuilder.sm
        user = sm.get_user_by_id(g.user.id)
        ok, locked = sm.check_current_password(user, field.data or "")
        if locked:
            raise ValidationError(_l("密码输错次数过多，已锁定 %(m)d 分钟；密码没有修改。请稍后再试，"
                                     "或联系系统管理员解锁。", m=sm._lockout()[1]))
        if not ok:
            raise ValidationError(_l("当前密码不正确，密码没有修改。"))


class ResetMyPasswordView(FabResetMyPasswordView):
    """FAB's 修改密码 form with the current password; same name, so the endpoints
    (``ResetMyPasswordView.this_form_get``) and permissions stay FAB's."""

    form = ChangeMyPasswordForm
    form_title = _l("修改密码")
    message = _l("密码已修改；此账号在其他浏览器和设备上的登录（包括接口令牌）已全部失效。")


class CrmSecurityManager(SecurityManager):
    """FAB's security manager plus account lockout, server-side sessions and a
    Chinese role UI."""

    resetmypasswordview = ResetMyPasswordView

    # ---- sessions: valid only while their row in crm_login_session exists ---------------
    def create_login_manager(self, app):
        lm = super().create_login_manager(app)
        lm.user_loader(self.load_user_session)
        return lm

    def load_user_session(self, pk):
        """Flask-Login's loader: the cookie's user, if the session it names is live."""
        from flask import session as cookie

        from . import sessions

        try:
            user = self.load_user(pk)
        except (TypeError, ValueError):
            user = None
        if user is not None and sessions.is_live(self.session, user.id,
                                                 cookie.get(sessions.SESSION_KEY)):
            return user
        for key in ("_user_id", "_fresh", "_id", sessions.SESSION_KEY):
            cookie.pop(key, None)   # ended (logout elsewhere, password change…): forget it
        return None

    def create_jwt_manager(self, app):
        from flask import jsonify
        from flask_babel import gettext as _

        from .sessions import jwt_claims

        jm = super().create_jwt_manager(app)
        jm.additional_claims_loader(jwt_claims)

        @jm.user_lookup_error_loader
        def _ended(_header, _data):
            return jsonify(message=_("登录已失效（修改了密码、账号已停用或令牌来自旧版本），"
                                     "请重新登录获取令牌。")), 401
        return jm

    def load_user_jwt(self, _jwt_header, jwt_data):
        """A JWT counts only while the API login it came from is live (a password change
        or a deactivation ends it)."""
        from flask import g

        from . import sessions

        try:
            user = self.load_user(jwt_data["sub"])
        except (KeyError, TypeError, ValueError):
            return None
        if user is None or not user.is_active or not sessions.is_live(
                self.session, user.id, jwt_data.get(sessions.JWT_CLAIM)):
            return None
        g.user = user
        return user

    # ---- permission checks: one query per request, not one per check ------------------
    # FAB asks the database once per has_access() — about 30 EXISTS queries to draw one
    # page (menu entries, list buttons, actions). Within a request the answer cannot
    # change, so the user's (permission, view) pairs are read once into ``g`` and every
    # later check is a set lookup. The next request reads them again, so an admin's
    # change to a role applies at once.
    def _has_view_access(self, user, permission_name, view_name):
        if not has_request_context():
            return super()._has_view_access(user, permission_name, view_name)
        roles = self.get_user_roles(user)
        if any(role.name in self.builtin_roles for role in roles):
            return super()._has_view_access(user, permission_name, view_name)
        role_ids = tuple(sorted(role.id for role in roles))
        cached = g.get("_crm_permissions")
        if cached is None or cached[0] != role_ids:
            cached = (role_ids, self._permissions_of_roles(role_ids))
            g._crm_permissions = cached
        return (permission_name, view_name) in cached[1]

    def _permissions_of_roles(self, role_ids):
        if not role_ids:
            return frozenset()
        from flask_appbuilder.security.sqla.models import (
            Permission, PermissionView, ViewMenu, assoc_permissionview_role)

        rows = self.appbuilder.session.execute(
            select(Permission.name, ViewMenu.name)
            .select_from(PermissionView)
            .join(Permission, PermissionView.permission_id == Permission.id)
            .join(ViewMenu, PermissionView.view_menu_id == ViewMenu.id)
            .join(assoc_permissionview_role,
                  assoc_permissionview_role.c.permission_view_id == PermissionView.id)
            .where(assoc_permissionview_role.c.role_id.in_(role_ids))).all()
        return frozenset((perm, view) for perm, view in rows)

    # ---- one function, one permission -----------------------------------------------
    # A business function is ONE (permission, view menu) pair, e.g. ("can_add", "Service")
    # for 服务创建: the HTML views and the REST API of a module share the view-menu name
    # (``class_permission_name``) and map their methods onto the function's permission
    # (``method_permission_name``). The menu follows (``get_user_menu_access``).
    def add_permissions_view(self, base_permissions, view_menu):
        """FAB deletes every permission of ``view_menu`` that is not in *this* view's
        base_permissions; views sharing a view menu would delete each other's. Write
        the union of all views that share the name."""
        union = set(base_permissions or [])
        for view in self.appbuilder.baseviews:
            if getattr(view, "class_permission_name", None) == view_menu:
                union.update(view.base_permissions or [])
        return super().add_permissions_view(sorted(union), view_menu)

    def menu_rights(self):
        """{menu item name: (permission, view menu) of the page it opens | "category"}.
        Items whose page is not protected (or not ours) are absent: FAB's menu_access."""
        from .views.common import menu_item_permission

        appbuilder = self.appbuilder
        # the cache's key: views and menu items registered so far (a cheap count —
        # FAB's get_flat_name_list recurses and repeats itself; it ran ~100 times a page)
        key = (len(appbuilder.baseviews),
               sum(1 + len(item.childs or ()) for item in appbuilder.menu.get_list()))
        cached = getattr(appbuilder, "_crm_menu_rights", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        rights = {}

        def walk(items):
            for item in items:
                if item.childs:
                    rights[item.name] = "category"
                    walk(item.childs)
                elif item.name != "-":
                    target = menu_item_permission(appbuilder, item)
                    if target is not None:
                        rights[item.name] = target
        walk(appbuilder.menu.get_list())
        appbuilder._crm_menu_rights = (key, rights)
        return rights

    def menu_visible(self, name):
        """A governed menu item: shown iff the user has its page's permission; a
        category iff one of its items is shown."""
        target = self.menu_rights().get(name)
        if isinstance(target, tuple):
            return super().has_access(*target)
        item = self.appbuilder.menu.find(name)
        return any(self.menu_visible(child.name) if child.name in self.menu_rights()
                   else super().has_access("menu_access", child.name)
                   for child in (item.childs if item else []) if child.name != "-")

    def has_access(self, permission_name, view_name):
        """``menu_access`` of a governed item (FAB's navbar asks this) is the
        permission of the page it opens; everything else as FAB.

        Within a request each (permission, view) is answered once (``g``, keyed by the
        user): a page asks 30–45 times (menu, buttons, actions), and FAB's path for each
        (current user, session state, roles) cost more than the set lookup. The next
        request starts empty, so a role change applies to it."""
        if not has_request_context():
            return self._has_access(permission_name, view_name)
        user = g.get("user")
        key = (getattr(user, "id", None), bool(g.get("_api_key_user")), permission_name, view_name)
        answers = g.get("_crm_access")
        if answers is None:
            answers = g._crm_access = {}
        found = answers.get(key)
        if found is None:
            found = answers[key] = self._has_access(permission_name, view_name)
        return found

    def _has_access(self, permission_name, view_name):
        if permission_name == "menu_access" and view_name in self.menu_rights():
            return self.menu_visible(view_name)
        return super().has_access(permission_name, view_name)

    def get_user_menu_access(self, menu_names=None):
        """The same for FAB's menu data (``/api/v1/menu/``, ``Menu.get_data``):
        FAB's separate ``menu_access`` only for items that open no protected page."""
        rights = self.menu_rights()
        names = list(dict.fromkeys(menu_names or []))
        plain = [n for n in names if n not in rights]
        allowed = set(super().get_user_menu_access(plain)) if plain else set()
        allowed.update(n for n in names if n in rights and self.menu_visible(n))
        return allowed

    def add_permissions_menu(self, view_menu_name):
        """No ``menu_access`` for items governed by their page's permission (nor for
        categories): an admin would see a permission that changes nothing."""
        if view_menu_name in self.menu_rights():
            return None
        return super().add_permissions_menu(view_menu_name)

    userdbmodelview = CrmUserDBModelView
    rolemodelview = CrmRoleModelView
    groupmodelview = CrmUserGroupModelView
    permissionmodelview = CrmPermissionModelView
    viewmenumodelview = CrmViewMenuModelView
    permissionviewmodelview = CrmPermissionViewModelView
    userinfoeditview = UserInfoEditView     # 修改个人信息 with the name check

    # ---- login attempts: counted atomically in the database -------------------------
    # Every attempt on an existing, active account first reserves itself with one
    # UPDATE … SET fail_login_count = fail_login_count + 1 … RETURNING, committed before
    # the (slow) password check: parallel attempts cannot lose a count (PostgreSQL
    # locks the row, SQLite serialises writers), and once LOCKOUT_ATTEMPTS failures are
    # on record the next attempts are refused without looking at the password — so an
    # attacker gets at most LOCKOUT_ATTEMPTS password checks per lock period, however
    # many requests run at once. A correct password then resets the counter.
    def _lockout(self):
        from flask import current_app

        return (current_app.config.get("LOCKOUT_ATTEMPTS", 5),
                current_app.config.get("LOCKOUT_MINUTES", 15))

    def is_locked(self, user):
        from datetime import datetime, timedelta

        limit, minutes = self._lockout()
        if not limit or (user.fail_login_count or 0) < limit:
            return False
        # changed_on is set by every counted failure
        return (user.changed_on or datetime.min) + timedelta(minutes=minutes) > datetime.now()

    def _reserve_attempt(self, user):
        """Count one attempt as failed, atomically. Returns (count, locked): locked when
        the account was already locked (the attempt is counted but does not extend the
        lock, and the password must not be checked)."""
        from datetime import datetime, timedelta

        from sqlalchemy import case, func, update

        User = self.user_model
        limit, minutes = self._lockout()
        now = datetime.now()
        failures = func.coalesce(User.fail_login_count, 0)
        changed_on = now
        if limit:
            was_locked = (failures >= limit) & (User.changed_on > now - timedelta(minutes=minutes))
            changed_on = case((was_locked, User.changed_on), else_=now)
        row = self.session.execute(
            update(User).where(User.id == user.id)
            .values(fail_login_count=failures + 1, changed_on=changed_on)
            .returning(User.fail_login_count, User.changed_on)
            .execution_options(synchronize_session=False)).one()
        self.session.commit()       # expires ``user``: it reloads the new values
        return row[0], bool(limit) and row[1] != now

    def _record_success(self, user):
        from datetime import datetime

        from sqlalchemy import func, update

        User = self.user_model
        self.session.execute(
            update(User).where(User.id == user.id)
            .values(login_count=func.coalesce(User.login_count, 0) + 1, fail_login_count=0,
                    last_login=datetime.now())
            .execution_options(synchronize_session=False))
        self.session.commit()

    def check_current_password(self, user, password):
        """The 修改密码 form's current password, counted like a login attempt (a borrowed
        session must not be a way to guess the password). Returns (ok, locked)."""
        from sqlalchemy import update
        from werkzeug.security import check_password_hash

        if user is None or not user.password:
            return False, False
        _count, locked = self._reserve_attempt(user)
        if locked:
            return False, True
        if not password or not check_password_hash(user.password, password):
            return False, False
        User = self.user_model
        self.session.execute(update(User).where(User.id == user.id).values(fail_login_count=0)
                             .execution_options(synchronize_session=False))
        self.session.commit()
        return True, False

    def update_user_auth_stat(self, user, success=True):
        """FAB's bookkeeping (other auth types call it), without lost updates."""
        if success:
            self._record_success(user)
            self.on_user_login(user)
        else:
            self._reserve_attempt(user)
            self.on_user_login_failed(user)

    def auth_user_db(self, username, password):
        """FAB's auth_user_db (username or e-mail, no empty passwords, the same work for
        unknown and known users), with the attempt reserved before the password check."""
        import logging

        from flask import current_app, flash, has_request_context
        from flask_appbuilder.security.utils import is_null_password
        from flask_babel import gettext as _
        from werkzeug.security import check_password_hash

        log = logging.getLogger(__name__)
        if not username:
            return None
        if is_null_password(password):
            log.info("登录失败：%s（空密码）", username)
            return None
        user = self.find_user(username=username)
        if user is None:
            user = self.find_user(email=username)
        else:
            self.find_user(email=username)          # balance failure and success
        if user is None or not user.is_active:
            check_password_hash(current_app.config["AUTH_DB_FAKE_PASSWORD_HASH_CHECK"],
                                "password")
            log.info("登录失败：%s", username)
            return None
        _count, locked = self._reserve_attempt(user)
        if locked:
            if has_request_context():
                flash(_("登录失败次数过多，账号已被锁定 %(m)d 分钟；请稍后再试，或联系系统管理员解锁。",
                        m=self._lockout()[1]), "danger")
            log.info("登录被拒绝：%s 已锁定", username)
            self.on_user_login_failed(user)
            return None
        if check_password_hash(user.password, password):
            self._record_success(user)
            self.on_user_login(user)
            return user
        log.info("登录失败：%s（密码错误）", username)
        self.on_user_login_failed(user)
        return None

    def unlock_user(self, user):
        """Reset the failed-login counter, with an 操作记录 (the audit listener
        ignores the counter: every login changes it)."""
        from .workflows import audit

        before = user.fail_login_count or 0
        user.fail_login_count = 0
        audit.record_change(self.session, "ab_user", user.id, "unlock",
                            {"fail_login_count": [before, 0]})
        self.update_user(user)       # commits the change and its record together


def system_user_id():
    """The id of the inactive ``crm-system`` user that CLI and scheduler jobs act as
    (created, inactive and with the Public role only, on first use)."""
    from flask import current_app

    sm = current_app.appbuilder.sm
    user = sm.find_user(username=SYSTEM_USERNAME)
    if user is None:
        role = sm.find_role(sm.auth_role_public)
        user = sm.add_user(SYSTEM_USERNAME, "系统", "任务", "system@crm.invalid", [role],
                           password=secrets.token_urlsafe(24))
        user.active = False
        sm.session.commit()   # FAB's add_user committed the user; this its flag
    return user.id


def collect_rights():
    from .api import api_modules
    from .views import view_modules

    rights = {role: [] for role in ROLES if role != ADMIN}
    for module in [*view_modules(), *api_modules()]:
        for role, pairs in getattr(module, "RIGHTS", {}).items():
            rights.setdefault(role, []).extend(pairs)
    return rights


def legacy_permissions(appbuilder):
    """{new pair: {"html": {old pairs}, "api": {old pairs}}}: the permissions each
    route had before its function got one shared permission (FAB's
    ``previous_class_permission_name`` / ``previous_method_permission_name``)."""
    from flask import current_app
    from flask_appbuilder.api import BaseApi

    from .views.common import route_permission

    out = {}
    for rule in current_app.url_map.iter_rules():
        new = route_permission(appbuilder, rule.endpoint)
        if new is None:
            continue
        blueprint, method = rule.endpoint.rsplit(".", 1)
        view = next((v for v in appbuilder.baseviews
                     if getattr(v, "blueprint", None) is not None and v.blueprint.name == blueprint),
                    None)
        old_view = view.previous_class_permission_name or view.class_permission_name
        previous = view.previous_method_permission_name or {}
        old_name = previous.get(method) or getattr(view, method)._permission_name
        old = (old_name if old_name.startswith("can_") else "can_" + old_name, old_view)
        if old != new:
            kind = "api" if isinstance(view, BaseApi) else "html"
            out.setdefault(new, {"html": set(), "api": set()})[kind].add(old)
    return out


def migrate_merged_permissions(appbuilder, session):
    """Move an existing database onto one permission per function (``crm init``).

    A role gets a function's new permission if it held the old permission of the
    function's HTML page (what the security UI showed as that function; for a
    function with no page, of its API). An admin who had taken 服务创建 away from a
    role therefore keeps it away — now from the API too — and nobody loses a page.
    The decision is recorded in crm_role_grant, so init never grants it again.
    Then the old permissions, and the ``menu_access`` of menu items that now follow
    their page's permission, are deleted (they would govern nothing). Returns
    {role name: number of new permissions granted}. A second run finds nothing."""
    from flask_appbuilder.security.sqla.models import Permission, ViewMenu

    sm = appbuilder.sm
    pvs = {(pv.permission.name, pv.view_menu.name): pv
           for pv in session.query(sm.permissionview_model).all()
           if pv.permission is not None and pv.view_menu is not None}
    legacy = legacy_permissions(appbuilder)
    live = {(perm, view.class_permission_name) for view in appbuilder.baseviews
            for perm in (view.base_permissions or [])}
    menus = sm.menu_rights()
    dead = {pair for sources in legacy.values() for side in sources.values() for pair in side
            if pair in pvs and pair not in live}
    dead |= {pair for pair in pvs if pair[0] == "menu_access" and pair[1] in menus}
    if not dead:
        return {}
    granted_before = set(session.execute(
        select(RoleGrant.role_name, RoleGrant.permission_name, RoleGrant.view_menu_name)).all())
    result = {}
    for role in sm.get_all_roles():
        if role.name == sm.auth_role_admin:     # FAB gives the admin every permission
            continue
        held = {(pv.permission.name, pv.view_menu.name) for pv in role.permissions
                if pv.permission is not None and pv.view_menu is not None}
        count = 0
        for new, sources in legacy.items():
            html = {p for p in sources["html"] if p in pvs}
            api = {p for p in sources["api"] if p in pvs}
            if not html and not api:
                continue                         # nothing old in this database
            if new in pvs and held & (html or api) and pvs[new] not in role.permissions:
                role.permissions.append(pvs[new])
                count += 1
            key = (role.name, new[0], new[1])
            if key not in granted_before:
                session.add(RoleGrant(role_name=key[0], permission_name=key[1],
                                      view_menu_name=key[2]))
                granted_before.add(key)
        result[role.name] = count
    dead_pvs = [pvs[pair] for pair in dead]
    for role in sm.get_all_roles():
        role.permissions = [pv for pv in role.permissions if pv not in dead_pvs]
    session.flush()
    views = {pv.view_menu_id for pv in dead_pvs}
    perms = {pv.permission_id for pv in dead_pvs}
    for pv in dead_pvs:
        session.delete(pv)
    session.flush()
    # view menus and permission names nothing refers to any more
    for vid in views:
        if not session.query(sm.permissionview_model).filter_by(view_menu_id=vid).count():
            session.query(ViewMenu).filter_by(id=vid).delete()
    for pid in perms:
        if not session.query(sm.permissionview_model).filter_by(permission_id=pid).count():
            session.query(Permission).filter_by(id=pid).delete()
    session.commit()
    return result


def init_roles(appbuilder, session):
    """Create roles/permissions in the DB. Returns {role: number of pairs granted now}."""
    sm = appbuilder.sm
    if sm.find_role(ADMIN) is None:
        sm.add_role(ADMIN)
    if sm.find_role(sm.auth_role_public) is None:
        sm.add_role(sm.auth_role_public)
    appbuilder.add_permissions(update_perms=True)
    migrate_merged_permissions(appbuilder, session)

    granted_before = set(session.execute(
        select(RoleGrant.role_name, RoleGrant.permission_name, RoleGrant.view_menu_name)
    ).all())
    all_pvs = sm.session.query(sm.permissionview_model).all()
    result = {}
    for role_name, pairs in collect_rights().items():
        role = sm.find_role(role_name) or sm.add_role(role_name)
        compiled = [(re.compile(v), re.compile(p)) for v, p in pairs]
        count = 0
        for pv in all_pvs:
            if pv.permission is None or pv.view_menu is None:
                continue
            key = (role_name, pv.permission.name, pv.view_menu.name)
            if key in granted_before:
                continue
            if any(v.fullmatch(pv.view_menu.name) and p.fullmatch(pv.permission.name)
                   for v, p in compiled):
                if pv not in role.permissions:
                    role.permissions.append(pv)
                session.add(RoleGrant(role_name=key[0], permission_name=key[1],
                                      view_menu_name=key[2]))
                count += 1
        result[role_name] = count
    session.commit()
    return result


# ---- a Chinese security UI ----------------------------------------------------------
# FAB shows a permission as "can list on DictItemView". In zh the role screens show the
# business function it governs: "销售机会管理 · 新建", "客户服务 · 分配（接口）".
# Data-driven, so it keeps working when permissions are renamed (class_permission_name):
#   1. PAIR_LABELS[(permission, view_menu)]  — a whole label, for the odd pair;
#   2. function = FUNCTION_LABELS[view_menu], else learnt from the app: the menu entry
#      of a view (its Chinese label), a REST resource's Chinese name (API_LABELS), a
#      view's list_title — for every class_permission_name / menu name;
#      action = ACTION_LABELS[permission];
#      "（接口）" when the view-menu names only REST APIs (a name shared by the HTML
#      view and its API governs both: no suffix);
#   3. a readable fallback for names nobody described yet: "ServiceCreate · create".
# English keeps FAB's text.


FUNCTION_LABELS = {
    # FAB's own views and APIs (their menu labels are FAB's English)
    "UserDBModelView": "用户", "RoleModelView": "角色", "UserGroupModelView": "用户组",
    "PermissionModelView": "基本权限", "ViewMenuModelView": "视图/菜单",
    "PermissionViewModelView": "视图/菜单权限", "UserStatsChartView": "用户统计",
    "UserInfoEditView": "个人信息", "ResetPasswordView": "重置密码",
    "ResetMyPasswordView": "修改自己的密码", "SwaggerView": "接口文档",
    "OpenApi": "接口说明 (OpenAPI)", "MenuApi": "菜单", "SecurityApi": "接口登录",
    "UserDirectoryApi": "用户目录", "Security": "安全", "List Users": "用户",
    "List Roles": "角色", "List Groups": "用户组", "User's Statistics": "用户统计",
    "Base Permissions": "基本权限", "Views/Menus": "视图/菜单",
    "Permission on Views/Menus": "视图/菜单权限",
    # CRM views without a menu entry or Chinese list title of their own
    "ActivityView": "交往记录", "ContactView": "联系人", "DocumentApi": "文档",
    "ImportView": "客户/联系人导入", "ImportApi": "客户/联系人导入", "MailApi": "邮件",
    "MergeView": "客户合并", "ReportView": "统计报表", "ReportApi": "统计报表",
}

PAIR_LABELS = {
    ("can_assign", "OpportunityView"): "销售机会管理 · 指派给客户经理",
    ("can_assign", "OpportunityApi"): "销售机会 · 指派给客户经理（接口）",
    ("can_confirm", "ChurnView"): "客户流失管理 · 确认流失",
    ("can_confirm", "ChurnApi"): "客户流失预警 · 确认流失（接口）",
}

# kept for old imports
PERMISSION_LABELS = ACTION_LABELS   # defined in app/views/common.py


def _readable(name):
    """"ServiceCreateView" → "ServiceCreate"; "can_export_list" → "export list"."""
    name = re.sub(r"(View|Api|ModelView)$", "", name) or name
    return name.replace("can_", "", 1).replace("_", " ")


def learn_function_labels(appbuilder):
    """{view_menu name: (Chinese function, only REST APIs?)} from the app's own
    views, REST resources and menu — computed once per app."""
    cached = getattr(appbuilder, "_crm_function_labels", None)
    if cached is not None:
        return cached
    from flask_appbuilder.api import BaseApi

    from .views.common import API_LABELS

    labels, html_names, api_names = {}, set(), set()
    for view in appbuilder.baseviews:
        name = getattr(view, "class_permission_name", None) or type(view).__name__
        if isinstance(view, BaseApi):
            api_names.add(name)
            resource = getattr(view, "resource_name", None)
            label = API_LABELS.get(resource)
        else:
            html_names.add(name)
            label = getattr(view, "list_title", None) or getattr(view, "form_title", None)
        if label and not re.fullmatch(r"[\x00-\x7f]*", str(label)):
            labels.setdefault(name, label)

    def walk(items):
        for item in items:
            if item.name and item.label:
                labels[item.name] = item.label           # menu_access names the menu entry
                view = getattr(item, "baseview", None)
                if view is not None:
                    vm = getattr(view, "class_permission_name", None) or type(view).__name__
                    labels[vm] = item.label              # a view is named as its menu entry
            walk(item.childs or [])
    walk(appbuilder.menu.menu)
    out = {name: (label, name in api_names and name not in html_names)
           for name, label in labels.items()}
    for name in api_names - set(out):
        out[name] = (None, name not in html_names)
    appbuilder._crm_function_labels = out
    return out


def permission_label(permission, view_menu, learnt=None, translate=str):
    """The Chinese label of (permission, view_menu) — see the notes above."""
    pair = PAIR_LABELS.get((permission, view_menu))
    if pair:
        return translate(pair)
    learnt = learnt or {}
    learnt_label, api_only = learnt.get(view_menu, (None, view_menu.endswith("Api")))
    from .views.common import FUNCTION_VIEW_LABELS

    function = (FUNCTION_LABELS.get(view_menu) or FUNCTION_VIEW_LABELS.get(view_menu)
                or learnt_label)
    function = translate(function) if function else _readable(view_menu)
    action = ACTION_LABELS.get(permission)
    action = translate(action) if action else _readable(permission)
    return f"{function} · {action}{translate('（接口）') if api_only else ''}"


def install_permission_labels(appbuilder):
    from flask import current_app, has_request_context
    from flask_appbuilder.security.sqla.models import PermissionView
    from flask_babel import get_locale
    from flask_babel import gettext as _

    def label(pv):
        perm = str(pv.permission)
        view = str(pv.view_menu)
        if not has_request_context() or str(get_locale()) != "zh":
            return perm.replace("_", " ") + f" on {view}"
        return permission_label(perm, view, learn_function_labels(current_app.appbuilder),
                                translate=lambda t: _(str(t)) if isinstance(t, str) else str(t))

    PermissionView.__str__ = label
    PermissionView.__repr__ = label   # FAB's role list renders the list's repr

    from flask_appbuilder.security.sqla.models import User

    def full_name(user):
        # Chinese names are written 姓名 without a space (FAB: "first last")
        first, last = user.first_name or "", user.last_name or ""
        if re.search(r"[\u4e00-\u9fff]", first + last):
            return f"{first}{last}"
        return f"{first} {last}"

    User.get_full_name = full_name

    # FAB's 个人信息 form (UserInfoEdit) labels first_name "名" and says so in English;
    # first_name holds the 姓 here (see CrmUserDBModelView)
    from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
    from flask_appbuilder.security.forms import UserInfoEdit
    from wtforms import StringField
    from wtforms.validators import DataRequired

    UserInfoEdit.first_name = StringField(_l("姓"), validators=[DataRequired()],
                                          widget=BS3TextFieldWidget(),
                                          description=_l("您的姓，例如“张”"))
    UserInfoEdit.last_name = StringField(_l("名"), validators=[DataRequired()],
                                         widget=BS3TextFieldWidget(),
                                         description=_l("您的名，例如“伟”"))

    from flask_appbuilder.security.sqla.models import Role

    # the four built-in role names (data) shown in the interface's language: select
    # options, the index page, lists (role_label leaves other names as they are)
    Role.__str__ = lambda role: role_label(role.name)

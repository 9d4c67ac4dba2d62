"""Roles and rights.

The rights matrix of DESIGN.md §3 is declared by the view modules: each has a
``RIGHTS`` dict ``{role: [(view_name_regex, permission_regex), ...]}``.
``init_roles`` writes them into FAB's tables (not FAB_ROLES), so admins can edit
roles in the security UI. A (role, permission, view) pair is granted at most once
ever (recorded in crm_role_grant): re-running init adds rights of new views but
never re-adds what an admin removed.
"""
import re

from flask import g, has_request_context
from flask_appbuilder.actions import action
from flask_appbuilder.security.sqla.manager import SecurityManager
from flask_appbuilder.security.views import (
    PermissionModelView, PermissionViewModelView, RoleModelView, UserDBModelView,
    UserGroupModelView, ViewMenuModelView,
)
from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from .models import RoleGrant
from .views.common import SafeActionsMixin
from .workflows.actors import ADMIN, EXECUTIVE, MANAGER, ROLES, SUPERVISOR  # noqa: F401


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
    label_columns = dict(UserDBModelView.label_columns, fail_login_count=_l("连续登录失败次数"))
    # Chinese values instead of Python's (True / None / [高管])
    formatters_columns = {
        "active": lambda v: _l("是") if v else _l("否"),
        "roles": lambda roles: "、".join(r.name for r in roles or []),
        "fail_login_count": lambda v: v or 0,
        "last_login": lambda v: v.strftime("%Y-%m-%d %H:%M") if v else "",
        "created_on": lambda v: v.strftime("%Y-%m-%d %H:%M") if v else "",
        "changed_on": lambda v: v.strftime("%Y-%m-%d %H:%M") if v else "",
    }

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
            flash(_l("已复制为：%(names)s", names="、".join(copied)), "success")
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


class CrmSecurityManager(SecurityManager):
    """FAB's security manager plus account lockout and a Chinese role UI."""

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
        key = (len(appbuilder.baseviews), len(appbuilder.menu.get_flat_name_list()))
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
        permission of the page it opens; everything else as FAB."""
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

    def is_locked(self, user):
        from datetime import datetime, timedelta

        from flask import current_app

        limit = current_app.config.get("LOCKOUT_ATTEMPTS", 5)
        minutes = current_app.config.get("LOCKOUT_MINUTES", 15)
        if not limit or (user.fail_login_count or 0) < limit:
            return False
        # changed_on is refreshed by every failed attempt (FAB's update_user_auth_stat)
        return (user.changed_on or datetime.min) + timedelta(minutes=minutes) > datetime.now()

    def auth_user_db(self, username, password):
        from flask import current_app, flash, has_request_context
        from flask_babel import gettext as _

        user = self.find_user(username=username) if username else None
        if user is not None and self.is_locked(user):
            minutes = current_app.config.get("LOCKOUT_MINUTES", 15)
            if has_request_context():
                flash(_("登录失败次数过多，账号已被锁定 %(m)d 分钟；请稍后再试，或联系系统管理员解锁。",
                        m=minutes), "danger")
            return None
        return super().auth_user_db(username, password)

    def unlock_user(self, user):
        """Reset the failed-login counter, with an 操作记录 (the audit listener
        ignores the counter: every login changes it)."""
        from .workflows import audit

        before = user.fail_login_count or 0
        user.fail_login_count = 0
        audit.record_change(self.session, "ab_user", user.id, "unlock",
                            {"fail_login_count": [before, 0]})
        self.update_user(user)       # commits the change and its record together


def collect_rights():
    from .views import view_modules

    rights = {role: [] for role in ROLES if role != ADMIN}
    for module in view_modules():
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
# FAB shows a permission as "can list on DictItemView". In zh the role screens show
# "列表 · 数据字典 (DictItemView)" instead; English keeps FAB's text.

PERMISSION_LABELS = {
    "can_list": "列表", "can_show": "查看", "can_add": "新增", "can_edit": "编辑",
    "can_delete": "删除", "can_download": "下载", "menu_access": "菜单",
    "can_get": "接口读取", "can_get_list": "接口列表", "can_post": "接口新增",
    "can_put": "接口修改", "can_info": "接口元数据", "can_this_form_get": "表单",
    "can_this_form_post": "提交表单", "can_userinfo": "个人信息", "can_read": "读取",
    "can_write": "写入", "resetmypassword": "重置自己的密码", "resetpasswords": "重置密码",
    "userinfoedit": "编辑个人信息", "copyrole": "复制角色", "can_chart": "图表",
    "unlock": "解锁账号", "lock": "设为不可编辑",
    # the business functions' own permissions (one per function, app/views/common.py)
    "can_assign": "指派", "can_develop": "制定和执行开发计划", "can_handle": "处理",
    "can_feedback": "反馈", "can_measure": "暂缓措施", "can_confirm": "确认流失",
    "can_upload": "上传导入文件", "can_commit": "提交导入", "can_merge": "合并客户",
    "can_report": "查看报表", "can_send": "发送邮件",
}
_VIEW_LABELS = {}


def _view_labels(appbuilder):
    if _VIEW_LABELS:
        return _VIEW_LABELS
    from .views.common import FUNCTION_VIEW_LABELS

    _VIEW_LABELS.update(FUNCTION_VIEW_LABELS)   # shared by a module's pages and API
    for view in appbuilder.baseviews:
        if view.class_permission_name in FUNCTION_VIEW_LABELS:
            continue
        if getattr(view, "resource_name", None):
            label = f"接口 {view.resource_name}"
        else:
            label = getattr(view, "list_title", None)
        if label:
            _VIEW_LABELS[view.class_permission_name] = label

    def walk(items):
        for item in items:
            if item.name and item.label:
                _VIEW_LABELS.setdefault(item.name, item.label)
            walk(item.childs or [])
    walk(appbuilder.menu.menu)
    return _VIEW_LABELS


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
        labels = _view_labels(current_app.appbuilder)
        perm_zh = PERMISSION_LABELS.get(perm) or _(perm.replace("can_", "").replace("_", " "))
        view_zh = labels.get(view)
        return f"{perm_zh} · {_(str(view_zh)) if view_zh else view} ({view})"

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

"""Roles and rights.

The rights matrix of DESIGN.md §3 is declared by the view modules: each has a
``RIGHTS`` dict ``{role: [(view_name_regex, permission_regex), ...]}``.
``init_roles`` writes them into FAB's tables (not FAB_ROLES), so admins can edit
roles in the security UI. A (role, permission, view) pair is granted at most once
ever (recorded in crm_role_grant): re-running init adds rights of new views but
never re-adds what an admin removed.
"""
import re

from flask_appbuilder.security.sqla.manager import SecurityManager
from sqlalchemy import select

from .models import RoleGrant
from .workflows.actors import ADMIN, EXECUTIVE, MANAGER, ROLES, SUPERVISOR  # noqa: F401


class CrmSecurityManager(SecurityManager):
    pass


def collect_rights():
    from .views import view_modules

    rights = {role: [] for role in ROLES if role != ADMIN}
    for module in view_modules():
        for role, pairs in getattr(module, "RIGHTS", {}).items():
            rights.setdefault(role, []).extend(pairs)
    return rights


def init_roles(appbuilder, session):
    """Create roles/permissions in the DB. Returns {role: number of pairs granted now}."""
    sm = appbuilder.sm
    if sm.find_role(ADMIN) is None:
        sm.add_role(ADMIN)
    if sm.find_role(sm.auth_role_public) is None:
        sm.add_role(sm.auth_role_public)
    appbuilder.add_permissions(update_perms=True)

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

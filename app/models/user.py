"""The users and roles: Flask-AppBuilder's tables (ab_user, ab_role), referred to
from here so that workflows name the model layer, never FAB itself."""
from flask_appbuilder.security.sqla.models import Permission, Role, User  # noqa: F401

# the inactive user that CLI and scheduler jobs act as (AuditMixin and 操作记录 need
# an actor); app.security.system_user_id() creates it on first use
SYSTEM_USERNAME = "crm-system"

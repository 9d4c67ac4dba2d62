"""Who is acting: a plain value the views build from the signed-in user."""
from dataclasses import dataclass, field

from flask_babel import lazy_gettext as _l

from .names import display_name

ADMIN = "系统管理员"
EXECUTIVE = "高管"
SUPERVISOR = "销售主管"
MANAGER = "客户经理"
ROLES = (ADMIN, EXECUTIVE, SUPERVISOR, MANAGER)
# Role names are data (the ab_role rows, and what RIGHTS and the code compare with);
# the four built-in ones are *shown* through Babel (English UI: Administrator …).
ROLE_LABELS = {ADMIN: _l("系统管理员"), EXECUTIVE: _l("高管"), SUPERVISOR: _l("销售主管"),
               MANAGER: _l("客户经理")}


def role_label(name):
    """The display name of a role: the built-in ones translated, others as stored."""
    label = ROLE_LABELS.get(name)
    return str(label) if label is not None else (name or "")


@dataclass(frozen=True)
class Actor:
    id: int
    roles: frozenset = field(default_factory=frozenset)
    name: str = ""

    @classmethod
    def of(cls, user):
        return cls(id=user.id, roles=frozenset(r.name for r in user.roles),
                   name=display_name(user))

    @property
    def is_admin(self):
        return ADMIN in self.roles

    @property
    def is_executive(self):
        return EXECUTIVE in self.roles

    @property
    def is_supervisor(self):
        return SUPERVISOR in self.roles

    @property
    def is_manager(self):
        return MANAGER in self.roles

    @property
    def sees_all(self):
        """Admin, 高管 and 销售主管 read everything."""
        return self.is_admin or self.is_executive or self.is_supervisor

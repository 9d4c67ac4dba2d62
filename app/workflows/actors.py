"""Who is acting: a plain value the views build from the signed-in user."""
from dataclasses import dataclass, field

ADMIN = "系统管理员"
EXECUTIVE = "高管"
SUPERVISOR = "销售主管"
MANAGER = "客户经理"
ROLES = (ADMIN, EXECUTIVE, SUPERVISOR, MANAGER)


@dataclass(frozen=True)
class Actor:
    id: int
    roles: frozenset = field(default_factory=frozenset)
    name: str = ""

    @classmethod
    def of(cls, user):
        return cls(id=user.id, roles=frozenset(r.name for r in user.roles),
                   name=f"{user.first_name or ''}{user.last_name or ''}" or user.username)

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

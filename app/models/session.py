"""Server-side login sessions (docs/security.md, 会话).

One row per sign-in — a browser session (``kind="web"``, the token lives in the
signed Flask session cookie) or an API login (``kind="api"``, the token is the
``sid`` claim of its access and refresh JWTs). A request is authenticated only
while its row exists: logout deletes the row of this session; a password change
or a deactivation deletes every row of the user. Rows live in the database, so
every worker of every app server sees the same answer.

Only a SHA-256 of the token is stored.
"""
from sqlalchemy import Column, DateTime, ForeignKey, Integer, String

from .base import Model


class LoginSession(Model):
    __tablename__ = "crm_login_session"

    id = Column(Integer, primary_key=True)
    token_hash = Column(String(64), nullable=False, unique=True, index=True)
    user_id = Column(Integer, ForeignKey("ab_user.id", ondelete="CASCADE"), nullable=False,
                     index=True)
    kind = Column(String(8), nullable=False)          # web | api
    created_on = Column(DateTime, nullable=False)

"""列表偏好: the tab (saved view) each user last chose on each list."""
from sqlalchemy import Column, DateTime, ForeignKey, Integer, String, UniqueConstraint

from .base import Model


class ListPreference(Model):
    """One row per (user, list): the key of the tab last chosen there
    (``app/views/lists.py``). No row: the list's default tab."""

    __tablename__ = "crm_list_preference"
    __table_args__ = (UniqueConstraint("user_id", "list_key", name="uq_list_preference"),)

    id = Column(Integer, primary_key=True)
    user_id = Column(Integer, ForeignKey("ab_user.id", ondelete="CASCADE"), nullable=False)
    list_key = Column(String(64), nullable=False)
    tab = Column(String(32), nullable=False)
    changed_on = Column(DateTime, nullable=False)

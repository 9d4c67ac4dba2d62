"""列表偏好: the tab (saved view) each user last chose on each list.

``remembered_tab`` reads it, ``remember_tab`` stores it in the caller's transaction
(an UPDATE, else an INSERT inside a savepoint; two requests racing on the unique
(user, list) pair end with one row holding the later choice). The list decides
which keys are valid (``app/views/lists.py``); a stored key the list no longer has
is ignored there.
"""
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from ..models.list_prefs import ListPreference

MAX_KEY = 64
MAX_TAB = 32


def remembered_tab(session, user_id, list_key):
    """The tab ``user_id`` last chose on ``list_key``, or None."""
    return session.scalar(select(ListPreference.tab).where(
        ListPreference.user_id == user_id, ListPreference.list_key == list_key[:MAX_KEY]))


def remember_tab(session, user_id, list_key, tab):
    """Store ``tab`` as the choice of ``user_id`` on ``list_key`` (no commit)."""
    list_key, tab, now = list_key[:MAX_KEY], tab[:MAX_TAB], datetime.now()
    stmt = (update(ListPreference)
            .where(ListPreference.user_id == user_id, ListPreference.list_key == list_key)
            .values(tab=tab, changed_on=now))
    if session.execute(stmt).rowcount:
        return
    try:
        with session.begin_nested():
            session.add(ListPreference(user_id=user_id, list_key=list_key, tab=tab,
                                       changed_on=now))
    except IntegrityError:      # the other request inserted first: ours is the later choice
        session.execute(stmt)

"""操作记录 of data changes: a generic SQLAlchemy flush listener.

Every ORM insert/update/delete of a customer, a dictionary item, a user or a role
writes a WorkflowEvent in the same transaction (so a rolled-back change leaves
no record, and a committed one always has its record):

* ``entity`` — the table name: ``crm_customer`` | ``crm_dict_item`` | ``ab_user`` |
  ``ab_role`` (distinct from the workflow steps' ``customer`` etc., so a module's
  own event history is not mixed with field-change records), ``entity_id`` — its id;
* ``action`` — ``insert`` | ``update`` | ``delete``;
* ``note`` — JSON ``{"field": [old, new], ...}`` (before → after); a password is
  never recorded, only ``"password": ["***", "***（已修改）"]``; a user's roles and
  a role's permissions are recorded as lists of names;
* ``from_status``/``to_status`` — the status, when it changed;
* ``created_by_fk`` — the signed-in user, else the ``crm-system`` user (CLI jobs).

Bulk Core statements (seed-demo, compare-and-set status steps) do not pass
through the ORM flush; the workflows record their own WorkflowEvents for those.
"""
import json
import logging
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import event, insert, inspect, select
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

# fields that change on every login or save and say nothing about the record
NOISE = {"changed_on", "changed_by_fk", "created_on", "created_by_fk", "last_login",
         "login_count", "fail_login_count"}
SECRET = {"password"}
SYSTEM_USERNAME = "crm-system"
_INFO_KEY = "crm_audit_pending"


def _tracked():
    from flask_appbuilder.security.sqla.models import Role, User

    from ..models import Customer, DictItem

    return {Customer: (Customer.__tablename__, ()), DictItem: (DictItem.__tablename__, ()),
            User: (User.__tablename__, ("roles",)), Role: (Role.__tablename__, ("permissions",))}


def _value(v):
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return str(v)


def _related_name(obj):
    if hasattr(obj, "permission") and hasattr(obj, "view_menu"):
        return f"{getattr(obj.permission, 'name', '?')} on {getattr(obj.view_menu, 'name', '?')}"
    return getattr(obj, "name", None) or str(obj)


def _columns(obj):
    return [c.key for c in inspect(type(obj)).column_attrs]


def _changes(obj, relations):
    """{field: [old, new]} of a dirty object (columns, then the listed relations)."""
    state = inspect(obj)
    out = {}
    for key in _columns(obj):
        if key in NOISE:
            continue
        hist = state.attrs[key].history
        if not hist.has_changes():
            continue
        old = hist.deleted[0] if hist.deleted else None
        new = hist.added[0] if hist.added else None
        if old == new or (not hist.deleted and key in SECRET and new is None):
            continue
        if key in SECRET:
            out[key] = ["***", "***（已修改）"]
        else:
            out[key] = [_value(old), _value(new)]
    for rel in relations:
        hist = state.attrs[rel].history
        if not hist.has_changes() or (not hist.added and not hist.deleted):
            continue
        unchanged = list(hist.unchanged or ())
        before = sorted(_related_name(o) for o in unchanged + list(hist.deleted or ()))
        after = sorted(_related_name(o) for o in unchanged + list(hist.added or ()))
        if before != after:
            out[rel] = [before, after]
    return out


def _snapshot(obj, relations, old=True):
    out = {}
    for key in _columns(obj):
        if key in NOISE:
            continue
        v = getattr(obj, key, None)
        if key in SECRET:
            v = "***" if v else None
        out[key] = [_value(v), None] if old else [None, _value(v)]
    for rel in relations:
        names = sorted(_related_name(o) for o in (getattr(obj, rel, None) or []))
        out[rel] = [names, None] if old else [None, names]
    return out


_current_user_id = None   # set by install(): () -> id of the signed-in user or None


def _actor_id(connection):
    uid = _current_user_id() if _current_user_id else None
    if uid:
        return uid
    from flask_appbuilder.security.sqla.models import User

    return connection.execute(
        select(User.id).where(User.username == SYSTEM_USERNAME)).scalar()


def _before_flush(session, _ctx, _instances):
    tracked = _tracked()
    pending = session.info.setdefault(_INFO_KEY, [])
    for obj in list(session.dirty):
        spec = tracked.get(type(obj)) or next(
            (v for k, v in tracked.items() if isinstance(obj, k)), None)
        if spec is None or not session.is_modified(obj, include_collections=True):
            continue
        changes = _changes(obj, spec[1])
        if changes:
            pending.append(("update", spec[0], obj, changes))
    for obj in list(session.deleted):
        spec = next((v for k, v in tracked.items() if isinstance(obj, k)), None)
        if spec is not None:
            pending.append(("delete", spec[0], obj, _snapshot(obj, spec[1], old=True)))
    for obj in list(session.new):
        spec = next((v for k, v in tracked.items() if isinstance(obj, k)), None)
        if spec is not None:
            pending.append(("insert", spec[0], obj, spec[1]))


def _after_flush(session, _ctx):
    pending = session.info.pop(_INFO_KEY, [])
    if not pending:
        return
    from ..models import WorkflowEvent

    conn = session.connection()
    actor = _actor_id(conn)
    if actor is None:
        log.debug("audit: no actor yet (crm-system not created), %d changes unrecorded",
                  len(pending))
        return
    now = datetime.now()
    rows = []
    for action, entity, obj, data in pending:
        if action == "insert":
            data = _snapshot(obj, data, old=False)
        pk = inspect(obj).identity[0] if inspect(obj).identity else getattr(obj, "id", None)
        if pk is None:
            continue
        status = data.get("status")
        rows.append({
            "entity": entity, "entity_id": pk, "action": action,
            "from_status": status[0] if status else None,
            "to_status": status[1] if status else None,
            "note": json.dumps(data, ensure_ascii=False, default=str),
            "created_by_fk": actor, "changed_by_fk": actor,
            "created_on": now, "changed_on": now,
        })
    if rows:
        conn.execute(insert(WorkflowEvent.__table__), rows)


def _after_rollback(session):
    session.info.pop(_INFO_KEY, None)


def install(current_user_id):
    """Register the listeners once per process (all sessions). ``current_user_id``
    returns the signed-in user's id, or None outside a request (the views pass it:
    workflows do not look at the request)."""
    global _current_user_id
    _current_user_id = current_user_id
    if not event.contains(Session, "before_flush", _before_flush):
        event.listen(Session, "before_flush", _before_flush)
        event.listen(Session, "after_flush", _after_flush)
        event.listen(Session, "after_soft_rollback", lambda s, _t: _after_rollback(s))


def parse_note(note):
    """The note as {field: [old, new]} when it is a change record, else None."""
    if not note or not note.startswith("{"):
        return None
    try:
        data = json.loads(note)
    except ValueError:
        return None
    if isinstance(data, dict) and all(isinstance(v, list) and len(v) == 2 for v in data.values()):
        return data
    return None

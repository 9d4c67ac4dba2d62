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
  a role's permissions are recorded as lists of names; foreign keys to dictionary
  items and users as their text / name (``"华北 (#3)"``, ``"张三 (manager1)"``);
* ``from_status``/``to_status`` — the status, when it changed;
* ``created_by_fk`` — the signed-in user, else the ``crm-system`` user (CLI jobs).

UPDATE and DELETE statements on those tables (the
compare-and-set edit of a customer, a status step, an import's bulk update) are
recorded the same way by engine ``before_execute``/``after_execute`` listeners, which
read the target rows before and after the statement. Bulk INSERTs (seed-demo, imports) are not: the
import records its own 提交 event and report.
"""
import json
import logging
import weakref
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import Delete, Update, event, insert, inspect, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import BinaryExpression, BindParameter, BooleanClauseList

from ..models.user import SYSTEM_USERNAME
from .names import display_name
from ..models.audit import status_change_text  # noqa: F401  (the vocabularies live with the models)

log = logging.getLogger(__name__)

# fields that change on every login or save and say nothing about the record
NOISE = {"changed_on", "changed_by_fk", "created_on", "created_by_fk", "last_login",
         "login_count", "fail_login_count"}
SECRET = {"password"}
_INFO_KEY = "crm_audit_pending"


def _tracked():
    from ..models import Customer, DictItem, Role, User

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
    from ..models import User

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


def _fk_label(conn, table, value):
    from ..models import DictItem, User

    if table == DictItem.__tablename__:
        text = conn.execute(select(DictItem.item).where(DictItem.id == value)).scalar()
        return f"{text} (#{value})" if text is not None else value
    if table == User.__tablename__:
        row = conn.execute(select(User.first_name, User.last_name, User.username)
                           .where(User.id == value)).first()
        if row is not None:
            return f"{display_name(row)} ({row.username})"
    return value


def _fk_labels(conn, model, data, cache):
    """Foreign keys as what they name, not bare ids (``manager_id``: "张三 (manager1)",
    ``region_id``: "华北 (#3)"), as they were at the time of the change."""
    columns = inspect(model).columns
    for key, pair in data.items():
        col = columns.get(key)
        if col is None or not col.foreign_keys:
            continue
        table = next(iter(col.foreign_keys)).column.table.name
        for i, value in enumerate(pair):
            if isinstance(value, int) and not isinstance(value, bool):
                if (table, value) not in cache:
                    cache[(table, value)] = _fk_label(conn, table, value)
                pair[i] = cache[(table, value)]
    return data


def _row(entity, pk, action, data, actor, now):
    status = data.get("status")
    return {
        "entity": entity, "entity_id": pk, "action": action,
        "from_status": status[0] if status else None,
        "to_status": status[1] if status else None,
        "note": json.dumps(data, ensure_ascii=False, default=str),
        "created_by_fk": actor, "changed_by_fk": actor,
        "created_on": now, "changed_on": now,
    }


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
    rows, cache = [], {}
    for action, entity, obj, data in pending:
        if action == "insert":
            data = _snapshot(obj, data, old=False)
        pk = inspect(obj).identity[0] if inspect(obj).identity else getattr(obj, "id", None)
        if pk is None:
            continue
        rows.append(_row(entity, pk, action, _fk_labels(conn, type(obj), data, cache), actor, now))
    if rows:
        conn.execute(insert(WorkflowEvent.__table__), rows)


# ---- UPDATE/DELETE statements (compare-and-set steps, bulk updates) -----------------------
# Most edits do not go through the flush: customers are saved by a compare-and-set
# ``UPDATE ... WHERE status = 'normal'``, imports update in bulk. Engine events see
# every UPDATE/DELETE statement: for one on a tracked table the target rows are read
# before and after it, and the differences recorded. (Not Session.do_orm_execute:
# any listener there breaks ``yield_per`` + ``selectinload`` in SQLAlchemy 2.0.44,
# sqlalchemy#13301.) The ORM flush's own statements are left to the flush listener.

_CHUNK = 500
_PENDING = weakref.WeakKeyDictionary()   # Connection -> [(statement, model, rows before)]


_TABLES = {}


def _tracked_tables():
    if not _TABLES:
        _TABLES.update({model.__table__.name: model for model in _tracked()})
    return _TABLES


def _target_ids(conn, table, stmt, params):
    """The ids an UPDATE/DELETE will touch, or None when it cannot be told."""
    where = stmt.whereclause
    if isinstance(params, (list, tuple)):        # executemany: WHERE id = :b_id [AND ...]
        key = _id_param(where, table)
        keys = [p.get(key) for p in params] if key else [None]
        return None if any(k is None for k in keys) else sorted(set(keys))
    query = select(table.c.id)
    if where is not None:
        query = query.where(where)
    # lock them (PostgreSQL): the rows read are exactly the rows the statement changes
    return list(conn.execute(query.with_for_update(), params or {}).scalars())


def _id_param(where, table):
    """The bound parameter of an ``id = :param`` term of ``where`` (one of its ANDs)."""
    terms = list(where.clauses) if isinstance(where, BooleanClauseList) else [where]
    for term in terms:
        if not isinstance(term, BinaryExpression) or term.operator is not operators.eq:
            continue
        left, right = term.left, term.right
        if (isinstance(right, BindParameter) and getattr(left, "key", None) == "id"
                and getattr(getattr(left, "table", None), "name", None) == table.name):
            return right.key
    return None


def _rows(conn, table, ids):
    out = {}
    for i in range(0, len(ids), _CHUNK):
        for row in conn.execute(select(table).where(table.c.id.in_(ids[i:i + _CHUNK]))):
            out[row.id] = dict(row._mapping)
    return out


def _diff(before, after):
    out = {}
    for key, old in before.items():
        if key in NOISE or key == "id":
            continue
        new = after.get(key) if after is not None else None
        if after is not None and old == new:
            continue
        if key in SECRET:
            out[key] = ["***", None if after is None else "***（已修改）"]
        else:
            out[key] = [_value(old), None if after is None else _value(new)]
    return out


def _before_execute(conn, clause, multiparams, params, execution_options):
    if not isinstance(clause, (Update, Delete)):
        return
    if "compiled_cache" in execution_options and not clause._annotations:
        return      # the ORM flush (plain table statements): the flush listener records it
    table = clause.table
    model = _tracked_tables().get(getattr(table, "name", None))
    if model is None:
        return
    ids = _target_ids(conn, table, clause, multiparams or params or None)
    if ids is None:
        log.warning("audit: %s on %s not recorded (cannot tell its rows)",
                    type(clause).__name__, table.name)
        return
    _PENDING.setdefault(conn, []).append((clause, model, _rows(conn, table, ids)))


def _after_execute(conn, clause, multiparams, params, execution_options, result):
    pending = _PENDING.get(conn)
    if not pending or pending[-1][0] is not clause:
        return
    _clause, model, before = pending.pop()
    if not before:
        return
    actor = _actor_id(conn)
    if actor is None:
        return
    table, delete = model.__table__, isinstance(clause, Delete)
    after = {} if delete else _rows(conn, table, list(before))
    now, cache, rows = datetime.now(), {}, []
    for pk, old in before.items():
        new = after.get(pk)
        if not delete and new is None:
            continue
        changes = _diff(old, new)
        if changes:
            rows.append(_row(table.name, pk, "delete" if delete else "update",
                             _fk_labels(conn, model, changes, cache), actor, now))
    if rows:
        from ..models import WorkflowEvent

        conn.execute(insert(WorkflowEvent.__table__), rows)


def _statement_failed(context):
    # the statement raised: nothing changed, forget what was read before it
    if context.connection is not None:
        _PENDING.pop(context.connection, None)


def record_change(session, entity, entity_id, action, changes):
    """An explicit change record, for a change the listener leaves out as noise
    (an admin unlocking an account resets ``fail_login_count``, which every login
    changes too). Same shape as the listener's records; same transaction."""
    from ..models import WorkflowEvent

    conn = session.connection()
    actor = _actor_id(conn)
    if actor is None:
        return
    conn.execute(insert(WorkflowEvent.__table__),
                 [_row(entity, entity_id, action, changes, actor, datetime.now())])


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
        event.listen(Engine, "before_execute", _before_execute)
        event.listen(Engine, "after_execute", _after_execute)
        event.listen(Engine, "handle_error", _statement_failed)


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

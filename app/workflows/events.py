"""WorkflowEvent recording and the compare-and-set helper every step uses."""
from sqlalchemy import update

from ..models import WorkflowEvent
from .errors import Conflict


def record_event(session, entity, entity_id, action, from_status=None, to_status=None,
                 note=None, actor_id=None, when=None):
    """``when``: the step's own time, when the caller passed one (e.g. demo history)."""
    ev = WorkflowEvent(entity=entity, entity_id=entity_id, action=action,
                       from_status=from_status, to_status=to_status, note=note)
    if actor_id is not None:
        ev.created_by_fk = actor_id
        ev.changed_by_fk = actor_id
    if when is not None:
        ev.created_on = ev.changed_on = when
    session.add(ev)
    return ev


def compare_and_set(session, model, pk, expected, values, message):
    """UPDATE model SET values WHERE id = pk AND status IN expected.

    Raises Conflict(message) when no row matched (wrong state or a lost race),
    so exactly one of two racing transactions wins.
    """
    if isinstance(expected, str):
        expected = (expected,)
    result = session.execute(
        update(model)
        .where(model.id == pk, model.status.in_(expected))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        raise Conflict(message)
    return result

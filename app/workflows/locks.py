"""Run locks and once-per-day claims of the background jobs (churn check, digest, SLA
escalation, order rollup), on the CRM database so they hold across workers and servers.

* ``claim_run`` inserts the marker row ``lock:<job>:<date>`` into ``crm_sequence``:
  exactly one caller per day and job wins (it commits the marker: the claim is its own
  unit of work, taken before the job's work starts);
* ``run_lock`` keeps two runs of one job from overlapping: a PostgreSQL session
  advisory lock, or on SQLite the row ``lock:<job>`` (0 = free, else the epoch second
  it was taken; a lock older than ``STALE_SECONDS`` counts as free).
"""
import contextlib
import time
import zlib

from sqlalchemy import text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..models import NumberSequence

LOCK_NAME = "lock:churn"
ADVISORY_KEY = 0x43524D43  # "CRMC"
STALE_SECONDS = 6 * 3600


def marker_name(day, job="churn"):
    return f"lock:{job}:{day.isoformat()}"


def _insert(session):
    dialect = session.get_bind(mapper=NumberSequence.__mapper__).dialect.name
    return pg_insert if dialect == "postgresql" else sqlite_insert


def claim_run(session, day, job="churn"):
    """True for exactly one caller per ``day`` and job (commits the marker row)."""
    table = NumberSequence.__table__
    stmt = (_insert(session)(table).values(name=marker_name(day, job), value=int(time.time()))
            .on_conflict_do_nothing().returning(table.c.name))
    won = session.execute(stmt).first() is not None
    session.commit()
    return won


def release_claim(session, day):
    """Forget ``day``'s marker (after a failed run, so it can be retried)."""
    session.execute(NumberSequence.__table__.delete()
                    .where(NumberSequence.name == marker_name(day)))
    session.commit()


@contextlib.contextmanager
def run_lock(engine, job="churn"):
    """``with run_lock(engine) as acquired:`` — never waits; ``acquired`` False when
    busy. One lock per ``job`` name."""
    key = ADVISORY_KEY if job == "churn" else ADVISORY_KEY + zlib.crc32(job.encode()) % 100000 + 1
    lock_name = LOCK_NAME if job == "churn" else f"lock:{job}"
    if engine.dialect.name == "postgresql":
        conn = engine.connect()
        try:
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
            conn.commit()
            try:
                yield bool(got)
            finally:
                if got:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    conn.commit()
        finally:
            conn.close()
        return
    table = NumberSequence.__table__
    now = int(time.time())
    with engine.begin() as conn:
        conn.execute(sqlite_insert(table).values(name=lock_name, value=0).on_conflict_do_nothing())
        got = conn.execute(
            update(table).where(table.c.name == lock_name,
                                (table.c.value == 0) | (table.c.value < now - STALE_SECONDS))
            .values(value=now)).rowcount == 1
    try:
        yield got
    finally:
        if got:
            with engine.begin() as conn:
                conn.execute(update(table).where(table.c.name == lock_name, table.c.value == now)
                             .values(value=0))

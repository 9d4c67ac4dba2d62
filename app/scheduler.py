"""Background jobs: the weekly churn check, every Saturday 02:00 server time.

``create_app`` calls ``start_scheduler(app)`` when ``SCHEDULER_ENABLED`` is true
(``make run``). Several worker processes may each start a scheduler; the run is
still done once per Saturday:

* ``claim_run`` inserts the marker row ``lock:churn:<date>`` into ``crm_sequence``
  with ``INSERT ... ON CONFLICT DO NOTHING`` and commits: only the process whose
  insert went through runs that day's check (the others, and any later start on
  the same day, see the row and skip);
* ``run_lock`` additionally keeps two checks (scheduled and ``flask crm
  churn-check``) from running at the same moment: a PostgreSQL session advisory
  lock (``pg_try_advisory_lock``), or on SQLite a compare-and-set on the row
  ``lock:churn`` (value 0 = free, else the epoch second it was taken; a lock older
  than ``STALE_SECONDS`` is considered abandoned).

Deployments that prefer cron disable the scheduler and add
``0 2 * * 6 cd /srv/crm && .venv/bin/flask --app run crm churn-check``.
"""
import atexit
import contextlib
import logging
import time
from datetime import date

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from .extensions import db
from .models import NumberSequence

log = logging.getLogger(__name__)

JOB_ID = "churn-check"
CRON = {"day_of_week": "sat", "hour": 2, "minute": 0}
LOCK_NAME = "lock:churn"
ADVISORY_KEY = 0x43524D43  # "CRMC"
STALE_SECONDS = 6 * 3600


def churn_trigger(timezone=None):
    """Every Saturday 02:00 (server local time unless ``timezone`` is given)."""
    return CronTrigger(timezone=timezone, **CRON)


def marker_name(day):
    return f"{LOCK_NAME}:{day.isoformat()}"


def _insert(session):
    dialect = session.get_bind(mapper=NumberSequence.__mapper__).dialect.name
    return pg_insert if dialect == "postgresql" else sqlite_insert


def claim_run(session, day):
    """True for exactly one caller per ``day`` (commits the marker row)."""
    table = NumberSequence.__table__
    stmt = (_insert(session)(table).values(name=marker_name(day), value=int(time.time()))
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
def run_lock(engine=None):
    """``with run_lock() as acquired:`` — never waits; ``acquired`` False when busy."""
    engine = engine or db.engine
    if engine.dialect.name == "postgresql":
        conn = engine.connect()
        try:
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_KEY}).scalar()
            conn.commit()
            try:
                yield bool(got)
            finally:
                if got:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_KEY})
                    conn.commit()
        finally:
            conn.close()
        return
    table = NumberSequence.__table__
    now = int(time.time())
    with engine.begin() as conn:
        conn.execute(sqlite_insert(table).values(name=LOCK_NAME, value=0).on_conflict_do_nothing())
        got = conn.execute(
            update(table).where(table.c.name == LOCK_NAME,
                                (table.c.value == 0) | (table.c.value < now - STALE_SECONDS))
            .values(value=now)).rowcount == 1
    try:
        yield got
    finally:
        if got:
            with engine.begin() as conn:
                conn.execute(update(table).where(table.c.name == LOCK_NAME, table.c.value == now)
                             .values(value=0))


def run_churn_check(as_of=None, progress=None, customer_ids=None, dry_run=False):
    """One churn check in the current app context, committed; returns the summary.

    ``dry_run``: a preview — computed with SELECTs only, then rolled back."""
    from .cli import system_user_id
    from .workflows.churn import check_churn

    from flask import current_app

    actor = system_user_id()
    months = int(current_app.config.get("CHURN_MONTHS") or 6)
    try:
        summary = check_churn(db.session, db.engines["sales"], as_of=as_of, actor_id=actor,
                              progress=progress, months=months, customer_ids=customer_ids,
                              dry_run=dry_run)
        if dry_run:
            db.session.rollback()
        else:
            db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    return summary


def scheduled_churn_job(app, day=None, runner=None):
    """What the scheduler runs. Returns the summary, or None when another process
    already ran (or is running) this day's check."""
    day = day or date.today()
    runner = runner or (lambda: run_churn_check(as_of=day))
    with app.app_context():
        try:
            if not claim_run(db.session, day):
                log.info("churn check for %s already claimed by another process", day)
                return None
            with run_lock() as acquired:
                if not acquired:
                    log.info("churn check already running elsewhere; skipped")
                    return None
                try:
                    summary = runner()
                except Exception:
                    log.exception("churn check failed")
                    db.session.rollback()
                    release_claim(db.session, day)
                    return None
            if isinstance(summary, dict):
                log.info("churn check %s: opened %d, recovered %d", day,
                         len(summary.get("opened", ())), len(summary.get("recovered", ())))
            return summary
        finally:
            db.session.remove()


def start_scheduler(app, start=True):
    """Start the background scheduler with the weekly churn job; returns it."""
    scheduler = BackgroundScheduler(daemon=True)
    scheduler.add_job(scheduled_churn_job, trigger=churn_trigger(), args=[app], id=JOB_ID,
                      name="客户流失检查", replace_existing=True, coalesce=True,
                      max_instances=1, misfire_grace_time=3600)
    if start:
        scheduler.start()
        atexit.register(lambda: scheduler.running and scheduler.shutdown(wait=False))
    app.extensions["crm_scheduler"] = scheduler
    return scheduler

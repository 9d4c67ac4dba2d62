"""Background jobs: the weekly churn check, every Saturday 02:00 server time; the
08:00 digest; the notification mailer (every minute); the 服务超时升级 (every 10
minutes, ``sla_escalation_job``).

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
import logging
import time
from datetime import date, datetime

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger


from . import metrics
from .extensions import db
from .workflows import locks
from .workflows.locks import (ADVISORY_KEY, LOCK_NAME, STALE_SECONDS, claim_run,  # noqa: F401
                              marker_name, release_claim)

log = logging.getLogger(__name__)

JOB_ID = "churn-check"
CRON = {"day_of_week": "sat", "hour": 2, "minute": 0}
def churn_trigger(timezone=None, cron=None):
    """Every Saturday 02:00 (server local time unless ``timezone`` is given); ``cron``
    (config ``CHURN_CRON``, APScheduler cron fields) replaces the default."""
    return CronTrigger(timezone=timezone, **(cron or CRON))


def run_lock(engine=None, job="churn"):
    """``with run_lock() as acquired:`` — never waits; ``acquired`` False when busy
    (app/workflows/locks.py; here on the app's engine by default)."""
    return locks.run_lock(engine or db.engine, job)


def run_churn_check(as_of=None, progress=None, customer_ids=None, dry_run=False,
                    refresh=None, max_age=None):
    """One churn check in the current app context, committed; returns the summary
    (with ``summary["rollup"]``: ``{"refreshed": bool, "refreshed_at": datetime}``).

    The check reads the order rollup's last order dates. The rollup is refreshed first
    (``run_rollup_refresh``; skipped when another refresh is running — the check then
    reads the rollup in place) unless it is fresh: refreshed no more than ``max_age``
    minutes ago (default: config ``CHURN_ROLLUP_MAX_AGE``, 60; 0 = always refresh;
    ``rollup.is_fresh``). ``refresh=True`` always refreshes, ``False`` never does.
    ``dry_run``: a preview — computed with SELECTs only, then rolled back."""
    from .security import system_user_id
    from .workflows import rollup
    from .workflows.churn import check_churn

    from flask import current_app

    actor = system_user_id()
    months = int(current_app.config.get("CHURN_MONTHS") or 6)
    if max_age is None:
        max_age = float(current_app.config.get("CHURN_ROLLUP_MAX_AGE") or 0)
    if refresh is None:
        refresh = not rollup.is_fresh(db.session, max_age)
    if refresh:
        run_rollup_refresh()
    built = rollup.refreshed_at(db.session)
    if progress:
        progress("rollup", 1)
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
    summary["rollup"] = {"refreshed": bool(refresh), "refreshed_at": built}
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
                started = datetime.now()
                try:
                    summary = runner()
                except Exception as exc:
                    log.exception("churn check failed")
                    metrics.job_run("churn", ok=False)
                    db.session.rollback()
                    release_claim(db.session, day)
                    _record(app, "churn", started, False, str(exc))
                    return None
                metrics.job_run("churn", ok=True)
                if isinstance(summary, dict):
                    _record(app, "churn", started, True,
                            f"opened {len(summary.get('opened', ()))}, recovered {len(summary.get('recovered', ()))}")
            if isinstance(summary, dict):
                log.info("churn check %s: opened %d, recovered %d", day,
                         len(summary.get("opened", ())), len(summary.get("recovered", ())))
            return summary
        finally:
            db.session.remove()


def _record(app, job, started, ok, summary=None):
    """A JobRun row for the administrator's 工作台; never fails the job itself."""
    from .workflows.dashboard import record_job

    try:
        record_job(db.session, job, started, ok, summary)
        db.session.commit()
    except Exception:  # noqa: BLE001
        db.session.rollback()
        log.exception("could not record the %s job run", job)


def record_job_run(job, started, ok, summary=None):
    """For CLI commands (in an app context): a JobRun row for the admin's 工作台."""
    from flask import current_app

    _record(current_app, job, started, ok, summary)


ROLLUP_JOB_ID = "order-rollup"
ROLLUP_CRON = {"minute": 5}          # hourly, at :05


def run_rollup_refresh():
    """Refresh the order rollup (app/workflows/rollup.py) in the current app context;
    returns its state, or None when another refresh holds the lock."""
    from .workflows import rollup

    return rollup.refresh_locked(db.session)


def rollup_job(app):
    """订单汇总 (hourly; ``ROLLUP_CRON``): rebuild the rollup, idempotent (a rebuild
    from the sales system, swapped in at once), one at a time (``run_lock``)."""
    with app.app_context():
        started = datetime.now()
        try:
            state = run_rollup_refresh()
            if state is None:
                log.info("order rollup already being refreshed elsewhere; skipped")
                return None
            metrics.job_run("rollup", ok=True)
            _record(app, "rollup", started, True,
                    f"{state['customers']} customers, {state['months']} months, "
                    f"{state['seconds']:.1f}s")
            return state
        except Exception as exc:  # noqa: BLE001
            db.session.rollback()
            metrics.job_run("rollup", ok=False)
            log.exception("order rollup refresh failed")
            _record(app, "rollup", started, False, str(exc))
            return None
        finally:
            db.session.remove()


def business_today(app):
    from zoneinfo import ZoneInfo

    return datetime.now(ZoneInfo(app.config.get("BABEL_DEFAULT_TIMEZONE") or "Asia/Shanghai")).date()


def smtp_sender(config):
    """``send(to, subject, text)`` over the configured SMTP server (MAIL_* settings),
    the message built by the standard library's email package."""
    import smtplib
    from email.message import EmailMessage
    from email.policy import SMTP

    from .workflows.names import header_safe

    def send(to, subject, body):
        msg = EmailMessage(policy=SMTP)
        msg["From"] = config.get("MAIL_DEFAULT_SENDER") or "crm@localhost"
        msg["To"] = to
        # titles carry user text (customer names): never a line break in a header
        msg["Subject"] = header_safe(subject)
        msg.set_content(body)
        cls = smtplib.SMTP_SSL if config.get("MAIL_USE_SSL") else smtplib.SMTP
        with cls(config.get("MAIL_SERVER") or "127.0.0.1", int(config.get("MAIL_PORT") or 25),
                 timeout=int(config.get("MAIL_TIMEOUT") or 20)) as smtp:
            if config.get("MAIL_USE_TLS"):
                smtp.starttls()
            if config.get("MAIL_USERNAME"):
                smtp.login(config["MAIL_USERNAME"], config.get("MAIL_PASSWORD") or "")
            smtp.send_message(msg)
    return send


def notification_mail_job(app, send=None):
    """Mail the pending notifications (every minute). Returns (sent, failed) or None
    when another process holds the lock."""
    from .workflows.notifications import send_pending

    with app.app_context():
        try:
            with run_lock(job="notify-mail") as acquired:
                if not acquired:
                    return None
                result = send_pending(db.session, send or smtp_sender(app.config),
                                      base_url=app.config.get("BASE_URL") or "")
            for ok, n in ((True, result[0]), (False, result[1])):
                for _ in range(n):
                    metrics.mail_sent(ok)
            return result
        except Exception:  # noqa: BLE001
            db.session.rollback()
            log.exception("notification mail job failed")
            return None
        finally:
            db.session.remove()


def digest_job(app, day=None, send=None):
    """08:00 每日计划提醒: one notice (and mail) per user and day, then mail it.
    Safe to run twice or after a kill: the notice's dedupe key is per user and day."""
    from .workflows.notifications import raise_digests

    with app.app_context():
        day = day or business_today(app)
        started = datetime.now()
        try:
            with run_lock(job="digest") as acquired:
                if not acquired:
                    return None
                made = raise_digests(db.session, day)
                db.session.commit()
            metrics.job_run("digest", ok=True)
            _record(app, "digest", started, True, f"{made} digests for {day.isoformat()}")
        except Exception as exc:  # noqa: BLE001
            db.session.rollback()
            metrics.job_run("digest", ok=False)
            log.exception("digest job failed")
            _record(app, "digest", started, False, str(exc))
            return None
        finally:
            db.session.remove()
    notification_mail_job(app, send=send)
    return made


def sla_escalation_job(app, now=None, on_ticket=None):
    """服务超时升级 (every 10 minutes): mark each missed 响应/解决时限 once and notify the
    assignee and every active 销售主管 (``app/workflows/sla.py``). Returns the counts,
    or None when another process holds the lock or the run failed."""
    from .security import system_user_id
    from .workflows import sla

    with app.app_context():
        started = datetime.now()
        try:
            with run_lock(job="sla") as acquired:
                if not acquired:
                    log.info("sla escalation already running elsewhere; skipped")
                    return None
                done = sla.escalate(db.session, (now or datetime.now()).replace(microsecond=0),
                                    system_user_id(), on_ticket=on_ticket)
            metrics.job_run("sla", ok=True)
            if done[sla.RESPONSE] or done[sla.RESOLUTION]:
                _record(app, "sla", started, True, f"escalated {done[sla.RESPONSE]} response, "
                                                   f"{done[sla.RESOLUTION]} resolution")
            return done
        except Exception as exc:  # noqa: BLE001
            db.session.rollback()
            metrics.job_run("sla", ok=False)
            log.exception("sla escalation failed")
            _record(app, "sla", started, False, str(exc))
            return None
        finally:
            db.session.remove()


def start_scheduler(app, start=True):
    """Start the background scheduler: the weekly churn check, the 08:00 digest and the
    notification mailer (every minute); returns it."""
    scheduler = BackgroundScheduler(daemon=True)
    zone = app.config.get("BABEL_DEFAULT_TIMEZONE") or "Asia/Shanghai"
    scheduler.add_job(digest_job, trigger=CronTrigger(timezone=zone, **(app.config.get("DIGEST_CRON")
                                                                           or {"hour": 8, "minute": 0})),
                      args=[app], id="digest", name="每日计划提醒", replace_existing=True,
                      coalesce=True, max_instances=1, misfire_grace_time=3600)
    scheduler.add_job(notification_mail_job, trigger="interval", minutes=1, args=[app],
                      id="notify-mail", name="通知邮件", replace_existing=True, coalesce=True,
                      max_instances=1)
    scheduler.add_job(sla_escalation_job, trigger="interval",
                      minutes=int(app.config.get("SLA_ESCALATION_MINUTES") or 10), args=[app],
                      id="sla-escalation", name="服务超时升级", replace_existing=True,
                      coalesce=True, max_instances=1)
    scheduler.add_job(scheduled_churn_job, trigger=churn_trigger(cron=app.config.get("CHURN_CRON")),
                      args=[app], id=JOB_ID,
                      name="客户流失检查", replace_existing=True, coalesce=True,
                      max_instances=1, misfire_grace_time=3600)
    scheduler.add_job(rollup_job, trigger=CronTrigger(timezone=zone, **(app.config.get("ROLLUP_CRON")
                                                                           or ROLLUP_CRON)),
                      args=[app], id=ROLLUP_JOB_ID, name="订单汇总", replace_existing=True,
                      coalesce=True, max_instances=1, misfire_grace_time=3600)
    if start:
        scheduler.start()
        atexit.register(lambda: scheduler.running and scheduler.shutdown(wait=False))
    app.extensions["crm_scheduler"] = scheduler
    return scheduler

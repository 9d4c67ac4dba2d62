"""Who may import and merge, and the import jobs (导入记录) a user sees."""

from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select

from ...models import (
    ImportJob,
)
from ..errors import Forbidden, NotFound

# ---- rights ----------------------------------------------------------------------------------

def can_import(actor):
    return actor.is_admin or actor.is_supervisor or actor.is_manager


def sees_all_imports(actor):
    return actor.is_admin or actor.is_supervisor


def can_merge(actor):
    return actor.is_admin or actor.is_supervisor


def get_job(session, actor, job_id):
    try:
        job = session.get(ImportJob, int(job_id))
    except (TypeError, ValueError):
        job = None
    if job is None:
        raise NotFound(_l("导入记录不存在。"))
    if not (sees_all_imports(actor) or job.created_by_fk == actor.id):
        raise Forbidden(_l("只能查看自己的导入记录。"))
    return job


def list_jobs(session, actor, page=0, page_size=20):
    q = select(ImportJob)
    if not sees_all_imports(actor):
        q = q.where(ImportJob.created_by_fk == actor.id)
    count = session.scalar(select(func.count()).select_from(q.subquery()))
    rows = session.scalars(q.order_by(ImportJob.id.desc()).limit(page_size)
                           .offset(page * page_size)).all()
    return count, rows

"""Step 1, upload + preview: ``create_import`` stores the file, stages and checks
EVERY row and records the ImportJob (status ``preview``), writing no customer."""
import json
import os
import shutil
from datetime import datetime

from flask_babel import lazy_gettext as _l
from sqlalchemy import update

from ...models import (
    ImportJob,
)
from .. import customers as cwf
from ..errors import Forbidden, NotFound, ValidationError
from .columns import KINDS, MAX_BYTES, PREVIEW
from .files import file_format
from .jobs import can_import
from .staging import _stage, job_dir

def create_import(session, actor, kind, file_name, source, store_dir, mapping=None,
                  options=None, progress=None):
    """Save ``source`` (a path or a binary file object), validate every row, detect
    duplicates; stage the result and record an ``ImportJob`` (status preview).
    Writes no customer or contact. The caller commits (or rolls back)."""
    if not can_import(actor):
        raise Forbidden(_l("只有客户经理、销售主管或系统管理员可以导入。"))
    if kind not in KINDS:
        raise NotFound(_l("不支持的导入类型。"))
    file_name = os.path.basename(str(file_name or "").replace("\\", "/")).strip()
    if not file_name:
        raise ValidationError(_l("请选择要导入的文件。"), field="file")
    fmt = file_format(file_name)
    options = dict(options or {})
    if options.get("default_manager_id") not in (None, ""):
        if not (actor.is_admin or actor.is_supervisor):
            options["default_manager_id"] = actor.id
        else:
            try:
                options["default_manager_id"] = cwf.clean(
                    session, {"manager_id": options["default_manager_id"]})["manager_id"]
            except ValidationError as e:
                raise ValidationError(e.message, field="default_manager_id")
    else:
        options.pop("default_manager_id", None)
    progress = progress or (lambda stage, n: None)

    job = ImportJob(kind=kind, file_name=file_name[:255], status=PREVIEW,
                    created_by_fk=actor.id, changed_by_fk=actor.id)
    session.add(job)
    session.flush()
    folder = job_dir(store_dir, job.id)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    try:
        src = os.path.join(folder, f"source.{'xlsx' if fmt == 'xlsx' else 'csv'}")
        _save(source, src)
        staging = os.path.join(folder, "staging.sqlite3")
        summary = _stage(session, actor, kind, fmt, src, staging, mapping, options, progress)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    summary["options"] = {k: v for k, v in options.items() if k == "default_manager_id"}
    # Core UPDATE: AuditMixin's ORM onupdate would take changed_by from flask.g
    session.execute(update(ImportJob).where(ImportJob.id == job.id).values(
        staged_path=staging, total_rows=summary["total"], failed_count=summary["errors"],
        report=json.dumps(summary, ensure_ascii=False), changed_on=datetime.now(),
        changed_by_fk=actor.id).execution_options(synchronize_session=False))
    session.refresh(job)
    return job


def _save(source, dest):
    size = 0
    if isinstance(source, (str, os.PathLike)):
        shutil.copyfile(source, dest)
        size = os.path.getsize(dest)
    else:
        with open(dest, "wb") as out:
            while True:
                chunk = source.read(1 << 20)
                if not chunk:
                    break
                size += len(chunk)
                if size > MAX_BYTES:
                    raise ValidationError(_l("文件太大：最多 %(n)d MB。", n=MAX_BYTES // 1048576),
                                          field="file")
                out.write(chunk)
    if size == 0:
        raise ValidationError(_l("文件是空的。"), field="file")

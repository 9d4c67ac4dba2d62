"""Reading a staged preview: summary, error rows, duplicates, the JSON answer."""
import json
import os

from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from ...models import (
    Contact, Customer,
)
from .. import customers as cwf
from ..errors import Conflict
from .columns import CUSTOMER, DUP_BY_LABELS, KIND_LABELS, PREVIEW, field_label
from .staging import _connect

# ---- reading the preview ------------------------------------------------------------------------

def _open(job):
    if not job.staged_path or not os.path.exists(job.staged_path):
        raise Conflict(_l("这次导入的暂存数据已不存在，请重新上传文件。"))
    return _connect(job.staged_path)


def summary(job):
    data = json.loads(job.report) if job.report else {}
    return data


def error_rows(job, page=0, page_size=50):
    """(count, [{"row", "errors": [{"field", "label", "message"}]}]) with errors, paged."""
    conn = _open(job)
    try:
        count = conn.execute("SELECT COUNT(*) FROM rows WHERE errors IS NOT NULL").fetchone()[0]
        rows = conn.execute("SELECT line, errors FROM rows WHERE errors IS NOT NULL ORDER BY line "
                            "LIMIT ? OFFSET ?", (page_size, page * page_size)).fetchall()
    finally:
        conn.close()
    return count, [{"row": line, "errors": [
        {"field": f, "label": field_label(job.kind, f), "message": m}
        for f, m in json.loads(errs).items()]} for line, errs in rows]


def duplicate_rows(session, job, page=0, page_size=50):
    """(count, rows) of the rows matching an existing record or an earlier row of the
    file, with the existing record for comparison."""
    conn = _open(job)
    try:
        where = "errors IS NULL AND (dup_id IS NOT NULL OR dup_of IS NOT NULL)"
        count = conn.execute(f"SELECT COUNT(*) FROM rows WHERE {where}").fetchone()[0]
        rows = conn.execute(f"SELECT line, raw, dup_id, dup_by, dup_of, blocked FROM rows "
                            f"WHERE {where} ORDER BY line LIMIT ? OFFSET ?",
                            (page_size, page * page_size)).fetchall()
    finally:
        conn.close()
    ids = {r[2] for r in rows if r[2] and r[4] is None}
    model = Customer if job.kind == CUSTOMER else Contact
    found = {o.id: o for o in session.scalars(select(model).where(model.id.in_(ids)))} if ids else {}
    out = []
    for line, raw, dup_id, dup_by, dup_of, blocked in rows:
        raw = json.loads(raw)
        item = {"row": line, "name": raw.get("name"), "values": raw, "in_file_of": dup_of,
                "existing": None, "match": str(DUP_BY_LABELS.get(dup_by, "")) if dup_by else None,
                "can_update": dup_of is None and blocked is None, "blocked": None}
        if dup_of is not None:
            item["blocked"] = str(_l("与文件第 %(n)d 行是同一%(what)s，不会导入。", n=dup_of,
                                     what=KIND_LABELS[job.kind]))
        elif blocked:
            item["blocked"] = str(_BLOCKED[blocked])
        o = found.get(dup_id)
        if o is not None:
            item["existing"] = (_customer_brief(o) if job.kind == CUSTOMER else
                                {"id": o.id, "customer_id": o.customer_id, "name": o.name,
                                 **{f: getattr(o, f) for f in cwf.CONTACT_FIELDS}})
        out.append(item)
    return count, out


_BLOCKED = {
    "not_normal": _l("已有的客户不是“正常”状态（已流失），只能跳过。"),
    "foreign": _l("已有的客户属于其他客户经理，只能跳过。"),
}


def _customer_brief(c):
    return {"id": c.id, "number": c.number, "name": c.name, "status": c.status,
            "manager_id": c.manager_id, "license_no": c.license_no,
            "national_tax_no": c.national_tax_no, "phone": c.phone, "address": c.address,
            "legal_person": c.legal_person}


def preview_json(session, job, page_size=100):
    data = summary(job)
    out = {"id": job.id, "kind": job.kind, "file_name": job.file_name, "status": job.status,
           "total_rows": job.total_rows, "created_on": _iso(job.created_on),
           "created_by_id": job.created_by_fk, "committed_on": _iso(job.committed_on),
           "created": job.created_count, "updated": job.updated_count,
           "skipped": job.skipped_count, "failed": job.failed_count}
    if job.status == PREVIEW and job.staged_path and os.path.exists(job.staged_path):
        _, errs = error_rows(job, 0, page_size)
        _, dups = duplicate_rows(session, job, 0, page_size)
        out["preview"] = {k: data.get(k) for k in ("total", "new", "duplicates",
                                                    "in_file_duplicates", "errors", "columns")}
        out["preview"]["error_rows"] = errs
        out["preview"]["duplicate_rows"] = dups
    if data.get("message"):
        out["message"] = data["message"]
    return out


def _iso(value):
    return value.isoformat(timespec="seconds") if value else None

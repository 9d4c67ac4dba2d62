"""Step 2, commit: the user's choice per duplicate, then everything in the
caller's ONE transaction with bulk statements, chunk by chunk; the CSV report."""
import json
import os
from datetime import datetime

from flask_babel import lazy_gettext as _l
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import DBAPIError

from ...models import (
    Contact, Customer, ImportJob,
)
from .. import customers as cwf
from .. import events, numbering, spreadsheet
from ..errors import Conflict, DomainError, Forbidden, ValidationError
from .columns import (
    ACTIONS, CHUNK, COMMITTED, CONTACT, CUSTOMER, CUSTOMER_COLUMNS, FAILED, OUTCOME_LABELS,
    PREVIEW, SKIP, STATUS_LABELS, UPDATE, field_label,
)
from .jobs import get_job
from .preview import _BLOCKED, _open, summary
from .staging import _from_json

# ---- step 2: commit ------------------------------------------------------------------------------

def report_path(job):
    return os.path.join(os.path.dirname(job.staged_path or ""), "report.csv")


def _actions(default_action, actions):
    if default_action in (None, ""):
        default_action = SKIP
    if default_action not in ACTIONS:
        raise ValidationError(_l("重复记录的处理方式只能是 skip（跳过）、update（只补充空字段）"
                                 "或 overwrite（覆盖）。"), field="default_action")
    per_row = {}
    for key, value in (actions or {}).items():
        try:
            line = int(key)
        except (TypeError, ValueError):
            raise ValidationError(_l("行号“%(row)s”无效。", row=key), field="actions")
        if value not in ACTIONS:
            raise ValidationError(_l("第 %(row)d 行的处理方式无效。", row=line), field="actions")
        per_row[line] = value
    return default_action, per_row


def commit(session, actor, job_id, default_action=SKIP, actions=None, progress=None, now=None):
    """Write the staged import in the caller's transaction (all or nothing).

    ``default_action`` applies to every duplicate without an entry in ``actions``
    ({row number: action}). Returns the job with its counts. The caller commits,
    or rolls back and calls ``mark_failed``."""
    job = get_job(session, actor, job_id)
    if job.created_by_fk != actor.id and not actor.is_admin:
        raise Forbidden(_l("只有上传文件的人可以确认这次导入。"))
    if job.status != PREVIEW:
        raise Conflict(_l("这次导入的状态是“%(status)s”，不能再次确认。",
                          status=STATUS_LABELS.get(job.status, job.status)))
    default_action, per_row = _actions(default_action, actions)
    conn = _open(job)
    now = now or datetime.now().replace(microsecond=0)
    progress = progress or (lambda done, total: None)
    # compare-and-set: two clicks on 确认导入 → one import, the other 409
    events.compare_and_set(session, ImportJob, job.id, (PREVIEW,),
                           {"status": COMMITTED, "committed_on": now, "changed_on": now,
                            "changed_by_fk": actor.id},
                           _l("这次导入已被确认或正在进行，请刷新页面。"))
    tmp = report_path(job) + ".tmp"
    counts = {"created": 0, "updated": 0, "skipped": 0, "failed": 0}
    try:
        with open(tmp, "w", encoding="utf-8-sig", newline="") as fh:
            out = spreadsheet.csv_writer(fh)  # text from the file cannot become a formula
            out.writerow([_l("行号"), _l("结果"), _l("原因"), _l("记录")])
            writer = _CustomerWriter if job.kind == CUSTOMER else _ContactWriter
            writer(session, actor, job, conn, default_action, per_row, now, out, counts,
                   progress).run()
    except (DomainError, DBAPIError) as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        reason = e.message if isinstance(e, DomainError) else str(e.orig).strip().splitlines()[0]
        raise ImportFailed(_l("导入失败，没有写入任何数据：%(reason)s", reason=reason))
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    finally:
        conn.close()
    os.replace(tmp, report_path(job))
    data = summary(job)
    data["result"] = dict(counts, default_action=default_action)
    session.execute(update(ImportJob).where(ImportJob.id == job.id).values(
        created_count=counts["created"], updated_count=counts["updated"],
        skipped_count=counts["skipped"], failed_count=counts["failed"],
        report=json.dumps(data, ensure_ascii=False), changed_on=now, changed_by_fk=actor.id)
        .execution_options(synchronize_session=False))
    events.record_event(session, "import", job.id, "commit", PREVIEW, COMMITTED,
                        note=f"{job.file_name}: 新建 {counts['created']}，更新 {counts['updated']}，"
                             f"跳过 {counts['skipped']}，失败 {counts['failed']}",
                        actor_id=actor.id)
    session.flush()
    session.refresh(job)
    return job


class ImportFailed(Conflict):
    """Writing the import failed; the caller rolls back (nothing written) and calls
    ``mark_failed``."""


def mark_failed(session, job_id, message, actor_id=None):
    """After a rolled-back commit: record the failure (in a new transaction)."""
    job = session.get(ImportJob, job_id)
    if job is None:
        return
    data = summary(job)
    data["message"] = str(message)
    session.execute(update(ImportJob).where(ImportJob.id == job.id).values(
        status=FAILED, report=json.dumps(data, ensure_ascii=False), changed_on=datetime.now(),
        changed_by_fk=actor_id or job.created_by_fk).execution_options(synchronize_session=False))
    session.flush()
    session.refresh(job)


class _Writer:
    def __init__(self, session, actor, job, conn, default_action, per_row, now, out, counts,
                 progress):
        self.s, self.actor, self.job, self.conn = session, actor, job, conn
        self.default, self.per_row, self.now = default_action, per_row, now
        self.out, self.counts, self.progress = out, counts, progress
        self.privileged = actor.is_admin or actor.is_supervisor
        self.labels = {k: str(v) for k, v in OUTCOME_LABELS.items()}

    def outcome(self, line, what, reason="", record=""):
        self.counts[what] += 1
        self.out.writerow([line, self.labels[what], reason, record])

    def run(self):
        total = self.conn.execute("SELECT COUNT(*) FROM rows").fetchone()[0]
        self.prepare()
        cur = self.conn.execute("SELECT line, data, errors, dup_id, dup_of, blocked, customer_id "
                                "FROM rows ORDER BY line")
        done = 0
        while True:
            chunk = cur.fetchmany(CHUNK)
            if not chunk:
                break
            self.chunk(chunk)
            done += len(chunk)
            self.progress(done, total)

    def classify(self, row):
        """'failed'/'skipped' with a reason, or ('create'|'update'|'overwrite', None)."""
        line, data, errors, dup_id, dup_of, blocked, _ = row
        if errors:
            return "failed", "；".join(json.loads(errors).values())
        if dup_of is not None:
            return "failed", str(_l("与文件第 %(n)d 行重复，未导入。", n=dup_of))
        if dup_id is None:
            return "create", None
        if blocked:
            return "skipped", str(_BLOCKED[blocked])
        action = self.per_row.get(line, self.default)
        if action == SKIP:
            return "skipped", str(_l("与已有记录重复，按选择跳过。"))
        return action, None

    def prepare(self):
        pass


class _CustomerWriter(_Writer):
    def prepare(self):
        n = self.conn.execute("SELECT COUNT(*) FROM rows WHERE errors IS NULL AND dup_of IS NULL "
                              "AND dup_id IS NULL").fetchone()[0]
        self.day = self.now.date()
        self.next_seq = None
        if n:
            last = numbering.next_value(
                self.s, f"{numbering.PREFIX_CUSTOMER}{self.day:%Y%m%d}", by=n)
            self.next_seq = last - n + 1

    def chunk(self, rows):
        inserts, updates = [], []
        for row in rows:
            kind, reason = self.classify(row)
            if kind in ("failed", "skipped"):
                self.outcome(row[0], kind, reason)
            elif kind == "create":
                values = _from_json(row[1])
                number = numbering.format_number(numbering.PREFIX_CUSTOMER, self.day,
                                                 self.next_seq)
                self.next_seq += 1
                inserts.append(dict({c: values.get(c) for c in CUSTOMER_COLUMNS},
                                    number=number, status=cwf.NORMAL, import_id=self.job.id,
                                    created_on=self.now, changed_on=self.now,
                                    created_by_fk=self.actor.id, changed_by_fk=self.actor.id))
                self.outcome(row[0], "created", "", number)
            else:
                updates.append((row[0], kind, row[3], _from_json(row[1])))
        if inserts:
            self.s.execute(insert(Customer.__table__), inserts)
        if updates:
            self.apply_updates(updates)

    def apply_updates(self, updates):
        C = Customer.__table__
        ids = {u[2] for u in updates}
        # lock the rows; they must still be normal (and the manager's own) at write time
        current = {r.id: r for r in self.s.execute(
            select(C).where(C.c.id.in_(ids)).with_for_update())}
        groups = {}
        for line, action, cid, values in updates:
            cur = current.get(cid)
            if cur is None or cur.status != cwf.NORMAL or (
                    not self.privileged and cur.manager_id != self.actor.id):
                raise Conflict(_l("第 %(row)d 行对应的客户在导入期间被他人修改了状态或客户经理，"
                                  "导入已取消，请重新上传。", row=line))
            values = {c: v for c, v in values.items() if c in CUSTOMER_COLUMNS and v is not None}
            if not self.privileged:
                values.pop("manager_id", None)
            if action == UPDATE:
                changes = {c: v for c, v in values.items() if getattr(cur, c) in (None, "")}
            else:
                changes = {c: v for c, v in values.items() if getattr(cur, c) != v}
            if not changes:
                self.outcome(line, "skipped", str(_l("没有需要更新的字段。")), cur.number)
                continue
            groups.setdefault(tuple(sorted(changes)), []).append(dict(
                {f"v_{c}": v for c, v in changes.items()}, b_id=cid))
            self.outcome(line, "updated", str(_l("更新了：%(fields)s", fields="、".join(
                field_label(CUSTOMER, c[:-3] if c.endswith("_id") else c)
                for c in sorted(changes)))), cur.number)
        for cols, params in groups.items():
            stmt = (update(C).where(C.c.id == bindparam("b_id"))
                    .values(dict({c: bindparam(f"v_{c}") for c in cols},
                                 changed_on=self.now, changed_by_fk=self.actor.id)))
            self.s.execute(stmt, params)


class _ContactWriter(_Writer):
    def chunk(self, rows):
        inserts, updates = [], []
        todo = []
        for row in rows:
            kind, reason = self.classify(row)
            if kind in ("failed", "skipped"):
                self.outcome(row[0], kind, reason)
            else:
                todo.append((row, kind))
        # the customers must still be normal (and the manager's own) at write time
        cids = {row[6] for row, _ in todo}
        if cids:
            q = select(Customer.id).where(Customer.id.in_(cids), Customer.status == cwf.NORMAL)
            if not self.privileged:
                q = q.where(Customer.manager_id == self.actor.id)
            ok = set(self.s.scalars(q.with_for_update()))
            if ok != cids:
                raise Conflict(_l("有客户在导入期间被他人修改了状态或客户经理，导入已取消，请重新上传。"))
        for row, kind in todo:
            values = _from_json(row[1])
            if kind == "create":
                inserts.append(dict({f: values.get(f) for f in cwf.CONTACT_FIELDS},
                                    customer_id=row[6], created_on=self.now,
                                    changed_on=self.now, created_by_fk=self.actor.id,
                                    changed_by_fk=self.actor.id))
                self.outcome(row[0], "created", "", values.get("name"))
            else:
                updates.append((row[0], kind, row[3], values))
        if inserts:
            self.s.execute(insert(Contact.__table__), inserts)
        if updates:
            T = Contact.__table__
            current = {r.id: r for r in self.s.execute(
                select(T).where(T.c.id.in_({u[2] for u in updates})))}
            for line, action, pk, values in updates:
                cur = current.get(pk)
                values = {f: v for f, v in values.items() if v is not None}
                if action == UPDATE:
                    changes = {f: v for f, v in values.items() if getattr(cur, f) in (None, "")}
                else:
                    changes = {f: v for f, v in values.items() if getattr(cur, f) != v}
                if cur is None or not changes:
                    self.outcome(line, "skipped", str(_l("没有需要更新的字段。")))
                    continue
                self.s.execute(update(T).where(T.c.id == pk).values(
                    **changes, changed_on=self.now, changed_by_fk=self.actor.id))
                self.outcome(line, "updated", str(_l("更新了：%(fields)s", fields="、".join(
                    field_label(CONTACT, f) for f in sorted(changes)))), cur.name)

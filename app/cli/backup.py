"""``flask --app run crm backup PATH`` and ``crm restore PATH`` (logic: app/workflows/backup.py)."""
import os
import time
from datetime import datetime

import click

from . import crm_cli

class CrmError(click.ClickException):
    """Like ClickException, but the prefix is Chinese (exit code 1)."""

    def show(self, file=None):
        click.echo(f"错误：{self.format_message()}", err=True)


BACKUP_STAGES = {
    "start": "临时目录",
    "fallback": "注意",
    "logical": "已逻辑导出全部表",
    "database": "数据库快照完成",
    "documents_progress": "已复制文档",
    "documents": "已复制文档",
    "manifest": "正在写入清单 manifest.json",
}
RESTORE_STAGES = {
    "checksums": "已校验文件校验和",
    "counts": "已核对备份中各表行数",
    "target_ok": "目标数据库为空",
    "loaded": "已导入表",
    "database": "数据库已恢复，方式",
    "documents": "文档已恢复到 DOCUMENT_DIR",
}


def _progress(stages, started):
    def report(stage, detail=None):
        label = stages.get(stage, stage)
        tail = "" if detail is None else f": {detail}"
        click.echo(f"  [{time.perf_counter() - started:6.1f}s] {label}{tail}", err=False)
    return report


def _site():
    """The backup workflow's view of this app: database, session, documents, migrations."""
    from flask import current_app

    from ..extensions import db
    from ..workflows.backup import Site

    app = current_app
    return Site(engine=db.engine, session=db.session,
                document_dir=app.config.get("DOCUMENT_DIR")
                or os.path.join(app.instance_path, "documents"),
                app_name=app.config.get("APP_NAME") or "",
                alembic_config=app.extensions["migrate"].migrate.get_config())


@crm_cli.command("backup")
@click.argument("path", type=click.Path(file_okay=False))
@click.option("--force", is_flag=True, help="PATH 已存在且不为空时仍然覆盖")
@click.option("--logical", is_flag=True,
              help="导出为与数据库类型无关的 JSON lines（可恢复到 SQLite 或 PostgreSQL）")
def backup_cmd(path, force, logical):
    """备份 CRM 数据库和文档库到目录 PATH（不含销售系统数据库）。"""
    from ..workflows.backup import BackupError, create_backup, human_size

    from ..scheduler import record_job_run

    started = time.perf_counter()
    started_at = datetime.now()
    click.echo(f"开始备份到 {path} …")
    try:
        m = create_backup(path, _site(), force=force, logical=logical,
                          progress=_progress(BACKUP_STAGES, started))
    except BackupError as exc:
        record_job_run("backup", started_at, False, str(exc))
        raise CrmError(str(exc))
    record_job_run("backup", started_at, True, f"{m['path']}")
    docs = m["documents"]
    click.echo(f"备份完成：{m['path']}")
    click.echo(f"  数据库：{m['database']['backend']}，格式 {m['database']['format']}，"
               f"结构版本 {m['schema_revision']}，{len(m['tables'])} 张表，"
               f"{sum(m['tables'].values()):,} 行")
    click.echo(f"  文档：{docs['count']:,} 个文件，{human_size(docs['bytes'])}")
    click.echo(f"  合计 {len(m['files']) + 1:,} 个文件，{human_size(m['total_bytes'])}，"
               f"用时 {m['elapsed']:.1f}s")
    bad = docs["missing"] + docs["corrupt"]
    if bad:
        click.echo(f"警告：文档库中 {len(docs['missing'])} 个文件缺失、{len(docs['corrupt'])} 个"
                   f"文件校验和不符，未能备份（已记入 manifest.json）：", err=True)
        for sha in bad[:20]:
            click.echo(f"  {sha}", err=True)
        raise SystemExit(3)


@crm_cli.command("restore")
@click.argument("path", type=click.Path(file_okay=False))
@click.option("--force", is_flag=True, help="目标数据库已有数据时仍然覆盖（现有数据将被删除！）")
def restore_cmd(path, force):
    """从备份目录 PATH 恢复 CRM 数据库和文档库到空的目标数据库，并按清单校验。"""
    from ..workflows.backup import BackupError, restore_backup

    started = time.perf_counter()
    click.echo(f"开始从 {path} 恢复 …")
    try:
        r = restore_backup(path, _site(), force=force, progress=_progress(RESTORE_STAGES, started))
    except BackupError as exc:
        raise CrmError(f"恢复失败：{exc}")
    m = r["manifest"]
    click.echo("恢复完成，校验通过。")
    click.echo(f"  备份时间：{m['created_at']}；来源：{m['database']['backend']}"
               f"（{m['database']['format']}）；目标：{r['target']}")
    click.echo(f"  恢复方式：{r['method']}；数据库结构版本 {m['schema_revision']}")
    click.echo(f"  {len(m['tables'])} 张表、{sum(r['counts'].get(t, 0) for t in m['tables']):,} 行"
               f"与清单一致")
    click.echo(f"  文档：写入 {r['documents_written']:,} 个，已存在 {r['documents_kept']:,} 个，"
               f"校验 {r['documents_checked']:,} 个")
    skipped = m["documents"].get("missing", []) + m["documents"].get("corrupt", [])
    if skipped:
        click.echo(f"  注意：备份时已缺失的文档 {len(skipped)} 个（见 manifest.json）")
    click.echo(f"  用时 {r['elapsed']:.1f}s。如程序版本比备份新，请再运行 flask --app run crm init 升级数据库结构。")

"""``flask --app run crm mail-fetch``: fetch new mail from the IMAP mailbox (CRM_IMAP_*)."""
import time
from datetime import datetime

import click
from flask import current_app

from ..security import system_user_id
from . import crm_cli
from ..extensions import db


@crm_cli.command("mail-fetch")
def mail_fetch_cmd():
    """从 IMAP 收件箱收取新邮件（按 Message-ID 去重，可重复运行），并关联到客户。"""
    from ..workflows import mail as wf

    from ..scheduler import record_job_run

    started = time.perf_counter()
    started_at = datetime.now()
    actor = system_user_id()
    try:
        result = wf.fetch_mail(db.session, current_app.config, actor)
        db.session.commit()          # the command is the unit of work
    except wf.FetchError as e:
        db.session.rollback()
        record_job_run("mail_fetch", started_at, False, str(e))
        raise click.ClickException(str(e))
    record_job_run("mail_fetch", started_at, True, f"new {result['new']}, skipped {result['skipped']}")
    click.echo(f"收取邮件：新邮件 {result['new']} 封，已存在跳过 {result['skipped']} 封，"
               f"邮箱共 {result['total']} 封；用时 {time.perf_counter() - started:.1f}s")

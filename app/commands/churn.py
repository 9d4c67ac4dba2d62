"""``flask --app run crm churn-check [--as-of YYYY-MM-DD]``: the churn check on demand."""
import time
from datetime import date, datetime

import click

from ..cli import crm_cli

STAGES = {
    "last_orders": "已读取客户最近下单日期",
    "recovered": "已恢复的预警",
    "opened": "新开的流失预警",
}


def _parse_day(_ctx, _param, value):
    if value is None:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        raise click.BadParameter("日期格式应为 YYYY-MM-DD，例如 2026-05-02。")


@crm_cli.command("churn-check")
@click.option("--as-of", "as_of", callback=_parse_day, metavar="YYYY-MM-DD",
              help="参照日期（默认今天）：最后一次有效订单早于此日期前 6 个月的客户将被预警。")
@click.option("--show", default=20, show_default=True, help="最多列出多少条新开/恢复的预警")
def churn_check_cmd(as_of, show):
    """客户流失检查：为超过 6 个月未下单的正常客户开流失预警，已重新下单的预警标为已恢复。"""
    from ..extensions import db
    from ..models import ChurnWarning, Customer
    from ..scheduler import run_churn_check, run_lock
    from sqlalchemy import select

    as_of = as_of or date.today()
    started = time.perf_counter()

    def progress(stage, n):
        click.echo(f"  [{time.perf_counter() - started:6.1f}s] {STAGES.get(stage, stage)}: {n:,}")

    click.echo(f"客户流失检查，参照日期 {as_of.isoformat()} …")
    with run_lock() as acquired:
        if not acquired:
            raise click.ClickException("另一个客户流失检查正在运行，请稍后再试。")
        summary = run_churn_check(as_of=as_of, progress=progress)
    opened, recovered = summary["opened"], summary["recovered"]
    elapsed = time.perf_counter() - started
    click.echo(f"截止日期 {summary['cutoff'].isoformat()}（早于此日期的最后下单视为流失风险）")
    for title, rows in (("新开流失预警", opened), ("已恢复（客户重新下单）", recovered)):
        click.echo(f"{title}: {len(rows)} 条")
        if rows and show:
            ids = [wid for wid, _ in rows[:show]]
            lines = db.session.execute(
                select(ChurnWarning.id, Customer.number, Customer.name, ChurnWarning.last_order_date)
                .join(Customer, Customer.id == ChurnWarning.customer_id)
                .where(ChurnWarning.id.in_(ids)).order_by(ChurnWarning.id)).all()
            for wid, number, name, last in lines:
                click.echo(f"  #{wid} {number} {name}  上次下单: {last.isoformat() if last else '从未下单'}")
            if len(rows) > show:
                click.echo(f"  …… 另有 {len(rows) - show} 条")
    click.echo(f"完成，用时 {elapsed:.1f}s")

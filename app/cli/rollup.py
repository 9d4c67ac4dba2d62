"""``flask --app run crm rollup refresh`` — rebuild the order rollup now;
``crm rollup status`` — when it was last built."""
from datetime import datetime

import click

from . import crm_cli


@crm_cli.group("rollup")
def rollup_cli():
    """订单汇总：按客户、按月的订单金额和最后下单日期（报表与流失检查读取它）。"""


@rollup_cli.command("refresh")
def refresh_cmd():
    """立即从销售系统重建订单汇总（与每小时的定时任务相同）。"""
    from ..scheduler import record_job_run, run_rollup_refresh

    started = datetime.now()
    try:
        state = run_rollup_refresh()
    except Exception as exc:
        record_job_run("rollup", started, False, str(exc))
        raise
    if state is None:
        raise click.ClickException("另一个订单汇总刷新正在运行，请稍后再试。")
    record_job_run("rollup", started, True, f"{state['customers']} customers, "
                                             f"{state['months']} months, {state['seconds']:.1f}s")
    click.echo(f"订单汇总已刷新：{state['customers']:,} 个客户编号，{state['months']:,} 个客户月，"
               f"用时 {state['seconds']:.1f}s，数据更新于 {state['refreshed_at']:%Y-%m-%d %H:%M}。")


@rollup_cli.command("status")
def status_cmd():
    """显示订单汇总的更新时间和行数。"""
    from ..extensions import db
    from ..workflows import rollup

    state = rollup.status(db.session)
    if state["refreshed_at"] is None:
        click.echo("订单汇总尚未生成：请运行 flask --app run crm rollup refresh。")
        return
    click.echo(f"数据更新于 {state['refreshed_at']:%Y-%m-%d %H:%M:%S}；{state['customers']:,} 个客户编号，"
               f"{state['months']:,} 个客户月；上次刷新用时 {state['seconds']:.1f}s。")

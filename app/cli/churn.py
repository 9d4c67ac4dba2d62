"""``flask --app run crm churn-check [--as-of YYYY-MM-DD] [--write | --preview]``.

A check as of today writes (what the weekly job does). A check as of any other day
is a **preview** that writes nothing unless ``--write`` is given; ``--preview``
previews today's check too.

The check reads the order rollup. It rebuilds it first only when the rollup is not
*fresh* — built more than ``CHURN_ROLLUP_MAX_AGE`` minutes ago (config, default 60;
``--max-age`` overrides it, 0 = always) — or when ``--refresh`` is given. The
command starts without the web views (``app.cli_needs_views``): only what the check
uses is built.
"""
import time
from datetime import date, datetime

import click

from . import crm_cli

STAGES = {
    "rollup": "订单汇总已就绪",
    "last_orders": "已读取客户最近下单日期",
    "recovered": "已恢复的预警",
    "reopened": "重新打开的预警",
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
              help="参照日期（默认今天）：最后一次有效订单早于此日期前 6 个月的客户将被预警。"
                   "不是今天时只预览，不写入数据库（除非加 --write）。")
@click.option("--write", is_flag=True, default=False,
              help="参照日期不是今天时也写入数据库（开出/恢复预警）。")
@click.option("--preview", is_flag=True, default=False,
              help="只预览，不写入数据库（参照日期为今天时也如此）。")
@click.option("--show", default=20, show_default=True, help="最多列出多少条新开/恢复的预警")
@click.option("--refresh", is_flag=True, default=False,
              help="先重建订单汇总，即使它是新的（默认只在汇总超过 --max-age 分钟时重建）。")
@click.option("--max-age", "max_age", type=click.FloatRange(min=0), default=None, metavar="MINUTES",
              help="订单汇总在多少分钟内算新的、不必先重建（默认取配置 CHURN_ROLLUP_MAX_AGE，60；0 = 总是重建）。")
def churn_check_cmd(as_of, write, preview, show, refresh, max_age):
    """客户流失检查：为超过 6 个月未下单的正常客户开流失预警，已重新下单的预警标为已恢复。"""
    from sqlalchemy import select

    from ..extensions import db
    from ..models import ChurnWarning, Customer
    from ..scheduler import record_job_run, run_churn_check, run_lock

    if write and preview:
        raise click.UsageError("--write 与 --preview 不能同时使用。")
    today = date.today()
    as_of = as_of or today
    dry_run = preview or (as_of != today and not write)
    started = time.perf_counter()
    started_at = datetime.now()

    def progress(stage, n):
        click.echo(f"  [{time.perf_counter() - started:6.1f}s] {STAGES.get(stage, stage)}: {n:,}")

    click.echo(f"客户流失检查，参照日期 {as_of.isoformat()} …")
    if dry_run:
        click.echo("预览模式：只计算，不写入数据库"
                   + ("（参照日期不是今天；确需写入请加 --write）" if not preview else "") + "。")
        summary = run_churn_check(as_of=as_of, progress=progress, dry_run=True,
                                  refresh=True if refresh else None, max_age=max_age)
    else:
        with run_lock() as acquired:
            if not acquired:
                raise click.ClickException("另一个客户流失检查正在运行，请稍后再试。")
            try:
                summary = run_churn_check(as_of=as_of, progress=progress,
                                          refresh=True if refresh else None, max_age=max_age)
            except Exception as exc:
                record_job_run("churn", started_at, False, str(exc))
                raise
            record_job_run("churn", started_at, True,
                           f"opened {len(summary['opened'])}, recovered {len(summary['recovered'])}")
    elapsed = time.perf_counter() - started
    built = summary["rollup"]["refreshed_at"]
    click.echo(f"订单汇总数据更新于 {built:%Y-%m-%d %H:%M:%S}"
               + ("（本次检查前已重建）" if summary["rollup"]["refreshed"] else "（足够新，未重建；需要时加 --refresh）")
               if built else "订单汇总尚未生成（另一个刷新正在运行？）")
    would = "将" if dry_run else ""
    click.echo(f"截止日期 {summary['cutoff'].isoformat()}（早于此日期的最后下单视为流失风险）")
    for title, rows in ((f"{would}新开流失预警", summary["opened"]),
                        (f"{would}重新打开（未再下单，保留暂缓措施）", summary["reopened"]),
                        (f"{would}已恢复（客户重新下单）", summary["recovered"])):
        click.echo(f"{title}: {len(rows)} 条")
        if rows and show:
            cids = [cid for _, cid in rows[:show]]
            wids = {cid: wid for wid, cid in rows[:show]}
            lines = db.session.execute(
                select(Customer.id, Customer.number, Customer.name).where(Customer.id.in_(cids))
                .order_by(Customer.id)).all()
            last = {}
            if any(w is not None for w in wids.values()):
                last = dict(db.session.execute(
                    select(ChurnWarning.id, ChurnWarning.last_order_date)
                    .where(ChurnWarning.id.in_([w for w in wids.values() if w]))).all())
            for cid, number, name in lines:
                wid = wids.get(cid)
                tag = f"#{wid} " if wid else ""
                extra = ""
                if wid:
                    d = last.get(wid)
                    extra = f"  上次下单: {d.isoformat() if d else '从未下单'}"
                click.echo(f"  {tag}{number} {name}{extra}")
            if len(rows) > show:
                click.echo(f"  …… 另有 {len(rows) - show} 条")
    if dry_run:
        click.echo("预览结束，数据库未改变。")
    click.echo(f"完成，用时 {elapsed:.1f}s")

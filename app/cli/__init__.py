"""``flask --app run crm ...``: the CLI, one package. This module has the group
``crm_cli`` and the setup commands (init, create-user, seed-demo); each other
module of the package adds the commands of one concern (backup.py: backup,
restore; churn.py: churn-check; mail.py: mail-fetch) with ``@crm_cli.command``.

A command is a unit of work like an endpoint: it calls workflows and commits
(or rolls back) around them. Nothing outside this package imports it (the
scheduler and the seed find the system user in app/security.py).
"""
import importlib
import pkgutil
import time

import click
from flask import current_app
from flask.cli import AppGroup

from ..extensions import db
from ..models.user import SYSTEM_USERNAME  # noqa: F401
from ..security import system_user_id

crm_cli = AppGroup("crm", help="客户关系管理系统的管理命令 (CRM management commands).")


def run_init(echo=click.echo):
    from flask_migrate import upgrade

    from ..security import init_roles
    from ..workflows import dictionary, search_index

    started = time.perf_counter()
    upgrade()
    # a bulk load killed between dropping the search triggers/indexes and building them
    # again (app/workflows/search_index.py) heals here; a no-op when all are present
    search_index.ensure(db.session.connection())
    granted = init_roles(current_app.appbuilder, db.session)
    actor = system_user_id()
    added = dictionary.seed_base(db.session, actor)
    db.session.commit()
    for role, n in granted.items():
        echo(f"角色 {role}: 新授予 {n} 项权限")
    echo(f"数据字典: 新增 {added} 条; 用时 {time.perf_counter() - started:.1f}s")
    return granted, added


@crm_cli.command("init")
def init_cmd():
    """迁移数据库到最新版本，创建四个角色及其权限和基础数据字典（可重复运行）。"""
    run_init()


@crm_cli.command("create-user")
@click.option("--username", required=True)
@click.option("--name", "full_name", required=True, help="姓名，例如 张伟")
@click.option("--email", required=True)
@click.option("--role", required=True, help="系统管理员 | 高管 | 销售主管 | 客户经理")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
def create_user_cmd(username, full_name, email, role, password):
    """创建用户。"""
    sm = current_app.appbuilder.sm
    r = sm.find_role(role)
    if r is None:
        raise click.ClickException(f"角色“{role}”不存在，请先运行 flask crm init。")
    if sm.find_user(username=username):
        raise click.ClickException(f"用户名“{username}”已存在。")
    from ..workflows.errors import ValidationError
    from ..workflows.names import check_name
    try:
        check_name(full_name, "name", "姓名")
    except ValidationError as e:
        raise click.ClickException(str(e.message))
    user = sm.add_user(username, full_name[:1], full_name[1:] or full_name, email, [r],
                       password=password)
    if not user:
        raise click.ClickException("创建用户失败（邮箱是否重复？）。")
    click.echo(f"已创建用户 {username}（{role}）")


@crm_cli.command("seed-demo")
@click.option("--scale", default=200, show_default=True, help="客户数量")
@click.option("--password", default=None, help="演示用户的密码（不给则随机生成并打印）")
@click.option("--seed", default=2026, show_default=True, help="随机数种子")
def seed_demo_cmd(scale, password, seed):
    """创建演示用户（admin, exec, supervisor, manager1, manager2）和演示数据。"""
    from ..seed import seed_demo

    seed_demo(scale=scale, password=password, seed=seed, echo=click.echo)


def _load_command_modules():
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


_load_command_modules()

"""Application factory."""
import logging
import os
import secrets

from flask import Flask
from flask_appbuilder import AppBuilder
from flask_appbuilder.menu import Menu
from werkzeug.exceptions import NotFound

from .extensions import csrf, db, mail, migrate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
log = logging.getLogger(__name__)


def N_(text):
    """Marks a msgid for extraction (tools/i18n.py) without translating it here: FAB's
    navbar translates menu labels itself (``_(item.label)``) in the request's language."""
    return text


# Menu categories, in the order the menu shows them (DESIGN.md §6).
MENU_CATEGORIES = [
    ("Marketing", N_("营销管理"), "fa-bullhorn"),
    ("Customers", N_("客户管理"), "fa-building"),
    ("Service", N_("服务管理"), "fa-life-ring"),
    ("Reports", N_("统计报表"), "fa-bar-chart"),
    ("BaseData", N_("基础数据"), "fa-database"),
    ("Mail", N_("邮件"), "fa-envelope"),
    ("Documents", N_("文档"), "fa-folder-open"),
]


class CrmAppBuilder(AppBuilder):
    """FAB's AppBuilder; the application name (APP_NAME, shown in the title and the
    navbar) goes through Babel in a request, like every other label."""

    @property
    def app_name(self):
        from flask import has_request_context
        from flask_babel import gettext

        name = super().app_name
        return gettext(name) if has_request_context() and name else name


class ConfigError(RuntimeError):
    pass


def _load_config(app, overrides):
    app.config.from_object("config")
    app.config.from_prefixed_env("CRM")
    if overrides:
        app.config.update(overrides)
    cfg = app.config
    cfg.setdefault("SQLALCHEMY_BINDS", {})
    cfg["SQLALCHEMY_BINDS"] = dict(cfg["SQLALCHEMY_BINDS"], sales=cfg["SALES_DATABASE_URI"])
    cfg["BABEL_TRANSLATION_DIRECTORIES"] = os.path.join(ROOT, "translations")
    if cfg["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        cfg["SQLALCHEMY_ENGINE_OPTIONS"] = {}
    os.makedirs(app.instance_path, exist_ok=True)
    if not cfg.get("SECRET_KEY"):
        # demo/debug/test mode generates a key once and keeps it in the instance dir;
        # that file (written by `make run`) is then used by every later start of the
        # same instance — the CLI (flask --app run crm churn-check …) included, without
        # CRM_DEMO_MODE. Without the file, outside those modes, the key is required.
        key_file = os.path.join(app.instance_path, "secret_key")
        if (cfg.get("DEMO_MODE") or cfg.get("DEBUG") or cfg.get("TESTING")) \
                and not os.path.exists(key_file):
            with open(key_file, "w") as fh:
                fh.write(secrets.token_hex(32))
        if os.path.exists(key_file):
            with open(key_file) as fh:
                cfg["SECRET_KEY"] = fh.read().strip()
        else:
            raise ConfigError(
                f"SECRET_KEY 未设置，实例目录 {app.instance_path} 中也没有演示模式生成的密钥文件 "
                "secret_key：生产环境请设置环境变量 CRM_SECRET_KEY "
                "（例如 export CRM_SECRET_KEY=$(python -c 'import secrets;print(secrets.token_hex(32))')），"
                "演示环境请先运行 make run，或设置 CRM_DEMO_MODE=true。"
                " / SECRET_KEY is not set and the instance dir has no demo key file: export "
                "CRM_SECRET_KEY, run `make run` first, or set CRM_DEMO_MODE=true for a demo."
            )
    cfg.setdefault("JWT_SECRET_KEY", cfg["SECRET_KEY"])
    from .sessions import resolve_ratelimit_storage
    resolve_ratelimit_storage(cfg)      # "auto" → Redis when it answers, else memory://
    if isinstance(cfg.get("FAB_PASSWORD_COMPLEXITY_VALIDATOR"), str):
        from werkzeug.utils import import_string
        cfg["FAB_PASSWORD_COMPLEXITY_VALIDATOR"] = import_string(
            cfg["FAB_PASSWORD_COMPLEXITY_VALIDATOR"])


def _enable_sqlite_pragmas():
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "connect")
    def _pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
        if type(dbapi_conn).__module__.startswith("sqlite3"):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=15000")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()


_enable_sqlite_pragmas()


def _security_headers(app):
    """CSP allowing only our own scripts (FAB's templates carry the nonce), frame
    denial, nosniff, HSTS/secure cookies only when served over HTTPS."""
    from flask_talisman import Talisman

    proxies = int(app.config.get("PROXY_COUNT") or 0)
    if proxies:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies,
                                x_host=proxies, x_port=proxies)
    https = bool(app.config.get("FORCE_HTTPS"))
    Talisman(
        app,
        force_https=https,
        strict_transport_security=https,
        session_cookie_secure=bool(app.config.get("SESSION_COOKIE_SECURE")) or https,
        session_cookie_http_only=True,
        content_security_policy=app.config.get("CONTENT_SECURITY_POLICY"),
        content_security_policy_nonce_in=["script-src"],
        frame_options="DENY",
        referrer_policy="same-origin",
    )


INT32_MAX = 2**31 - 1


def _reject_out_of_range_ids(endpoint, values):
    """Every number in a URL (``<int:pk>``, FAB's ``/show/<pk>``…) is a database id,
    an INTEGER column: a larger one names no record → 404, not an overflowing query."""
    for value in (values or {}).values():
        if isinstance(value, str) and value.isdigit():
            value = int(value) if len(value) <= 12 else INT32_MAX + 1
        if isinstance(value, int) and not -INT32_MAX - 1 <= value <= INT32_MAX:
            raise NotFound()


def _blank_none(value):
    """Jinja ``finalize``: ``{{ x }}`` with x None renders "" (not the text None)."""
    return "" if value is None else value


def _signed_in_user_id():
    """The 操作记录's actor: the signed-in user, None outside a request."""
    from flask import g, has_request_context

    if has_request_context():
        user = getattr(g, "user", None)
        if user is not None and getattr(user, "is_authenticated", False):
            return user.id
    return None


# ``flask --app run crm <command>`` for these commands runs a job and exits: it needs no
# web page, so run.py builds the app without FAB's views and APIs (issue 23: the
# churn check's start-up). Every other command, gunicorn and the tests get the full app.
CLI_WITHOUT_VIEWS = ("churn-check", "rollup")


def cli_needs_views(argv=None):
    """False when ``argv`` (default ``sys.argv``) is ``flask … crm <command> …`` with a
    command of ``CLI_WITHOUT_VIEWS``; True for anything else (the safe default)."""
    import sys

    argv = sys.argv if argv is None else argv
    if not argv or os.path.basename(argv[0]) != "flask":
        return True
    words = list(argv[1:])
    if "crm" not in words:
        return True
    rest = [w for w in words[words.index("crm") + 1:] if not w.startswith("-")]
    return not (rest and rest[0] in CLI_WITHOUT_VIEWS and "--help" not in words)


def create_app(config=None, views=True):
    """Build the app. ``config`` (a dict) overrides config.py and CRM_* env vars.
    ``views=False`` (run.py, for the commands of ``CLI_WITHOUT_VIEWS``): no HTML views,
    REST APIs or FAB security views — models, database, Babel, security manager (users,
    roles), audit listeners and the CLI as usual; requests would find no page."""
    from config import INSTANCE_DIR

    instance = (config or {}).get("INSTANCE_DIR") or os.environ.get("CRM_INSTANCE_DIR") or INSTANCE_DIR
    app = Flask(__name__, instance_path=os.path.abspath(instance))
    # an empty field prints as nothing, never as "None" — in every template (ours and
    # FAB's list/show widgets, which print ``{{ value }}``): set before any template
    # is compiled
    app.jinja_options = dict(app.jinja_options, finalize=_blank_none)
    app.url_value_preprocessor(_reject_out_of_range_ids)
    _load_config(app, config)

    from . import models  # noqa: F401  (register tables)

    db.init_app(app)
    migrate.init_app(app, db, directory=os.path.join(ROOT, "migrations"))
    mail.init_app(app)
    csrf.init_app(app)

    from .security import CrmSecurityManager
    if views:
        from .views import register_views
        from .views.dashboard import CrmIndexView
    else:
        from flask_appbuilder import IndexView as CrmIndexView

    if not views:
        app.config["FAB_ADD_SECURITY_VIEWS"] = False
    with app.app_context():
        menu = Menu()
        for name, label, icon in MENU_CATEGORIES:
            menu.add_category(name, icon=icon, label=label)
        appbuilder = CrmAppBuilder(security_manager_class=CrmSecurityManager, menu=menu,
                                indexview=CrmIndexView, base_template="crm_base.html")
        appbuilder.init_app(app, db.session)
        if views:
            register_views(appbuilder)
            from .api import register_apis
            register_apis(appbuilder)
        # the 操作记录 listeners (app/workflows/audit.py): installed here, once, not
        # as a side effect of importing a module
        from .workflows import audit
        audit.install(_signed_in_user_id)
        from .security import install_permission_labels
        install_permission_labels(appbuilder)
        from .views.common import install_schema_once
        install_schema_once()
        # server-side sessions (logout / password change / deactivation end them) and
        # CSRF for cookie-authenticated writes on /api/ (app/sessions.py)
        from . import sessions
        sessions.install(app)
        # Flask-WTF's blanket check is off for the REST APIs: sessions.install checks
        # cookie-authenticated writes there itself (JWT calls need no token).
        from flask_appbuilder.api import BaseApi

        for view in appbuilder.baseviews:
            if isinstance(view, BaseApi) and getattr(view, "blueprint", None):
                csrf.exempt(view.blueprint)
            # FAB rate-limits only the form login; limit the API login the same way
            if (type(view).__name__ == "SecurityApi" and app.config.get("AUTH_RATE_LIMITED")
                    and app.config.get("RATELIMIT_ENABLED")):
                appbuilder.sm.limiter.limit(app.config["AUTH_RATE_LIMIT"],
                                            methods=["POST"])(view.blueprint)

    _security_headers(app)

    from .cli import crm_cli
    app.cli.add_command(crm_cli)

    from .views.errors import register_error_handlers
    register_error_handlers(app)

    from .ops import init_ops
    init_ops(app)

    @app.route("/favicon.ico")
    def favicon():
        from flask import send_from_directory
        return send_from_directory(app.static_folder, "favicon.svg", mimetype="image/svg+xml")

    @app.context_processor
    def _notification_context():
        def crm_unread_count():
            from flask import g
            from flask_login import current_user

            if "crm_unread" not in g:
                from .workflows.notifications import unread_count

                g.crm_unread = (unread_count(db.session, current_user.id)
                                if current_user.is_authenticated else 0)
            return g.crm_unread
        def crm_today():
            from zoneinfo import ZoneInfo
            from datetime import datetime as _dt

            return _dt.now(ZoneInfo(app.config.get("BABEL_DEFAULT_TIMEZONE") or "Asia/Shanghai")).date()

        def crm_now():
            from datetime import datetime as _dt

            return _dt.now()   # stored times are the server's naive local time
        return {"crm_unread_count": crm_unread_count, "crm_today": crm_today, "crm_now": crm_now}

    @app.context_processor
    def _appbuilder_context():
        # FAB passes these to its own templates; our error pages need them too
        return {"appbuilder": app.appbuilder, "base_template": app.appbuilder.base_template}

    if app.config.get("SCHEDULER_ENABLED"):
        from .scheduler import start_scheduler
        start_scheduler(app)
    return app

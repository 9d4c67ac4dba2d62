"""Test fixtures.

One app per backend per test session: SQLite always, PostgreSQL too when
``CRM_TEST_DATABASE_URL`` is set (a throw-away database is created on that
server and dropped afterwards). Every test runs once per backend.

The schema is built by the Alembic migrations (``crm init``), exactly as in
production. Tests do not share an app context with the requests they make, and
create their own uniquely named data instead of assuming empty tables.
"""
import contextlib
from datetime import timedelta
import os
import re
import uuid

import pytest
from sqlalchemy import create_engine, text

from app import create_app
from app.cli import run_init
from app.extensions import db
from app.models import sales_metadata
from app.seed import ensure_demo_users

PASSWORD = "Test-pass-123"


def _compile_catalogue():
    """`make test` compiles translations; do it too when pytest is run directly.

    Every translations/<locale>/ (zh, en); fuzzy entries are left out, as in `make
    translations`."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "translations"
    for po in sorted(root.glob("*/LC_MESSAGES/messages.po")):
        mo = po.with_suffix(".mo")
        if not mo.exists() or mo.stat().st_mtime < po.stat().st_mtime:
            from babel.messages.mofile import write_mo
            from babel.messages.pofile import read_po

            with open(po, "rb") as fh:
                catalog = read_po(fh, locale=po.parent.parent.name)
            with open(mo, "wb") as fh:
                write_mo(fh, catalog, use_fuzzy=False)


_compile_catalogue()
USERNAMES = ("admin", "exec", "supervisor", "manager1", "manager2")


def _backends():
    names = ["sqlite"]
    if os.environ.get("CRM_TEST_DATABASE_URL"):
        names.append("postgresql")
    return names


def _create_pg_database(base_url):
    name = f"crm_test_{uuid.uuid4().hex[:12]}"
    engine = create_engine(base_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return name, base_url.rsplit("/", 1)[0] + "/" + name


def _drop_pg_database(base_url, name):
    engine = create_engine(base_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = :n AND pid <> pg_backend_pid()"), {"n": name})
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    engine.dispose()


def build_app(tmp, backend, **overrides):
    pg_name = None
    if backend == "postgresql":
        pg_name, uri = _create_pg_database(os.environ["CRM_TEST_DATABASE_URL"])
    else:
        uri = f"sqlite:///{tmp}/crm.db"
    config = {
        "TESTING": True,
        "SECRET_KEY": "test-secret",
        "SQLALCHEMY_DATABASE_URI": uri,
        "SALES_DATABASE_URI": f"sqlite:///{tmp}/sales.db",
        "INSTANCE_DIR": str(tmp),
        "DOCUMENT_DIR": str(tmp / "documents"),
        "WTF_CSRF_ENABLED": True,
        "AUTH_RATE_LIMITED": False,  # tests log in often; test_security builds a limited app
        # API tokens are cached for the whole session; a long (loaded) run must not
        # outlive flask-jwt-extended's 15-minute default
        "JWT_ACCESS_TOKEN_EXPIRES": timedelta(hours=4),
        "SCHEDULER_ENABLED": False,
    }
    config.update(overrides)
    app = create_app(config)
    app.config["CRM_TEST_BACKEND"] = backend
    app.config["CRM_TEST_PG_NAME"] = pg_name
    with app.app_context():
        run_init(echo=lambda *a, **k: None)
        ensure_demo_users(PASSWORD)
        db.session.commit()
        sales_metadata.create_all(db.engines["sales"])
    return app


def dispose_app(app):
    with app.app_context():
        db.session.remove()
        for engine in db.engines.values():
            engine.dispose()
    if app.config.get("CRM_TEST_PG_NAME"):
        _drop_pg_database(os.environ["CRM_TEST_DATABASE_URL"], app.config["CRM_TEST_PG_NAME"])


@pytest.fixture(scope="session", params=_backends())
def app(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(request.param)
    app = build_app(tmp, request.param)
    yield app
    dispose_app(app)


@pytest.fixture(autouse=True)
def _no_order_rollup_yet(request):
    """Every test starts as a fresh install: no order rollup built (crm_rollup_state
    empty), so 客户贡献分析 aggregates the sales system directly and sees the orders the
    test just wrote. A test that wants the rollup builds it (``rollup.refresh``), as
    tests/test_rollup.py and the churn tests do. (Tests share one database per
    backend; without this a rollup built by an earlier test would be read, stale.)"""
    if "app" in request.fixturenames:
        app = request.getfixturevalue("app")
        from sqlalchemy import text

        with app.app_context():
            from app.extensions import db

            with db.engine.begin() as conn:
                conn.execute(text("DELETE FROM crm_rollup_state"))
    yield


@pytest.fixture
def backend(app):
    return app.config["CRM_TEST_BACKEND"]


@pytest.fixture
def dbs(app):
    """``with dbs() as s:`` → a session in a short app context (commit yourself)."""
    @contextlib.contextmanager
    def _ctx():
        with app.app_context():
            try:
                yield db.session
            finally:
                db.session.remove()
    return _ctx


@pytest.fixture
def user_id(app):
    cache = {}

    def _id(username):
        if username not in cache:
            with app.app_context():
                cache[username] = app.appbuilder.sm.find_user(username=username).id
                db.session.remove()
        return cache[username]
    return _id


CSRF_RE = re.compile(r'name="csrf_token"[^>]*?value="([^"]+)"')


def csrf_from(html):
    m = CSRF_RE.search(html)
    assert m, "no csrf_token in page"
    return m.group(1)


class WebClient:
    """A browser-like client: logs in through the form, posts forms with CSRF."""

    def __init__(self, app, username=None):
        self.client = app.test_client()
        self.username = username
        if username:
            self.login(username)

    def login(self, username, password=PASSWORD):
        page = self.client.get("/login/")
        r = self.client.post("/login/", data={"csrf_token": csrf_from(page.text),
                                              "username": username, "password": password})
        assert r.status_code == 302, f"login of {username} failed"
        return r

    def get(self, url, **kw):
        return self.client.get(url, **kw)

    def csrf(self, url):
        """Open ``url`` like a browser and return the CSRF token of its form."""
        return csrf_from(self.client.get(url).text)

    def post_form(self, url, data, form_url=None, **kw):
        """POST ``data`` to ``url`` with the CSRF token taken from ``form_url`` (default url)."""
        data = dict(data)
        data.setdefault("csrf_token", self.csrf(form_url or url))
        return self.client.post(url, data=data, **kw)

    def post(self, url, **kw):
        return self.client.post(url, **kw)


@pytest.fixture
def web(app):
    """``web("manager1")`` → a logged-in WebClient (CSRF on)."""
    return lambda username=None: WebClient(app, username)


class ApiClient:
    def __init__(self, app, username=None, password=PASSWORD):
        self.client = app.test_client()
        self.headers = {}
        if username:
            r = self.client.post("/api/v1/security/login", json={
                "username": username, "password": password, "provider": "db"})
            assert r.status_code == 200, r.text
            self.headers = {"Authorization": f"Bearer {r.json['access_token']}"}

    def _call(self, method, url, **kw):
        headers = dict(self.headers, **kw.pop("headers", {}))
        return getattr(self.client, method)(url, headers=headers, **kw)

    def get(self, url, **kw):
        return self._call("get", url, **kw)

    def post(self, url, **kw):
        return self._call("post", url, **kw)

    def put(self, url, **kw):
        return self._call("put", url, **kw)

    def delete(self, url, **kw):
        return self._call("delete", url, **kw)


_TOKENS = {}


@pytest.fixture
def api(app):
    """``api("manager1")`` → a JWT-authenticated REST client (``api()`` = anonymous)."""
    def _make(username=None):
        key = (id(app), username)
        if username and key in _TOKENS:
            c = ApiClient(app)
            c.headers = _TOKENS[key]
            return c
        c = ApiClient(app, username)
        if username:
            _TOKENS[key] = c.headers
        return c
    return _make


@pytest.fixture
def uniq():
    """A short unique suffix for names, so tests never collide."""
    return lambda prefix="": f"{prefix}{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium (Debian's) for the whole run: Playwright's sync API allows a
    single instance per thread, so every browser test shares this one."""
    from pathlib import Path

    from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS

    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium not found: apt-get install chromium (Debian package)")
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    yield b
    b.close()
    pw.stop()

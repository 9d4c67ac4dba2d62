"""Faults: processes killed at a random point leave no half-written data, and a
database that goes away at request time gives a Chinese 503, then recovers.

Each kill test runs the real CLI (``flask --app run crm ...``) or a workflow in a
subprocess on a fresh SQLite instance, SIGKILLs it at a random point (after a
random progress line / a random delay; the seed is printed, set
``CRM_FAULT_SEED`` to replay), checks the invariants, then runs the step again to
completion and checks them again.
"""
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import pytest
from sqlalchemy import create_engine, text

from .conftest import PASSWORD, WebClient, build_app, dispose_app

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLASK = [os.path.join(ROOT, ".venv", "bin", "flask"), "--app", "run"]
SCALE = 300
SEED = int(os.environ.get("CRM_FAULT_SEED", str(int(time.time()) % 100000)))
rnd = random.Random(SEED)


def _env(instance, **extra):
    env = dict(os.environ, CRM_INSTANCE_DIR=str(instance), CRM_DEMO_MODE="true",
               CRM_SCHEDULER_ENABLED="false", PYTHONUNBUFFERED="1", CRM_SECRET_KEY="fault-test")
    env.pop("CRM_TEST_DATABASE_URL", None)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_cli(instance, *args, **env):
    r = subprocess.run(FLASK + ["crm", *args], cwd=ROOT, env=_env(instance, **env),
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def kill_during(cmd, env, after_lines=None, delay=(0.0, 0.0)):
    """Start ``cmd``; SIGKILL it ``delay`` seconds after the ``after_lines``-th line of
    output (or after start). Returns (killed?, output so far)."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines = []
    ready = threading.Event()

    def reader():
        for line in proc.stdout:
            lines.append(line)
            if after_lines is not None and len([ln for ln in lines if ln.strip()]) >= after_lines:
                ready.set()
        ready.set()
    t = threading.Thread(target=reader, daemon=True)
    t.start()
    if after_lines is not None:
        ready.wait(timeout=300)
    time.sleep(rnd.uniform(*delay))
    killed = proc.poll() is None
    if killed:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    t.join(timeout=10)
    return killed, "".join(lines)


def _db(instance, name="crm.db"):
    return create_engine(f"sqlite:///{instance}/{name}")


def _scalar(engine, sql):
    with engine.connect() as conn:
        return conn.execute(text(sql)).scalar()


@pytest.fixture(scope="module")
def instance(tmp_path_factory):
    path = tmp_path_factory.mktemp("faults")
    run_cli(path, "init")
    print(f"\n[faults] CRM_FAULT_SEED={SEED}")
    return path


def check_seed_invariants(instance, complete=False):
    crm = _db(instance)
    customers = _scalar(crm, "SELECT count(*) FROM crm_customer")
    assert customers in ((SCALE,) if complete else (0, SCALE)), f"half-written: {customers} customers"
    assert _scalar(crm, "SELECT count(*) FROM crm_customer WHERE number IS NULL OR number = ''") == 0
    if customers:
        assert _scalar(crm, "SELECT count(*) FROM crm_contact") == 3 * customers
        assert _scalar(crm, "SELECT count(*) FROM crm_activity") == customers
        assert _scalar(crm, "SELECT count(*) FROM crm_opportunity") == max(8, SCALE // 2)
        assert _scalar(crm, "SELECT count(*) FROM crm_service") == 2 * SCALE
        # the number counters cover every number handed out (no number reused later)
        assert _scalar(crm, "SELECT coalesce(sum(value), 0) FROM crm_sequence "
                            "WHERE name LIKE 'KH%'") == customers
    else:
        for table in ("crm_contact", "crm_activity", "crm_opportunity", "crm_service"):
            assert _scalar(crm, f"SELECT count(*) FROM {table}") == 0, table
    users = _scalar(crm, "SELECT count(*) FROM ab_user WHERE username IN "
                         "('admin','exec','supervisor','manager1','manager2')")
    assert users in (0, 5)
    sales_path = os.path.join(instance, "sales.db")
    if os.path.exists(sales_path):
        sales = _db(instance, "sales.db")
        try:
            products = _scalar(sales, "SELECT count(*) FROM sales_product")
        except Exception:
            products = 0   # killed before the tables existed
        assert products in ((200,) if complete else (0, 200))
        if products:
            assert _scalar(sales, "SELECT count(*) FROM sales_order") > 0
            assert _scalar(sales, "SELECT count(*) FROM sales_order_line") == 3 * _scalar(
                sales, "SELECT count(*) FROM sales_order")
        sales.dispose()
    elif complete:
        pytest.fail("no sales database after a complete seed-demo")
    crm.dispose()


def test_seed_demo_killed_midway_leaves_all_or_nothing(instance):
    # kill after a random progress line (users, 客户, 联系人, ... 订单), a little later
    killed, out = kill_during(FLASK + ["crm", "seed-demo", "--scale", str(SCALE), "--password",
                                       PASSWORD], _env(instance),
                              after_lines=rnd.randint(1, 6), delay=(0.0, 0.5))
    print(f"[faults] seed-demo killed={killed} after:\n{out[-400:]}")
    check_seed_invariants(instance)
    run_cli(instance, "seed-demo", "--scale", str(SCALE), "--password", PASSWORD)
    check_seed_invariants(instance, complete=True)


def _open_warnings(instance):
    crm = _db(instance)
    with crm.connect() as conn:
        dup = conn.execute(text(
            "SELECT customer_id, count(*) FROM crm_churn_warning "
            "WHERE status IN ('warning', 'delaying') GROUP BY customer_id HAVING count(*) > 1"
        )).all()
        total = conn.execute(text("SELECT count(*) FROM crm_churn_warning")).scalar()
        events = conn.execute(text(
            "SELECT count(*) FROM crm_workflow_event WHERE entity = 'churn'")).scalar()
    crm.dispose()
    assert dup == [], f"customers with two open warnings: {dup}"
    return total, events


def test_churn_check_killed_midway_then_rerun_is_consistent(instance):
    check_seed_invariants(instance, complete=True)
    before, _ = _open_warnings(instance)
    killed, out = kill_during(FLASK + ["crm", "churn-check"], _env(instance),
                              after_lines=1, delay=(0.0, 1.5))
    print(f"[faults] churn-check killed={killed}: {out[-300:]}")
    after_kill, _ = _open_warnings(instance)
    run_cli(instance, "churn-check")
    done, events = _open_warnings(instance)
    assert after_kill in (before, done), "a killed churn-check left part of its warnings"
    run_cli(instance, "churn-check")                    # re-running changes nothing
    assert _open_warnings(instance) == (done, events)
    assert done > 0   # the demo data has silent customers


UPLOAD_SCRIPT = textwrap.dedent("""
    import io, os, sys
    sys.path.insert(0, {root!r})
    from app import create_app
    from app.extensions import db
    from app.workflows import documents as wf
    from app.workflows.actors import Actor
    app = create_app()
    with app.app_context():
        sm = app.appbuilder.sm
        user = sm.find_user(username="manager1")
        actor = Actor.of(user)
        cid = db.session.execute(db.text(
            "SELECT id FROM crm_customer WHERE manager_id = :m ORDER BY id LIMIT 1"),
            {{"m": user.id}}).scalar()
        if os.environ.get("CRM_FAULT_AT") == "after_commit":
            # the worst moment: the database has committed, nothing after it has run
            from sqlalchemy import event
            from sqlalchemy.orm import Session
            event.listen(Session, "after_commit", lambda s: os.kill(os.getpid(), 9),
                         insert=True)
        print("ready", flush=True)
        for i in range(int(os.environ.get("N", "40"))):
            data = b"%PDF-1.4\\n" + os.urandom(256 * 1024) + b"\\n%%EOF\\n"
            wf.store(db.session, actor, cid, [(f"合同{{i}}.pdf", io.BytesIO(data))],
                     cfg=wf.settings(app.config, app.instance_path))
            db.session.commit()
            print("stored", i, flush=True)
""")


def check_document_invariants(instance):
    crm = _db(instance)
    with crm.connect() as conn:
        rows = conn.execute(text("SELECT d.id, d.sha256, d.size FROM crm_document d")).all()
        blobs = conn.execute(text("SELECT sha256 FROM crm_document_blob")).scalars().all()
    crm.dispose()
    store = os.path.join(instance, "documents")
    missing = [r for r in rows
               if not os.path.exists(os.path.join(store, r.sha256[:2], r.sha256[2:4], r.sha256))]
    assert not missing, f"document rows without their file: {missing}"
    for sha in blobs:
        assert os.path.exists(os.path.join(store, sha[:2], sha[2:4], sha)), sha
    # no stray temporary files outside DOCUMENT_DIR/tmp
    for dirpath, _dirs, files in os.walk(store):
        if os.path.relpath(dirpath, store).split(os.sep)[0] == "tmp":
            continue
        stray = [f for f in files if f.endswith(".part") or f.startswith("tmp")]
        assert not stray, (dirpath, stray)
    return len(rows)


def _upload(instance, **env):
    script = os.path.join(instance, "upload_job.py")
    with open(script, "w") as fh:
        fh.write(UPLOAD_SCRIPT.format(root=ROOT))
    return [sys.executable, script], _env(instance, **env)


def test_upload_killed_at_random_leaves_no_row_without_file(instance):
    check_seed_invariants(instance, complete=True)
    cmd, env = _upload(instance, N=40)
    killed, out = kill_during(cmd, env, after_lines=rnd.randint(1, 8), delay=(0.0, 0.3))
    print(f"[faults] upload killed={killed} after {out.count('stored')} stored files")
    check_document_invariants(instance)


def test_upload_killed_between_commit_and_file_move(instance):
    """The worst moment: the database committed, the file is still being moved."""
    check_seed_invariants(instance, complete=True)
    cmd, env = _upload(instance, N=1, CRM_FAULT_AT="after_commit")
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == -9, r.stdout + r.stderr
    check_document_invariants(instance)


# ---- mail-fetch --------------------------------------------------------------------------

from .test_mail import dovecot  # noqa: E402,F401  (the IMAP server fixture)


def test_mail_fetch_killed_midway_stores_each_message_once(instance, dovecot):  # noqa: F811
    user, password = f"fault{uuid.uuid4().hex[:6]}", "Fault-pass-1"
    dovecot.add_user(user, password)
    n = 40
    for i in range(n):
        dovecot.deliver(user, (
            f"From: kehu{i}@example.com\r\nTo: manager1@demo.crm\r\n"
            f"Subject: =?utf-8?b?5rWL6K+V?= {i}\r\nMessage-ID: <fault-{user}-{i}@example.com>\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\n" + "内容" * 2000 + "\r\n"
        ).encode("utf-8"))
    env = _env(instance, CRM_IMAP_HOST="127.0.0.1", CRM_IMAP_PORT=dovecot.port,
               CRM_IMAP_USER=user, CRM_IMAP_PASSWORD=password, CRM_IMAP_SSL="false")
    killed, out = kill_during(FLASK + ["crm", "mail-fetch"], env, delay=(1.0, 6.0))
    print(f"[faults] mail-fetch killed={killed}: {out[-200:]}")
    crm = _db(instance)
    like = f"<fault-{user}-%"
    stored = _scalar(crm, f"SELECT count(*) FROM crm_mail WHERE message_id LIKE '{like}'")
    assert stored in (0, n), f"a killed fetch stored {stored} of {n}"
    subprocess.run(FLASK + ["crm", "mail-fetch"], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=300)
    subprocess.run(FLASK + ["crm", "mail-fetch"], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=300)
    assert _scalar(crm, f"SELECT count(*) FROM crm_mail WHERE message_id LIKE '{like}'") == n
    assert _scalar(crm, f"SELECT count(DISTINCT message_id) FROM crm_mail "
                        f"WHERE message_id LIKE '{like}'") == n
    crm.dispose()


# ---- the database goes away at request time ---------------------------------------------

@pytest.fixture(scope="module")
def fragile_app(tmp_path_factory):
    app = build_app(tmp_path_factory.mktemp("fragile"), "sqlite")
    yield app
    dispose_app(app)


class DatabaseDown:
    """Point the app's engine at a PostgreSQL port where nothing listens; restore."""

    def __init__(self, app):
        self.app = app
        self.engines = app.extensions["sqlalchemy"]._app_engines[app]
        self.good = self.engines[None]

    def __enter__(self):
        from app.extensions import db

        with self.app.app_context():
            db.session.remove()
        self.good.dispose()
        self.dead = create_engine("postgresql+psycopg2://crm@127.0.0.1:9/crm",
                                  connect_args={"connect_timeout": 2})
        self.engines[None] = self.dead
        return self

    def __exit__(self, *exc):
        self.engines[None] = self.good
        self.dead.dispose()


class ConnectionLost:
    """The connection drops in the middle of a request: the user and the rights
    load fine, then every statement on ``table`` fails as a dropped connection does."""

    def __init__(self, app, table):
        self.engine = app.extensions["sqlalchemy"]._app_engines[app][None]
        self.table = table

    def _fail(self, _conn, _cursor, statement, params, _context, _many):
        import sqlite3

        from sqlalchemy.exc import OperationalError

        if self.table in statement:
            raise OperationalError(statement, params,
                                   sqlite3.OperationalError("server closed the connection"))

    def __enter__(self):
        from sqlalchemy import event

        event.listen(self.engine, "before_cursor_execute", self._fail)
        return self

    def __exit__(self, *exc):
        from sqlalchemy import event

        event.remove(self.engine, "before_cursor_execute", self._fail)


def _clients(app):
    web = WebClient(app, "manager1")
    token = app.test_client().post("/api/v1/security/login", json={
        "username": "manager1", "password": PASSWORD, "provider": "db"}).json["access_token"]
    return web, {"Authorization": f"Bearer {token}"}


def _assert_plain_503(r):
    assert r.status_code == 503, r.status_code
    assert r.mimetype == "text/html"
    assert "数据库暂时无法连接" in r.text and "Traceback" not in r.text
    # the plain page: no menu, no user (both would need the database)
    assert "navbar" not in r.text and "manager1" not in r.text and "营销管理" not in r.text


def test_database_unreachable_api_gives_chinese_503_and_recovers(fragile_app):
    app = fragile_app
    web, headers = _clients(app)
    assert app.test_client().get("/api/v1/dict_item/", headers=headers).status_code == 200
    with DatabaseDown(app):
        r = app.test_client().get("/api/v1/dict_item/", headers=headers)
        assert r.status_code == 503 and "数据库暂时无法连接" in r.json["message"]
        r = app.test_client().post("/api/v1/opportunity/", headers=headers, json={"summary": "x"})
        assert r.status_code == 503 and "数据库" in r.json["message"]
    # the database is back: the same clients work again, nothing to restart
    assert app.test_client().get("/api/v1/dict_item/", headers=headers).status_code == 200
    assert web.get("/dictitem/list/").status_code == 200


def test_database_unreachable_html_gives_chinese_503_page(fragile_app):
    app = fragile_app
    web, _headers = _clients(app)
    assert web.get("/dictitem/list/").status_code == 200
    token = web.csrf("/customer/add")
    with DatabaseDown(app):
        _assert_plain_503(web.get("/dictitem/list/"))
        _assert_plain_503(web.get("/customer/list/"))
        _assert_plain_503(web.post("/customer/add", data={"csrf_token": token, "name": "x"}))
        # error pages of their own (404, a form without its CSRF token) keep their code
        # and come on the plain page too: the usual page's menu needs the database
        for r, code in ((web.get("/no-such-page/"), 404),
                        (web.post("/customer/add", data={"name": "x"}), 400)):
            assert r.status_code == code, (code, r.status_code)
            assert "navbar" not in r.text and "Traceback" not in r.text
            assert "<html" in r.text and "回到首页" not in r.text
    # the database is back: the same session works again, with the menu
    r = web.get("/dictitem/list/")
    assert r.status_code == 200 and "navbar" in r.text and "数据字典" in r.text


def test_connection_lost_mid_request_gives_503_and_recovers(fragile_app):
    """The user and the rights load, then the connection drops: FAB's ``@safe`` API
    methods would answer 500 "Fatal error" — a 503 in Chinese instead; the HTML list
    gives the plain 503 page. Afterwards everything works again."""
    app = fragile_app
    web, headers = _clients(app)
    with ConnectionLost(app, "crm_dict_item"):
        r = app.test_client().get("/api/v1/dict_item/", headers=headers)
        assert r.status_code == 503 and "数据库暂时无法连接" in r.json["message"], r.text
        r = app.test_client().get("/api/v1/dict_item/1", headers=headers)
        assert r.status_code == 503 and "数据库暂时无法连接" in r.json["message"], r.text
        _assert_plain_503(web.get("/dictitem/list/"))
    assert app.test_client().get("/api/v1/dict_item/", headers=headers).status_code == 200
    assert web.get("/dictitem/list/").status_code == 200


def test_other_api_errors_say_internal_error_in_chinese(fragile_app, monkeypatch):
    """Not a database problem: still FAB's 500 from ``@safe``, said in Chinese,
    without the exception text."""
    from app.api.dictionary import DictItemApi

    app = fragile_app
    _web, headers = _clients(app)

    def boom(self, *a, **kw):
        raise RuntimeError("secret detail")
    monkeypatch.setattr(DictItemApi, "get_list_headless", boom)
    r = app.test_client().get("/api/v1/dict_item/", headers=headers)
    assert r.status_code == 500 and "系统内部错误" in r.json["message"]
    assert "secret detail" not in r.text

"""备份与恢复: ``crm backup`` / ``crm restore`` round trips, tampered backups, killed backups.

Each test module builds its own source app (one per backend) with known data, and
restores into fresh, *uninitialised* target databases (``crm restore`` wants an empty
target), so the shared session database of the other tests is never touched.
"""
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime
from decimal import Decimal

import pytest
from sqlalchemy import MetaData, select

from app import create_app
from app.extensions import db
from app.models import Document, DocumentBlob
from app.workflows import backup as bk

from . import factories as f
from .conftest import _backends, _create_pg_database, build_app, dispose_app

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PG_URL = os.environ.get("CRM_TEST_DATABASE_URL")
KILLS = 3   # each kill costs one app start-up in a subprocess


# ---- helpers ---------------------------------------------------------------------

def write_blob(app, session, data, actor_id, customer, name="合同.pdf"):
    """A document whose blob lives at DOCUMENT_DIR/ab/cd/<sha256>."""
    sha = hashlib.sha256(data).hexdigest()
    path = os.path.join(app.config["DOCUMENT_DIR"], sha[:2], sha[2:4], sha)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)
    now = datetime.now().replace(microsecond=0)
    session.add(DocumentBlob(sha256=sha, size=len(data), mime="application/pdf", created_on=now))
    session.flush()
    doc = Document(customer_id=customer.id, name=name, version=1, sha256=sha, size=len(data),
                   mime="application/pdf", created_by_fk=actor_id, changed_by_fk=actor_id,
                   created_on=now, changed_on=now)
    session.add(doc)
    session.flush()
    return sha


def target_app(tmp, backend):
    """A second app on an EMPTY database (no ``crm init``) and its own DOCUMENT_DIR."""
    tmp.mkdir(parents=True, exist_ok=True)
    pg_name = None
    if backend == "postgresql":
        pg_name, uri = _create_pg_database(PG_URL)
    else:
        uri = f"sqlite:///{tmp}/crm.db"
    app = create_app({
        "TESTING": True, "SECRET_KEY": "test-secret", "SQLALCHEMY_DATABASE_URI": uri,
        "SALES_DATABASE_URI": f"sqlite:///{tmp}/sales.db", "INSTANCE_DIR": str(tmp),
        "DOCUMENT_DIR": str(tmp / "documents"), "AUTH_RATE_LIMITED": False,
        "SCHEDULER_ENABLED": False,
    })
    app.config["CRM_TEST_BACKEND"] = backend
    app.config["CRM_TEST_PG_NAME"] = pg_name
    return app


def _norm(value):
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, datetime):
        return value.replace(tzinfo=None).isoformat()
    return value if value is None or isinstance(value, (int, str, bool)) else str(value)


def table_contents(app):
    """{table: sorted rows} of every table in the app's CRM database."""
    with app.app_context():
        meta = MetaData()
        with db.engine.connect() as conn:
            meta.reflect(bind=conn, only=lambda n, _m: not n.startswith("crm_search_"))
            out = {}
            for name, tbl in meta.tables.items():
                if name.startswith("crm_search_") or bk._is_derived(name):
                    continue            # search index, running totals: rebuilt, not restored
                if name == "crm_job_run":
                    # the backup's own run is recorded after its snapshot was taken: the
                    # source has that one row more than any restore of it can have
                    continue
                rows = conn.execute(select(tbl)).all()
                out[name] = sorted((tuple(_norm(v) for v in r) for r in rows), key=repr)
        db.engine.dispose()
    return out


def cli(app, *args):
    return app.test_cli_runner().invoke(args=["crm", *args], catch_exceptions=False)


def flip_byte(path, offset=None):
    size = os.path.getsize(path)
    offset = size // 2 if offset is None else offset
    with open(path, "r+b") as fh:
        fh.seek(offset)
        b = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([b[0] ^ 0xFF]))


def db_file(backup_dir):
    m = json.load(open(os.path.join(backup_dir, "manifest.json"), encoding="utf-8"))
    if m["database"]["format"] == "jsonl":
        return os.path.join(backup_dir, "data", "crm_customer.jsonl")
    return os.path.join(backup_dir, m["database"]["file"])


# ---- fixtures ----------------------------------------------------------------------

@pytest.fixture(scope="module", params=_backends())
def src(request, tmp_path_factory):
    """A source app with customers, contacts, activities, an opportunity, a ticket and
    documents (blob files in DOCUMENT_DIR)."""
    tmp = tmp_path_factory.mktemp(f"backup-src-{request.param}")
    app = build_app(tmp, request.param)
    rnd = random.Random(12)
    with app.app_context():
        s = db.session
        sm = app.appbuilder.sm
        m1 = sm.find_user(username="manager1").id
        sup = sm.find_user(username="supervisor").id
        shas = []
        for i in range(4):
            c = f.customer(s, m1, name=f"备份测试客户{i}有限公司")
            f.contact(s, c, m1, name=f"联系人{i}")
            f.activity(s, c, m1, summary=f"拜访{i}")
            f.service(s, c, sup)
            for j in range(10):
                data = f"客户 {i} 合同 {j}\n".encode() + rnd.randbytes(rnd.randint(500, 20000))
                shas.append(write_blob(app, s, data, m1, c, name=f"合同{j}.pdf"))
        f.plan_item(s, f.opportunity(s, sup, status="assigned", assignee_id=m1), m1)
        s.commit()
        db.session.remove()
    app.config["TEST_SHAS"] = shas
    yield app
    dispose_app(app)


@pytest.fixture
def targets(tmp_path):
    made = []

    def _make(backend=None, name="target"):
        app = target_app(tmp_path / f"{name}{len(made)}", backend or "sqlite")
        made.append(app)
        return app
    yield _make
    for app in made:
        dispose_app(app)


@pytest.fixture
def backup_dir(src, tmp_path):
    path = tmp_path / "backups" / "crm-2026-05-02"
    r = cli(src, "backup", str(path))
    assert r.exit_code == 0, r.output
    return path


# ---- round trips -----------------------------------------------------------------

def test_backup_writes_manifest_and_documents(src, backup_dir):
    m = json.load(open(backup_dir / "manifest.json", encoding="utf-8"))
    backend = src.config["CRM_TEST_BACKEND"]
    assert m["database"]["backend"] == backend
    assert m["database"]["format"] == ("sqlite-file" if backend == "sqlite" else "pg-custom")
    assert m["schema_revision"]
    assert m["tables"]["crm_customer"] >= 4 and m["tables"]["crm_document_blob"] == 40
    assert m["documents"]["count"] == 40 and not m["documents"]["missing"]
    for sha in src.config["TEST_SHAS"]:
        rel = f"documents/{sha[:2]}/{sha[2:4]}/{sha}"
        assert m["files"][rel]["sha256"] == sha
        assert bk.sha256_file(backup_dir / rel) == sha
    db_rel = "crm.sqlite3" if backend == "sqlite" else "crm.dump"
    assert m["files"][db_rel]["sha256"] == bk.sha256_file(backup_dir / db_rel)
    # nothing left behind next to the backup, no password in the manifest
    assert os.listdir(backup_dir.parent) == [backup_dir.name]
    assert "sales" not in json.dumps(m["tables"])


def test_round_trip_restores_every_row_and_document(src, backup_dir, targets):
    target = targets(src.config["CRM_TEST_BACKEND"])
    r = cli(target, "restore", str(backup_dir))
    assert r.exit_code == 0, r.output
    assert "恢复完成，校验通过" in r.output
    assert table_contents(target) == table_contents(src)
    for sha in src.config["TEST_SHAS"]:
        path = os.path.join(target.config["DOCUMENT_DIR"], sha[:2], sha[2:4], sha)
        assert bk.sha256_file(path) == sha
    # the restored database is alive: new rows get fresh ids (sequences restored)
    with target.app_context():
        m1 = target.appbuilder.sm.find_user(username="manager1").id
        c = f.customer(db.session, m1, name="恢复后新增客户")
        db.session.commit()
        assert c.id and c.number
        db.session.remove()


@pytest.mark.parametrize("to", ["sqlite", "postgresql"])
def test_logical_backup_restores_into_either_backend(src, tmp_path, targets, to):
    if to == "postgresql" and not PG_URL:
        pytest.skip("CRM_TEST_DATABASE_URL not set")
    path = tmp_path / "logical"
    r = cli(src, "backup", "--logical", str(path))
    assert r.exit_code == 0, r.output
    assert os.path.isdir(path / "data")
    target = targets(to)
    r = cli(target, "restore", str(path))
    assert r.exit_code == 0, r.output
    assert "逻辑导入" in r.output
    assert table_contents(target) == table_contents(src)
    with target.app_context():
        m1 = target.appbuilder.sm.find_user(username="manager1").id
        f.customer(db.session, m1, name="逻辑恢复后新增客户")
        db.session.commit()
        db.session.remove()


def test_sqlite_file_backup_restores_into_postgresql(src, backup_dir, targets):
    """Cross-backend: a SQLite file backup goes into PostgreSQL via the logical loader."""
    if not PG_URL or src.config["CRM_TEST_BACKEND"] != "sqlite":
        pytest.skip("needs the SQLite source and CRM_TEST_DATABASE_URL")
    target = targets("postgresql")
    r = cli(target, "restore", str(backup_dir))
    assert r.exit_code == 0, r.output
    assert table_contents(target) == table_contents(src)


def test_pg_dump_backup_refuses_sqlite_target(src, backup_dir, targets):
    if src.config["CRM_TEST_BACKEND"] != "postgresql":
        pytest.skip("PostgreSQL source only")
    target = targets("sqlite")
    r = cli(target, "restore", str(backup_dir))
    assert r.exit_code == 1
    assert "不能恢复到 SQLite" in r.output
    assert not os.path.exists(target.config["DOCUMENT_DIR"])


# ---- refusals ------------------------------------------------------------------------

def test_backup_refuses_non_empty_directory_unless_forced(src, backup_dir):
    before = (backup_dir / "manifest.json").read_bytes()
    r = cli(src, "backup", str(backup_dir))
    assert r.exit_code == 1
    assert "已存在且不为空" in r.output and "--force" in r.output
    assert (backup_dir / "manifest.json").read_bytes() == before
    r = cli(src, "backup", "--force", str(backup_dir))
    assert r.exit_code == 0, r.output
    bk.verify_backup(str(backup_dir))
    assert os.listdir(backup_dir.parent) == [backup_dir.name]


def test_restore_refuses_a_database_with_data(src, backup_dir):
    before = table_contents(src)
    r = cli(src, "restore", str(backup_dir))
    assert r.exit_code == 1
    assert "目标数据库不是空的" in r.output and "--force" in r.output
    assert table_contents(src) == before


def test_restore_force_replaces_existing_data(src, backup_dir, targets):
    target = targets(src.config["CRM_TEST_BACKEND"])
    assert cli(target, "restore", str(backup_dir)).exit_code == 0
    with target.app_context():
        m1 = target.appbuilder.sm.find_user(username="manager1").id
        f.customer(db.session, m1, name="稍后会被覆盖的客户")
        db.session.commit()
        db.session.remove()
    assert cli(target, "restore", str(backup_dir)).exit_code == 1
    r = cli(target, "restore", "--force", str(backup_dir))
    assert r.exit_code == 0, r.output
    assert table_contents(target) == table_contents(src)


# ---- tampered and incomplete backups -------------------------------------------------------

def _assert_untouched(target):
    assert table_contents(target) == {} or all(not rows for rows in table_contents(target).values())
    assert not os.path.exists(target.config["DOCUMENT_DIR"])


def test_changed_byte_in_database_file_is_refused(src, backup_dir, targets):
    flip_byte(db_file(backup_dir))
    target = targets(src.config["CRM_TEST_BACKEND"])
    r = cli(target, "restore", str(backup_dir))
    assert r.exit_code == 1
    assert "恢复失败：备份校验失败" in r.output and "校验和 (sha256) 不符" in r.output
    _assert_untouched(target)


def test_changed_byte_in_document_is_refused(src, backup_dir, targets):
    sha = src.config["TEST_SHAS"][7]
    flip_byte(backup_dir / "documents" / sha[:2] / sha[2:4] / sha, offset=3)
    target = targets(src.config["CRM_TEST_BACKEND"])
    r = cli(target, "restore", str(backup_dir))
    assert r.exit_code == 1
    assert f"documents/{sha[:2]}/{sha[2:4]}/{sha} 校验和 (sha256) 不符" in r.output
    _assert_untouched(target)


def test_missing_or_extra_file_is_refused(src, backup_dir, targets):
    sha = src.config["TEST_SHAS"][0]
    os.remove(backup_dir / "documents" / sha[:2] / sha[2:4] / sha)
    (backup_dir / "extra.txt").write_text("?")
    target = targets(src.config["CRM_TEST_BACKEND"])
    r = cli(target, "restore", str(backup_dir))
    assert r.exit_code == 1
    assert "缺少文件 documents/" in r.output and "清单中没有的文件 extra.txt" in r.output
    _assert_untouched(target)


def test_changed_manifest_count_is_refused(src, backup_dir, targets):
    mpath = backup_dir / "manifest.json"
    m = json.loads(mpath.read_text(encoding="utf-8"))
    m["tables"]["crm_customer"] += 1
    mpath.write_text(json.dumps(m, ensure_ascii=False), encoding="utf-8")
    target = targets(src.config["CRM_TEST_BACKEND"])
    r = cli(target, "restore", str(backup_dir))
    assert r.exit_code == 1
    n = m["tables"]["crm_customer"]
    assert f"表 crm_customer：清单 {n} 行" in r.output and f"实际 {n - 1} 行" in r.output
    if src.config["CRM_TEST_BACKEND"] == "sqlite":
        _assert_untouched(target)   # a SQLite snapshot is counted before anything is written


def test_directory_without_manifest_is_refused(src, backup_dir, targets):
    os.remove(backup_dir / "manifest.json")
    target = targets(src.config["CRM_TEST_BACKEND"])
    r = cli(target, "restore", str(backup_dir))
    assert r.exit_code == 1
    assert "不是完整的备份：缺少 manifest.json" in r.output
    _assert_untouched(target)


def test_missing_blob_is_reported_not_fatal(src, tmp_path):
    """A blob file lost from DOCUMENT_DIR: the backup completes, lists it, exits 3."""
    sha = src.config["TEST_SHAS"][5]
    store = os.path.join(src.config["DOCUMENT_DIR"], sha[:2], sha[2:4], sha)
    aside = str(tmp_path / "aside")
    shutil.move(store, aside)
    try:
        r = src.test_cli_runner().invoke(args=["crm", "backup", str(tmp_path / "b")])
    finally:
        shutil.move(aside, store)
    assert r.exit_code == 3, r.output
    assert "1 个文件缺失" in r.output
    m = bk.verify_backup(str(tmp_path / "b"))
    assert m["documents"]["missing"] == [sha]


# ---- a backup process killed at a random point -------------------------------------------------

def _env(app):
    env = dict(os.environ)
    env.update({
        "CRM_SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
        "CRM_SALES_DATABASE_URI": app.config["SALES_DATABASE_URI"],
        "CRM_INSTANCE_DIR": app.config["INSTANCE_DIR"],
        "CRM_DOCUMENT_DIR": app.config["DOCUMENT_DIR"],
        "CRM_SECRET_KEY": "test-secret", "CRM_SCHEDULER_ENABLED": "false",
        "PYTHONUNBUFFERED": "1",
    })
    return env


def _start_backup(app, path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "run", "crm", "backup", str(path)],
        cwd=ROOT, env=_env(app), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = proc.stdout.readline()       # "开始备份到 …": the app is up, work starts now
    assert "开始备份" in line, line + proc.stdout.read()
    return proc


def test_killed_backup_leaves_nothing_restore_accepts(src, tmp_path, targets):
    rnd = random.Random()
    # calibrate: how long the work itself takes, in process (never asserted)
    started = time.perf_counter()
    assert cli(src, "backup", str(tmp_path / "full")).exit_code == 0
    work_time = time.perf_counter() - started
    def counts(m):  # each backup records its own run afterwards: crm_job_run grows by one
        return {k: v for k, v in m["tables"].items() if k != "crm_job_run"}

    expected = counts(bk.verify_backup(str(tmp_path / "full")))

    parent = tmp_path / "killed"
    target = targets(src.config["CRM_TEST_BACKEND"])
    survived, interrupted = 0, 0
    for attempt in range(KILLS):
        path = parent / f"crm-{attempt}"
        proc = _start_backup(src, path)
        time.sleep(rnd.uniform(0, work_time))
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        interrupted += not path.exists()
        # every directory the killed run left is either rejected, or a complete backup
        for entry in os.listdir(parent):
            try:
                m = bk.verify_backup(str(parent / entry))
            except bk.BackupError:
                assert entry.startswith(".")    # only the hidden work directory
                continue
            assert counts(m) == expected            # accepted => complete
        if not path.exists():
            r = cli(target, "restore", str(path))
            assert r.exit_code == 1 and "不存在" in r.output
        survived += 1
        # the next backup to the same PATH works and sweeps the dead run's leftovers
        r = cli(src, "backup", "--force", str(path))
        assert r.exit_code == 0, r.output
        assert not [e for e in os.listdir(parent) if e.startswith(f".{path.name}.")]
    assert survived == KILLS
    print(f"backup killed {KILLS} times, {interrupted} mid-way; all leftovers rejected")
    # and a complete backup made after the kills restores (the target is still empty)
    r = cli(target, "restore", str(parent / f"crm-{KILLS - 1}"))
    assert r.exit_code == 0, r.output


def test_backup_while_the_app_writes_is_consistent(src, tmp_path, targets):
    """Customers are added while the backup runs: the manifest matches the snapshot exactly."""
    import threading

    stop = threading.Event()
    added = []

    def writer():
        with src.app_context():
            m1 = src.appbuilder.sm.find_user(username="manager1").id
            while not stop.is_set():
                c = f.customer(db.session, m1, name=f"并发客户{len(added)}")
                f.contact(db.session, c, m1)
                db.session.commit()
                added.append(c.id)
            db.session.remove()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while len(added) < 3:
            time.sleep(0.01)
        r = cli(src, "backup", str(tmp_path / "live"))
    finally:
        stop.set()
        thread.join()
    assert r.exit_code == 0, r.output
    bk.verify_backup(str(tmp_path / "live"))
    target = targets(src.config["CRM_TEST_BACKEND"])
    r = cli(target, "restore", str(tmp_path / "live"))
    assert r.exit_code == 0, r.output
    with target.app_context():
        from app.models import Contact, Customer
        names = set(db.session.scalars(select(Customer.name).where(Customer.name.like("并发客户%"))))
        # every snapshotted customer came with its contact (one transaction each)
        with_contact = set(db.session.scalars(
            select(Customer.name).join(Contact, Contact.customer_id == Customer.id)
            .where(Customer.name.like("并发客户%"))))
        db.session.remove()
    assert names and names == with_contact
    assert len(names) < len(added) + 1


def test_old_pg_dump_falls_back_to_logical_dump(src, tmp_path, targets, monkeypatch):
    if src.config["CRM_TEST_BACKEND"] != "postgresql":
        pytest.skip("PostgreSQL source only")
    monkeypatch.setattr(bk, "_client_major", lambda _b: (9, "pg_dump (PostgreSQL) 9.6.24"))
    r = cli(src, "backup", str(tmp_path / "old-client"))
    assert r.exit_code == 0, r.output
    assert "不兼容，改用逻辑导出" in r.output
    m = bk.verify_backup(str(tmp_path / "old-client"))
    assert m["database"]["format"] == "jsonl"
    target = targets("postgresql")
    assert cli(target, "restore", str(tmp_path / "old-client")).exit_code == 0
    assert table_contents(target) == table_contents(src)

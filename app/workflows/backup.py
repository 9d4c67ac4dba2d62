"""备份与恢复: a consistent snapshot of the CRM database and the document store.

``flask --app run crm backup PATH`` / ``crm restore PATH`` (app/cli/backup.py) are
thin wrappers around :func:`create_backup` and :func:`restore_backup`; they pass a
:class:`Site` (engine, session, document directory, Alembic config) built from the
app, so nothing here looks at Flask.

A backup directory holds

* the CRM database, in one of three formats (``manifest["database"]["format"]``):

  - ``sqlite-file``  ``crm.sqlite3``: SQLite's online backup API
    (``sqlite3.Connection.backup``) — a consistent copy while the app keeps running;
  - ``pg-custom``    ``crm.dump``: ``pg_dump --format=custom`` run on a snapshot exported
    from our own REPEATABLE READ transaction (``pg_export_snapshot``), so the row counts
    and the list of documents in the manifest describe exactly the dumped data;
  - ``jsonl``        ``data/<table>.jsonl``: a logical dump of every table read in one
    REPEATABLE READ transaction — the fallback when no compatible ``pg_dump`` is
    installed (client major version older than the server's), or on request
    (``--logical``). It is backend independent: restorable into SQLite or PostgreSQL;

* ``documents/ab/cd/<sha256>``: the blobs referenced by ``crm_document_blob`` rows of the
  snapshot, each re-hashed while copied;
* ``manifest.json`` — written last: schema (Alembic) revision, time, backend, row count
  per table, size + sha256 of every other file.

The backup is built in a hidden sibling directory ``.<name>.partial-<pid>`` and renamed
to ``PATH`` only after the manifest is on disk, so an interrupted backup never leaves a
``PATH`` that :func:`verify_backup` (and therefore restore) would accept.

Restore checks the whole backup first (every checksum, the row counts of a SQLite / JSONL
snapshot) before it touches anything, refuses a target database that already holds data
(unless ``force``), loads the database, copies the documents into DOCUMENT_DIR and then
verifies the restored row counts and documents against the manifest.

The sales database (SALES_DATABASE_URI) belongs to the sales system and is NOT backed up.
"""
import base64
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import time
import uuid
from datetime import date, datetime, time as dtime, timezone
from decimal import Decimal

from dataclasses import dataclass

from sqlalchemy import MetaData, create_engine, func, inspect, select, table, text

from .documents import blob_path

FORMAT_NAME = "crm-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SQLITE_FILE = "crm.sqlite3"
PG_FILE = "crm.dump"
DATA_DIR = "data"
DOC_DIR = "documents"
BLOB_TABLE = "crm_document_blob"
CHUNK = 1024 * 1024
SHA_RE = re.compile(r"^[0-9a-f]{64}$")


class BackupError(RuntimeError):
    """A backup or restore problem; ``str()`` is a Chinese message for the operator."""

    def __init__(self, message, problems=None):
        super().__init__(message)
        self.message = message
        self.problems = list(problems or [])

    def __str__(self):
        if not self.problems:
            return self.message
        shown = "\n".join(f"  - {p}" for p in self.problems[:20])
        more = f"\n  …… 另有 {len(self.problems) - 20} 处" if len(self.problems) > 20 else ""
        return f"{self.message}\n{shown}{more}"


def _noop(*_a, **_k):
    pass


# --- small helpers ---------------------------------------------------------------------

def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path):
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def _copy_hashed(src, dst):
    """Copy ``src`` to ``dst`` (fsynced); return (sha256, size) of the bytes copied."""
    digest = hashlib.sha256()
    size = 0
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        for chunk in iter(lambda: fin.read(CHUNK), b""):
            digest.update(chunk)
            size += len(chunk)
            fout.write(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    return digest.hexdigest(), size


def human_size(n):
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024.0
    return f"{n} B"  # pragma: no cover


def _backend(engine):
    name = engine.dialect.name
    if name not in ("sqlite", "postgresql"):
        raise BackupError(f"不支持的数据库类型：{name}（仅支持 SQLite 和 PostgreSQL）。")
    return name


def _sqlite_path(engine):
    path = engine.url.database
    if not path or path == ":memory:":
        raise BackupError("内存中的 SQLite 数据库无法备份或恢复。")
    return os.path.abspath(path)


def _libpq(engine):
    """(connection URI without password, env with PGPASSWORD) for pg_dump/pg_restore."""
    url = engine.url.set(drivername="postgresql", password=None)
    env = dict(os.environ)
    if engine.url.password:
        env["PGPASSWORD"] = engine.url.password
    return url.render_as_string(hide_password=False), env


def _redacted(engine):
    return engine.url.render_as_string(hide_password=True)


@dataclass
class Site:
    """What a backup reads and a restore writes; the caller builds it from the app."""
    engine: object            # the CRM database (not the sales bind)
    session: object           # the scoped session, removed around a restore's load
    document_dir: str         # DOCUMENT_DIR
    app_name: str = ""
    alembic_config: object = None    # the migrations' Alembic Config (schema revisions)


def _document_dir(site):
    return os.path.abspath(site.document_dir)


def _is_search_index(name):
    """SQLite's FTS5 search tables (and their shadow tables) are an index of other
    tables: never backed up, rebuilt after a restore (migration 0008)."""
    from ..models.base import SEARCH_TABLE_PREFIX

    return name.startswith(SEARCH_TABLE_PREFIX)


def _is_derived(name):
    """PostgreSQL's running totals of the order rollup (``crm_order_running``, migration
    0018) are derived from ``crm_order_customer``: not backed up (a SQLite target could
    not hold their arrays), rebuilt after a restore (:func:`_rebuild_derived`)."""
    from .rollup import RUNNING

    return name == RUNNING


def _tables(conn):
    return sorted(n for n in inspect(conn).get_table_names()
                  if not _is_search_index(n) and not _is_derived(n))


def _rebuild_derived(conn):
    """After a logical load into PostgreSQL: the running totals from the loaded rollup."""
    from .rollup import RUNNING, running_sql

    if conn.exec_driver_sql("SELECT to_regclass(%s) IS NOT NULL", (RUNNING,)).scalar():
        conn.exec_driver_sql(f"DELETE FROM {RUNNING}")
        conn.exec_driver_sql(running_sql(RUNNING, "crm_order_customer"))


def _rebuild_search_indexes(conn):
    names = [n for (n,) in conn.exec_driver_sql(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND sql LIKE 'CREATE VIRTUAL TABLE%'")]
    for name in names:
        if _is_search_index(name):
            conn.exec_driver_sql(f"INSERT INTO {name}({name}) VALUES ('rebuild')")


def _count_rows(conn, names):
    return {name: int(conn.execute(select(func.count()).select_from(table(name))).scalar())
            for name in names}


def _revision(conn, names):
    if "alembic_version" not in names:
        return None
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def _blob_shas(conn, names):
    if BLOB_TABLE not in names:
        return []
    return [r[0] for r in conn.execute(text(f"SELECT sha256 FROM {BLOB_TABLE} ORDER BY sha256"))]


def _sqlite_ro_engine(path):
    """A read-only engine on a SQLite file that must not be modified (a backup copy)."""
    uri = "file:" + path + "?mode=ro&immutable=1"
    return create_engine("sqlite://", creator=lambda: sqlite3.connect(uri, uri=True))


# --- JSON-lines encoding ------------------------------------------------------------------

def _encode(value):
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (date, dtime)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    raise TypeError(f"cannot encode {type(value).__name__}")


def _decoder(column):
    try:
        kind = column.type.python_type
    except NotImplementedError:
        return None
    if kind is datetime:
        return datetime.fromisoformat
    if kind is date:
        return lambda v: datetime.fromisoformat(v).date() if "T" in v else date.fromisoformat(v)
    if kind is dtime:
        return dtime.fromisoformat
    if kind is Decimal:
        return Decimal
    if kind is bytes:
        return base64.b64decode
    return None


# --- backup ---------------------------------------------------------------------------------

def _check_target(path, force):
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise BackupError(f"{path} 已存在且不是目录。")
        if os.listdir(path) and not force:
            raise BackupError(f"目录 {path} 已存在且不为空；请换一个目录，或加 --force 覆盖。")


def _clean_stale_partials(parent, name):
    prefixes = (f".{name}.partial-", f".{name}.old-")
    for entry in os.listdir(parent):
        prefix = next((p for p in prefixes if entry.startswith(p)), None)
        if prefix is None:
            continue
        try:
            pid = int(entry[len(prefix):].split("-")[0])
            os.kill(pid, 0)
            continue  # another backup to the same PATH is still running
        except (ValueError, ProcessLookupError):
            pass
        except PermissionError:
            continue
        shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)


def _pg_major(version_num):
    return int(version_num) // 10000 if int(version_num) >= 100000 else int(version_num) // 100


def _client_major(binary):
    exe = shutil.which(binary)
    if not exe:
        return None, None
    out = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"(\d+)(?:\.(\d+))?", out)
    return (int(m.group(1)) if m else None), out.strip()


def _dump_jsonl(conn, names, work, progress):
    os.makedirs(os.path.join(work, DATA_DIR))
    meta = MetaData()
    meta.reflect(bind=conn, only=names)
    for name in names:
        tbl = meta.tables[name]
        order = list(tbl.primary_key.columns) or list(tbl.columns)
        path = os.path.join(work, DATA_DIR, f"{name}.jsonl")
        with open(path, "w", encoding="utf-8") as fh:
            result = conn.execution_options(stream_results=True, yield_per=2000).execute(
                select(tbl).order_by(*order))
            for row in result.mappings():
                fh.write(json.dumps(dict(row), ensure_ascii=False, default=_encode) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    progress("logical")


def _snapshot_database(site, work, logical, progress):
    """Write the database snapshot into ``work``; return (db_info, counts, revision, shas)."""
    engine = site.engine
    backend = _backend(engine)
    info = {"backend": backend, "source": _redacted(engine)}
    if backend == "sqlite":
        src_path = _sqlite_path(engine)
        if not os.path.exists(src_path):
            raise BackupError(f"数据库文件 {src_path} 不存在。")
        copy = os.path.join(work, SQLITE_FILE)
        src = sqlite3.connect(src_path, timeout=30)
        dst = sqlite3.connect(copy)
        try:
            src.backup(dst)          # all pages in one step: one consistent read snapshot
            dst.execute("PRAGMA journal_mode=DELETE")   # a self-contained single file
            dst.commit()
        finally:
            dst.close()
            src.close()
        _fsync_file(copy)
        ro = _sqlite_ro_engine(copy)
        try:
            with ro.connect() as conn:
                check = conn.execute(text("PRAGMA integrity_check")).scalar()
                if check != "ok":
                    raise BackupError(f"SQLite 完整性检查失败：{check}")
                names = _tables(conn)
                counts = _count_rows(conn, names)
                revision = _revision(conn, names)
                shas = _blob_shas(conn, names)
                if logical:
                    _dump_jsonl(conn, names, work, progress)
        finally:
            ro.dispose()
        if logical:
            os.remove(copy)
            info.update(format="jsonl", directory=DATA_DIR)
        else:
            info.update(format="sqlite-file", file=SQLITE_FILE)
        progress("database")
        return info, counts, revision, shas

    # PostgreSQL: one REPEATABLE READ transaction; pg_dump joins its snapshot
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
        with conn.begin():
            server_num = conn.execute(text("SHOW server_version_num")).scalar()
            snapshot = conn.execute(text("SELECT pg_export_snapshot()")).scalar()
            names = _tables(conn)
            counts = _count_rows(conn, names)
            revision = _revision(conn, names)
            shas = _blob_shas(conn, names)
            server_major = _pg_major(server_num)
            client_major, client_version = _client_major("pg_dump")
            info["server_version"] = int(server_num)
            use_pg_dump = not logical and client_major is not None and client_major >= server_major
            if not logical and not use_pg_dump:
                progress("fallback", f"pg_dump {client_version or '未安装'} 与服务器版本 "
                                     f"{server_major} 不兼容，改用逻辑导出（JSON lines）")
            if use_pg_dump:
                uri, env = _libpq(engine)
                out = os.path.join(work, PG_FILE)
                proc = subprocess.run(
                    [shutil.which("pg_dump"), "--format=custom", f"--snapshot={snapshot}",
                     "--no-password", f"--file={out}", f"--dbname={uri}"],
                    env=env, capture_output=True, text=True)
                if proc.returncode != 0:
                    raise BackupError(f"pg_dump 失败（退出码 {proc.returncode}）：{proc.stderr.strip()}")
                _fsync_file(out)
                info.update(format="pg-custom", file=PG_FILE, pg_dump=client_version)
            else:
                _dump_jsonl(conn, names, work, progress)
                info.update(format="jsonl", directory=DATA_DIR)
    progress("database")
    return info, counts, revision, shas


def _copy_documents(site, work, shas, progress):
    store = _document_dir(site)
    missing, corrupt, copied, total = [], [], 0, 0
    for i, sha in enumerate(shas, 1):
        src = blob_path(store, sha)
        dst = blob_path(os.path.join(work, DOC_DIR), sha)
        if not os.path.isfile(src):
            missing.append(sha)
            continue
        got, size = _copy_hashed(src, dst)
        if got != sha:
            os.remove(dst)
            corrupt.append(sha)
            continue
        copied += 1
        total += size
        if i % 500 == 0:
            progress("documents_progress", i)
    progress("documents", copied)
    return {"count": copied, "bytes": total, "missing": missing, "corrupt": corrupt}


def _file_list(root):
    out = []
    for dirpath, _dirs, files in os.walk(root):
        for fname in files:
            full = os.path.join(dirpath, fname)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            if rel != MANIFEST:
                out.append(rel)
    return sorted(out)


def create_backup(path, site, force=False, logical=False, progress=_noop):
    """Write a consistent backup of ``site`` into directory ``path``; return the
    manifest. ``progress(stage, detail)`` is called as work proceeds."""
    started = time.perf_counter()
    path = os.path.abspath(path)
    _check_target(path, force)
    parent, name = os.path.dirname(path), os.path.basename(path)
    os.makedirs(parent, exist_ok=True)
    _clean_stale_partials(parent, name)
    work = os.path.join(parent, f".{name}.partial-{os.getpid()}-{uuid.uuid4().hex[:6]}")
    os.makedirs(work)
    try:
        progress("start", work)
        db_info, counts, revision, shas = _snapshot_database(site, work, logical, progress)
        docs = _copy_documents(site, work, shas, progress)
        files = {}
        for rel in _file_list(work):
            full = os.path.join(work, rel)
            if rel.startswith(DOC_DIR + "/"):
                digest = os.path.basename(rel)      # verified while copying
            else:
                digest = sha256_file(full)
            files[rel] = {"sha256": digest, "size": os.path.getsize(full)}
        manifest = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "app": site.app_name or None,
            "schema_revision": revision,
            "created_at": datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds"),
            "database": db_info,
            "tables": counts,
            "documents": docs,
            "files": files,
            "not_included": ["SALES_DATABASE_URI（销售系统数据库）", "SECRET_KEY 与配置文件",
                             "DOCUMENT_DIR/tmp 中未完成的上传"],
        }
        progress("manifest")
        tmp = os.path.join(work, MANIFEST + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(manifest, fh, ensure_ascii=False, indent=2, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, os.path.join(work, MANIFEST))
        for dirpath, _dirs, _files in os.walk(work):
            _fsync_dir(dirpath)
        # publish: the directory appears under its final name only when complete
        old = None
        if os.path.exists(path) and os.listdir(path):
            old = os.path.join(parent, f".{name}.old-{os.getpid()}-{uuid.uuid4().hex[:6]}")
            os.rename(path, old)
        os.rename(work, path)       # replaces an empty directory atomically
        _fsync_dir(parent)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    manifest["elapsed"] = time.perf_counter() - started
    manifest["path"] = path
    manifest["total_bytes"] = sum(f["size"] for f in files.values()) + os.path.getsize(
        os.path.join(path, MANIFEST))
    return manifest


# --- verification -----------------------------------------------------------------------

def read_manifest(path):
    mpath = os.path.join(path, MANIFEST)
    if not os.path.isdir(path):
        raise BackupError(f"备份目录 {path} 不存在。")
    if not os.path.isfile(mpath):
        raise BackupError(f"{path} 不是完整的备份：缺少 {MANIFEST}（备份可能在写入过程中被中断）。")
    try:
        with open(mpath, encoding="utf-8") as fh:
            manifest = json.load(fh)
    except (OSError, ValueError) as exc:
        raise BackupError(f"清单文件 {MANIFEST} 无法读取或已损坏：{exc}")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise BackupError(f"{MANIFEST} 不是本系统的备份清单。")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BackupError(f"不支持的备份格式版本：{manifest.get('format_version')}。")
    for key in ("database", "tables", "files", "documents"):
        if not isinstance(manifest.get(key), dict):
            raise BackupError(f"清单文件缺少“{key}”部分，备份不完整或已被修改。")
    return manifest


def _snapshot_counts(path, manifest):
    """Row counts inside a SQLite / JSONL snapshot (None for a pg_dump archive)."""
    fmt = manifest["database"].get("format")
    if fmt == "sqlite-file":
        ro = _sqlite_ro_engine(os.path.join(path, SQLITE_FILE))
        try:
            with ro.connect() as conn:
                check = conn.execute(text("PRAGMA integrity_check")).scalar()
                if check != "ok":
                    raise BackupError(f"备份中的 SQLite 数据库已损坏：{check}")
                return _count_rows(conn, _tables(conn))
        except sqlite3.DatabaseError as exc:
            raise BackupError(f"备份中的 SQLite 数据库无法打开：{exc}")
        finally:
            ro.dispose()
    if fmt == "jsonl":
        counts = {}
        for name in manifest["tables"]:
            fpath = os.path.join(path, DATA_DIR, f"{name}.jsonl")
            with open(fpath, "rb") as fh:
                counts[name] = sum(1 for _ in fh)
        return counts
    return None


def _compare_counts(expected, actual, where):
    problems = []
    for name, n in sorted(expected.items()):
        got = actual.get(name)
        if got is None:
            problems.append(f"{where}缺少表 {name}（清单：{n} 行）")
        elif got != n:
            problems.append(f"表 {name}：清单 {n} 行，{where}实际 {got} 行")
    return problems


def verify_backup(path, progress=_noop):
    """Check a backup directory completely; return its manifest or raise BackupError."""
    path = os.path.abspath(path)
    manifest = read_manifest(path)
    fmt = manifest["database"].get("format")
    if fmt not in ("sqlite-file", "pg-custom", "jsonl"):
        raise BackupError(f"未知的数据库备份格式：{fmt}。")
    problems = []
    listed = manifest["files"]
    present = set(_file_list(path))
    for rel in sorted(set(listed) - present):
        problems.append(f"缺少文件 {rel}")
    for rel in sorted(present - set(listed)):
        problems.append(f"清单中没有的文件 {rel}")
    for rel in sorted(set(listed) & present):
        full = os.path.join(path, rel)
        entry = listed[rel]
        if os.path.getsize(full) != entry.get("size"):
            problems.append(f"文件 {rel} 大小不符（清单 {entry.get('size')}，实际 {os.path.getsize(full)}）")
        elif sha256_file(full) != entry.get("sha256"):
            problems.append(f"文件 {rel} 校验和 (sha256) 不符")
        elif rel.startswith(DOC_DIR + "/") and os.path.basename(rel) != entry.get("sha256"):
            problems.append(f"文档 {rel} 的内容与文件名中的 sha256 不符")
    needed = {SQLITE_FILE} if fmt == "sqlite-file" else {PG_FILE} if fmt == "pg-custom" else {
        f"{DATA_DIR}/{t}.jsonl" for t in manifest["tables"]}
    for rel in sorted(needed - set(listed)):
        problems.append(f"清单中缺少数据库文件 {rel}")
    if problems:
        raise BackupError("备份校验失败，文件已损坏或被修改：", problems)
    progress("checksums", len(listed))
    counts = _snapshot_counts(path, manifest)
    if counts is not None:
        problems = _compare_counts(manifest["tables"], counts, "备份中")
        problems += [f"备份中有清单没有的表 {t}" for t in sorted(set(counts) - set(manifest["tables"]))]
        if problems:
            raise BackupError("备份校验失败，行数与清单不符：", problems)
        progress("counts", len(counts))
    return manifest


# --- restore ----------------------------------------------------------------------------------

def _target_rows(engine):
    """{table: rows} of tables in the target database that hold rows."""
    if engine.dialect.name == "sqlite" and not os.path.exists(_sqlite_path(engine)):
        return {}
    with engine.connect() as conn:
        names = [n for n in _tables(conn) if n != "alembic_version"]
        return {n: c for n, c in _count_rows(conn, names).items() if c}


def _pg_clear(engine):
    """Drop every table, sequence and function of the current schema (the target is empty
    or forced). Functions: the search triggers' (migration 0012) — a dump creates them
    again; those of an extension (pg_trgm) stay with it."""
    with engine.begin() as conn:
        for (name,) in conn.execute(text(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")):
            conn.execute(text(f'DROP TABLE IF EXISTS "{name}" CASCADE'))
        for (name,) in conn.execute(text(
                "SELECT sequence_name FROM information_schema.sequences "
                "WHERE sequence_schema = current_schema()")):
            conn.execute(text(f'DROP SEQUENCE IF EXISTS "{name}" CASCADE'))
        for (signature,) in conn.execute(text(
                "SELECT p.oid::regprocedure::text FROM pg_proc p "
                "JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE n.nspname = current_schema() AND NOT EXISTS ("
                "SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass "
                "AND d.objid = p.oid AND d.deptype = 'e')")):
            conn.execute(text(f"DROP FUNCTION IF EXISTS {signature} CASCADE"))


def _restore_sqlite_file(engine, path):
    target = _sqlite_path(engine)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    tmp = f"{target}.restore-{os.getpid()}"
    try:
        _copy_hashed(os.path.join(path, SQLITE_FILE), tmp)
        engine.dispose()
        for suffix in ("-wal", "-shm", "-journal"):
            if os.path.exists(target + suffix):
                os.remove(target + suffix)
        os.replace(tmp, target)
        _fsync_dir(os.path.dirname(target))
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
        engine.dispose()


def _restore_pg_dump(engine, path):
    exe = shutil.which("pg_restore")
    if not exe:
        raise BackupError("找不到 pg_restore（请安装 postgresql-client）。")
    _pg_clear(engine)
    uri, env = _libpq(engine)
    proc = subprocess.run(
        [exe, "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction",
         "--no-password", f"--dbname={uri}", os.path.join(path, PG_FILE)],
        env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BackupError(f"pg_restore 失败（退出码 {proc.returncode}），目标数据库未改变：\n"
                          f"{proc.stderr.strip()}")


def _iter_source_rows(path, manifest, name, target_table, src_conn):
    """Rows of table ``name`` as dicts fit for ``target_table``."""
    if manifest["database"]["format"] == "jsonl":
        decoders = {c.name: _decoder(c) for c in target_table.columns}
        with open(os.path.join(path, DATA_DIR, f"{name}.jsonl"), encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                for key, value in row.items():
                    dec = decoders.get(key)
                    if dec is not None and value is not None:
                        row[key] = dec(value)
                yield row
        return
    meta = MetaData()
    meta.reflect(bind=src_conn, only=[name])
    src = meta.tables[name]
    order = list(src.primary_key.columns) or list(src.columns)
    for row in src_conn.execute(select(src).order_by(*order)).mappings():
        yield dict(row)


def _restore_logical(site, engine, path, manifest, progress):
    """Create the schema at the backup's revision with Alembic, then load every table."""
    from alembic import command

    revision = manifest.get("schema_revision")
    if engine.dialect.name == "postgresql":
        _pg_clear(engine)
    else:
        engine.dispose()
        target = _sqlite_path(engine)
        for suffix in ("", "-wal", "-shm", "-journal"):
            if os.path.exists(target + suffix):
                os.remove(target + suffix)
    command.upgrade(site.alembic_config, revision or "head")
    site.session.remove()
    src_engine = None
    src_conn = None
    if manifest["database"]["format"] == "sqlite-file":
        src_engine = _sqlite_ro_engine(os.path.join(path, SQLITE_FILE))
        src_conn = src_engine.connect()
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
                conn.commit()
            with conn.begin():
                if engine.dialect.name == "postgresql":
                    # FK triggers off while loading (needs superuser; else rows go in FK order)
                    try:
                        with conn.begin_nested():
                            conn.execute(text("SET LOCAL session_replication_role = replica"))
                    except Exception:  # noqa: BLE001 - not allowed: keep FK checks on
                        pass
                meta = MetaData()
                meta.reflect(bind=conn, only=lambda n, _m: not _is_search_index(n))
                names = [t.name for t in meta.sorted_tables
                         if t.name in manifest["tables"] and t.name != "alembic_version"]
                for name in reversed(names):
                    conn.execute(meta.tables[name].delete())
                for name in names:
                    tbl = meta.tables[name]
                    batch = []
                    for row in _iter_source_rows(path, manifest, name, tbl, src_conn):
                        batch.append(row)
                        if len(batch) >= 1000:
                            conn.execute(tbl.insert(), batch)
                            batch = []
                    if batch:
                        conn.execute(tbl.insert(), batch)
                if engine.dialect.name == "postgresql":
                    _rebuild_derived(conn)
                    for name in names:
                        for col in meta.tables[name].columns:
                            seq = conn.execute(text("SELECT pg_get_serial_sequence(:t, :c)"),
                                               {"t": name, "c": col.name}).scalar()
                            if seq:
                                conn.execute(text(
                                    f'SELECT setval(:s, COALESCE((SELECT MAX("{col.name}") '
                                    f'FROM "{name}"), 0) + 1, false)'), {"s": seq})
            if engine.dialect.name == "sqlite":
                _rebuild_search_indexes(conn)
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                conn.commit()
    finally:
        if src_conn is not None:
            src_conn.close()
            src_engine.dispose()
    progress("loaded", len(manifest["tables"]))


def _restore_documents(site, path, manifest, progress):
    store = _document_dir(site)
    written = kept = 0
    for rel in sorted(manifest["files"]):
        if not rel.startswith(DOC_DIR + "/"):
            continue
        sha = os.path.basename(rel)
        dst = blob_path(store, sha)
        if os.path.isfile(dst) and sha256_file(dst) == sha:
            kept += 1
            continue
        tmp = f"{dst}.restore-{os.getpid()}"
        got, _size = _copy_hashed(os.path.join(path, rel), tmp)
        if got != sha:
            os.remove(tmp)
            raise BackupError(f"复制文档 {sha} 时校验和不符（备份在读取过程中被修改？）。")
        os.replace(tmp, dst)
        written += 1
    progress("documents", written + kept)
    return written, kept


def _verify_target(site, engine, manifest):
    problems = []
    with engine.connect() as conn:
        names = _tables(conn)
        counts = _count_rows(conn, names)
        revision = _revision(conn, names)
        shas = _blob_shas(conn, names)
    problems += _compare_counts(manifest["tables"], counts, "恢复后的数据库")
    if manifest.get("schema_revision") and revision != manifest["schema_revision"]:
        problems.append(f"数据库结构版本：清单 {manifest['schema_revision']}，恢复后 {revision}")
    store = _document_dir(site)
    known_missing = set(manifest["documents"].get("missing", [])) | set(
        manifest["documents"].get("corrupt", []))
    checked = 0
    for sha in shas:
        if sha in known_missing:
            continue
        p = blob_path(store, sha)
        if not os.path.isfile(p):
            problems.append(f"文档库缺少文件 {sha}")
        elif sha256_file(p) != sha:
            problems.append(f"文档库文件 {sha} 校验和不符")
        else:
            checked += 1
    return problems, counts, checked


def restore_backup(path, site, force=False, progress=_noop):
    """Restore the backup in ``path`` into the configured (empty) database and
    DOCUMENT_DIR of ``site``, then verify it against the manifest.

    Returns a report dict; raises BackupError (nothing changed when raised before the
    load, see ``report['changed']``)."""
    started = time.perf_counter()
    path = os.path.abspath(path)
    manifest = verify_backup(path, progress)
    engine = site.engine
    target = _backend(engine)
    fmt = manifest["database"]["format"]
    if fmt == "pg-custom" and target != "postgresql":
        raise BackupError("这是 PostgreSQL (pg_dump) 备份，不能恢复到 SQLite；"
                          "请在 PostgreSQL 上恢复，或用 crm backup --logical 制作通用格式的备份。")
    if manifest.get("schema_revision"):
        from alembic.script import ScriptDirectory
        script = ScriptDirectory.from_config(site.alembic_config)
        try:
            known = script.get_revision(manifest["schema_revision"])
        except Exception:  # noqa: BLE001
            known = None
        if known is None:
            raise BackupError(f"备份的数据库结构版本 {manifest['schema_revision']} 不为本程序所知"
                              "（备份来自更新的版本？请先升级程序）。")
    site.session.remove()
    occupied = _target_rows(engine)
    if occupied and not force:
        shown = "、".join(f"{t}（{n} 行）" for t, n in sorted(occupied.items())[:5])
        raise BackupError(f"目标数据库不是空的：{shown} 等。恢复只能写入空数据库；"
                          "如确实要覆盖现有数据，请加 --force。")
    progress("target_ok", _redacted(engine))
    if fmt == "sqlite-file" and target == "sqlite":
        method = "SQLite 文件复制"
        _restore_sqlite_file(engine, path)
    elif fmt == "pg-custom":
        method = "pg_restore"
        _restore_pg_dump(engine, path)
    else:
        method = "逻辑导入（Alembic 建表 + 逐表写入）"
        _restore_logical(site, engine, path, manifest, progress)
    progress("database", method)
    engine.dispose()
    written, kept = _restore_documents(site, path, manifest, progress)
    problems, counts, checked = _verify_target(site, engine, manifest)
    report = {
        "manifest": manifest, "method": method, "counts": counts,
        "documents_written": written, "documents_kept": kept, "documents_checked": checked,
        "problems": problems, "elapsed": time.perf_counter() - started,
        "target": _redacted(engine),
    }
    if problems:
        raise BackupError("恢复后校验失败，数据库或文档与清单不符：", problems)
    return report

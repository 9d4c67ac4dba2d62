"""The 全局搜索 indexes around a bulk load (issue 23): switch them off, load, build once.

Migration 0008 keeps the search indexes up to date row by row — SQLite: FTS5 trigram
tables ``crm_search_<kind>`` filled by ``AFTER INSERT/UPDATE/DELETE`` triggers;
PostgreSQL: GIN trigram indexes ``ix_trgm_<table>_<column>`` (``fastupdate = off``).
That is right for the application's single-row writes and ruinous for a bulk load
(``crm seed-demo --scale 100000``: most of 22–30 minutes went into them). A bulk loader
therefore wraps its inserts in :func:`suspended`::

    with search_index.suspended(conn):
        ... COPY / executemany into crm_customer, crm_contact, ...

which drops the triggers (SQLite) or the GIN indexes (PostgreSQL) on entry and, on a
normal exit, creates them again and builds each index once from the table
(``INSERT INTO crm_search_x(crm_search_x) VALUES ('rebuild')`` / ``CREATE INDEX``).

The definitions below are those of migration 0008 (a migration is frozen history, so it
keeps its own copy; ``tests/test_seed.py`` checks that a database after a load has
exactly the triggers and indexes a freshly migrated one has). :func:`ensure` creates
whatever is missing and rebuilds the affected search tables: the seed's resume path and
``crm init`` call it, so a load killed between the drop and the rebuild heals on the
next run instead of leaving a search that silently misses rows (on SQLite the DDL is
outside the load's transaction unless the caller began it first — the seed does).
"""
from contextlib import contextmanager

# kind → (table, searched columns); the same as migration 0008 and app/workflows/search.py
SEARCHED = {
    "customer": ("crm_customer", ("name", "number", "phone", "legal_person")),
    "contact": ("crm_contact", ("name", "office_phone", "mobile", "email")),
    "opportunity": ("crm_opportunity", ("customer_name", "summary")),
    "ticket": ("crm_service", ("number", "summary")),
    "document": ("crm_document", ("name",)),
    "mail": ("crm_mail", ("subject",)),
}
# a GIN build sorts in memory up to this much (PostgreSQL's default is 64MB)
PG_BUILD_MEMORY = "256MB"


def _dialect(conn):
    return conn.dialect.name


# ---- SQLite: FTS5 tables kept by triggers ---------------------------------------------

def _sqlite_triggers(kind):
    """{trigger name: CREATE TRIGGER statement} of one kind, as migration 0008 writes them."""
    table, cols = SEARCHED[kind]
    fts = f"crm_search_{kind}"
    collist = ", ".join(cols)
    new = ", ".join(f"new.{c}" for c in cols)
    old = ", ".join(f"old.{c}" for c in cols)
    return {
        f"{fts}_ai": (f"CREATE TRIGGER {fts}_ai AFTER INSERT ON {table} BEGIN "
                      f"INSERT INTO {fts}(rowid, {collist}) VALUES (new.id, {new}); END"),
        f"{fts}_ad": (f"CREATE TRIGGER {fts}_ad AFTER DELETE ON {table} BEGIN "
                      f"INSERT INTO {fts}({fts}, rowid, {collist}) VALUES ('delete', old.id, {old}); END"),
        f"{fts}_au": (f"CREATE TRIGGER {fts}_au AFTER UPDATE ON {table} BEGIN "
                      f"INSERT INTO {fts}({fts}, rowid, {collist}) VALUES ('delete', old.id, {old}); "
                      f"INSERT INTO {fts}(rowid, {collist}) VALUES (new.id, {new}); END"),
    }


def _sqlite_names(conn, type_):
    return {n for (n,) in conn.exec_driver_sql(
        "SELECT name FROM sqlite_master WHERE type = ? AND name LIKE 'crm\\_search\\_%' ESCAPE '\\'",
        (type_,))}


def _sqlite_ensure(conn, rebuild=()):
    """Create the missing triggers; rebuild the FTS table of every kind that missed one
    (or is in ``rebuild``). Returns the kinds rebuilt."""
    present = _sqlite_names(conn, "trigger")
    tables = _sqlite_names(conn, "table")
    done = []
    for kind in SEARCHED:
        fts = f"crm_search_{kind}"
        if fts not in tables:
            continue                      # a database before migration 0008
        missing = {n: sql for n, sql in _sqlite_triggers(kind).items() if n not in present}
        for sql in missing.values():
            conn.exec_driver_sql(sql)
        if missing or kind in rebuild:
            conn.exec_driver_sql(f"INSERT INTO {fts}({fts}) VALUES ('rebuild')")
            done.append(kind)
    return done


def _sqlite_drop(conn, kinds):
    present = _sqlite_names(conn, "trigger")
    for kind in kinds:
        for name in _sqlite_triggers(kind):
            if name in present:
                conn.exec_driver_sql(f"DROP TRIGGER {name}")


# ---- PostgreSQL: GIN trigram indexes ----------------------------------------------------

def _pg_indexes(kind):
    """{index name: CREATE INDEX statement} of one kind, as migration 0008 writes them."""
    table, cols = SEARCHED[kind]
    return {f"ix_trgm_{table}_{col}": (f"CREATE INDEX IF NOT EXISTS ix_trgm_{table}_{col} ON {table} "
                                       f"USING gin ({col} gin_trgm_ops) WITH (fastupdate = off)")
            for col in cols}


def _pg_present(conn):
    return {n for (n,) in conn.exec_driver_sql(
        "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() "
        "AND indexname LIKE 'ix\\_trgm\\_%%'")}


def _pg_has_trgm(conn):
    return conn.exec_driver_sql("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'").first() is not None


def _pg_ensure(conn, rebuild=()):
    if not _pg_has_trgm(conn):
        return []                         # a database before migration 0008
    present = _pg_present(conn)
    done = []
    for kind in SEARCHED:
        missing = [sql for n, sql in _pg_indexes(kind).items() if n not in present]
        if missing:
            conn.exec_driver_sql(f"SET LOCAL maintenance_work_mem = '{PG_BUILD_MEMORY}'")
            for sql in missing:
                conn.exec_driver_sql(sql)
            done.append(kind)
    return done


def _pg_drop(conn, kinds):
    present = _pg_present(conn)
    for kind in kinds:
        for name in _pg_indexes(kind):
            if name in present:
                conn.exec_driver_sql(f"DROP INDEX {name}")


# ---- the two entry points ---------------------------------------------------------------

def ensure(conn, rebuild=()):
    """Create the search triggers/indexes that are missing (as migration 0008 defines
    them) and build the index of every kind that missed one — or is named in
    ``rebuild``. Idempotent; cheap when all are present. Returns the kinds built."""
    if _dialect(conn) == "sqlite":
        return _sqlite_ensure(conn, rebuild)
    if _dialect(conn) == "postgresql":
        return _pg_ensure(conn, rebuild)
    return []


@contextmanager
def suspended(conn, kinds=None):
    """Bulk-load ``kinds`` (default: all) without row-by-row search indexing: the
    triggers (SQLite) / GIN indexes (PostgreSQL) are dropped on entry and created and
    built once on a normal exit. On PostgreSQL both happen in the caller's transaction
    (an error rolls the drop back with the load); on SQLite too if the caller began the
    transaction before (pysqlite begins only at the first INSERT; ``seed._begin``),
    else an error leaves them dropped until :func:`ensure` runs (the seed and
    ``crm init`` call it), which rebuilds from the tables."""
    kinds = list(kinds or SEARCHED)
    if _dialect(conn) == "sqlite":
        _sqlite_drop(conn, kinds)
    elif _dialect(conn) == "postgresql":
        _pg_drop(conn, kinds)
    yield
    ensure(conn, rebuild=kinds)


def catalog(conn):
    """What the database has of the search indexes: sorted (name, definition) pairs of
    the SQLite triggers or the PostgreSQL trigram indexes (for tests and checks)."""
    if _dialect(conn) == "sqlite":
        return sorted(conn.exec_driver_sql(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "
            "AND name LIKE 'crm\\_search\\_%' ESCAPE '\\'").all())
    return sorted(conn.exec_driver_sql(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
        "AND indexname LIKE 'ix\\_trgm\\_%%'").all())

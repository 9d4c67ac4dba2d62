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

Migration 0012 adds the 1–2 character index ``crm_search_gram(kind, gram, id)``, kept by
triggers ``crm_search_gram_<kind>_*`` on both databases; :func:`suspended` drops those
triggers too and refills the kind's pieces with one ``INSERT … SELECT`` after the load.

The definitions below are those of migrations 0008 and 0012 (a migration is frozen history, so it
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
# kind → its code in crm_search_gram (migration 0012, app/workflows/search.py)
GRAM_CODES = {"customer": 1, "contact": 2, "opportunity": 3, "ticket": 4, "document": 5,
              "mail": 6}
GRAM_TABLE = "crm_search_gram"


def _text(prefix, cols):
    """The searched text of a record as migration 0012 indexes it: the columns joined
    with a space, so no piece spans two fields."""
    return " || ' ' || ".join(f"coalesce({prefix}{c}, '')" for c in cols)


def _sqlite_gram_select(kind, prefix):
    """SELECT of (kind, gram, id) for the trigger's record ``prefix`` (``new.``)."""
    code, cols = GRAM_CODES[kind], SEARCHED[kind][1]
    t = f"({_text(prefix, cols)})"
    return (f"SELECT DISTINCT {code}, g, {prefix}id FROM ("
            f"SELECT substr({t}, n, 1) AS g FROM crm_search_n WHERE n <= length({t}) "
            f"AND unicode(substr({t}, n, 1)) > 127 "
            f"UNION ALL SELECT substr({t}, n, 2) FROM crm_search_n WHERE n < length({t}) "
            f"AND unicode(substr({t}, n, 1)) > 127 AND unicode(substr({t}, n + 1, 1)) > 127)")


def _sqlite_gram_triggers(kind):
    """{trigger name: CREATE TRIGGER statement} of one kind's pieces, as migration 0012."""
    code, (table, cols) = GRAM_CODES[kind], SEARCHED[kind]
    trg = f"crm_search_gram_{kind}"
    delete = f"DELETE FROM crm_search_gram WHERE kind = {code} AND id = old.id;"
    insert = (f"INSERT OR IGNORE INTO crm_search_gram (kind, gram, id) "
              f"{_sqlite_gram_select(kind, 'new.')};")
    return {
        f"{trg}_ai": f"CREATE TRIGGER {trg}_ai AFTER INSERT ON {table} BEGIN {insert} END",
        f"{trg}_ad": f"CREATE TRIGGER {trg}_ad AFTER DELETE ON {table} BEGIN {delete} END",
        f"{trg}_au": (f"CREATE TRIGGER {trg}_au AFTER UPDATE OF {', '.join(cols)} ON {table} "
                      f"BEGIN {delete} {insert} END"),
    }


def _sqlite_gram_fill(conn, kind):
    """Every piece of the kind's rows, again (after a load without the triggers)."""
    code, (table, cols) = GRAM_CODES[kind], SEARCHED[kind]
    t = f"({_text('r.', cols)})"
    conn.exec_driver_sql(f"DELETE FROM crm_search_gram WHERE kind = {code}")
    conn.exec_driver_sql(
        f"INSERT OR IGNORE INTO crm_search_gram (kind, gram, id) SELECT {code}, g, id FROM ("
        f"SELECT r.id AS id, substr({t}, n, 1) AS g FROM {table} AS r JOIN crm_search_n "
        f"ON n <= length({t}) WHERE unicode(substr({t}, n, 1)) > 127 "
        f"UNION SELECT r.id, substr({t}, n, 2) FROM {table} AS r JOIN crm_search_n "
        f"ON n < length({t}) WHERE unicode(substr({t}, n, 1)) > 127 "
        f"AND unicode(substr({t}, n + 1, 1)) > 127)")


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
        built = False
        if fts in tables:                 # not in a database before migration 0008
            missing = {n: sql for n, sql in _sqlite_triggers(kind).items() if n not in present}
            for sql in missing.values():
                conn.exec_driver_sql(sql)
            if missing or kind in rebuild:
                conn.exec_driver_sql(f"INSERT INTO {fts}({fts}) VALUES ('rebuild')")
                built = True
        if GRAM_TABLE in tables:          # not in a database before migration 0012
            missing = {n: sql for n, sql in _sqlite_gram_triggers(kind).items()
                       if n not in present}
            for sql in missing.values():
                conn.exec_driver_sql(sql)
            if missing or kind in rebuild:
                _sqlite_gram_fill(conn, kind)
                built = True
        if built:
            done.append(kind)
    return done


def _sqlite_drop(conn, kinds):
    present = _sqlite_names(conn, "trigger")
    for kind in kinds:
        for name in (*_sqlite_triggers(kind), *_sqlite_gram_triggers(kind)):
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


def _pg_gram_triggers(kind):
    """{trigger name: statements creating it} of one kind's pieces, as migration 0012
    (the trigger functions stay; only the triggers are dropped during a load)."""
    table, cols = SEARCHED[kind]
    fn = f"crm_search_gram_{kind}"
    creates = {
        f"{fn}_ins": (f"CREATE TRIGGER {fn}_ins AFTER INSERT ON {table} REFERENCING NEW TABLE AS "
                      f"crm_search_new FOR EACH STATEMENT EXECUTE FUNCTION {fn}_ins()"),
        f"{fn}_del": (f"CREATE TRIGGER {fn}_del AFTER DELETE ON {table} REFERENCING OLD TABLE AS "
                      f"crm_search_old FOR EACH STATEMENT EXECUTE FUNCTION {fn}_del()"),
        f"{fn}_upd": (f"CREATE TRIGGER {fn}_upd AFTER UPDATE OF {', '.join(cols)} ON {table} "
                      f"FOR EACH ROW EXECUTE FUNCTION {fn}_upd()"),
    }
    # ENABLE ALWAYS: a restore in session_replication_role = replica fires them too
    return {name: (sql, f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {name}")
            for name, sql in creates.items()}


def _pg_gram_present(conn):
    return {n for (n,) in conn.exec_driver_sql(
        "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal "
        "AND tgname LIKE 'crm\\_search\\_gram\\_%%'")}


def _pg_has_grams(conn):
    return conn.exec_driver_sql(f"SELECT to_regclass('{GRAM_TABLE}')").scalar() is not None


def _pg_gram_fill(conn, kind):
    code, (table, cols) = GRAM_CODES[kind], SEARCHED[kind]
    conn.exec_driver_sql(f"DELETE FROM crm_search_gram WHERE kind = {code}")
    conn.exec_driver_sql(f"INSERT INTO crm_search_gram (kind, gram, id) SELECT {code}, g, t.id "
                         f"FROM {table} AS t, crm_search_grams({_text('t.', cols)}) AS g")


def _pg_ensure(conn, rebuild=()):
    done = set()
    if _pg_has_trgm(conn):                # not in a database before migration 0008
        present = _pg_present(conn)
        for kind in SEARCHED:
            missing = [sql for n, sql in _pg_indexes(kind).items() if n not in present]
            if missing:
                conn.exec_driver_sql(f"SET LOCAL maintenance_work_mem = '{PG_BUILD_MEMORY}'")
                for sql in missing:
                    conn.exec_driver_sql(sql)
                done.add(kind)
    if _pg_has_grams(conn):               # not in a database before migration 0012
        present = _pg_gram_present(conn)
        filled = False
        for kind in SEARCHED:
            missing = [sqls for n, sqls in _pg_gram_triggers(kind).items() if n not in present]
            for sqls in missing:
                for sql in sqls:
                    conn.exec_driver_sql(sql)
            if missing or kind in rebuild:
                _pg_gram_fill(conn, kind)
                done.add(kind)
                filled = True
        if filled:
            conn.exec_driver_sql(f"ANALYZE {GRAM_TABLE}")
    return [k for k in SEARCHED if k in done]


def _pg_drop(conn, kinds):
    present = _pg_present(conn)
    grams = _pg_gram_present(conn)
    for kind in kinds:
        for name in _pg_indexes(kind):
            if name in present:
                conn.exec_driver_sql(f"DROP INDEX {name}")
        for name in _pg_gram_triggers(kind):
            if name in grams:
                conn.exec_driver_sql(f"DROP TRIGGER {name} ON {SEARCHED[kind][0]}")


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
    indexes = conn.exec_driver_sql(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
        "AND indexname LIKE 'ix\\_trgm\\_%%'").all()
    triggers = conn.exec_driver_sql(
        "SELECT tgname, pg_get_triggerdef(oid) || ' ' || tgenabled::text FROM pg_trigger "
        "WHERE NOT tgisinternal AND tgname LIKE 'crm\\_search\\_gram\\_%%'").all()
    return sorted([*indexes, *triggers])

"""global search: a 1–2 character index for Chinese text (全局搜索，短查询)

Trigram indexes (migration 0008) cannot answer a query of 1 or 2 characters, so those
were a scan of every searched row: at 100k customers / 300k contacts / 200k tickets a
rare 2-character word (no hit) took 0.3–0.9 s. This table lists, per searched record,
every distinct 1- and 2-character piece of its searched text made of non-ASCII
characters only (汉字 etc.; ASCII letters/digits are left out: 2-character ASCII queries
such as ``62`` hit early and are still a scan)::

    crm_search_gram(kind, gram, id)   kind: 1 customer … 6 mail (app/workflows/search.py)

The searched columns of a record are joined with a space (ASCII), so no piece spans
two fields. Kept in sync by triggers on insert, delete and on an update of a searched
column; filled here from the existing rows. Not a model: ``crm_search_`` tables are
left out of the autogenerate comparison and of backups (a restore's inserts refill it
through the triggers — on PostgreSQL they are ``ENABLE ALWAYS`` so a restore in
``session_replication_role = replica`` fires them too).

Revision ID: 0012
Revises: 0011
"""
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# kind → (code, table, searched columns): app/workflows/search.py KINDS / GRAM_KINDS
SEARCHED = {
    "customer": (1, "crm_customer", ("name", "number", "phone", "legal_person")),
    "contact": (2, "crm_contact", ("name", "office_phone", "mobile", "email")),
    "opportunity": (3, "crm_opportunity", ("customer_name", "summary")),
    "ticket": (4, "crm_service", ("number", "summary")),
    "document": (5, "crm_document", ("name",)),
    "mail": (6, "crm_mail", ("subject",)),
}
SQLITE_MAX_LEN = 4000       # characters of a record's searched text indexed on SQLite


def _text(prefix, cols):
    return " || ' ' || ".join(f"coalesce({prefix}{c}, '')" for c in cols)


# ---- PostgreSQL ----------------------------------------------------------------------

PG_GRAMS = """
CREATE OR REPLACE FUNCTION crm_search_grams(t text) RETURNS SETOF text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT DISTINCT g FROM (
    SELECT substr(t, i, 1) AS g FROM generate_series(1, length(t)) AS i
     WHERE ascii(substr(t, i, 1)) > 127
    UNION ALL
    SELECT substr(t, i, 2) FROM generate_series(1, length(t) - 1) AS i
     WHERE ascii(substr(t, i, 1)) > 127 AND ascii(substr(t, i + 1, 1)) > 127) AS s
$$
"""


def _pg_upgrade():
    op.execute("CREATE TABLE crm_search_gram (kind smallint NOT NULL, gram varchar(2) NOT NULL, "
               "id integer NOT NULL, PRIMARY KEY (kind, gram, id))")
    op.execute(PG_GRAMS)
    for kind, (code, table, cols) in SEARCHED.items():
        fn = f"crm_search_gram_{kind}"
        # INSERT and DELETE: one statement-level trigger each over the transition table
        # (a COPY or INSERT … SELECT of many rows: one INSERT of all their pieces —
        # 10k customers 2.3 s instead of 5.5 s row by row, 1.7 s without the index);
        # UPDATE: per row and only when a searched column is set (transition tables
        # cannot be combined with ``UPDATE OF`` columns)
        op.execute(f"""
CREATE OR REPLACE FUNCTION {fn}_ins() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO crm_search_gram (kind, gram, id)
  SELECT {code}, g, n.id FROM crm_search_new AS n, crm_search_grams({_text("n.", cols)}) AS g;
  RETURN NULL;
END $$""")
        op.execute(f"""
CREATE OR REPLACE FUNCTION {fn}_del() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM crm_search_gram WHERE kind = {code} AND id IN (SELECT o.id FROM crm_search_old AS o);
  RETURN NULL;
END $$""")
        op.execute(f"""
CREATE OR REPLACE FUNCTION {fn}_upd() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM crm_search_gram WHERE kind = {code} AND id = OLD.id;
  INSERT INTO crm_search_gram (kind, gram, id)
  SELECT {code}, g, NEW.id FROM crm_search_grams({_text("NEW.", cols)}) AS g;
  RETURN NULL;
END $$""")
        op.execute(f"CREATE TRIGGER {fn}_ins AFTER INSERT ON {table} REFERENCING NEW TABLE AS "
                   f"crm_search_new FOR EACH STATEMENT EXECUTE FUNCTION {fn}_ins()")
        op.execute(f"CREATE TRIGGER {fn}_del AFTER DELETE ON {table} REFERENCING OLD TABLE AS "
                   f"crm_search_old FOR EACH STATEMENT EXECUTE FUNCTION {fn}_del()")
        op.execute(f"CREATE TRIGGER {fn}_upd AFTER UPDATE OF {', '.join(cols)} ON {table} "
                   f"FOR EACH ROW EXECUTE FUNCTION {fn}_upd()")
        for suffix in ("ins", "del", "upd"):
            op.execute(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {fn}_{suffix}")
        op.execute(f"INSERT INTO crm_search_gram (kind, gram, id) SELECT {code}, g, t.id "
                   f"FROM {table} AS t, crm_search_grams({_text('t.', cols)}) AS g")
    # the trigger's DELETE finds a record's rows by (kind, id)
    op.execute("CREATE INDEX crm_search_gram_id ON crm_search_gram (kind, id)")
    op.execute("ANALYZE crm_search_gram")


def _pg_downgrade():
    for kind, (_code, table, _cols) in SEARCHED.items():
        for suffix in ("ins", "del", "upd"):
            op.execute(f"DROP TRIGGER IF EXISTS crm_search_gram_{kind}_{suffix} ON {table}")
            op.execute(f"DROP FUNCTION IF EXISTS crm_search_gram_{kind}_{suffix}()")
    op.execute("DROP FUNCTION IF EXISTS crm_search_grams(text)")
    op.execute("DROP TABLE IF EXISTS crm_search_gram")


# ---- SQLite ------------------------------------------------------------------------------
# A trigger cannot use a recursive CTE, so the positions come from a table of numbers.

def _sqlite_grams(code, prefix):
    """SELECT of (kind, gram, id) for the trigger's record ``prefix`` (``new.``)."""
    t = f"({_text(prefix, SEARCHED_COLS[code])})"
    return (f"SELECT DISTINCT {code}, g, {prefix}id FROM ("
            f"SELECT substr({t}, n, 1) AS g FROM crm_search_n WHERE n <= length({t}) "
            f"AND unicode(substr({t}, n, 1)) > 127 "
            f"UNION ALL SELECT substr({t}, n, 2) FROM crm_search_n WHERE n < length({t}) "
            f"AND unicode(substr({t}, n, 1)) > 127 AND unicode(substr({t}, n + 1, 1)) > 127)")


SEARCHED_COLS = {code: cols for code, _t, cols in SEARCHED.values()}


def _sqlite_upgrade():
    op.execute("CREATE TABLE crm_search_n (n INTEGER PRIMARY KEY)")
    op.execute(f"WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s "
               f"WHERE n < {SQLITE_MAX_LEN}) INSERT INTO crm_search_n SELECT n FROM s")
    op.execute("CREATE TABLE crm_search_gram (kind INTEGER NOT NULL, gram TEXT NOT NULL, "
               "id INTEGER NOT NULL, PRIMARY KEY (kind, gram, id)) WITHOUT ROWID")
    op.execute("CREATE INDEX crm_search_gram_id ON crm_search_gram (kind, id)")
    for kind, (code, table, cols) in SEARCHED.items():
        trg = f"crm_search_gram_{kind}"
        delete = f"DELETE FROM crm_search_gram WHERE kind = {code} AND id = old.id;"
        insert = f"INSERT OR IGNORE INTO crm_search_gram (kind, gram, id) {_sqlite_grams(code, 'new.')};"
        op.execute(f"CREATE TRIGGER {trg}_ai AFTER INSERT ON {table} BEGIN {insert} END")
        op.execute(f"CREATE TRIGGER {trg}_ad AFTER DELETE ON {table} BEGIN {delete} END")
        op.execute(f"CREATE TRIGGER {trg}_au AFTER UPDATE OF {', '.join(cols)} ON {table} "
                   f"BEGIN {delete} {insert} END")
        op.execute(f"INSERT OR IGNORE INTO crm_search_gram (kind, gram, id) "
                   f"SELECT {code}, g, id FROM ({_sqlite_backfill(code)})")
    op.execute("ANALYZE crm_search_gram")


def _sqlite_backfill(code):
    """Every (id, gram) of the existing rows of kind ``code`` (a join with the numbers)."""
    table = next(t for c, t, _cols in SEARCHED.values() if c == code)
    t = f"({_text('r.', SEARCHED_COLS[code])})"
    return (f"SELECT r.id AS id, substr({t}, n, 1) AS g FROM {table} AS r JOIN crm_search_n "
            f"ON n <= length({t}) WHERE unicode(substr({t}, n, 1)) > 127 "
            f"UNION SELECT r.id, substr({t}, n, 2) FROM {table} AS r JOIN crm_search_n "
            f"ON n < length({t}) WHERE unicode(substr({t}, n, 1)) > 127 "
            f"AND unicode(substr({t}, n + 1, 1)) > 127")


def _sqlite_downgrade():
    for kind in SEARCHED:
        for suffix in ("ai", "ad", "au"):
            op.execute(f"DROP TRIGGER IF EXISTS crm_search_gram_{kind}_{suffix}")
    op.execute("DROP TABLE IF EXISTS crm_search_gram")
    op.execute("DROP TABLE IF EXISTS crm_search_n")


def upgrade():
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        _pg_upgrade()
    elif dialect == "sqlite":
        _sqlite_upgrade()


def downgrade():
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        _pg_downgrade()
    elif dialect == "sqlite":
        _sqlite_downgrade()

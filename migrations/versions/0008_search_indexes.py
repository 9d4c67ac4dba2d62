"""global search: substring indexes for Chinese text (全局搜索)

PostgreSQL: the ``pg_trgm`` extension and one GIN trigram index per searched column,
used by ``ILIKE '%…%'``. SQLite: one FTS5 table with ``tokenize='trigram'`` per searched
table (external content = the table itself, rowid = its id), kept in sync by triggers
and filled from the existing rows here. Neither is a model: migrations/env.py and
tests/test_foundation.py leave them out of the autogenerate comparison
(``app.models.base.include_object``).

Revision ID: 0008
Revises: 0007
"""
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# kind → (table, searched columns); app/workflows/search.py uses the same names
SEARCHED = {
    "customer": ("crm_customer", ("name", "number", "phone", "legal_person")),
    "contact": ("crm_contact", ("name", "office_phone", "mobile", "email")),
    "opportunity": ("crm_opportunity", ("customer_name", "summary")),
    "ticket": ("crm_service", ("number", "summary")),
    "document": ("crm_document", ("name",)),
    "mail": ("crm_mail", ("subject",)),
}


def _sqlite_upgrade():
    for kind, (table, cols) in SEARCHED.items():
        fts = f"crm_search_{kind}"
        collist = ", ".join(cols)
        new = ", ".join(f"new.{c}" for c in cols)
        old = ", ".join(f"old.{c}" for c in cols)
        op.execute(f"CREATE VIRTUAL TABLE {fts} USING fts5({collist}, content='{table}', "
                   f"content_rowid='id', tokenize='trigram')")
        op.execute(f"CREATE TRIGGER {fts}_ai AFTER INSERT ON {table} BEGIN "
                   f"INSERT INTO {fts}(rowid, {collist}) VALUES (new.id, {new}); END")
        op.execute(f"CREATE TRIGGER {fts}_ad AFTER DELETE ON {table} BEGIN "
                   f"INSERT INTO {fts}({fts}, rowid, {collist}) VALUES ('delete', old.id, {old}); END")
        op.execute(f"CREATE TRIGGER {fts}_au AFTER UPDATE ON {table} BEGIN "
                   f"INSERT INTO {fts}({fts}, rowid, {collist}) VALUES ('delete', old.id, {old}); "
                   f"INSERT INTO {fts}(rowid, {collist}) VALUES (new.id, {new}); END")
        op.execute(f"INSERT INTO {fts}({fts}) VALUES ('rebuild')")


def _sqlite_downgrade():
    for kind in SEARCHED:
        fts = f"crm_search_{kind}"
        for suffix in ("ai", "ad", "au"):
            op.execute(f"DROP TRIGGER IF EXISTS {fts}_{suffix}")
        op.execute(f"DROP TABLE IF EXISTS {fts}")


def upgrade():
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        for table, cols in SEARCHED.values():
            for col in cols:
                op.execute(f"CREATE INDEX IF NOT EXISTS ix_trgm_{table}_{col} ON {table} "
                           f"USING gin ({col} gin_trgm_ops) WITH (fastupdate = off)")
    elif dialect == "sqlite":
        _sqlite_upgrade()


def downgrade():
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        for table, cols in SEARCHED.values():
            for col in cols:
                op.execute(f"DROP INDEX IF EXISTS ix_trgm_{table}_{col}")
    elif dialect == "sqlite":
        _sqlite_downgrade()

"""销售机会看板: 预计金额 and 预计成交日期 on opportunities (the forecast)

Both optional. SQLite gets plain ``ALTER TABLE … ADD COLUMN`` (no batch copy of the
table: that would drop the full-text search triggers of migration 0008 on it).

Revision ID: 0010
Revises: 0009
"""
from alembic import op
import sqlalchemy as sa

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

CHECK = "expected_amount IS NULL OR expected_amount >= 0"


def upgrade():
    if op.get_bind().dialect.name == "sqlite":
        # SQLite cannot add a constraint to an existing table; a column constraint can
        op.execute("ALTER TABLE crm_opportunity ADD COLUMN expected_amount NUMERIC(14, 2) "
                   f"CONSTRAINT ck_opportunity_amount CHECK ({CHECK})")
    else:
        op.add_column("crm_opportunity", sa.Column("expected_amount", sa.Numeric(14, 2),
                                                   nullable=True))
        op.create_check_constraint("ck_opportunity_amount", "crm_opportunity", CHECK)
    op.add_column("crm_opportunity", sa.Column("expected_close_on", sa.Date(), nullable=True))


def downgrade():
    op.drop_column("crm_opportunity", "expected_close_on")
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint("ck_opportunity_amount", "crm_opportunity", type_="check")
    op.drop_column("crm_opportunity", "expected_amount")

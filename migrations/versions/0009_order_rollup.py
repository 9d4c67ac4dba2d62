"""order rollup: totals per customer number and month, last order date, state

Revision ID: 0009
Revises: 0008
"""
from alembic import op
import sqlalchemy as sa

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "crm_order_month",
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("amount", sa.Numeric(16, 2), nullable=False),
        sa.Column("orders", sa.Integer(), nullable=False),
        sa.Column("last_date", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("number", "month"),
    )
    op.create_table(
        "crm_order_last",
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("last_date", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("number"),
    )
    op.create_table(
        "crm_rollup_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("refreshed_at", sa.DateTime(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.Column("months", sa.Integer(), nullable=True),
        sa.Column("customers", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade():
    op.drop_table("crm_rollup_state")
    op.drop_table("crm_order_last")
    op.drop_table("crm_order_month")
    op.execute("DROP TABLE IF EXISTS crm_order_month_next")
    op.execute("DROP TABLE IF EXISTS crm_order_last_next")

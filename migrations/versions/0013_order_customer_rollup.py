"""order rollup per customer and year: the month rollup summed per CRM customer (merged
customers' numbers folded into the survivor) per calendar year, and year 0 = all time,
in integer cents — what 客户贡献分析 reads for whole years (issue 23)

Revision ID: 0013
Revises: 0012
"""
from alembic import op
import sqlalchemy as sa

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "crm_order_customer",
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("orders", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["crm_customer.id"], ondelete="CASCADE",
                                name="fk_order_customer_customer"),
        sa.PrimaryKeyConstraint("customer_id", "year"),
    )
    op.create_index("ix_order_customer_year_amount", "crm_order_customer", ["year", "amount"])
    # a rollup already built is summed per customer now (else 客户贡献分析 would read an
    # empty table until the next refresh); the same SQL as the refresh's
    pg = op.get_bind().dialect.name == "postgresql"
    year = ("CAST(EXTRACT(YEAR FROM month) AS INTEGER)" if pg
            else "CAST(substr(month, 1, 4) AS INTEGER)")
    op.execute(
        "INSERT INTO crm_order_customer (year, customer_id, amount, orders) "
        "SELECT y, COALESCE(own.id, a.customer_id), SUM(cents), SUM(n) FROM ("
        f"SELECT number, {year} AS y, CAST(ROUND(SUM(amount) * 100) AS BIGINT) AS cents, "
        f"SUM(orders) AS n FROM crm_order_month GROUP BY number, {year}) m "
        "LEFT JOIN crm_customer own ON own.number = m.number AND own.status <> 'merged' "
        "LEFT JOIN crm_customer_alias a ON a.number = m.number "
        "WHERE COALESCE(own.id, a.customer_id) IS NOT NULL "
        "GROUP BY y, COALESCE(own.id, a.customer_id)")
    op.execute(
        "INSERT INTO crm_order_customer (year, customer_id, amount, orders) "
        "SELECT 0, customer_id, SUM(amount), SUM(orders) FROM crm_order_customer "
        "WHERE year > 0 GROUP BY customer_id")


def downgrade():
    op.drop_index("ix_order_customer_year_amount", table_name="crm_order_customer")
    op.drop_table("crm_order_customer")

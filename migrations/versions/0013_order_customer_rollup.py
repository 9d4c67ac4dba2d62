"""order rollup per customer: the month rollup summed per CRM customer (merged customers'
numbers folded into the survivor) per month (period YYYYMM), calendar year (YYYY) and
all time (0), in integer cents — what 客户贡献分析 reads (issue 23)

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
        sa.Column("period", sa.Integer(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("orders", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", "period"),
    )
    op.create_index("ix_order_customer_period_amount", "crm_order_customer", ["period", "amount"])
    # a rollup already built is summed per customer now (else 客户贡献分析 would read an
    # empty table until the next refresh); the same SQL as the refresh's
    pg = op.get_bind().dialect.name == "postgresql"
    ym = ("CAST(EXTRACT(YEAR FROM month) * 100 + EXTRACT(MONTH FROM month) AS INTEGER)" if pg
          else "CAST(substr(month, 1, 4) || substr(month, 6, 2) AS INTEGER)")
    t = "crm_order_customer"
    op.execute(
        f"INSERT INTO {t} (period, customer_id, amount, orders) "
        "SELECT p, COALESCE(own.id, a.customer_id), SUM(cents), SUM(n) FROM ("
        f"SELECT number, {ym} AS p, CAST(ROUND(amount * 100) AS BIGINT) AS cents, "
        "orders AS n FROM crm_order_month) m "
        "LEFT JOIN crm_customer own ON own.number = m.number AND own.status <> 'merged' "
        "LEFT JOIN crm_customer_alias a ON a.number = m.number "
        "WHERE COALESCE(own.id, a.customer_id) IS NOT NULL "
        "GROUP BY p, COALESCE(own.id, a.customer_id)")
    op.execute(f"INSERT INTO {t} (period, customer_id, amount, orders) "
               f"SELECT period / 100, customer_id, SUM(amount), SUM(orders) FROM {t} "
               "WHERE period >= 100000 GROUP BY period / 100, customer_id")
    op.execute(f"INSERT INTO {t} (period, customer_id, amount, orders) "
               f"SELECT 0, customer_id, SUM(amount), SUM(orders) FROM {t} "
               "WHERE period > 0 AND period < 10000 GROUP BY customer_id")


def downgrade():
    op.drop_index("ix_order_customer_period_amount", table_name="crm_order_customer")
    op.drop_table("crm_order_customer")

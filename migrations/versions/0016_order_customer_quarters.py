"""order rollup per customer: calendar quarters too (period YYYYQ, e.g. 20252 for
April–June 2025), summed from the months — 客户贡献分析 reads 本季度 and other
whole-quarter ranges as one period, long ranges as quarters instead of three months
each (issue 23). The refresh builds them from now on; this fills a rollup already
built so that no range reads a missing quarter.

Revision ID: 0016
Revises: 0015
"""
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

T = "crm_order_customer"
QUARTER = "(period / 100) * 10 + (period - (period / 100) * 100 + 2) / 3"   # YYYYMM → YYYYQ


def upgrade():
    # quarters a refresh by this code may already have built are built again
    op.execute(f"DELETE FROM {T} WHERE period >= 10000 AND period < 100000")
    op.execute(f"INSERT INTO {T} (customer_id, period, amount, orders) "
               f"SELECT customer_id, {QUARTER}, SUM(amount), SUM(orders) FROM {T} "
               f"WHERE period >= 100000 AND period < 1000000 "   # the months (not days)
               f"GROUP BY customer_id, {QUARTER}")
    bind = op.get_bind()
    # the planner's statistics must know the quarters (else it expects one row for a
    # quarter and sorts the whole period instead of walking the index to a page)
    if bind.dialect.name == "postgresql":
        op.execute(f"ANALYZE {T}")
    elif bind.exec_driver_sql(
            "SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").first():
        op.execute(f"ANALYZE {T}")


def downgrade():
    op.execute(f"DELETE FROM {T} WHERE period >= 10000 AND period < 100000")

"""order rollup, running totals (PostgreSQL only): ``crm_order_running`` — per CRM
customer its days with orders (YYYYMMDD, ascending) and the running total of its
cents up to each day. 客户贡献分析 reads a range that is not one period as the
difference of two running totals (issue 23). Derived from the day rows of
``crm_order_customer``; filled here from them, so the reports read a consistent table
right after the upgrade (a rollup built by older code without day rows gives an empty
table, and the reports do not read it until the rollup holds days). The refresh and
merges keep it. SQLite has no arrays: nothing to do there. A refresh by the new code
may have created the table before the upgrade: then it is left as it is.

Revision ID: 0018
Revises: 0017
"""
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

# a frozen copy of app/workflows/rollup.py: running_sql (the migration must not change
# when the code does)
FILL = ("INSERT INTO crm_order_running (customer_id, days, cents) "
        "SELECT customer_id, array_agg(period ORDER BY period), "
        "array_agg(run ORDER BY period) FROM (SELECT customer_id, period, "
        "CAST(SUM(amount) OVER (PARTITION BY customer_id ORDER BY period) AS BIGINT) "
        "AS run FROM crm_order_customer WHERE period >= 10000000) d GROUP BY customer_id")


def upgrade():
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    if bind.exec_driver_sql("SELECT to_regclass('crm_order_running') IS NOT NULL").scalar():
        return
    bind.exec_driver_sql(
        "CREATE TABLE crm_order_running (customer_id INTEGER NOT NULL, "
        "days INTEGER[] NOT NULL, cents BIGINT[] NOT NULL, "
        "CONSTRAINT crm_order_running_pkey PRIMARY KEY (customer_id))")
    if bind.exec_driver_sql("SELECT to_regclass('crm_order_customer') IS NOT NULL").scalar():
        bind.exec_driver_sql(FILL)


def downgrade():
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        bind.exec_driver_sql("DROP TABLE IF EXISTS crm_order_running")

"""order rollup per customer: the (period, amount) index carries the customer id too, so
the reads of one period (the page walk, the counts, a comparison's lookups) never visit
the table — on SQLite a table visit per row was most of a comparison's time (issue 23)

Revision ID: 0014
Revises: 0013
"""
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade():
    # a refresh by this code may have run before the upgrade (it builds the new index
    # and drops the old one with the table): then there is nothing to do
    op.create_index("ix_order_customer_period_amount_customer", "crm_order_customer",
                    ["period", "amount", "customer_id"], if_not_exists=True)
    op.drop_index("ix_order_customer_period_amount", table_name="crm_order_customer",
                  if_exists=True)


def downgrade():
    op.create_index("ix_order_customer_period_amount", "crm_order_customer", ["period", "amount"])
    op.drop_index("ix_order_customer_period_amount_customer", table_name="crm_order_customer")

"""order rollup, incremental refresh: ``crm_order_day`` (the sales aggregate per
customer number and day the last refresh read) and ``crm_order_owner`` (the customer
each number belonged to then). The next refresh compares the new aggregate and the
numbers' owners with them and rebuilds only the customers whose numbers changed
(issue 23). Created empty: the first refresh after the upgrade finds them empty and
rebuilds all. A refresh by this code may have run before the upgrade (it creates the
tables itself): if_not_exists.

Revision ID: 0017
Revises: 0016
"""
import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "crm_order_day",
        sa.Column("number", sa.String(32), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("amount", sa.Numeric(16, 2), nullable=False),
        sa.Column("orders", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("number", "day"),
        if_not_exists=True,
    )
    op.create_table(
        "crm_order_owner",
        sa.Column("number", sa.String(32), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("number"),
        if_not_exists=True,
    )


def downgrade():
    op.drop_table("crm_order_owner")
    op.drop_table("crm_order_day")

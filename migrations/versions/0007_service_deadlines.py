"""服务时限: response and resolution deadlines, escalation marks (issue 22)

Revision ID: 0007
Revises: 0006
"""
from alembic import op
import sqlalchemy as sa

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("crm_service", schema=None) as batch_op:
        batch_op.add_column(sa.Column("response_due", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("resolution_due", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("first_response_on", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("resolved_on", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("sla_round", sa.SmallInteger(), server_default="1",
                                      nullable=False))
        batch_op.add_column(sa.Column("escalated_response_on", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("escalated_resolution_on", sa.DateTime(), nullable=True))
        batch_op.create_index("ix_service_response_due", ["response_due"], unique=False)
        batch_op.create_index("ix_service_resolution_due", ["resolution_due"], unique=False)
    # tickets from before the upgrade get no deadlines (nothing to escalate); what they
    # already did is carried over: handled → first response, archived → resolved
    op.execute("UPDATE crm_service SET first_response_on = handled_on "
               "WHERE handled_on IS NOT NULL")
    op.execute("UPDATE crm_service SET resolved_on = changed_on WHERE status = 'archived'")


def downgrade():
    with op.batch_alter_table("crm_service", schema=None) as batch_op:
        batch_op.drop_index("ix_service_resolution_due")
        batch_op.drop_index("ix_service_response_due")
        for col in ("escalated_resolution_on", "escalated_response_on", "sla_round",
                    "resolved_on", "first_response_on", "resolution_due", "response_due"):
            batch_op.drop_column(col)

"""服务优先级 on service tickets (issue 22)

Revision ID: 0006
Revises: 0005
"""
from alembic import op
import sqlalchemy as sa

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade():
    # existing tickets get 普通 (rank 1) through the server defaults
    with op.batch_alter_table("crm_service", schema=None) as batch_op:
        batch_op.add_column(sa.Column("priority", sa.String(length=64), server_default="普通",
                                      nullable=False))
        batch_op.add_column(sa.Column("priority_rank", sa.SmallInteger(), server_default="1",
                                      nullable=False))
        batch_op.create_index("ix_service_priority_status", ["priority", "status"], unique=False)


def downgrade():
    with op.batch_alter_table("crm_service", schema=None) as batch_op:
        batch_op.drop_index("ix_service_priority_status")
        batch_op.drop_column("priority_rank")
        batch_op.drop_column("priority")

"""list preferences: the tab each user last chose on each list (列表偏好)

Revision ID: 0011
Revises: 0010
"""
from alembic import op
import sqlalchemy as sa

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "crm_list_preference",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("list_key", sa.String(length=64), nullable=False),
        sa.Column("tab", sa.String(length=32), nullable=False),
        sa.Column("changed_on", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["ab_user.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("user_id", "list_key", name="uq_list_preference"),
    )


def downgrade():
    op.drop_table("crm_list_preference")

"""notifications, notification settings, job runs (工作台)

Revision ID: 0005
Revises: 0004
"""
from alembic import op
import sqlalchemy as sa

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "crm_notification",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("title", sa.String(length=255), nullable=False),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("link", sa.String(length=512), nullable=True),
        sa.Column("created_on", sa.DateTime(), nullable=False),
        sa.Column("read_on", sa.DateTime(), nullable=True),
        sa.Column("dedupe_key", sa.String(length=128), nullable=True),
        sa.Column("mail_status", sa.String(length=16), server_default="none", nullable=False),
        sa.Column("mail_attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("mail_next_try", sa.DateTime(), nullable=True),
        sa.Column("mail_error", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["ab_user.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dedupe_key"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("crm_notification", schema=None) as batch_op:
        batch_op.create_index("ix_notification_user_read", ["user_id", "read_on"], unique=False)
        batch_op.create_index("ix_notification_mail", ["mail_status", "mail_next_try"], unique=False)
    op.create_table(
        "crm_notification_setting",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("mail", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["ab_user.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("user_id", "kind", name="uq_notification_setting"),
    )
    op.create_table(
        "crm_job_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job", sa.String(length=32), nullable=False),
        sa.Column("started_on", sa.DateTime(), nullable=False),
        sa.Column("finished_on", sa.DateTime(), nullable=True),
        sa.Column("ok", sa.Boolean(), nullable=True),
        sa.Column("summary", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("crm_job_run", schema=None) as batch_op:
        batch_op.create_index("ix_job_run_job_started", ["job", "started_on"], unique=False)
    # the 工作台's counts: plan items by date, tickets by assignee/status
    with op.batch_alter_table("crm_plan_item", schema=None) as batch_op:
        batch_op.create_index("ix_plan_item_date", ["date"], unique=False)


def downgrade():
    with op.batch_alter_table("crm_plan_item", schema=None) as batch_op:
        batch_op.drop_index("ix_plan_item_date")
    op.drop_table("crm_job_run")
    op.drop_table("crm_notification_setting")
    op.drop_table("crm_notification")

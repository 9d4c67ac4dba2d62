"""客户服务分析: one index holding every column the report's main scan reads, in its
group order (type, priority) with the creation time next, and one (created_on,
satisfaction) for 满意度 — the report's two scans read indexes, not the tickets' wide
rows, and the main one needs no sort for its groups. It replaces
ix_service_type_created, which a ranged report followed to one table read per ticket
(issue 23)

Revision ID: 0015
Revises: 0014
"""
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

COLUMNS = ["service_type_id", "priority", "created_on", "priority_rank", "status",
           "response_due", "first_response_on", "resolution_due", "resolved_on"]


def upgrade():
    op.create_index("ix_service_report", "crm_service", COLUMNS)
    # 满意度（按月）: the rated tickets of a range, read from the index alone
    op.create_index("ix_service_created_rating", "crm_service", ["created_on", "satisfaction"])
    op.drop_index("ix_service_type_created", table_name="crm_service")
    bind = op.get_bind()
    if bind.dialect.name == "sqlite" and bind.exec_driver_sql(
            "SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").first():
        # a database with statistics (ANALYZE) gets them for the new indexes too; else
        # SQLite would weigh them by guesses against the measured old ones
        bind.exec_driver_sql("ANALYZE crm_service")


def downgrade():
    op.create_index("ix_service_type_created", "crm_service", ["service_type_id", "created_on"])
    op.drop_index("ix_service_created_rating", table_name="crm_service")
    op.drop_index("ix_service_report", table_name="crm_service")

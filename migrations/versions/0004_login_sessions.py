"""login sessions (server-side: logout, password change and deactivation end them)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 10:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('crm_login_session',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('created_on', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['ab_user.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('crm_login_session', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_crm_login_session_token_hash'), ['token_hash'], unique=True)
        batch_op.create_index(batch_op.f('ix_crm_login_session_user_id'), ['user_id'], unique=False)


def downgrade():
    with op.batch_alter_table('crm_login_session', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_crm_login_session_user_id'))
        batch_op.drop_index(batch_op.f('ix_crm_login_session_token_hash'))
    op.drop_table('crm_login_session')

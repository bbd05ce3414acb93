"""Model deployments: the endpoints table.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('endpoints',
    sa.Column('workspace_key', sa.String(length=64), nullable=False),
    sa.Column('name_key', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('compute_type', sa.String(length=32), nullable=False),
    sa.Column('models', sa.Text(), nullable=False),
    sa.Column('entry_script', sa.Text(), nullable=True),
    sa.Column('tags', sa.Text(), nullable=False),
    sa.Column('properties', sa.Text(), nullable=False),
    sa.Column('startup_timeout', sa.Float(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('generation', sa.Integer(), nullable=False),
    sa.Column('deployment_id', sa.String(length=36), nullable=False),
    sa.Column('active_deployment_id', sa.String(length=36), nullable=True),
    sa.Column('active_models', sa.Text(), nullable=True),
    sa.Column('active_entry_script', sa.Text(), nullable=True),
    sa.Column('scoring_port', sa.Integer(), nullable=True),
    sa.Column('scoring_uri', sa.String(length=255), nullable=True),
    sa.Column('pid', sa.Integer(), nullable=True),
    sa.Column('node', sa.String(length=255), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('etag', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.Column('deployed_at', sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint('workspace_key', 'name_key', name=op.f('pk_endpoints'))
    )


def downgrade() -> None:
    op.drop_table('endpoints')

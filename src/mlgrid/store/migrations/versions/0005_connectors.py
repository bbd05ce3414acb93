"""Connectors (the MLflow connector): configuration and health, per-object state, webhook ids.

Revision ID: 0005
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('connectors',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('workspace_key', sa.String(length=64), nullable=False),
    sa.Column('name_key', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('tracking_uri', sa.Text(), nullable=False),
    sa.Column('token_sealed', sa.Text(), nullable=True),
    sa.Column('webhook_secret_sealed', sa.Text(), nullable=True),
    sa.Column('poll_interval', sa.Float(), nullable=False),
    sa.Column('full_sweep_minutes', sa.Float(), nullable=False),
    sa.Column('experiments', sa.Text(), nullable=True),
    sa.Column('deployment_aliases', sa.Text(), nullable=False),
    sa.Column('backfill', sa.Boolean(), nullable=False),
    sa.Column('paused', sa.Boolean(), nullable=False),
    sa.Column('etag', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('last_error_at', sa.Float(), nullable=True),
    sa.Column('last_poll_at', sa.Float(), nullable=True),
    sa.Column('last_full_sweep_at', sa.Float(), nullable=True),
    sa.Column('synced', sa.Boolean(), nullable=False),
    sa.Column('watermark_ms', sa.BigInteger(), nullable=True),
    sa.Column('events_emitted', sa.BigInteger(), nullable=False),
    sa.Column('resync_requested', sa.Boolean(), nullable=False),
    sa.Column('lease_holder', sa.String(length=128), nullable=True),
    sa.Column('lease_until', sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_connectors')),
    sa.UniqueConstraint('workspace_key', 'name_key', name=op.f('uq_connectors_workspace_key_name_key'))
    )
    op.create_table('connector_objects',
    sa.Column('connector_id', sa.String(length=36), nullable=False),
    sa.Column('object_key', sa.String(length=600), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('value', sa.Text(), nullable=True),
    sa.Column('transitions', sa.Integer(), nullable=False),
    sa.Column('emitted', sa.Integer(), nullable=False),
    sa.Column('is_open', sa.Boolean(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('connector_id', 'object_key', name=op.f('pk_connector_objects'))
    )
    with op.batch_alter_table('connector_objects', schema=None) as batch_op:
        batch_op.create_index('ix_connector_objects_open', ['connector_id', 'is_open'], unique=False)

    op.create_table('connector_webhook_deliveries',
    sa.Column('connector_id', sa.String(length=36), nullable=False),
    sa.Column('delivery_id', sa.String(length=64), nullable=False),
    sa.Column('received_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('connector_id', 'delivery_id', name=op.f('pk_connector_webhook_deliveries'))
    )


def downgrade() -> None:
    op.drop_table('connector_webhook_deliveries')
    with op.batch_alter_table('connector_objects', schema=None) as batch_op:
        batch_op.drop_index('ix_connector_objects_open')
    op.drop_table('connector_objects')
    op.drop_table('connectors')

"""Data-drift monitors and their runs (one row per analysed window).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('drift_monitors',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('workspace_key', sa.String(length=64), nullable=False),
    sa.Column('name_key', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('baseline_dataset_id', sa.String(length=36), nullable=False),
    sa.Column('target_dataset_id', sa.String(length=36), nullable=False),
    sa.Column('features', sa.Text(), nullable=True),
    sa.Column('frequency', sa.String(length=8), nullable=False),
    sa.Column('latency_hours', sa.Float(), nullable=False),
    sa.Column('threshold', sa.Float(), nullable=False),
    sa.Column('schedule_enabled', sa.Boolean(), nullable=False),
    sa.Column('schedule_since', sa.Float(), nullable=True),
    sa.Column('etag', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_drift_monitors')),
    sa.UniqueConstraint('workspace_key', 'name_key', name=op.f('uq_drift_monitors_workspace_key_name_key'))
    )
    with op.batch_alter_table('drift_monitors', schema=None) as batch_op:
        batch_op.create_index('ix_drift_monitors_schedule_enabled', ['schedule_enabled'], unique=False)

    op.create_table('drift_runs',
    sa.Column('id', sa.String(length=160), nullable=False),
    sa.Column('monitor_id', sa.String(length=36), nullable=False),
    sa.Column('workspace_key', sa.String(length=64), nullable=False),
    sa.Column('window_start', sa.Float(), nullable=False),
    sa.Column('window_end', sa.Float(), nullable=False),
    sa.Column('coefficient', sa.Float(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('threshold', sa.Float(), nullable=False),
    sa.Column('feature_contributions', sa.Text(), nullable=False),
    sa.Column('feature_metrics', sa.Text(), nullable=False),
    sa.Column('row_counts', sa.Text(), nullable=False),
    sa.Column('skipped_features', sa.Text(), nullable=False),
    sa.Column('rows_compared', sa.Integer(), nullable=False),
    sa.Column('baseline_dataset_id', sa.String(length=36), nullable=False),
    sa.Column('target_dataset_id', sa.String(length=36), nullable=False),
    sa.Column('monitor_etag', sa.String(length=64), nullable=False),
    sa.Column('trigger', sa.String(length=16), nullable=False),
    sa.Column('event_published', sa.Boolean(), nullable=False),
    sa.Column('event_id', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_drift_runs')),
    sa.UniqueConstraint(
        'monitor_id', 'window_start', 'window_end',
        name=op.f('uq_drift_runs_monitor_id_window_start_window_end'),
    )
    )
    with op.batch_alter_table('drift_runs', schema=None) as batch_op:
        batch_op.create_index('ix_drift_runs_workspace', ['workspace_key'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('drift_runs', schema=None) as batch_op:
        batch_op.drop_index('ix_drift_runs_workspace')

    op.drop_table('drift_runs')
    with op.batch_alter_table('drift_monitors', schema=None) as batch_op:
        batch_op.drop_index('ix_drift_monitors_schedule_enabled')

    op.drop_table('drift_monitors')

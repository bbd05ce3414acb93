"""ML workspace: workspaces, experiments, runs, metrics, artifacts, models, datasets, counters.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('datasets',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('workspace_key', sa.String(length=64), nullable=False),
    sa.Column('name_key', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('file_name', sa.String(length=255), nullable=False),
    sa.Column('file_format', sa.String(length=16), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('columns', sa.Text(), nullable=False),
    sa.Column('row_count', sa.BigInteger(), nullable=False),
    sa.Column('timestamp_column', sa.String(length=255), nullable=True),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('etag', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_datasets')),
    sa.UniqueConstraint(
        'workspace_key', 'name_key', 'version', name=op.f('uq_datasets_workspace_key_name_key_version')
    )
    )
    op.create_table('experiments',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('workspace_key', sa.String(length=64), nullable=False),
    sa.Column('name_key', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_experiments')),
    sa.UniqueConstraint('workspace_key', 'name_key', name=op.f('uq_experiments_workspace_key_name_key'))
    )
    op.create_table('models',
    sa.Column('workspace_key', sa.String(length=64), nullable=False),
    sa.Column('name_key', sa.String(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('tags', sa.Text(), nullable=False),
    sa.Column('properties', sa.Text(), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('run_id', sa.String(length=128), nullable=True),
    sa.Column('artifact_path', sa.String(length=1024), nullable=True),
    sa.Column('is_directory', sa.Boolean(), nullable=False),
    sa.Column('files', sa.Text(), nullable=False),
    sa.Column('etag', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('workspace_key', 'name_key', 'version', name=op.f('pk_models'))
    )
    op.create_table('run_artifacts',
    sa.Column('workspace_key', sa.String(length=64), nullable=False),
    sa.Column('run_id', sa.String(length=128), nullable=False),
    sa.Column('path', sa.String(length=1024), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('workspace_key', 'run_id', 'path', name=op.f('pk_run_artifacts'))
    )
    op.create_table('run_metrics',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('workspace_key', sa.String(length=64), nullable=False),
    sa.Column('run_id', sa.String(length=128), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('step', sa.BigInteger(), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.Column('time', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_run_metrics'))
    )
    with op.batch_alter_table('run_metrics', schema=None) as batch_op:
        batch_op.create_index('ix_run_metrics_run', ['workspace_key', 'run_id', 'name', 'step'], unique=False)

    op.create_table('runs',
    sa.Column('workspace_key', sa.String(length=64), nullable=False),
    sa.Column('id', sa.String(length=128), nullable=False),
    sa.Column('experiment_id', sa.String(length=36), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('run_type', sa.String(length=128), nullable=True),
    sa.Column('tags', sa.Text(), nullable=False),
    sa.Column('properties', sa.Text(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('etag', sa.String(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.Column('start_time', sa.Float(), nullable=True),
    sa.Column('end_time', sa.Float(), nullable=True),
    sa.Column('job_command', sa.Text(), nullable=True),
    sa.Column('job_working_directory', sa.Text(), nullable=True),
    sa.Column('job_pid', sa.Integer(), nullable=True),
    sa.Column('job_exit_code', sa.Integer(), nullable=True),
    sa.Column('job_node', sa.String(length=255), nullable=True),
    sa.Column('job_heartbeat_at', sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint('workspace_key', 'id', name=op.f('pk_runs'))
    )
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.create_index('ix_runs_status', ['status'], unique=False)
        batch_op.create_index('ix_runs_workspace_created', ['workspace_key', 'created_at'], unique=False)
        batch_op.create_index(
            'ix_runs_workspace_experiment', ['workspace_key', 'experiment_id', 'created_at'], unique=False
        )

    op.create_table('workspace_counters',
    sa.Column('workspace_key', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('object_key', sa.String(length=255), nullable=False),
    sa.Column('value', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('workspace_key', 'kind', 'object_key', name=op.f('pk_workspace_counters'))
    )
    op.create_table('workspaces',
    sa.Column('name_key', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('resource_group', sa.String(length=90), nullable=False),
    sa.Column('run_status_changed_events', sa.String(length=16), nullable=False),
    sa.Column('etag', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('name_key', name=op.f('pk_workspaces'))
    )


def downgrade() -> None:
    op.drop_table('workspaces')
    op.drop_table('workspace_counters')
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_index('ix_runs_workspace_experiment')
        batch_op.drop_index('ix_runs_workspace_created')
        batch_op.drop_index('ix_runs_status')

    op.drop_table('runs')
    with op.batch_alter_table('run_metrics', schema=None) as batch_op:
        batch_op.drop_index('ix_run_metrics_run')

    op.drop_table('run_metrics')
    op.drop_table('run_artifacts')
    op.drop_table('models')
    op.drop_table('experiments')
    op.drop_table('datasets')

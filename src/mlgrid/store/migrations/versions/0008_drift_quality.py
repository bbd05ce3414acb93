"""Calibrated drift decisions: a monitor's false-alarm rate, and what each run measured.

Revision ID: 0008
Revises: 0004

Monitors that exist before this revision get ``false_alarm_rate`` null: they keep deciding by
their ``threshold``, the rule they were created under. New monitors default to 0.05.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('drift_monitors', schema=None) as batch_op:
        batch_op.add_column(sa.Column('false_alarm_rate', sa.Float(), nullable=True))
    with op.batch_alter_table('drift_runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('auroc', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('p_value', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('classifier_p_value', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('false_alarm_rate', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('feature_tests', sa.Text(), nullable=False, server_default='[]'))
        batch_op.add_column(sa.Column('explanation', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('null_rows', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('null_draws', sa.Integer(), nullable=False, server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('drift_runs', schema=None) as batch_op:
        for name in ('null_draws', 'null_rows', 'explanation', 'feature_tests', 'classifier_p_value',
                     'p_value', 'false_alarm_rate', 'auroc'):
            batch_op.drop_column(name)
    with op.batch_alter_table('drift_monitors', schema=None) as batch_op:
        batch_op.drop_column('false_alarm_rate')

"""Attempts counted when they start, apart from those that finished.

``attempts_started`` is written before a request goes out (``aeg-delivery-count`` after a
crash); ``attempts`` still counts finished attempts, as the API's ``deliveryAttempts`` shows.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('deliveries') as batch:
        batch.add_column(
            sa.Column('attempts_started', sa.Integer(), nullable=False, server_default='0')
        )


def downgrade() -> None:
    with op.batch_alter_table('deliveries') as batch:
        batch.drop_column('attempts_started')

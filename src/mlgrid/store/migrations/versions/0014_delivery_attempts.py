"""Every attempt of a delivery, not only the last: outcome, status, error, time, duration and
what the endpoint answered. Bounded per delivery (the newest 20 are kept); the delivery row
keeps the last attempt as before.

Revision ID: 0014
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0014'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'delivery_attempts',
        sa.Column('delivery_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
                  sa.ForeignKey('deliveries.id', ondelete='CASCADE'), primary_key=True),
        sa.Column('attempt', sa.Integer(), primary_key=True),
        sa.Column('outcome', sa.String(64), nullable=True),
        sa.Column('http_status', sa.Integer(), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('attempted_at', sa.Float(), nullable=False),
        sa.Column('duration_ms', sa.Integer(), nullable=True),
        sa.Column('response', sa.Text(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table('delivery_attempts')

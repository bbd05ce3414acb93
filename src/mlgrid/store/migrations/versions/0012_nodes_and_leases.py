"""Nodes (heartbeat rows) and leases (one holder per background duty, with a fencing token).

Revision ID: 0012
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'nodes',
        sa.Column('id', sa.String(64), nullable=False),
        sa.Column('advertise_url', sa.Text(), nullable=False),
        sa.Column('host', sa.String(255), nullable=False),
        sa.Column('pid', sa.Integer(), nullable=False),
        sa.Column('started_at', sa.Float(), nullable=False),
        sa.Column('last_seen', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('id', name='pk_nodes'),
    )
    op.create_table(
        'leases',
        sa.Column('name', sa.String(255), nullable=False),
        sa.Column('holder', sa.String(64), nullable=True),
        sa.Column('token', sa.BigInteger(), nullable=False),
        sa.Column('acquired_at', sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint('name', name='pk_leases'),
    )


def downgrade() -> None:
    op.drop_table('leases')
    op.drop_table('nodes')

"""The last attempt of a delivery as the operator sees it: its duration, and what a failing
endpoint answered (headers and the first 4 KB of the body, as JSON).

Revision ID: 0010
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('deliveries') as batch:
        batch.add_column(sa.Column('last_duration_ms', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('last_response', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('deliveries') as batch:
        batch.drop_column('last_response')
        batch.drop_column('last_duration_ms')

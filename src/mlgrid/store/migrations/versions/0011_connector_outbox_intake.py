"""Connectors: the intake (``polling`` or ``outbox``), the sealed URL of MLflow's database, and
per object the last outbox row applied.

Revision ID: 0011
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('connectors') as batch:
        batch.add_column(
            sa.Column('intake', sa.String(length=16), nullable=False, server_default='polling')
        )
        batch.add_column(sa.Column('database_url_sealed', sa.Text(), nullable=True))
    with op.batch_alter_table('connector_objects') as batch:
        batch.add_column(sa.Column('outbox_id', sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('connector_objects') as batch:
        batch.drop_column('outbox_id')
    with op.batch_alter_table('connectors') as batch:
        batch.drop_column('database_url_sealed')
        batch.drop_column('intake')

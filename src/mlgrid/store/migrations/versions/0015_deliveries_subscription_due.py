"""An index on one subscription's pending deliveries in due order.

The SQLite dispatcher keeps a bounded window of due work in memory and leaves the rest in the
store; a saturated subscription's work waits there and is read back, in due order, when its
endpoint has room again (``store.deliveries.due_after`` with a subscription id).

Revision ID: 0015
Revises: 0019
"""

from __future__ import annotations

from alembic import op

revision = '0015'
down_revision = '0019'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        'ix_deliveries_subscription_due', 'deliveries', ['subscription_id', 'state', 'next_attempt_at']
    )


def downgrade() -> None:
    op.drop_index('ix_deliveries_subscription_due', table_name='deliveries')

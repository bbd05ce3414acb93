"""Indexes that keyset paging and batched retention read as one range each.

* events ``(topic_key, published_at, seq)`` replaces ``(topic_key, published_at)``: a topic's
  events are listed, replayed and expired in (published_at, seq) order;
* deliveries ``(subscription_id, state, id)`` replaces ``(subscription_id, state)`` (counts by
  state still use it) and ``(subscription_id, id)`` is new: a subscription's deliveries paged
  by id, with and without a state;
* dead letters ``(subscription_id, created_at, id)`` replaces ``(subscription_id, created_at)``.

Revision ID: 0019
Revises: 0014
"""

from __future__ import annotations

from alembic import op

revision = '0019'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_events_topic_published_seq', 'events', ['topic_key', 'published_at', 'seq'])
    op.drop_index('ix_events_topic_published', table_name='events')
    op.create_index(
        'ix_deliveries_subscription_state_id', 'deliveries', ['subscription_id', 'state', 'id']
    )
    op.create_index('ix_deliveries_subscription_id', 'deliveries', ['subscription_id', 'id'])
    op.drop_index('ix_deliveries_subscription_state', table_name='deliveries')
    op.create_index(
        'ix_dead_letters_subscription_created_id', 'dead_letters', ['subscription_id', 'created_at', 'id']
    )
    op.drop_index('ix_dead_letters_subscription', table_name='dead_letters')


def downgrade() -> None:
    op.create_index('ix_dead_letters_subscription', 'dead_letters', ['subscription_id', 'created_at'])
    op.drop_index('ix_dead_letters_subscription_created_id', table_name='dead_letters')
    op.create_index('ix_deliveries_subscription_state', 'deliveries', ['subscription_id', 'state'])
    op.drop_index('ix_deliveries_subscription_id', table_name='deliveries')
    op.drop_index('ix_deliveries_subscription_state_id', table_name='deliveries')
    op.create_index('ix_events_topic_published', 'events', ['topic_key', 'published_at'])
    op.drop_index('ix_events_topic_published_seq', table_name='events')

"""The trace context an event was emitted in (``events.traceparent``).

An ML event is stored in the Event Grid schema, which has no place for the CloudEvents
``traceparent`` attribute, and events are never rewritten; so the W3C trace context of the
workspace change that emitted it is kept beside the event, and each delivery attempt continues
it. NULL when tracing is off.

Revision ID: 0020
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0020'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('events', sa.Column('traceparent', sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('events') as batch:
        batch.drop_column('traceparent')

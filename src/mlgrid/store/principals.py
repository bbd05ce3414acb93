"""Principals (bearer-token identities) and their role assignments."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from mlgrid.store.clock import to_epoch, utc_from_epoch
from mlgrid.store.tables import principals, role_assignments


@dataclass(frozen=True)
class PrincipalRow:
    name: str
    is_admin: bool
    created_at: datetime


@dataclass(frozen=True)
class RoleAssignmentRow:
    scope_kind: str
    scope_name: str
    principal: str
    role: str
    created_at: datetime


def _principal(row: object) -> PrincipalRow:
    return PrincipalRow(
        name=row.name,  # type: ignore[attr-defined]
        is_admin=bool(row.is_admin),  # type: ignore[attr-defined]
        created_at=utc_from_epoch(row.created_at),  # type: ignore[attr-defined]
    )


async def find_by_token_hash(conn: AsyncConnection, token_hash: str) -> PrincipalRow | None:
    row = (await conn.execute(select(principals).where(principals.c.token_hash == token_hash))).first()
    return None if row is None else _principal(row)


async def get(conn: AsyncConnection, name: str) -> PrincipalRow | None:
    row = (await conn.execute(select(principals).where(principals.c.name_key == name.lower()))).first()
    return None if row is None else _principal(row)


async def list_all(conn: AsyncConnection) -> list[PrincipalRow]:
    rows = (await conn.execute(select(principals).order_by(principals.c.name_key))).all()
    return [_principal(r) for r in rows]


async def upsert(
    conn: AsyncConnection, name: str, token_hash: str, *, is_admin: bool, now: datetime
) -> bool:
    """Create the principal or replace its token; returns True when it was created."""
    key = name.lower()
    result = await conn.execute(
        principals.update().where(principals.c.name_key == key).values(token_hash=token_hash)
    )
    if result.rowcount:
        return False
    await conn.execute(
        principals.insert().values(
            name_key=key, name=name, token_hash=token_hash, is_admin=is_admin, created_at=to_epoch(now)
        )
    )
    return True


async def delete_principal(conn: AsyncConnection, name: str) -> bool:
    key = name.lower()
    await conn.execute(delete(role_assignments).where(role_assignments.c.principal_key == key))
    result = await conn.execute(delete(principals).where(principals.c.name_key == key))
    return bool(result.rowcount)


async def roles_of(conn: AsyncConnection, principal: str, scope_kind: str, scope_name: str) -> list[str]:
    rows = await conn.execute(
        select(role_assignments.c.role).where(
            role_assignments.c.principal_key == principal.lower(),
            role_assignments.c.scope_kind == scope_kind,
            role_assignments.c.scope_key == scope_name.lower(),
        )
    )
    return [r[0] for r in rows]


async def assign_role(
    conn: AsyncConnection, scope_kind: str, scope_name: str, principal: str, role: str, now: datetime
) -> bool:
    """Set the principal's role on the scope (one role per principal and scope); True if new."""
    where = (
        (role_assignments.c.scope_kind == scope_kind)
        & (role_assignments.c.scope_key == scope_name.lower())
        & (role_assignments.c.principal_key == principal.lower())
    )
    result = await conn.execute(role_assignments.update().where(where).values(role=role))
    if result.rowcount:
        return False
    await conn.execute(
        role_assignments.insert().values(
            scope_kind=scope_kind,
            scope_key=scope_name.lower(),
            principal_key=principal.lower(),
            role=role,
            created_at=to_epoch(now),
        )
    )
    return True


async def remove_role(conn: AsyncConnection, scope_kind: str, scope_name: str, principal: str) -> bool:
    result = await conn.execute(
        delete(role_assignments).where(
            role_assignments.c.scope_kind == scope_kind,
            role_assignments.c.scope_key == scope_name.lower(),
            role_assignments.c.principal_key == principal.lower(),
        )
    )
    return bool(result.rowcount)


async def list_roles(conn: AsyncConnection, scope_kind: str, scope_name: str) -> list[RoleAssignmentRow]:
    rows = await conn.execute(
        select(role_assignments, principals.c.name)
        .join(principals, principals.c.name_key == role_assignments.c.principal_key)
        .where(
            role_assignments.c.scope_kind == scope_kind,
            role_assignments.c.scope_key == scope_name.lower(),
        )
        .order_by(role_assignments.c.principal_key)
    )
    return [
        RoleAssignmentRow(scope_kind, scope_name, r.name, r.role, utc_from_epoch(r.created_at)) for r in rows
    ]


async def delete_scope(conn: AsyncConnection, scope_kind: str, scope_name: str) -> None:
    await conn.execute(
        delete(role_assignments).where(
            role_assignments.c.scope_kind == scope_kind,
            role_assignments.c.scope_key == scope_name.lower(),
        )
    )

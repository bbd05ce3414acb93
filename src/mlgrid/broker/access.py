"""Principals, bearer-token authentication and role checks on resources.

Token look-ups are cached for a few seconds per ``AccessService`` instance so that the hot
paths (publish with a bearer token, pull receive) do not hit the database on every request;
a replaced token stops working within that window on other nodes and at once on this one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from mlgrid.auth import run_tokens
from mlgrid.auth.credentials import NoCredential, parse_bearer
from mlgrid.auth.roles import Action, Principal, Role, authorize, parse_role
from mlgrid.auth.tokens import hash_token, new_token
from mlgrid.broker.names import check_name
from mlgrid.errors import Forbidden, NotFound, Unauthorized
from mlgrid.store import principals as principal_store
from mlgrid.store.database import Database

CACHE_SECONDS = 5.0
ADMIN = "admin"


@dataclass(frozen=True)
class Scope:
    """A resource that roles are assigned on: ("topic", name) or ("workspace", name)."""

    kind: str
    name: str


RUN_TOKEN_ACTIONS = frozenset({Action.READ, Action.WRITE})


class AccessService:
    def __init__(
        self,
        db: Database,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        *,
        run_token_key: bytes | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._run_token_key = run_token_key
        self._token_cache: dict[str, tuple[float, Principal | None]] = {}
        self._role_cache: dict[tuple[str, str, str], tuple[float, list[Role]]] = {}

    def forget_cached(self) -> None:
        """Another node changed principals or keys: look tokens up again."""
        self._token_cache.clear()
        self._role_cache.clear()

    async def ensure_admin(self) -> str | None:
        """Create the admin principal on first start; returns its new token (else None)."""
        async with self._db.write() as conn:
            if await principal_store.get(conn, ADMIN) is not None:
                return None
            token = new_token()
            await principal_store.upsert(conn, ADMIN, hash_token(token), is_admin=True, now=self._clock())
            return token

    async def authenticate(self, authorization: str | None) -> Principal:
        credential = parse_bearer({"authorization": authorization or ""})
        if isinstance(credential, NoCredential):
            raise Unauthorized(credential.reason)
        principal = await self.principal_for_token(credential.token)
        if principal is None:
            raise Unauthorized("invalid or revoked token")
        return principal

    def issue_run_token(self, workspace_key: str, run_id: str) -> str | None:
        """A token that reads and writes the run ``run_id`` only (``auth.run_tokens``)."""
        if self._run_token_key is None:
            return None
        return run_tokens.issue(self._run_token_key, run_tokens.RunGrant(workspace_key, run_id))

    async def principal_for_token(self, token: str) -> Principal | None:
        if token.startswith(run_tokens.RUN_TOKEN_PREFIX):
            grant = None if self._run_token_key is None else run_tokens.verify(self._run_token_key, token)
            if grant is None:
                return None
            return Principal(name=f"run {grant.run_id}", run_scope=(grant.workspace, grant.run_id))
        digest = hash_token(token)
        now = time.monotonic()
        hit = self._token_cache.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        async with self._db.read() as conn:
            row = await principal_store.find_by_token_hash(conn, digest)
        principal = None if row is None else Principal(name=row.name, is_admin=row.is_admin)
        if len(self._token_cache) > 10_000:
            self._token_cache.clear()
        self._token_cache[digest] = (now + CACHE_SECONDS, principal)
        return principal

    async def roles(self, principal: Principal, scope: Scope) -> list[Role]:
        key = (principal.name.lower(), scope.kind, scope.name.lower())
        now = time.monotonic()
        hit = self._role_cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        async with self._db.read() as conn:
            names = await principal_store.roles_of(conn, principal.name, scope.kind, scope.name)
        roles = [parse_role(n) for n in names]
        if len(self._role_cache) > 10_000:
            self._role_cache.clear()
        self._role_cache[key] = (now + CACHE_SECONDS, roles)
        return roles

    async def require(
        self, principal: Principal, scope: Scope | None, action: Action, *, run_id: str | None = None
    ) -> None:
        """Raise 403 unless the principal may do ``action`` on the scope (admin may do all).

        ``run_id`` names the run a workspace route acts on; a run token (``principal.run_scope``)
        may only read and write that one run of its own workspace."""
        if principal.is_admin:
            return
        if principal.run_scope is not None:
            workspace, own_run = principal.run_scope
            if (
                scope is not None
                and scope.kind == "workspace"
                and scope.name.lower() == workspace
                and run_id == own_run
                and action in RUN_TOKEN_ACTIONS
            ):
                return
            raise Forbidden(
                f"a run token may only read and write its own run {own_run!r}; it may not "
                f"{action.value} here"
            )
        if scope is None:
            who = principal.name
            raise Forbidden(f"principal {who!r} may not {action.value}: only the admin principal may")
        roles = await self.roles(principal, scope)
        authorize(principal, roles, action, resource=f"{scope.kind} {scope.name!r}")

    async def allowed(self, principal: Principal, scope: Scope, action: Action) -> bool:
        try:
            await self.require(principal, scope, action)
        except Forbidden:
            return False
        return True

    async def put_principal(self, name: str) -> tuple[str, bool]:
        """Create the principal or rotate its token; returns (token, created). Shown once."""
        check_name(name, "principalName")
        token = new_token()
        async with self._db.write() as conn:
            created = await principal_store.upsert(
                conn, name, hash_token(token), is_admin=name.lower() == ADMIN, now=self._clock()
            )
        self._token_cache.clear()
        return token, created

    async def list_principals(self) -> list[principal_store.PrincipalRow]:
        async with self._db.read() as conn:
            return await principal_store.list_all(conn)

    async def delete_principal(self, name: str) -> None:
        if name.lower() == ADMIN:
            raise Forbidden("the admin principal cannot be deleted")
        async with self._db.write() as conn:
            if not await principal_store.delete_principal(conn, name):
                raise NotFound(f"principal {name!r} does not exist")
        self._token_cache.clear()
        self._role_cache.clear()

    async def assign(self, scope: Scope, principal_name: str, role_value: object) -> tuple[Role, bool]:
        role = parse_role(role_value, "role")
        async with self._db.write() as conn:
            if await principal_store.get(conn, principal_name) is None:
                raise NotFound(f"principal {principal_name!r} does not exist")
            created = await principal_store.assign_role(
                conn, scope.kind, scope.name, principal_name, role.value, self._clock()
            )
        self._role_cache.clear()
        return role, created

    async def unassign(self, scope: Scope, principal_name: str) -> None:
        async with self._db.write() as conn:
            if not await principal_store.remove_role(conn, scope.kind, scope.name, principal_name):
                raise NotFound(f"principal {principal_name!r} has no role on {scope.kind} {scope.name!r}")
        self._role_cache.clear()

    async def list_assignments(self, scope: Scope) -> list[principal_store.RoleAssignmentRow]:
        async with self._db.read() as conn:
            return await principal_store.list_roles(conn, scope.kind, scope.name)

"""Connectors of a workspace: their configuration, and one sync = read MLflow, reconcile, commit.

``sync`` (and ``drain``, below) are the only paths by which MLflow's state becomes events:

1. read MLflow (no database transaction open while waiting for it): on a full sweep every run,
   version and alias; otherwise the open runs (``attributes.run_id IN (...)``), the runs
   started since the last poll minus an overlap window, the newest model versions, and every
   alias;
2. in ONE workspace transaction: lock the connector row, check this node still holds its lease,
   load the remembered states of the objects read, ``reconcile`` (pure), write the new states,
   emit the events on the workspace's system topic (``WorkspaceTransaction.emit``, the path the
   workspace's own events take) and record the poll.

A crash anywhere before the commit leaves nothing behind; the next sync reads MLflow again and
derives the same event ids.

With ``intake: outbox`` (``drain``) the same commit takes the outbox plugin's rows instead of a
poll's read: claim a batch in MLflow's database, enrich it from REST, reconcile and commit in
mlgrid, and only then delete the batch (``store/mlflow_outbox.py``); ``sync`` still runs as
the full sweep every ``fullSweepMinutes``, the safety net for writers that bypass the plugin.
See ``docs/mlflow.md`` for the mapping and ``docs/decisions.md``
for why a full sweep exists.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from mlgrid.auth.secretbox import SecretBox
from mlgrid.broker.names import check_name
from mlgrid.connectors import config as connector_config
from mlgrid.connectors import outbox as outbox_rows
from mlgrid.connectors.mlflow_client import MlflowClient, MlflowError, MlflowRejected, MlflowUnavailable
from mlgrid.connectors.observation import (
    ALIAS,
    ObjectState,
    Observation,
    RunObservation,
    VersionObservation,
)
from mlgrid.connectors.reconciler import Identity, reconcile
from mlgrid.connectors.webhook_signature import verify
from mlgrid.domain.error_codes import ErrorCode
from mlgrid.domain.records import ConnectorRow
from mlgrid.errors import Conflict, NotFound, PreconditionFailed, invalid
from mlgrid.etags import new_etag
from mlgrid.store import connectors as connector_store
from mlgrid.store.connectors import ObjectStateRow
from mlgrid.store.mlflow_outbox import OutboxSource, OutboxUnavailable
from mlgrid.workspace.service import Workspace, WorkspaceService, check_if_match

log = logging.getLogger("mlgrid.connectors")

OVERLAP_MIN_SECONDS = 120.0
"""Runs started up to this long before the last poll are read again (clock skew between mlgrid
and MLflow's clients, runs committed late); at least three poll intervals."""
LEASE_MIN_SECONDS = 30.0
NEWEST_VERSIONS = 200
WEBHOOK_IDS_KEPT_SECONDS = 24 * 3600.0
DRAIN_BATCH = 500
"""Outbox rows per drain transaction."""

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class SyncResult:
    full: bool
    events: int
    objects_read: int
    requests: int


#: Checks in the sync's transaction that this node still holds the connector's lease.
Fence = Callable[[AsyncConnection], Awaitable[None]]


@dataclass(frozen=True)
class DrainResult:
    rows: int
    events: int


def _to_row(state: ObjectState) -> ObjectStateRow:
    return ObjectStateRow(
        state.kind, state.key, state.value, state.transitions, state.emitted, state.is_open, state.outbox_id
    )


def _from_row(row: ObjectStateRow) -> ObjectState:
    return ObjectState(row.kind, row.key, row.value, row.transitions, row.emitted, row.outbox_id)


def same_database(url: str) -> str:
    """A database URL without the driver, user and password: two spellings of one database
    compare equal."""
    scheme, _, rest = url.partition("://")
    scheme = scheme.lower().removeprefix("mlgrid+").split("+", 1)[0]
    scheme = "postgresql" if scheme == "postgres" else scheme
    rest = rest.rsplit("@", 1)[-1].split("?", 1)[0].rstrip("/")
    return f"{scheme}://{rest}"


def spec_of(row: ConnectorRow) -> connector_config.ConnectorSpec:
    """The row's configuration (secrets left out: the sealed values stay on the row)."""
    return connector_config.ConnectorSpec(
        tracking_uri=row.tracking_uri,
        poll_interval=row.poll_interval,
        full_sweep_minutes=row.full_sweep_minutes,
        experiments=row.experiments,
        deployment_aliases=tuple(row.deployment_aliases),
        backfill=row.backfill,
        paused=row.paused,
        intake=row.intake,
    )


class ConnectorService:
    def __init__(
        self,
        core: WorkspaceService,
        box: SecretBox,
        *,
        node_id: str,
        clock: Clock | None = None,
        check_on_put: bool = True,
        request_timeout: float = 10.0,
    ) -> None:
        self.core = core
        self.box = box
        self.node_id = node_id
        self.clock = clock or core.clock
        self.check_on_put = check_on_put
        self.request_timeout = request_timeout
        self.changed: list[Callable[[str], None]] = []
        """Called with a connector id after a commit that changed it (the poller wakes up)."""

    # --- secrets ---------------------------------------------------------------------------

    def _seal(self, connector_id: str, what: str, value: str | None) -> str | None:
        return None if value is None else self.box.seal(value, context=f"connector/{connector_id}/{what}")

    def token(self, row: ConnectorRow) -> str | None:
        if row.token_sealed is None:
            return None
        return self.box.open(row.token_sealed, context=f"connector/{row.id}/token")

    def webhook_secret(self, row: ConnectorRow) -> str | None:
        if row.webhook_secret_sealed is None:
            return None
        return self.box.open(row.webhook_secret_sealed, context=f"connector/{row.id}/webhookSecret")

    def database_url(self, row: ConnectorRow) -> str | None:
        if row.database_url_sealed is None:
            return None
        return self.box.open(row.database_url_sealed, context=f"connector/{row.id}/databaseUrl")

    def outbox(self, row: ConnectorRow) -> OutboxSource | None:
        """MLflow's outbox table for a connector with ``intake: outbox`` (None otherwise)."""
        url = self.database_url(row)
        if row.intake != connector_config.INTAKE_OUTBOX or url is None:
            return None
        return OutboxSource(url, timeout=self.request_timeout)

    def client(self, row: ConnectorRow) -> MlflowClient:
        return MlflowClient(row.tracking_uri, token=self.token(row), timeout=self.request_timeout)

    # --- CRUD ------------------------------------------------------------------------------

    async def _check_reachable(self, spec: connector_config.ConnectorSpec) -> None:
        """400 at PUT when the URI is not an MLflow server or the token is refused."""
        if not self.check_on_put:
            return
        client = MlflowClient(spec.tracking_uri, token=spec.token, timeout=self.request_timeout)
        try:
            await client.check()
        except MlflowRejected as exc:
            if exc.http_status in (401, 403):
                raise invalid("properties.token", f"MLflow refused it (HTTP {exc.http_status})") from exc
            raise invalid("properties.trackingUri", f"is not an MLflow tracking server: {exc}") from exc
        except MlflowUnavailable as exc:
            raise invalid("properties.trackingUri", f"is unreachable: {exc}") from exc
        except MlflowError as exc:
            raise invalid("properties.trackingUri", f"did not answer like MLflow: {exc}") from exc
        finally:
            await client.close()

    async def _check_sole_drainer(self, database_url: str, connector_id: str | None) -> None:
        """400 when another connector already drains this outbox: draining deletes what it
        reads, so two connectors on one table would each lose the other's rows."""
        async with self.core.db.read() as conn:
            rows = await connector_store.list_all(conn)
        wanted = same_database(database_url)
        for other in rows:
            if other.id == connector_id or other.intake != connector_config.INTAKE_OUTBOX:
                continue
            url = self.database_url(other)
            if url is not None and same_database(url) == wanted:
                raise invalid(
                    "properties.databaseUrl",
                    f"that outbox is already drained by connector {other.name!r} "
                    "(one connector per outbox table: draining deletes what it reads)",
                )

    async def _check_outbox(
        self, spec: connector_config.ConnectorSpec, *, switching: bool, connector_id: str | None
    ) -> None:
        """400 at PUT/PATCH when intake ``outbox``'s database or table cannot be read.

        ``switching`` (the connector did not drain this outbox before): the rows already there
        are deleted, and the caller asks for a full sweep. They predate the intake: applied on
        top of what polling remembers they could replay a history polling already folded
        (an alias moved away and back), while the sweep reflects every one of them.
        """
        if spec.intake != connector_config.INTAKE_OUTBOX or not spec.database_url:
            return
        await self._check_sole_drainer(spec.database_url, connector_id)
        try:
            source = OutboxSource(spec.database_url, timeout=self.request_timeout)
        except OutboxUnavailable as exc:
            raise invalid("properties.databaseUrl", f"cannot read MLflow's outbox table: {exc}") from exc
        try:
            if self.check_on_put:
                await source.check()
            if switching:
                purged = await source.purge()
                log.info("intake switched to outbox; %d earlier outbox row(s) left to the sweep", purged)
        except OutboxUnavailable as exc:
            raise invalid("properties.databaseUrl", f"cannot read MLflow's outbox table: {exc}") from exc
        finally:
            await source.close()

    async def put(
        self, workspace_name: str, name: str, body: object, *, if_match: str | None = None
    ) -> tuple[ConnectorRow, bool]:
        check_name(name, "connectorName")
        spec = connector_config.parse_put(body)
        await self._check_reachable(spec)
        current = await self._current(workspace_name, name)
        switching = spec.intake == connector_config.INTAKE_OUTBOX and (
            current is None
            or current.intake != spec.intake
            or self.database_url(current) != spec.database_url
        )
        await self._check_outbox(
            spec, switching=switching, connector_id=None if current is None else current.id
        )
        now = self.clock()
        async with self.core.transaction("connector.put") as tx:
            ws = await self.core.get_in(tx.conn, workspace_name)
            existing = await connector_store.get(tx.conn, ws.key, name, for_update=True)
            if existing is None:
                if if_match is not None:
                    raise PreconditionFailed(f"connector {name!r} does not exist (If-Match was given)")
                connector_id = str(uuid.uuid4())
                row = ConnectorRow(
                    id=connector_id,
                    workspace_key=ws.key,
                    name=name,
                    kind=connector_config.KIND_MLFLOW,
                    tracking_uri=spec.tracking_uri,
                    token_sealed=self._seal(connector_id, "token", spec.token),
                    webhook_secret_sealed=self._seal(connector_id, "webhookSecret", spec.webhook_secret),
                    intake=spec.intake,
                    database_url_sealed=self._seal(connector_id, "databaseUrl", spec.database_url),
                    poll_interval=spec.poll_interval,
                    full_sweep_minutes=spec.full_sweep_minutes,
                    experiments=spec.experiments,
                    deployment_aliases=list(spec.deployment_aliases),
                    backfill=spec.backfill,
                    paused=spec.paused,
                    etag=new_etag(),
                    created_at=now,
                    updated_at=now,
                    state="Paused" if spec.paused else "Starting",
                )
                await connector_store.insert(tx.conn, row)
                created = True
            else:
                check_if_match(if_match, existing.etag, f"connector {existing.name!r}")
                row = self._changed(
                    existing, spec, now, token_given=True, secret_given=True, database_url_given=True
                )
                await connector_store.update_config(tx.conn, row)
                if row.intake == connector_config.INTAKE_OUTBOX and existing.intake != row.intake:
                    await connector_store.request_resync(tx.conn, row.id)
                    await connector_store.forget_outbox_positions(tx.conn, row.id)
                created = False
        self._notify(row.id)
        return row, created

    def _changed(
        self,
        row: ConnectorRow,
        spec: connector_config.ConnectorSpec,
        now: datetime,
        *,
        token_given: bool,
        secret_given: bool,
        database_url_given: bool,
    ) -> ConnectorRow:
        state = row.state
        if spec.paused:
            state = "Paused"
        elif row.paused:
            state = "Starting"
        return replace(
            row,
            tracking_uri=spec.tracking_uri,
            token_sealed=self._seal(row.id, "token", spec.token) if token_given else row.token_sealed,
            webhook_secret_sealed=(
                self._seal(row.id, "webhookSecret", spec.webhook_secret)
                if secret_given
                else row.webhook_secret_sealed
            ),
            intake=spec.intake,
            database_url_sealed=(
                self._seal(row.id, "databaseUrl", spec.database_url)
                if database_url_given
                else row.database_url_sealed
            ),
            poll_interval=spec.poll_interval,
            full_sweep_minutes=spec.full_sweep_minutes,
            experiments=spec.experiments,
            deployment_aliases=list(spec.deployment_aliases),
            backfill=spec.backfill,
            paused=spec.paused,
            etag=new_etag(),
            updated_at=now,
            state=state,
            # Another MLflow server: its history is not news (first sync again, silent unless backfill).
            synced=row.synced and spec.tracking_uri == row.tracking_uri,
        )

    async def patch(
        self, workspace_name: str, name: str, body: object, *, if_match: str | None = None
    ) -> ConnectorRow:
        connector_config.check_patch_shape(body)
        current = await self.get(workspace_name, name)
        spec, given = connector_config.read_patch(body).apply(spec_of(current))
        stored_url = "databaseUrl" not in given and current.database_url_sealed is not None
        connector_config.check_intake(spec, stored_database_url=stored_url)
        if {"trackingUri", "token"} & given:
            token = spec.token if "token" in given else self.token(current)
            await self._check_reachable(replace(spec, token=token))
        if {"intake", "databaseUrl"} & given:
            url = spec.database_url if "databaseUrl" in given else self.database_url(current)
            switching = current.intake != spec.intake or "databaseUrl" in given
            await self._check_outbox(
                replace(spec, database_url=url), switching=switching, connector_id=current.id
            )
        now = self.clock()
        async with self.core.transaction("connector.patch") as tx:
            ws = await self.core.get_in(tx.conn, workspace_name)
            existing = await connector_store.get(tx.conn, ws.key, name, for_update=True)
            if existing is None:
                raise NotFound(f"connector {name!r} does not exist", code=ErrorCode.CONNECTOR_NOT_FOUND)
            check_if_match(if_match, existing.etag, f"connector {existing.name!r}")
            row = self._changed(
                existing,
                spec,
                now,
                token_given="token" in given,
                secret_given="webhookSecret" in given,
                database_url_given="databaseUrl" in given,
            )
            await connector_store.update_config(tx.conn, row)
            if row.intake == connector_config.INTAKE_OUTBOX and (
                existing.intake != row.intake or "databaseUrl" in given
            ):
                await connector_store.request_resync(tx.conn, row.id)
                await connector_store.forget_outbox_positions(tx.conn, row.id)
        self._notify(row.id)
        return row

    async def _current(self, workspace_name: str, name: str) -> ConnectorRow | None:
        try:
            return await self.get(workspace_name, name)
        except NotFound:
            return None

    async def get(self, workspace_name: str, name: str) -> ConnectorRow:
        async with self.core.db.read() as conn:
            ws = await self.core.get_in(conn, workspace_name)
            row = await connector_store.get(conn, ws.key, name)
        if row is None:
            raise NotFound(
                f"connector {name!r} does not exist in workspace {ws.name!r}",
                code=ErrorCode.CONNECTOR_NOT_FOUND,
            )
        return row

    async def objects_tracked(self, row: ConnectorRow) -> int:
        async with self.core.db.read() as conn:
            return await connector_store.count_objects(conn, row.id)

    async def list_connectors(self, workspace_name: str) -> list[ConnectorRow]:
        async with self.core.db.read() as conn:
            ws = await self.core.get_in(conn, workspace_name)
            return await connector_store.list_for_workspace(conn, ws.key)

    async def delete(self, workspace_name: str, name: str, *, if_match: str | None = None) -> None:
        async with self.core.transaction("connector.delete") as tx:
            ws = await self.core.get_in(tx.conn, workspace_name)
            row = await connector_store.get(tx.conn, ws.key, name, for_update=True)
            if row is None:
                raise NotFound(f"connector {name!r} does not exist", code=ErrorCode.CONNECTOR_NOT_FOUND)
            check_if_match(if_match, row.etag, f"connector {row.name!r}")
            await connector_store.delete_connector(tx.conn, row.id)
        self._notify(row.id)

    async def delete_workspace_rows(self, workspace_key: str) -> None:
        """``WorkspaceService.before_delete`` hook: a deleted workspace takes its connectors along."""
        async with self.core.db.write() as conn:
            await connector_store.delete_workspace(conn, workspace_key)

    async def resync(self, workspace_name: str, name: str) -> ConnectorRow:
        """Ask for a full sweep at once (the holder of the lease runs it)."""
        row = await self.get(workspace_name, name)
        async with self.core.db.write() as conn:
            await connector_store.request_resync(conn, row.id)
        self._notify(row.id)
        return replace(row, resync_requested=True)

    def _notify(self, connector_id: str) -> None:
        for callback in self.changed:
            callback(connector_id)

    # --- the webhook doorbell --------------------------------------------------------------

    async def webhook(
        self,
        workspace_name: str,
        name: str,
        *,
        delivery_id: str | None,
        timestamp: str | None,
        signature: str | None,
        body: bytes,
    ) -> bool:
        """Check the signature, remember the delivery id; True when it was new (the caller then
        wakes the poller, which re-reads MLflow: the body itself is never trusted)."""
        row = await self.get(workspace_name, name)
        secret = self.webhook_secret(row)
        if secret is None:
            raise Conflict(
                f"connector {name!r} has no webhookSecret: set one to accept MLflow webhooks",
                code=ErrorCode.WEBHOOK_NOT_CONFIGURED,
            )
        now = time.time()
        verify(secret, delivery_id=delivery_id, timestamp=timestamp, signature=signature, body=body, now=now)
        assert delivery_id is not None  # verify() refuses a missing id
        async with self.core.db.write() as conn:
            fresh = await connector_store.remember_delivery(conn, row.id, delivery_id, now)
            await connector_store.prune_deliveries(conn, now - WEBHOOK_IDS_KEPT_SECONDS)
        if fresh:
            self._notify(row.id)
        return fresh

    # --- the polling node ------------------------------------------------------------------

    def shown_for(self, row: ConnectorRow) -> float:
        """Seconds ``pollingNode`` names this node after a poll: three poll intervals, at least
        ``LEASE_MIN_SECONDS`` (the lease itself is ``store/leases.py``'s)."""
        return max(LEASE_MIN_SECONDS, 3 * row.poll_interval)

    async def record_failure(self, connector_id: str, error: str) -> None:
        async with self.core.db.write() as conn:
            await connector_store.record_failure(conn, connector_id, error, self.clock())

    # --- sync ------------------------------------------------------------------------------

    def full_sweep_due(self, row: ConnectorRow, now: datetime) -> bool:
        if not row.synced or row.resync_requested or row.last_full_sweep_at is None:
            return True
        return now - row.last_full_sweep_at >= timedelta(minutes=row.full_sweep_minutes)

    async def observe(
        self, row: ConnectorRow, client: MlflowClient, *, full: bool, open_run_ids: list[str]
    ) -> Observation:
        """Read MLflow (see the module docstring); no database transaction is open meanwhile."""
        experiments = await client.experiments()
        names = {e.experiment_id: e.name for e in experiments}
        if row.experiments is not None:
            wanted = set(row.experiments)
            ids = [e.experiment_id for e in experiments if e.name in wanted]
        else:
            ids = [e.experiment_id for e in experiments]
        runs: list[RunObservation]
        versions: list[VersionObservation]
        if full:
            runs = await client.search_runs(ids, "", names)
            versions = await client.model_versions()
        else:
            runs = await client.runs_by_id(ids, open_run_ids, names)
            overlap = max(OVERLAP_MIN_SECONDS, 3 * row.poll_interval)
            since_ms = int((row.watermark_ms or 0) - overlap * 1000)
            runs += await client.search_runs(ids, f"attributes.start_time >= {max(since_ms, 0)}", names)
            versions = await client.model_versions(newest=NEWEST_VERSIONS)
        aliases = await client.aliases()
        return Observation(tuple(runs), tuple(versions), tuple(aliases))

    async def sync(
        self, row: ConnectorRow, client: MlflowClient, *, full: bool | None = None, fence: Fence | None = None
    ) -> SyncResult:
        """One poll of one connector; raises ``MlflowError`` (nothing committed) or ``LeaseLost``
        (``fence``, several nodes: this node no longer holds the connector's lease)."""
        started = self.clock()
        full = self.full_sweep_due(row, started) if full is None else full
        before = client.requests
        async with self.core.db.read() as conn:
            open_keys = await connector_store.open_run_keys(conn, row.id)
            known_versions = None if full else await connector_store.states_of_kind(conn, row.id, "version")
        observation = await self.observe(
            row, client, full=full, open_run_ids=[k.split(":", 1)[1] for k in open_keys]
        )
        if (
            known_versions is not None
            and len(observation.versions) >= NEWEST_VERSIONS
            and not any(v.key in known_versions for v in observation.versions)
        ):
            # The newest page is all news: more versions than a page arrived since the last poll.
            observation = replace(observation, versions=tuple(await client.model_versions()))
        events = await self._commit(row, observation, started, full, fence) or 0
        return SyncResult(
            full, events, len(observation.runs) + len(observation.versions), client.requests - before
        )

    async def drain(
        self,
        row: ConnectorRow,
        client: MlflowClient,
        source: OutboxSource,
        experiments: outbox_rows.Experiments | None = None,
        *,
        fence: Fence | None = None,
    ) -> DrainResult:
        """One batch of the outbox: claim, enrich from REST, reconcile + commit, then delete.

        The rows are deleted only after mlgrid's commit; a crash in between leaves them for the
        next drain, which finds their values already remembered and emits nothing again. While
        the connector is paused the rows stay (a paused connector consumes nothing).
        """
        async with source.claim(DRAIN_BATCH) as batch:
            started = self.clock()
            observation = await outbox_rows.observe(row, client, batch.rows, experiments)
            events = await self._commit(row, observation, started, False, fence)
            if events is not None:
                batch.consume()
        return DrainResult(len(batch.ids), events or 0)

    async def _commit(
        self, row: ConnectorRow, observation: Observation, started: datetime, full: bool, fence: Fence | None
    ) -> int | None:
        """Reconcile and commit; the number of events, or None when the connector is paused
        (nothing committed)."""
        async with self.core.transaction("connector.sync") as tx:
            if fence is not None:
                await fence(tx.conn)  # a node that lost the connector's lease commits nothing
            current = await connector_store.get(tx.conn, row.workspace_key, row.name, for_update=True)
            if current is None or current.id != row.id:
                raise NotFound(f"connector {row.name!r} was deleted", code=ErrorCode.CONNECTOR_NOT_FOUND)
            await connector_store.mark_polled_by(
                tx.conn, row.id, self.node_id, time.time() + self.shown_for(current)
            )
            if current.paused:
                return None
            ws: Workspace = await self.core.get_in(tx.conn, row.workspace_key)
            keys = [r.key for r in observation.runs] + [v.key for v in observation.versions]
            keys += [c.key for c in observation.changes]
            known = {
                k: _from_row(s) for k, s in (await connector_store.states(tx.conn, row.id, keys)).items()
            }
            alias_rows = await connector_store.states_of_kind(tx.conn, row.id, ALIAS)
            known.update({k: _from_row(s) for k, s in alias_rows.items()})
            identity = Identity(
                connector_id=row.id,
                topic_id=ws.resource_id,
                run_status_changed_events=ws.run_status_changed_events,
                deployment_aliases=frozenset(current.deployment_aliases),
            )
            result = reconcile(
                identity, known, observation, emit_new=current.synced or current.backfill, now=started
            )
            await connector_store.upsert_states(tx.conn, row.id, [_to_row(s) for s in result.states], started)
            await tx.emit(ws, *result.events)
            await connector_store.record_poll(
                tx.conn,
                row.id,
                at=started,
                watermark_ms=int(started.timestamp() * 1000),
                events=len(result.events),
                full_sweep=full,
            )
        if result.events:
            log.info(
                "connector %s emitted %d event(s)",
                row.name,
                len(result.events),
                extra={"action": "connector_emitted", "connector": row.id, "count": len(result.events)},
            )
        return len(result.events)

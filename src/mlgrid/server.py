"""Build the app and its background tasks for ``mlgrid serve``.

Start-up order matters: the data directory and secret key first, then migrations, then the
data directory's identity (subscription id) and the admin principal, then the services, and
only then the background tasks (group-commit writer, dispatcher, sweepers). Shutdown runs in
reverse so no task outlives the database engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import APIRouter, FastAPI
from sqlalchemy.ext.asyncio import AsyncConnection

from mlgrid import __version__
from mlgrid.api import (
    arm_metadata,
    arm_subscriptions,
    arm_topics,
    catalog,
    connectors,
    datadrifts,
    deliveries,
    endpoints,
    filter_tests,
    health,
    oauth,
    principals,
    publish,
    pull,
    subscriptions,
    topics,
    workspaces,
)
from mlgrid.api import errors as api_errors
from mlgrid.api import openapi as api_openapi
from mlgrid.api.responses import ExactJSONResponse
from mlgrid.auth import run_tokens
from mlgrid.auth.private_files import write_private_file
from mlgrid.auth.secretbox import SecretBox, key_from_setting, load_or_create_key
from mlgrid.blobs import open_blobs
from mlgrid.broker import subscriptions_setup
from mlgrid.broker.access import AccessService
from mlgrid.broker.ingest import Ingestor
from mlgrid.broker.retention import RETENTION_DUTY, RetentionSweeper
from mlgrid.broker.routing import Router
from mlgrid.broker.topics import TopicService
from mlgrid.cluster.node import KEYS, Lease, Node
from mlgrid.config import Settings, new_subscription_id
from mlgrid.connectors import setup as connectors_setup
from mlgrid.data_dir_lock import DataDirectoryLock
from mlgrid.delivery import setup as delivery_setup
from mlgrid.metrics import Metrics
from mlgrid.runtime import Runtime
from mlgrid.store import meta as meta_store
from mlgrid.store import migrate
from mlgrid.store.database import Database
from mlgrid.tracing import Tracing
from mlgrid.ui import routes as ui_routes
from mlgrid.ui import setup as ui_setup
from mlgrid.workspace import drift_setup, endpoints_setup
from mlgrid.workspace import setup as workspace_setup

log = logging.getLogger("mlgrid.server")

PRIVATE_DIRECTORY_MODE = 0o700

# Each layer above the broker core adds its services, background tasks and hooks to the
# runtime in a setup coroutine, called in this order at start-up.
Extension = Callable[[Runtime, FastAPI], Awaitable[None]]
EXTENSIONS: tuple[Extension, ...] = (
    subscriptions_setup.setup,
    delivery_setup.setup,
    workspace_setup.setup,
    drift_setup.setup,
    endpoints_setup.setup,
    connectors_setup.setup,
    ui_setup.setup,
)
# Routes are matched in this order, one by one: the data plane (publish, pull) comes first,
# so the requests that arrive by the thousand are matched after a handful of candidates, not
# after every management route.
ROUTERS: tuple[APIRouter, ...] = (
    health.router,
    publish.router,
    pull.router,
    principals.router,
    topics.router,
    subscriptions.router,
    filter_tests.router,
    deliveries.router,
    catalog.router,
    workspaces.router,
    datadrifts.router,
    endpoints.router,
    oauth.router,
    arm_metadata.router,
    arm_topics.router,
    arm_subscriptions.router,
    connectors.router,
    ui_routes.router,
)


async def open_runtime(settings: Settings) -> Runtime:
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    # Only the server's user enters the data directory: the database, secret key, admin token
    # and workspace files stay out of reach of the uids user code runs as (docs/security.md).
    os.chmod(data_dir, PRIVATE_DIRECTORY_MODE)
    key = key_from_setting(settings.secret_key) if settings.secret_key else load_or_create_key(
        data_dir / "secret.key"
    )
    box = SecretBox(key)
    db = Database.connect(settings.resolved_database_url, sqlite_synchronous=settings.sqlite_synchronous)
    await migrate.upgrade(db)
    async with db.write() as conn:
        subscription_id = settings.subscription_id or await meta_store.set_if_absent(
            conn, "subscription_id", new_subscription_id()
        )
    metrics = Metrics()
    access = AccessService(db, run_token_key=run_tokens.derive_key(key))
    admin_token_path = data_dir / "admin.token"
    token = await access.ensure_admin()
    if token is not None:
        write_private_file(admin_token_path, (token + "\n").encode())
    router = Router()
    node = Node(
        db,
        prefix=settings.node_id,
        advertise_url=settings.resolved_advertise_url,
        timeout=settings.node_timeout,
        heartbeat=settings.heartbeat_interval,
        database_url=settings.resolved_database_url,
    )
    rt = Runtime(
        settings=settings,
        db=db,
        box=box,
        subscription_id=subscription_id,
        metrics=metrics,
        access=access,
        topics=TopicService(db, settings, box, subscription_id),
        router=router,
        ingestor=Ingestor(db, router, metrics),
        admin_token_path=str(admin_token_path),
        blobs=open_blobs(data_dir, settings.blob_url, settings.blob_key, settings.blob_container),
        node=node,
    )
    log.info("blob store: %s", rt.blobs.storage.describe(), extra={"action": "blob_store"})
    return rt


async def start_node(rt: Runtime) -> None:
    """Join the cluster (PostgreSQL) before any layer reads the node's id, and let key
    changes made on other nodes reach this one's caches at once."""
    await rt.node.start()

    async def announce_keys() -> None:
        await rt.node.announce(KEYS)

    def forget_keys(_sender: str) -> None:
        rt.topics.forget_keys()
        rt.access.forget_cached()

    rt.topics.announce = announce_keys
    rt.node.on_notice(KEYS, forget_keys)


async def close_runtime(rt: Runtime) -> None:
    for task in reversed(rt.tasks):
        task.cancel()
    for task in reversed(rt.tasks):
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    rt.tasks.clear()
    for close in reversed(rt.closers):
        with contextlib.suppress(Exception):
            await close()
    # Last: the outcomes flushed above are written under this node's claims.
    with contextlib.suppress(Exception):
        await rt.node.stop()
    await rt.ingestor.stop()
    await rt.blobs.storage.close()
    await rt.db.close()


def _shutdown_tracing(tracing: Tracing) -> Callable[[], Awaitable[None]]:
    async def shutdown() -> None:
        await asyncio.to_thread(tracing.shutdown)

    return shutdown


def create_app(settings: Settings, tracing: Tracing | None = None) -> FastAPI:
    """The ASGI app; services are built in its lifespan so the app object is cheap to make.
    ``tracing`` replaces the one ``otlp_endpoint`` configures (tests pass an in-memory one)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = await open_runtime(settings)
        rt.tracing = tracing if tracing is not None else Tracing.from_endpoint(settings.otlp_endpoint)
        rt.closers.insert(0, _shutdown_tracing(rt.tracing))  # closers run in reverse: last
        app.state.runtime = rt
        try:
            await start_node(rt)
            for extension in EXTENSIONS:
                await extension(rt, app)
            await rt.ingestor.start()
            sweeper = RetentionSweeper(rt.db, rt.topics)

            async def retention(lease: Lease) -> None:
                async def fence(conn: AsyncConnection) -> None:
                    await rt.node.fence(conn, lease)

                await sweeper.run(fence)

            rt.node.duty(RETENTION_DUTY, retention)
            for start in rt.starters:
                await start()
            if getattr(app.state, "tune_gc", False):
                # What exists now (modules, the app, the services) lives as long as the
                # process: freeze it out of the cycle collector's scans, and let young
                # collections run less often. Requests allocate many short-lived objects;
                # with the defaults the collector kept rescanning the whole heap (measured:
                # +45% delivered events/s in benchmarks/delivery.py).
                gc.collect()
                gc.freeze()
                gc.set_threshold(10_000, 10, 10)
            yield
        finally:
            await close_runtime(rt)

    app = FastAPI(
        title="mlgrid",
        default_response_class=ExactJSONResponse,
        version=__version__,
        summary="A self-hosted event grid for the machine-learning lifecycle.",
        description=(
            "Azure Event Grid semantics (topics, event subscriptions, filters, push and pull "
            "delivery, retries, dead letters, replay) plus an ML workspace that emits Azure ML's "
            "lifecycle events. Management calls take `Authorization: Bearer <token>`; publish and "
            "pull calls also accept topic keys and SAS tokens."
        ),
        lifespan=lifespan,
        # mlgrid reports through its own Prometheus metrics (/metrics) and logs; FastAPI's
        # native OpenTelemetry hooks would look for global providers on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    api_errors.install(app)
    api_openapi.install(app)
    for router in ROUTERS:
        app.include_router(router)
    return app


def serve(settings: Settings) -> None:
    """Run the server in the foreground (``mlgrid serve``).

    The data directory's lock comes first: a second server on the same directory must stop
    before it reads, migrates or cleans up anything (``data_dir_lock``)."""
    import uvicorn

    from mlgrid.connection_limits import uvicorn_options
    from mlgrid.tls import tls_files
    from mlgrid.ui.api import InternalRequestsFilter

    lock = DataDirectoryLock(Path(settings.data_dir))
    lock.acquire()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    logging.getLogger("httpx").addFilter(InternalRequestsFilter())
    # Azure's SDK logs every blob request at INFO (headers included): the blob store's own
    # errors are reported by mlgrid.blobs; the SDK speaks up from WARNING on.
    logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)
    tls = tls_files(settings)
    print(f"mlgrid {__version__} listening on {settings.base_url}", flush=True)
    if tls is not None and tls.generated:
        print(f"  TLS certificate (self-signed; trust it with MLGRID_CA_BUNDLE): {tls.certfile.resolve()}",
              flush=True)
    print(f"  data directory: {Path(settings.data_dir).resolve()}", flush=True)
    print(f"  admin token:    {(Path(settings.data_dir) / 'admin.token').resolve()}", flush=True)
    print(f"  API docs:       {settings.base_url}/docs", flush=True)
    app = create_app(settings)
    app.state.tune_gc = True  # a process of its own: see the end of the lifespan's start-up
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning" if settings.log_level == "info" else settings.log_level,
        loop="uvloop",
        access_log=False,
        timeout_graceful_shutdown=5,
        **uvicorn_options(settings.header_timeout, settings.body_timeout, settings.max_connections),
        ssl_certfile=None if tls is None else str(tls.certfile),
        ssl_keyfile=None if tls is None else str(tls.keyfile),
    )
    lock.release()


def environ() -> dict[str, str]:
    return dict(os.environ)

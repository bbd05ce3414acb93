"""``mlgrid.Client``: the Python SDK's entry point.

One ``Transport`` (httpx, bearer token) shared by the resource groups: ``client.topics`` and
``client.subscriptions`` (broker), ``client.workspaces`` / ``client.workspace(name)`` (the ML
workspace), ``client.events`` (publishing and retained events).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mlgrid.client.http import RetryPolicy, Transport, resolve_connection, resolve_verify

if TYPE_CHECKING:
    from mlgrid.client.broker import EventsClient, SubscriptionsClient, TopicsClient
    from mlgrid.client.workspace import Workspace, WorkspacesClient


class Client:
    """Talks to a running mlgrid server.

    ``Client()`` uses ``MLGRID_URL``/``MLGRID_TOKEN`` or, on the server's machine, the local
    admin token in ``./.mlgrid/admin.token``. An https server is verified against
    ``ca_bundle`` or ``MLGRID_CA_BUNDLE`` (else the system's trust store).

    ``retry``: how requests answered 503/429 or not connected are retried (default: 4 tries
    within 30 s, honouring ``Retry-After``; ``RetryPolicy.none()`` to turn it off). Only
    requests safe to repeat are retried (``mlgrid.client.http``).
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 60.0,
        environ: Mapping[str, str] | None = None,
        ca_bundle: str | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        resolved_url, resolved_token = resolve_connection(url, token, environ)
        self.http = Transport(
            resolved_url, resolved_token, timeout, resolve_verify(ca_bundle, environ),
            retry=retry if retry is not None else RetryPolicy(),
        )

    @property
    def url(self) -> str:
        return self.http.url

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.close()

    @property
    def topics(self) -> TopicsClient:
        from mlgrid.client.broker import TopicsClient

        return TopicsClient(self.http)

    @property
    def subscriptions(self) -> SubscriptionsClient:
        from mlgrid.client.broker import SubscriptionsClient

        return SubscriptionsClient(self.http)

    @property
    def events(self) -> EventsClient:
        from mlgrid.client.broker import EventsClient

        return EventsClient(self.http)

    @property
    def workspaces(self) -> WorkspacesClient:
        from mlgrid.client.workspace import WorkspacesClient

        return WorkspacesClient(self.http)

    def workspace(self, name: str) -> Workspace:
        """A handle on an existing workspace (``client.workspaces.create`` makes one)."""
        return self.workspaces.get(name)

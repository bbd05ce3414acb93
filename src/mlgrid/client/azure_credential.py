"""Azure ``TokenCredential``s for mlgrid principals, for Azure's own SDK clients.

``EventGridPublisherClient(endpoint, MlgridTokenCredential(token))`` (and the consumer, the
management client, any azure-core client) then sends ``Authorization: Bearer <token>``, which
mlgrid accepts on every route. Azure's clients send bearer tokens over https only, so the
server must run with TLS (``mlgrid serve --tls-self-signed`` for development).

The token is the principal's mlgrid token (``PUT /principals/{name}`` shows it once; the
admin's is ``<data-dir>/admin.token``). It does not expire on its own, so ``expires_on`` is
reported an hour ahead and moved on at each call: azure-core then keeps using it, as it does a
fresh Entra ID token. Any scope is accepted, as one mlgrid token serves both planes.

``azure-core`` is needed (it comes with ``azure-eventgrid``); this module is imported only by
code that uses Azure's SDKs.
"""

from __future__ import annotations

import time
from typing import Any

from azure.core.credentials import AccessToken, AccessTokenInfo, TokenRequestOptions

__all__ = ["AsyncMlgridTokenCredential", "MlgridTokenCredential"]

REPORTED_LIFETIME_SECONDS = 3600


class MlgridTokenCredential:
    """A synchronous azure-core ``TokenCredential`` (and ``SupportsTokenInfo``)."""

    def __init__(self, token: str) -> None:
        if not token or not token.strip():
            raise ValueError("token must be an mlgrid bearer token")
        self._token = token.strip()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(token=***)"

    def get_token(
        self, *scopes: str, claims: str | None = None, tenant_id: str | None = None,
        enable_cae: bool = False, **kwargs: Any,
    ) -> AccessToken:
        return AccessToken(self._token, int(time.time()) + REPORTED_LIFETIME_SECONDS)

    def get_token_info(self, *scopes: str, options: TokenRequestOptions | None = None) -> AccessTokenInfo:
        return AccessTokenInfo(self._token, int(time.time()) + REPORTED_LIFETIME_SECONDS,
                               token_type="Bearer")

    def close(self) -> None:
        """Nothing to release (kept for clients that close their credential)."""

    def __enter__(self) -> MlgridTokenCredential:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class AsyncMlgridTokenCredential:
    """The same for ``azure.*.aio`` clients (``AsyncTokenCredential``)."""

    def __init__(self, token: str) -> None:
        self._sync = MlgridTokenCredential(token)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(token=***)"

    async def get_token(
        self, *scopes: str, claims: str | None = None, tenant_id: str | None = None,
        enable_cae: bool = False, **kwargs: Any,
    ) -> AccessToken:
        return self._sync.get_token(*scopes)

    async def get_token_info(
        self, *scopes: str, options: TokenRequestOptions | None = None
    ) -> AccessTokenInfo:
        return self._sync.get_token_info(*scopes)

    async def close(self) -> None:
        """Nothing to release."""

    async def __aenter__(self) -> AsyncMlgridTokenCredential:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

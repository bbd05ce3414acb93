"""Forwarding ``POST .../endpoints/{name}/score`` to a scoring process on loopback.

One aiohttp session for the whole server, with pooled keep-alive connections (the scoring
process keeps idle connections longer than the pool does, so a pooled connection is never
one the process already closed). The body and the query string go through unchanged; the
answer's status, body and content type come back unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp

from mlgrid.domain.error_codes import ErrorCode
from mlgrid.errors import MlgridError

SCORE_TIMEOUT_SECONDS = 60.0
POOL_LIMIT = 512
POOL_LIMIT_PER_PROCESS = 128
KEEP_ALIVE_SECONDS = 30.0


@dataclass
class ScoringUnavailable(MlgridError):
    """The scoring process did not take the request (connection refused or reset) (502)."""

    code: str = ErrorCode.SCORING_PROCESS_UNAVAILABLE
    status: int = 502


@dataclass
class ScoringTimeout(MlgridError):
    """The scoring process did not answer within the timeout (504)."""

    code: str = ErrorCode.SCORING_TIMEOUT
    status: int = 504


@dataclass(frozen=True)
class ProxyAnswer:
    status: int
    body: bytes
    content_type: str


class NotConnected(Exception):
    """The connection to the scoring process could not be opened: the request never left,
    so sending it again (to a restarted process) is safe."""


class ScoringProxy:
    def __init__(self, timeout: float = SCORE_TIMEOUT_SECONDS) -> None:
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """Created on first use, inside the server's event loop."""
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=POOL_LIMIT, limit_per_host=POOL_LIMIT_PER_PROCESS, keepalive_timeout=KEEP_ALIVE_SECONDS
            )
            self._session = aiohttp.ClientSession(
                connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent",)
            )
        return self._session

    async def forward(self, port: int, body: bytes, content_type: str | None, query: str) -> ProxyAnswer:
        url = f"http://127.0.0.1:{port}/score" + (f"?{query}" if query else "")
        headers = {"Content-Type": content_type or "application/json"}
        return await self._post(url, body, headers, "the scoring process")

    async def forward_to(
        self, url: str, body: bytes, content_type: str | None, headers: Mapping[str, str]
    ) -> ProxyAnswer:
        """Forward a scoring request to another node (the one serving the endpoint)."""
        sent = {"Content-Type": content_type or "application/json", **headers}
        return await self._post(url, body, sent, "the serving node")

    async def _post(self, url: str, body: bytes, headers: Mapping[str, str], peer: str) -> ProxyAnswer:
        """One POST with the proxy's timeout; faults become the scoring errors naming ``peer``."""
        try:
            async with self.session.post(
                url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=self.timeout)
            ) as answer:
                payload = await answer.read()
                return ProxyAnswer(
                    answer.status, payload, answer.headers.get("Content-Type", "application/json")
                )
        except aiohttp.ClientConnectorError as exc:
            raise NotConnected(str(exc)) from exc
        except TimeoutError as exc:
            raise ScoringTimeout(f"{peer} did not answer within {self.timeout:g} s") from exc
        except aiohttp.ClientError as exc:
            raise ScoringUnavailable(f"{peer} dropped the request: {exc}") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

"""The API's one JSON response: the exact-number codec of ``events/jsoncodec.py``.

Every JSON body the API sends - a route's returned ``dict``, an explicit response, an error
envelope - is written by ``jsoncodec.dumps``: compact UTF-8, ``Decimal`` digit for digit,
aware datetimes in ISO 8601 with ``Z``. ``server.py`` makes it FastAPI's default response class.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from mlgrid.events.jsoncodec import dumps


class ExactJSONResponse(JSONResponse):
    """``application/json`` rendered by :func:`mlgrid.events.jsoncodec.dumps`."""

    def render(self, content: Any) -> bytes:
        return dumps(content)

"""The publishing floor: an HTTP server that does what any JSON ingest must do, and nothing else.

A uvicorn + FastAPI app (uvloop and httptools, as ``mlgrid serve`` runs) whose publish route
reads the request body, ``json.loads`` it and answers 200, plus ``/readyz``. Publishing through
mlgrid is measured against it with the same clients and bodies in the same run: events per CPU
second of mlgrid's server ÷ the same of this one is the share of the floor mlgrid reaches.

    python benchmarks/echo_server.py PORT
"""

from __future__ import annotations

import json
import sys

import uvicorn
from fastapi import FastAPI, Request, Response

app = FastAPI()


@app.post("/topics/{topic}/api/events")
async def publish(topic: str, request: Request) -> Response:
    json.loads(await request.body())
    return Response(status_code=200)


@app.get("/readyz")
async def ready() -> dict[str, str]:
    return {"status": "ready"}


if __name__ == "__main__":
    uvicorn.run(
        app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", loop="uvloop",
        http="httptools", access_log=False,
    )

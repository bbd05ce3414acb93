"""How much does scoring through the server cost, compared with calling the scoring process?

Starts a real ``mlgrid serve`` process (SQLite in a temporary data directory), trains a small
scikit-learn LogisticRegression on iris in this process, registers it, deploys it to a Local
endpoint and then, in one run, measures two paths with the same aiohttp clients and body:

* **proxy** — ``POST /workspaces/{ws}/endpoints/{name}/score`` on the server (bearer token,
  RBAC check, proxy hop over a pooled loopback connection);
* **direct** — ``POST {scoringUri}``, the scoring process itself.

For each path: requests/s at ``--concurrency`` clients, and the p50/p99 latency of single
requests sent one at a time (concurrency 1). The ratios proxy ÷ direct are the proxy's
overhead. The two paths alternate over ``--rounds`` rounds so a slow moment of the machine
hits both. Every measurement is bounded in requests (``--requests``) and in time
(``--seconds``). Client, server and scoring process share the machine.

The model is trained before the server starts, and deployment (whose steps wait seconds
apart) uses connections that are closed after each request: a keep-alive connection left idle
across a slow step is closed by the server, and the next request on it fails. The measured
paths use a pool of their own. Any failure ends the run with a non-zero status;
``--report FILE`` appends the figures as JSON lines for ``benchmarks/run.py``.

    .venv/bin/python benchmarks/scoring.py                      # quick
    .venv/bin/python benchmarks/scoring.py --full
    .venv/bin/python benchmarks/scoring.py --requests 2000 --concurrency 16 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pickle
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from _common import Server, bounded_load, connector, fail, percentile, report

BODY = json.dumps({"data": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}).encode()
EXPECTED = {"predictions": [0, 2]}


def _model_bytes() -> bytes:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    features, target = load_iris(return_X_y=True)
    return pickle.dumps(LogisticRegression(max_iter=500).fit(features, target))


async def deploy(
    session: aiohttp.ClientSession, server: Server, model: bytes
) -> tuple[str, str, dict[str, str]]:
    """Workspace, model and endpoint; returns (proxy URL, scoring URI, auth headers)."""
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    base = f"{server.url}/workspaces/bench"
    async with session.put(base, headers=headers) as answer:
        assert answer.status in (200, 201), await answer.text()
    form = aiohttp.FormData()
    form.add_field("file", model, filename="model.pkl")
    async with session.post(f"{base}/models/iris/versions", data=form, headers=headers) as answer:
        assert answer.status == 201, await answer.text()
    body = {"properties": {"computeType": "Local", "models": ["iris:1"]}}
    async with session.put(f"{base}/endpoints/iris-api", json=body, headers=headers) as answer:
        assert answer.status == 202, await answer.text()
    for _ in range(1200):  # at most two minutes
        async with session.get(f"{base}/endpoints/iris-api", headers=headers) as answer:
            props = (await answer.json())["properties"]
        if props["state"] == "Healthy":
            return f"{base}/endpoints/iris-api/score", props["scoringUri"], headers
        if props["state"] == "Failed":
            raise RuntimeError(props["error"])
        await asyncio.sleep(0.1)
    raise RuntimeError("the endpoint did not become Healthy")


@dataclass
class Figures:
    rates: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)


async def _post(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> None:
    async with session.post(url, data=BODY, headers=headers) as answer:
        payload = await answer.read()
        if answer.status != 200 or json.loads(payload) != EXPECTED:
            raise RuntimeError(f"unexpected answer {answer.status}: {payload[:200]!r}")


async def throughput(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], requests: int, concurrency: int,
    seconds: float,
) -> float:
    """Requests/s with ``concurrency`` clients; stops at ``requests`` or ``seconds``."""

    async def send() -> bool:
        await _post(session, url, headers)
        return True

    sent, _, elapsed = await bounded_load(concurrency, requests, seconds, send)
    return sent / elapsed


async def latency(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], requests: int, seconds: float
) -> list[float]:
    """Seconds per request, one at a time; stops at ``requests`` or ``seconds``."""
    found: list[float] = []
    deadline = time.perf_counter() + seconds
    for _ in range(requests):
        if time.perf_counter() > deadline:
            break
        started = time.perf_counter()
        await _post(session, url, headers)
        found.append(time.perf_counter() - started)
    return found


async def main(args: argparse.Namespace) -> None:
    model = _model_bytes()  # before any connection exists: training blocks the event loop
    data_dir = Path(tempfile.mkdtemp(prefix="mlgrid-bench-scoring-"))
    server = Server(data_dir, ui=True)
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as setup:
            await server.wait_ready(setup, timeout=60.0)
            proxy_url, direct_url, auth = await deploy(setup, server, model)
        async with aiohttp.ClientSession(connector=connector(args.concurrency * 2)) as session:
            paths = {
                "proxy": (proxy_url, {**auth, "Content-Type": "application/json"}),
                "direct": (direct_url, {"Content-Type": "application/json"}),
            }
            for url, headers in paths.values():  # warm-up: connections, caches, first predictions
                await throughput(session, url, headers, 200, args.concurrency, 5.0)
            figures = {name: Figures() for name in paths}
            for _ in range(args.rounds):
                for name, (url, headers) in paths.items():
                    figures[name].rates.append(
                        await throughput(session, url, headers, args.requests, args.concurrency, args.seconds)
                    )
                    figures[name].latencies += await latency(
                        session, url, headers, max(1, args.requests // 4), args.seconds
                    )
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)

    print(f"scoring a 2-row iris LogisticRegression; {args.rounds} rounds, concurrency {args.concurrency}")
    print(f"{'path':<8}{'requests/s':>12}{'p50 ms':>10}{'p99 ms':>10}{'samples':>9}")
    summary: dict[str, tuple[float, float, float]] = {}
    for name, found in figures.items():
        rate = statistics.median(found.rates)
        p50 = percentile(found.latencies, 0.50) * 1000
        p99 = percentile(found.latencies, 0.99) * 1000
        summary[name] = (rate, p50, p99)
        print(f"{name:<8}{rate:>12.0f}{p50:>10.2f}{p99:>10.2f}{len(found.latencies):>9}")
    proxy, direct = summary["proxy"], summary["direct"]
    print(
        f"proxy overhead: throughput {proxy[0] / direct[0]:.2f}x of direct; "
        f"latency p50 {proxy[1] / direct[1]:.2f}x (+{proxy[1] - direct[1]:.2f} ms), "
        f"p99 {proxy[2] / direct[2]:.2f}x"
    )
    # Reported as costs (time per request), so that the ratio reads "x times direct".
    report(args.report, "scoring through mlgrid: ms per request at concurrency", 1000 / proxy[0],
           1000 / direct[0], "direct scoring", goal="<= 1.3x")
    report(args.report, "scoring through mlgrid: p50 ms, one at a time", proxy[1], direct[1],
           "direct scoring", goal="<= 1.3x")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--full", action="store_true", help="longer measurements (8 s, 2 rounds)")
    parser.add_argument("--requests", type=int, default=2000, help="requests per throughput measurement")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent clients for throughput")
    parser.add_argument("--seconds", type=float, default=None, help="time limit of each measurement (3; 8)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of proxy and direct (1; 2)")
    parser.add_argument("--report", default=None, help="append figures as JSON lines to this file")
    args = parser.parse_args()
    args.seconds = args.seconds or (8.0 if args.full else 3.0)
    args.rounds = args.rounds or (2 if args.full else 1)
    return args


if __name__ == "__main__":
    try:
        asyncio.run(main(_arguments()))
    except (RuntimeError, AssertionError, aiohttp.ClientError, OSError) as exc:
        fail(f"{type(exc).__name__}: {exc}")

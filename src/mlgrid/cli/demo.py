"""``mlgrid demo``: the whole ML lifecycle against a running server, in about a minute.

It creates a workspace and subscribes the web UI's queue viewer to it (a ``Queue``
subscription, ``ui-viewer``, read at ``/ui/viewer/systemTopics/<ws>/ui-viewer``), then does
what produces each of the five Azure ML events:

1. trains a scikit-learn classifier on a dataset bundled with scikit-learn (no download) as
   a run, logging a learning curve → **RunCompleted**; a second trial with an invalid
   hyper-parameter fails → **RunStatusChanged**;
2. registers the trained model from the run's artifact → **ModelRegistered**;
3. deploys it to a ``Local`` endpoint and scores a few rows → **ModelDeployed**;
4. registers a baseline and a 14-day target dataset whose second week drifts, creates a drift
   monitor and backfills it day by day → **DatasetDriftDetected** for the drifted days.

Finally it waits until the five events are retained on the workspace's system topic and
prints where to see them in the UI. A step whose REST API this server does not serve (a
"no such route" answer) is skipped with a message instead of failing the demo.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.panel import Panel
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from mlgrid.cli.command import open_client
from mlgrid.client.client import Client
from mlgrid.client.http import ApiError
from mlgrid.client.workspace import Workspace

RUN_COMPLETED = "Microsoft.MachineLearningServices.RunCompleted"
RUN_STATUS_CHANGED = "Microsoft.MachineLearningServices.RunStatusChanged"
MODEL_REGISTERED = "Microsoft.MachineLearningServices.ModelRegistered"
MODEL_DEPLOYED = "Microsoft.MachineLearningServices.ModelDeployed"
DATASET_DRIFT_DETECTED = "Microsoft.MachineLearningServices.DatasetDriftDetected"
FIVE_EVENTS = (RUN_COMPLETED, RUN_STATUS_CHANGED, MODEL_REGISTERED, MODEL_DEPLOYED, DATASET_DRIFT_DETECTED)

VIEWER_SUBSCRIPTION = "ui-viewer"
EXPERIMENT = "breast-cancer"
MODEL_NAME = "breast-cancer-classifier"
ENDPOINT_NAME = "breast-cancer-scoring"
MONITOR_NAME = "breast-cancer-drift"
FEATURES = ("mean radius", "mean texture", "mean perimeter", "mean area", "mean smoothness", "mean concavity")
DRIFT_DAYS = 14
DRIFT_FROM_DAY = 8
ROWS_PER_DAY = 80
DRIFT_THRESHOLD = 0.3
DEPLOY_TIMEOUT_SECONDS = 180.0
MISSING_ROUTE = frozenset({"no such route", "method not allowed on this route"})

T = TypeVar("T")


class StepSkipped(Exception):
    """The server has no route for this step's API."""


def _missing_route(exc: ApiError) -> bool:
    return exc.status in (404, 405) and exc.message in MISSING_ROUTE


@dataclass
class DemoReport:
    """What the demo did: resources to look at, events it expects, steps it skipped."""

    expected: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)


class Demo:
    def __init__(self, client: Client, console: Console, workspace: str, wait_seconds: float) -> None:
        self.client = client
        self.console = console
        self.workspace_name = workspace
        self.wait_seconds = wait_seconds
        self.report = DemoReport()
        self.started = datetime.now(UTC) - timedelta(seconds=5)
        self.http = client.http
        self.ws: Workspace | None = None
        self.run_id = ""
        self.model_test_rows: list[list[float]] = []

    # -- output helpers ------------------------------------------------------------------------

    def done(self, message: str) -> None:
        self.console.print(f"[green]✓[/green] {message}")

    def skip(self, step: str, event_type: str | None, why: str) -> None:
        self.report.skipped.append(step)
        suffix = f" (no {event_type.rsplit('.', 1)[-1]} event)" if event_type else ""
        self.console.print(f"[yellow]–[/yellow] {step} skipped: {why}{suffix}")

    def spinner(self) -> Progress:
        return Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), console=self.console, transient=True,
        )

    def optional(self, step: str, event_type: str | None, action: Callable[[], T]) -> T | None:
        """Run a step whose API may not exist on this server."""
        try:
            return action()
        except StepSkipped as exc:
            self.skip(step, event_type, str(exc))
        except ApiError as exc:
            if not _missing_route(exc):
                raise
            self.skip(step, event_type, "this server does not serve that API yet")
        return None

    def call(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        response = self.http.request(method, path, json=body, **kwargs)
        return response.json() if response.content else None

    # -- the steps -----------------------------------------------------------------------------

    def run(self) -> DemoReport:
        base = self.client.url
        self.console.print(Panel.fit(
            f"mlgrid demo against [bold]{base}[/bold]\nworkspace [bold]{self.workspace_name}[/bold]",
            border_style="blue",
        ))
        self.create_workspace()
        self.subscribe_viewer()
        model = self.train()
        self.failed_trial()
        version = self.register(model)
        if version is not None:
            self.optional("Deployment", MODEL_DEPLOYED, lambda: self.deploy(version))
        self.optional("Drift monitor", DATASET_DRIFT_DETECTED, self.drift)
        self.wait_for_events()
        return self.report

    def create_workspace(self) -> None:
        self.ws = self.client.workspaces.create(self.workspace_name)
        self.done(f"workspace [bold]{self.ws.name}[/bold] with its system topic")
        self.report.links.append(("Live events of this workspace", f"/?topic={self.ws.name.lower()}"))
        self.report.links.append(("Workspace", f"/ui/workspaces/{self.ws.name}"))

    def subscribe_viewer(self) -> None:
        assert self.ws is not None
        self.ws.create_subscription(
            VIEWER_SUBSCRIPTION, endpoint_type="Queue", included_event_types=list(FIVE_EVENTS)
        )
        path = f"/ui/viewer/systemTopics/{self.ws.name}/{VIEWER_SUBSCRIPTION}"
        self.report.links.insert(0, ("Queue viewer (the demo's subscription)", path))
        self.done(f"subscription [bold]{VIEWER_SUBSCRIPTION}[/bold] (Queue) to the five ML events, "
                  f"read by the UI's viewer")

    def train(self) -> Any:
        """Fit a scaled logistic regression, logging accuracy on a learning curve → RunCompleted."""
        assert self.ws is not None
        import numpy as np
        from sklearn.datasets import load_breast_cancer
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import train_test_split
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        data = load_breast_cancer(as_frame=True)
        frame = data.frame[list(FEATURES)]
        x_train, x_test, y_train, y_test = train_test_split(
            frame, data.target, test_size=0.3, random_state=7, stratify=data.target
        )
        run = self.ws.start_run(
            EXPERIMENT, run_type="training", tags={"framework": "scikit-learn", "C": 1.0},
            properties={"dataset": "sklearn.datasets.load_breast_cancer"},
        )
        steps = 8
        model: Any = None
        with self.spinner() as progress:
            task = progress.add_task(f"training run {run.id}", total=steps)
            for step in range(1, steps + 1):
                rows = max(20, int(len(x_train) * step / steps))
                model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=500))
                model.fit(x_train.iloc[:rows], y_train.iloc[:rows])
                accuracy = float(np.mean(model.predict(x_test) == y_test))
                run.log_metrics({"accuracy": round(accuracy, 6), "training_rows": rows}, step=step)
                progress.advance(task)
        run.upload_bytes("outputs/model.pkl", pickle.dumps(model))
        run.complete()
        self.model_test_rows = x_test.head(3).to_numpy().tolist()
        self.run_id = run.id
        self.report.expected.append(RUN_COMPLETED)
        self.done(f"run [bold]{run.id}[/bold] completed: accuracy {accuracy:.3f} on held-out rows")
        return model

    def failed_trial(self) -> None:
        """A trial with C=-1: scikit-learn refuses it, the run fails → RunStatusChanged."""
        assert self.ws is not None
        from sklearn.linear_model import LogisticRegression

        run = self.ws.start_run(EXPERIMENT, run_type="training", tags={"framework": "scikit-learn", "C": -1})
        try:
            LogisticRegression(C=-1.0).fit([[0.0], [1.0]], [0, 1])
        except ValueError as exc:
            run.fail(f"{type(exc).__name__}: {exc}")
        else:  # pragma: no cover - scikit-learn always refuses a negative C
            run.complete()
        self.report.expected.append(RUN_STATUS_CHANGED)
        self.done(f"run [bold]{run.id}[/bold] failed on purpose (C=-1 is invalid)")

    def register(self, model: Any) -> str | None:
        assert self.ws is not None
        version = self.ws.register_model(
            MODEL_NAME, run_id=self.run_id, artifact_path="outputs/model.pkl",
            tags={"framework": "scikit-learn"}, properties={"accuracy-metric": "accuracy"},
            description="Logistic regression on six breast-cancer features",
        )
        self.report.expected.append(MODEL_REGISTERED)
        self.done(f"model [bold]{version.name}:{version.version}[/bold] registered from the run")
        return str(version.version)

    def deploy(self, version: str) -> None:
        """Deploy to a Local endpoint, wait until it is Healthy, score three rows → ModelDeployed."""
        assert self.ws is not None
        path = f"{self.ws.path}/endpoints/{ENDPOINT_NAME}"
        body = {"properties": {"computeType": "Local", "models": [f"{MODEL_NAME}:{version}"]}}
        self.call("PUT", path, body)
        deadline = time.monotonic() + DEPLOY_TIMEOUT_SECONDS
        state = "Deploying"
        endpoint: dict[str, Any] = {}
        with self.spinner() as progress:
            task = progress.add_task(f"deploying {ENDPOINT_NAME}", total=None)
            while state not in ("Healthy", "Failed"):
                if time.monotonic() > deadline:
                    raise StepSkipped(f"the endpoint is still {state} after {DEPLOY_TIMEOUT_SECONDS:.0f} s")
                time.sleep(0.5)
                endpoint = self.call("GET", path) or {}
                state = str(endpoint.get("properties", {}).get("state", state))
                progress.update(task, description=f"deploying {ENDPOINT_NAME}: {state}")
        if state == "Failed":
            error = endpoint.get("properties", {}).get("error")
            raise StepSkipped(f"the deployment failed: {error}")
        answer = self.call("POST", f"{path}/score", {"data": self.model_test_rows})
        self.report.expected.append(MODEL_DEPLOYED)
        link = f"/ui/workspaces/{self.ws.name}/endpoints/{ENDPOINT_NAME}"
        self.report.links.append(("Endpoint (scoring form)", link))
        self.done(f"endpoint [bold]{ENDPOINT_NAME}[/bold] is Healthy; scored 3 rows → {answer}")

    def drift(self) -> None:
        """Baseline and a target whose second week drifts; backfill a daily monitor."""
        assert self.ws is not None
        ws = self.ws
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        first_day = today - timedelta(days=DRIFT_DAYS)
        with TemporaryDirectory(prefix="mlgrid-demo-") as tmp:
            baseline_csv, target_csv = drift_datasets(Path(tmp), first_day)
            baseline = ws.register_dataset("demo-baseline", baseline_csv, description="training distribution")
            target = ws.register_dataset(
                "demo-target", target_csv, timestamp_column="timestamp",
                description=f"{DRIFT_DAYS} days of scoring inputs; drift from day {DRIFT_FROM_DAY + 1}",
            )
        self.done(f"datasets demo-baseline v{baseline.version} and demo-target v{target.version} registered")
        path = f"{ws.path}/datadrifts/{MONITOR_NAME}"
        try:  # a fresh monitor each time, so its windows are judged (and announced) again
            self.http.request("DELETE", path)
        except ApiError as exc:
            if exc.status != 404 or _missing_route(exc):
                raise
        monitor = self.call("PUT", path, {"properties": {
            "baselineDatasetId": baseline.id, "targetDatasetId": target.id, "features": None,
            "frequency": "Day", "latency": 0, "threshold": DRIFT_THRESHOLD, "scheduleEnabled": False,
        }})
        rows: list[dict[str, Any]] = []
        with self.spinner() as progress:
            task = progress.add_task("backfilling daily windows", total=DRIFT_DAYS)
            for day in range(DRIFT_DAYS):
                start = first_day + timedelta(days=day)
                answer = self.call("POST", f"{path}/runs", {
                    "start": start.isoformat(), "end": (start + timedelta(days=1)).isoformat(),
                })
                rows.extend((answer or {}).get("value", []))
                progress.advance(task)
        rate = (monitor or {}).get("properties", {}).get("falseAlarmRate")
        rule = f"falseAlarmRate {rate}" if rate is not None else f"threshold {DRIFT_THRESHOLD}"
        table = Table(title=f"drift monitor {MONITOR_NAME} ({rule})", show_lines=False)
        table.add_column("window")
        table.add_column("moved")
        table.add_column("p-value", justify="right")
        table.add_column("coefficient", justify="right")
        table.add_column("event")
        drifted = 0
        for row in rows:
            coefficient = row.get("driftCoefficient")
            published = bool(row.get("eventPublished"))
            drifted += published
            moved = [str(f.get("feature")) for f in row.get("features") or [] if f.get("drifted")]
            p_value = row.get("pValue")
            table.add_row(
                str(row.get("startTime", ""))[:10],
                ", ".join(moved[:3]),
                "" if p_value is None else f"{float(p_value):.3f}",
                "—" if coefficient is None else f"{float(coefficient):.3f}",
                "[red]DatasetDriftDetected[/red]" if published else "",
            )
        self.console.print(table)
        if drifted:
            self.report.expected.append(DATASET_DRIFT_DETECTED)
        self.report.links.append(("Drift chart", f"/ui/workspaces/{ws.name}/datadrifts/{MONITOR_NAME}"))
        self.done(f"drift monitor [bold]{MONITOR_NAME}[/bold] ({monitor.get('id', '')}) backfilled: "
                  f"{drifted} of {len(rows)} windows drifted")

    def wait_for_events(self) -> None:
        """Poll the system topic's retained events until every expected type is there."""
        assert self.ws is not None
        expected = list(dict.fromkeys(self.report.expected))
        seen: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + self.wait_seconds
        with self.spinner() as progress:
            task = progress.add_task("waiting for the events on the system topic", total=len(expected))
            while True:
                for event in self.ws.events(since=self.started.isoformat()):
                    kind = str(event.get("eventType", ""))
                    if kind in expected:
                        seen[kind] = event
                progress.update(task, completed=len(seen))
                if len(seen) == len(expected) or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        table = Table(title=f"events on /systemTopics/{self.ws.name}")
        table.add_column("event type")
        table.add_column("subject")
        table.add_column("time")
        for kind in FIVE_EVENTS:
            short = kind.rsplit(".", 1)[-1]
            found = seen.get(kind)
            if found is not None:
                table.add_row(short, str(found.get("subject")), str(found.get("eventTime")))
            else:
                table.add_row(f"[yellow]{short}[/yellow]", "[yellow]not produced[/yellow]", "")
        self.console.print(table)
        missing = [kind for kind in expected if kind not in seen]
        if missing:
            raise typer.Exit(self._finish(missing))
        self._finish([])

    def _finish(self, missing: list[str]) -> int:
        base = self.client.url
        lines = [f"[bold]{label}[/bold]: {base}{path}" for label, path in self.report.links]
        lines.append(f"Sign in at {base}/ui/login with a token (e.g. <data-dir>/admin.token)")
        if self.report.skipped:
            lines.append(f"[yellow]Skipped[/yellow]: {', '.join(self.report.skipped)}")
        if missing:
            lines.append(f"[red]Not seen within {self.wait_seconds:.0f} s[/red]: {', '.join(missing)}")
        self.console.print(Panel("\n".join(lines), title="Open the web UI", border_style="green"))
        return 1 if missing else 0


def drift_datasets(directory: Path, first_day: datetime) -> tuple[Path, Path]:
    """A baseline CSV and a target CSV with a ``timestamp`` column over ``DRIFT_DAYS`` days.

    Rows are resampled from the breast-cancer features with a little noise; from day
    ``DRIFT_FROM_DAY`` on the target's size features grow by 35 % (a new scanner's calibration),
    which a classifier tells apart from the baseline easily.
    """
    import numpy as np
    import pandas as pd
    from sklearn.datasets import load_breast_cancer

    rng = np.random.default_rng(11)
    features = load_breast_cancer(as_frame=True).frame[list(FEATURES)]
    features.columns = [c.replace(" ", "_") for c in features.columns]

    def sample(count: int) -> pd.DataFrame:
        picked = features.iloc[rng.integers(0, len(features), count)].reset_index(drop=True)
        noise = rng.normal(0.0, 0.03, picked.shape) * picked.std().to_numpy()
        return picked + noise

    baseline = sample(400)
    days = []
    for day in range(DRIFT_DAYS):
        frame = sample(ROWS_PER_DAY)
        if day >= DRIFT_FROM_DAY:
            for column in ("mean_radius", "mean_perimeter", "mean_area"):
                frame[column] = frame[column] * 1.35
        offsets = np.sort(rng.uniform(0, 86_400 - 1, ROWS_PER_DAY))
        frame.insert(0, "timestamp", [
            (first_day + timedelta(days=day, seconds=float(s))).isoformat() for s in offsets
        ])
        days.append(frame)
    target = pd.concat(days, ignore_index=True)
    baseline_path, target_path = directory / "baseline.csv", directory / "target.csv"
    baseline.round(5).to_csv(baseline_path, index=False)
    target.round(5).to_csv(target_path, index=False)
    return baseline_path, target_path


def demo(
    ctx: typer.Context,
    workspace: str = typer.Option(
        "mlgrid-demo", "--workspace", "-w", help="Workspace to create (or reuse)."
    ),
    wait: float = typer.Option(
        60.0, "--wait", min=1.0, help="Seconds to wait for the events to be retained."
    ),
) -> None:
    """Run the ML lifecycle demo against a running server; every one of the five events shows in the UI.

    Creates a workspace and a `Queue` subscription (`ui-viewer`) that the web UI's queue viewer
    reads, trains a scikit-learn model as a run (and a trial that fails), registers and deploys
    it, backfills a drift monitor over generated data with injected drift, then waits until
    RunCompleted, RunStatusChanged, ModelRegistered, ModelDeployed and DatasetDriftDetected
    are on the workspace's system topic and prints the UI links. Steps whose API the server
    does not serve are skipped with a message. Exits 1 when an expected event did not appear.

    Example: `mlgrid demo` (with `mlgrid serve` running), or `mlgrid demo -w my-demo --url http://host:8780`
    """
    Demo(open_client(ctx), Console(), workspace, wait).run()

"""Data-drift monitors in the Python SDK: ``DriftMonitor``, ``DriftRun`` and ``to_dataframe``.

::

    monitor = ws.create_drift_monitor("sales-drift", baseline.id, target.id, frequency="Day")
    runs = monitor.backfill("2024-01-01", "2024-02-01")     # one DriftRun per complete day
    drifted = [r for r in runs if r.event_published]
    frame = to_dataframe(monitor.runs())                     # one row per window

``backfill`` splits a long range into requests of ``windows_per_request`` windows (the server
takes at most 400 per request) and reports progress after each; windows analysed before are
returned as stored, and publish no second event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from mlgrid.client.http import Transport, if_match_header
from mlgrid.workspace.drift.windows import complete_windows

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DriftMonitor", "DriftRun", "to_dataframe"]

Progress = Callable[[int, int], None]
"""``progress(windows_done, windows_total)``, called after each backfill request."""

MAX_WINDOWS_PER_REQUEST = 400


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else None


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def parse_moment(value: str | datetime | date) -> datetime:
    """A datetime from a string, date or datetime; no offset means UTC (as the server reads it)."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    else:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _monitor_path(workspace_path: str, name: str) -> str:
    return f"{workspace_path}/datadrifts/{quote(name, safe='')}"


@dataclass(frozen=True)
class DriftRun:
    """One analysed window. ``drift_coefficient`` is None when the window could not be scored
    (``reason`` says why, e.g. fewer than 50 rows)."""

    run_id: str
    start_time: datetime
    end_time: datetime
    drift_coefficient: float | None
    threshold: float
    feature_metrics: dict[str, dict[str, Any]]
    feature_contributions: dict[str, float]
    row_counts: dict[str, int]
    event_published: bool
    reason: str | None
    raw: dict[str, Any] = field(repr=False)
    p_value: float | None = None
    false_alarm_rate: float | None = None
    auroc: float | None = None
    features: list[dict[str, Any]] = field(default_factory=list)
    """Every analysed feature's test, ranked by evidence (most first)."""
    explanation: str | None = None

    @property
    def drifted(self) -> bool:
        """The monitor's decision: the calibrated p-value at most the false-alarm rate, or,
        for a monitor deciding by threshold alone, the coefficient at least the threshold."""
        if self.false_alarm_rate is not None:
            return self.p_value is not None and self.p_value <= self.false_alarm_rate
        return self.drift_coefficient is not None and self.drift_coefficient >= self.threshold

    @property
    def drifted_features(self) -> list[str]:
        """Names of the features whose own test is significant, most evidence first."""
        return [str(t["feature"]) for t in self.features if t.get("drifted")]

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> DriftRun:
        start = _time(body["startTime"])
        end = _time(body["endTime"])
        assert start is not None and end is not None
        coefficient = body.get("driftCoefficient")
        return cls(
            run_id=body["runId"],
            start_time=start,
            end_time=end,
            drift_coefficient=None if coefficient is None else float(coefficient),
            threshold=float(body.get("threshold", 0.2)),
            feature_metrics=dict(body.get("featureMetrics") or {}),
            feature_contributions={k: float(v) for k, v in (body.get("featureContributions") or {}).items()},
            row_counts={k: int(v) for k, v in (body.get("rowCounts") or {}).items()},
            event_published=bool(body.get("eventPublished")),
            reason=body.get("reason"),
            raw=dict(body),
            p_value=_float(body.get("pValue")),
            false_alarm_rate=_float(body.get("falseAlarmRate")),
            auroc=_float(body.get("auroc")),
            features=list(body.get("features") or []),
            explanation=body.get("explanation"),
        )


class DriftMonitor:
    """A handle on one data-drift monitor of a workspace."""

    def __init__(self, http: Transport, workspace_path: str, body: Mapping[str, Any]) -> None:
        self.http = http
        self.workspace_path = workspace_path
        self.raw = dict(body)

    # --- properties ------------------------------------------------------------------------

    @property
    def id(self) -> str:
        """The monitor's UUID: ``DataDriftId`` in its DatasetDriftDetected events."""
        return str(self.raw["id"])

    @property
    def name(self) -> str:
        return str(self.raw["name"])

    @property
    def etag(self) -> str:
        return str(self.raw.get("etag", ""))

    @property
    def properties(self) -> dict[str, Any]:
        return dict(self.raw.get("properties") or {})

    @property
    def baseline_dataset_id(self) -> str:
        return str(self.properties["baselineDatasetId"])

    @property
    def target_dataset_id(self) -> str:
        return str(self.properties["targetDatasetId"])

    @property
    def features(self) -> list[str] | None:
        features = self.properties.get("features")
        return None if features is None else list(features)

    @property
    def frequency(self) -> str:
        return str(self.properties.get("frequency", "Day"))

    @property
    def latency(self) -> float:
        return float(self.properties.get("latency", 0))

    @property
    def threshold(self) -> float:
        return float(self.properties.get("threshold", 0.2))

    @property
    def schedule_enabled(self) -> bool:
        return bool(self.properties.get("scheduleEnabled"))

    @property
    def path(self) -> str:
        return _monitor_path(self.workspace_path, self.name)

    def __repr__(self) -> str:
        return f"DriftMonitor({self.name!r}, frequency={self.frequency!r}, threshold={self.threshold})"

    # --- operations ------------------------------------------------------------------------

    def refresh(self) -> DriftMonitor:
        self.raw = dict(self.http.call("GET", self.path))
        return self

    def update(self, *, if_match: str | None = None, **changes: Any) -> DriftMonitor:
        """Replace the definition with this one's, changed by ``changes`` (API names or the
        SDK's: ``threshold=0.3``, ``schedule_enabled=True``, ``features=["a", "b"]``)."""
        properties = {k: v for k, v in self.properties.items() if k in _WRITABLE}
        for key, value in changes.items():
            properties[_API_NAMES.get(key, key)] = value
        headers = if_match_header(if_match)
        self.raw = dict(self.http.call("PUT", self.path, {"properties": properties}, headers=headers))
        return self

    def delete(self) -> None:
        """Delete the monitor and its runs (events already published stay published)."""
        self.http.request("DELETE", self.path)

    def backfill(
        self,
        start: str | datetime | date,
        end: str | datetime | date,
        *,
        progress: Progress | None = None,
        windows_per_request: int = 31,
    ) -> list[DriftRun]:
        """Analyse every complete window in ``[start, end)`` and return their runs in time
        order (no offset means UTC). Long ranges go out as several requests of at most
        ``windows_per_request`` windows; ``progress(done, total)`` follows them."""
        if not 1 <= windows_per_request <= MAX_WINDOWS_PER_REQUEST:
            raise ValueError(f"windows_per_request must be 1 to {MAX_WINDOWS_PER_REQUEST}")
        begin, finish = parse_moment(start), parse_moment(end)
        if begin >= finish:
            raise ValueError("end must be later than start")
        windows = complete_windows(begin, finish, self.frequency)
        runs: list[DriftRun] = []
        if progress is not None:
            progress(0, len(windows))
        for offset in range(0, len(windows), windows_per_request):
            chunk = windows[offset:offset + windows_per_request]
            body = {"start": chunk[0][0].isoformat(), "end": chunk[-1][1].isoformat()}
            answer = self.http.call("POST", f"{self.path}/runs", body, timeout=600.0)
            runs.extend(DriftRun.from_json(r) for r in answer["value"])
            if progress is not None:
                progress(offset + len(chunk), len(windows))
        return runs

    def runs(
        self, start: str | datetime | date | None = None, end: str | datetime | date | None = None
    ) -> list[DriftRun]:
        """Past runs in window order, optionally only windows inside ``[start, end)``."""
        params = {
            "start": None if start is None else parse_moment(start).isoformat(),
            "end": None if end is None else parse_moment(end).isoformat(),
        }
        return [DriftRun.from_json(r) for r in self.http.pages(f"{self.path}/runs", params)]


_API_NAMES = {
    "baseline_dataset_id": "baselineDatasetId",
    "target_dataset_id": "targetDatasetId",
    "schedule_enabled": "scheduleEnabled",
    "false_alarm_rate": "falseAlarmRate",
}
_WRITABLE = {
    "baselineDatasetId",
    "targetDatasetId",
    "features",
    "frequency",
    "latency",
    "threshold",
    "falseAlarmRate",
    "scheduleEnabled",
}


def monitor_body(
    baseline_dataset_id: str,
    target_dataset_id: str,
    features: Sequence[str] | None,
    frequency: str,
    latency: float,
    threshold: float,
    schedule_enabled: bool,
    false_alarm_rate: float | None = None,
) -> dict[str, Any]:
    return {
        "properties": {
            "baselineDatasetId": baseline_dataset_id,
            "targetDatasetId": target_dataset_id,
            "features": None if features is None else list(features),
            "frequency": frequency,
            "latency": latency,
            "threshold": threshold,
            "falseAlarmRate": false_alarm_rate,
            "scheduleEnabled": schedule_enabled,
        }
    }


def create_monitor(http: Transport, workspace_path: str, name: str, body: Mapping[str, Any]) -> DriftMonitor:
    return DriftMonitor(http, workspace_path, http.call("PUT", _monitor_path(workspace_path, name), body))


def get_monitor(http: Transport, workspace_path: str, name: str) -> DriftMonitor:
    return DriftMonitor(http, workspace_path, http.call("GET", _monitor_path(workspace_path, name)))


def list_monitors(http: Transport, workspace_path: str) -> list[DriftMonitor]:
    body = http.call("GET", f"{workspace_path}/datadrifts")
    return [DriftMonitor(http, workspace_path, m) for m in body.get("value", [])]


def to_dataframe(runs: Iterable[DriftRun]) -> pd.DataFrame:
    """One row per run: window, coefficient, event flag, row counts, and one
    ``contribution_<feature>`` column per feature (needs pandas)."""
    import pandas as pd

    records = []
    for run in runs:
        record: dict[str, Any] = {
            "run_id": run.run_id,
            "start_time": pd.Timestamp(run.start_time),
            "end_time": pd.Timestamp(run.end_time),
            "drift_coefficient": run.drift_coefficient,
            "threshold": run.threshold,
            "drifted": run.drifted,
            "event_published": run.event_published,
            "baseline_rows": run.row_counts.get("baseline"),
            "target_rows": run.row_counts.get("target"),
            "reason": run.reason,
        }
        for feature, share in run.feature_contributions.items():
            record[f"contribution_{feature}"] = share
        records.append(record)
    columns = [
        "run_id", "start_time", "end_time", "drift_coefficient", "threshold", "drifted",
        "event_published", "baseline_rows", "target_rows", "reason",
    ]
    frame = pd.DataFrame.from_records(records)
    if frame.empty:
        return pd.DataFrame(columns=columns)
    return frame.sort_values("start_time", kind="stable").reset_index(drop=True)

"""Watch a dataset for drift: a month of daily windows, a backfill, the events it publishes.

Against a running server (``mlgrid serve``; the SDK reads ``MLGRID_URL`` and ``MLGRID_TOKEN``,
or uses the local admin token in ``./.mlgrid/admin.token``)::

    python examples/drift_monitor.py --workspace demo-ws --plot drift.svg

What happens:

1. the workspace is created if it does not exist (that needs the admin token);
2. two synthetic datasets are registered: ``sales-baseline`` (2,000 rows) and ``sales``, the
   target, with a ``timestamp`` column and 500 rows per day of January 2024; on 8, 9 and 20
   January the ``amount`` of every sale is about 80 % higher;
3. a ``Queue`` subscription ``drift-alerts`` is created on the workspace's system topic for
   ``Microsoft.MachineLearningServices.DatasetDriftDetected`` events;
4. the monitor ``sales-drift`` (daily windows, the calibrated decision: a p-value at most
   ``falseAlarmRate`` 0.05, so about one calm day in twenty alarms) is created afresh and
   backfilled over January: one run per day, printed with its coefficient, its p-value and the
   feature that moved most;
5. the events of the drifted days are pulled from the subscription and printed;
6. with ``--plot``, the coefficient per window is drawn as an SVG bar chart (no plotting
   library needed).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd

from mlgrid import ApiError, Client
from mlgrid.client.drift import DriftRun, to_dataframe
from mlgrid.client.workspace import Workspace

DRIFT_EVENT = "Microsoft.MachineLearningServices.DatasetDriftDetected"
JANUARY = datetime(2024, 1, 1, tzinfo=UTC)
DRIFT_DAYS = (8, 9, 20)


def open_workspace(client: Client, name: str) -> Workspace:
    try:
        return client.workspace(name)
    except ApiError as error:
        if error.status != 404:
            raise
    return client.workspaces.create(name)


def sales(rng: np.random.Generator, rows: int, amount_shift: float) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "amount": rng.lognormal(3.0 + amount_shift, 0.5, rows).round(2),
            "age": rng.normal(40, 12, rows).round(0),
            "channel": rng.choice(["web", "app", "store"], rows, p=[0.5, 0.3, 0.2]),
        }
    )


def make_data(folder: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(7)
    baseline = folder / "sales-baseline.csv"
    sales(rng, 2000, 0.0).to_csv(baseline, index=False)
    days = []
    for index in range(31):
        day = JANUARY + timedelta(days=index)
        frame = sales(rng, 500, 0.6 if day.day in DRIFT_DAYS else 0.0)
        stamps = pd.date_range(day, periods=500, freq="170s")  # spread over the day
        frame.insert(0, "timestamp", stamps.strftime("%Y-%m-%dT%H:%M:%SZ"))
        days.append(frame)
    target = folder / "sales.csv"
    pd.concat(days).to_csv(target, index=False)
    return baseline, target


def write_svg(runs: list[DriftRun], threshold: float, path: Path) -> None:
    """A bar per window (height = coefficient), drifted windows highlighted, the threshold as
    a dashed line."""
    width, height, left, bottom, top = 760, 300, 48, 40, 20
    plot_w, plot_h = width - left - 16, height - bottom - top
    slot = plot_w / max(1, len(runs))

    def y(value: float) -> float:
        return top + plot_h * (1 - value)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="14" font-size="13">Drift coefficient per daily window</text>',
    ]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" '
                     'stroke="#e5e5e5"/>')
        parts.append(f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:g}</text>')
    for index, run in enumerate(runs):
        value = run.drift_coefficient or 0.0
        x = left + index * slot + slot * 0.15
        colour = "#d9480f" if run.drifted else "#4c6ef5"
        label = escape(f"{run.start_time:%Y-%m-%d}: {value:.3f}")
        parts.append(f'<rect x="{x:.1f}" y="{y(value):.1f}" width="{slot * 0.7:.1f}" '
                     f'height="{plot_h * value:.1f}" fill="{colour}"><title>{label}</title></rect>')
        if index % 5 == 0 or run.drifted:
            parts.append(f'<text x="{x + slot * 0.35:.1f}" y="{top + plot_h + 14}" text-anchor="middle">'
                         f'{run.start_time.day}</text>')
    parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y(threshold):.1f}" y2="{y(threshold):.1f}" '
                 'stroke="#d9480f" stroke-dasharray="5,4"/>')
    parts.append(f'<text x="{left + plot_w}" y="{y(threshold) - 4:.1f}" text-anchor="end" fill="#d9480f">'
                 f'threshold {threshold:g}</text>')
    parts.append(f'<text x="{left + plot_w / 2}" y="{height - 6}" text-anchor="middle">'
                 'day of January 2024 (orange: DatasetDriftDetected)</text>')
    parts.append("</svg>")
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", default="demo-ws")
    parser.add_argument("--monitor", default="sales-drift")
    parser.add_argument("--plot", type=Path, help="write the coefficient per window to this SVG file")
    args = parser.parse_args(argv)

    with Client() as client, tempfile.TemporaryDirectory() as scratch:
        ws = open_workspace(client, args.workspace)
        baseline_file, target_file = make_data(Path(scratch))
        baseline = ws.register_dataset("sales-baseline", baseline_file)
        target = ws.register_dataset("sales", target_file, timestamp_column="timestamp")
        print(f"baseline {baseline.name}:{baseline.version} ({baseline.row_count} rows)")
        print(f"target   {target.name}:{target.version} ({target.row_count} rows, timestamp column "
              f"{target.timestamp_column!r})")
        ws.create_subscription("drift-alerts", endpoint_type="Queue", event_delivery_schema="EventGridSchema",
                               included_event_types=[DRIFT_EVENT])

        if args.monitor in {m.name for m in ws.drift_monitors()}:
            ws.delete_drift_monitor(args.monitor)  # start afresh: runs are kept per monitor
        monitor = ws.create_drift_monitor(
            args.monitor, baseline, target, frequency="Day", false_alarm_rate=0.05
        )
        rate = monitor.properties.get("falseAlarmRate")
        print(f"monitor  {monitor.name} (DataDriftId {monitor.id}, falseAlarmRate {rate})")

        def progress(done: int, total: int) -> None:
            print(f"  analysed {done}/{total} windows", file=sys.stderr)

        runs = monitor.backfill("2024-01-01", "2024-02-01", progress=progress, windows_per_request=8)
        frame = to_dataframe(runs)
        for run in runs:
            value = run.drift_coefficient or 0.0
            flag = "DRIFT" if run.event_published else ""
            moved = run.drifted_features[0] if run.drifted_features else "-"
            p_value = "" if run.p_value is None else f"p={run.p_value:.3f}"
            print(f"{run.start_time:%Y-%m-%d}  {value:4.2f}  {'#' * round(value * 40):<30} {p_value:<8} "
                  f"{moved:<8} {flag}")
        print(f"{int(frame['drifted'].sum())} of {len(frame)} windows drifted")

        received: list[dict[str, object]] = []
        for _ in range(10):
            items = ws.receive("drift-alerts", max_events=100, max_wait=2)
            if items:
                ws.acknowledge("drift-alerts", [i["brokerProperties"]["lockToken"] for i in items])
                received.extend(i["event"] for i in items)
            elif len(received) >= int(frame["event_published"].sum()):
                break
        for event in received:
            data = event["data"]
            assert isinstance(data, dict)
            coefficient = float(data["DriftCoefficient"])
            print(f"event {event['eventType']} {data['StartTime']} coefficient {coefficient:.3f}")

        if args.plot is not None:
            write_svg(runs, monitor.threshold, args.plot)
            print(f"plot written to {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

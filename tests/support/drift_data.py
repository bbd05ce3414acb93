"""Synthetic datasets for the drift monitor tests: a baseline and daily target windows with a
mean shift injected on known days.

The shift is large (3 standard deviations of ``amount``), so the drifted days score far above
the default threshold and the calm days far below it: the tests check which windows drift, not
the fine print of the coefficient.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

AMOUNT_MEAN = 100.0
AMOUNT_SD = 15.0
CHANNELS = ["web", "app", "store"]
CHANNEL_P = [0.5, 0.3, 0.2]


def baseline_frame(rows: int = 1500, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "amount": rng.normal(AMOUNT_MEAN, AMOUNT_SD, rows).round(2),
            "age": rng.normal(40, 10, rows).round(1),
            "channel": rng.choice(CHANNELS, rows, p=CHANNEL_P),
        }
    )


def target_frame(
    first_day: datetime,
    days: int,
    rows_per_day: int = 1000,
    drift_days: Iterable[int] = (),
    seed: int = 2,
    short_days: Iterable[int] = (),
    short_rows: int = 20,
) -> pd.DataFrame:
    """Daily rows from ``first_day`` (UTC midnight); day ``d`` (1-based) in ``drift_days`` has
    ``amount`` shifted by 3 sd; a day in ``short_days`` has only ``short_rows`` rows."""
    rng = np.random.default_rng(seed)
    drifted = set(drift_days)
    short = set(short_days)
    parts = []
    for index in range(days):
        day = first_day + timedelta(days=index)
        rows = short_rows if index + 1 in short else rows_per_day
        shift = 3 * AMOUNT_SD if index + 1 in drifted else 0.0
        step = 86400 / rows
        stamps = [day + timedelta(seconds=i * step) for i in range(rows)]
        parts.append(
            pd.DataFrame(
                {
                    "ts": [s.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") for s in stamps],
                    "amount": rng.normal(AMOUNT_MEAN + shift, AMOUNT_SD, rows).round(2),
                    "age": rng.normal(40, 10, rows).round(1),
                    "channel": rng.choice(CHANNELS, rows, p=CHANNEL_P),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path

"""How well does the drift coefficient detect drift, and how often does it cry wolf?

Synthetic data with known answers: a baseline of 10 features (7 numeric of different shapes, 3
categorical) and target windows that are either drawn from the same distribution (no drift) or
have exactly one feature shifted (mean or spread of a numeric feature, the frequencies of a
categorical one, or a category the baseline never had), at several strengths and window sizes.

For every window it runs, side by side:

* mlgrid's ``compute_drift`` with the monitor's default threshold (0.2);
* Evidently's ``DataDriftPreset`` at its defaults, reading its dataset-level drift flag
  (``DriftedColumnsCount``: drift when at least half of the columns drifted). For context it
  also reports "Evidently, any column drifted" — not a default decision, but what a user
  alerting on any single column would see.

It prints the detection rate (drift windows flagged), the false-alarm rate (no-drift windows
flagged) and the seconds per window of each. Evidently is optional (``pip install evidently``);
without it the benchmark still runs and says so.

    .venv/bin/python benchmarks/drift_quality.py            # the default grid, a few minutes
    .venv/bin/python benchmarks/drift_quality.py --quick    # a smaller grid, under a minute
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlgrid.workspace.drift.compute import DEFAULT_THRESHOLD, compute_drift, drift_detected

Detector = Callable[[pd.DataFrame, pd.DataFrame], "Verdict"]
"""(baseline, window) -> the detector's verdict on the window."""

OTHER_THRESHOLDS = (0.1, 0.15)
"""Also reported for mlgrid, from the same coefficients: what a lower monitor threshold buys."""

C0_PROBABILITIES = np.array([0.4, 0.3, 0.2, 0.1])
C0_VALUES = np.array(["red", "green", "blue", "amber"])


@dataclass(frozen=True)
class Scenario:
    """One kind of window: which feature moves, how, and by how much (0 means no drift)."""

    family: str
    strength: float
    label: str

    @property
    def drifted(self) -> bool:
        return self.family != "none"


SCENARIOS = [
    Scenario("none", 0.0, "no drift"),
    *(Scenario("mean", d, f"n0 mean +{d:g} sd") for d in (0.1, 0.25, 0.5, 1.0)),
    *(Scenario("scale", s, f"n0 sd x{s:g}") for s in (1.25, 1.5, 2.0)),
    *(Scenario("frequency", w, f"c0 frequencies, TV {0.4 * w:.1f}") for w in (0.25, 0.5, 1.0)),
    *(Scenario("new_category", f, f"c0 new category {f:.0%}") for f in (0.05, 0.1, 0.25)),
]


def make_frame(rows: int, rng: np.random.Generator, scenario: Scenario | None = None) -> pd.DataFrame:
    """10 features; ``scenario`` (if any) moves exactly one of them."""
    n0 = rng.normal(0.0, 1.0, rows)
    c0_probabilities = C0_PROBABILITIES
    new_share = 0.0
    if scenario is not None and scenario.family == "mean":
        n0 = n0 + scenario.strength
    elif scenario is not None and scenario.family == "scale":
        n0 = n0 * scenario.strength
    elif scenario is not None and scenario.family == "frequency":
        mix = scenario.strength
        c0_probabilities = (1 - mix) * C0_PROBABILITIES + mix * C0_PROBABILITIES[::-1]
    elif scenario is not None and scenario.family == "new_category":
        new_share = scenario.strength
    n1 = rng.normal(5.0, 2.0, rows)
    c0 = rng.choice(C0_VALUES, size=rows, p=c0_probabilities).astype(object)
    if new_share:
        c0[rng.random(rows) < new_share] = "violet"
    return pd.DataFrame(
        {
            "n0": n0,
            "n1": n1,
            "n2": rng.lognormal(0.0, 0.5, rows),
            "n3": rng.uniform(0.0, 10.0, rows),
            "n4": rng.exponential(1.0, rows),
            "n5": rng.poisson(3.0, rows).astype(float),
            "n6": 0.5 * n1 + rng.normal(0.0, 1.0, rows),
            "c0": c0,
            "c1": rng.choice([f"region-{i}" for i in range(8)], size=rows),
            "c2": rng.choice(["yes", "no"], size=rows, p=[0.7, 0.3]),
        }
    )


@dataclass(frozen=True)
class Verdict:
    """A detector's answer for one window."""

    flagged: bool
    any_column: bool
    coefficient: float | None = None


def ours(baseline: pd.DataFrame, window: pd.DataFrame) -> Verdict:
    result = compute_drift(baseline, window)
    flagged = drift_detected(result.coefficient, DEFAULT_THRESHOLD)
    return Verdict(flagged, flagged, result.coefficient)


def load_evidently() -> tuple[Detector | None, str]:
    """Evidently's detector, or None and why not."""
    try:
        import pandas.core.dtypes.common as pandas_common

        if not hasattr(pandas_common, "infer_dtype_from_object"):
            # Evidently 0.7 imports this pandas 2 helper at import time (only for a data-integrity
            # test, not for drift); pandas 3 removed it. Restore an equivalent so it imports.
            def infer_dtype_from_object(dtype: Any) -> Any:
                return np.dtype(dtype).type

            pandas_common.infer_dtype_from_object = infer_dtype_from_object  # type: ignore[attr-defined]
        import evidently
        from evidently import Report
        from evidently.presets import DataDriftPreset
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        return None, f"Evidently not available ({reason}); install it with: pip install evidently"

    def detect(baseline: pd.DataFrame, window: pd.DataFrame) -> Verdict:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            snapshot = Report([DataDriftPreset()]).run(window, baseline)
        dataset_flag = False
        any_column = False
        for metric in snapshot.dict()["metrics"]:
            config = metric["config"]
            if config["type"].endswith("DriftedColumnsCount"):
                dataset_flag = float(metric["value"]["share"]) >= float(config["drift_share"])
            elif config["type"].endswith("ValueDrift"):
                value = float(metric["value"])
                threshold = float(config["threshold"])
                # p-value tests report drift below their threshold, distances at or above it
                any_column |= value < threshold if "p_value" in config["method"] else value >= threshold
        return Verdict(dataset_flag, any_column)

    return detect, f"Evidently {evidently.__version__} (DataDriftPreset defaults)"


@dataclass
class Tally:
    """Verdicts of one detector on one (scenario, size) cell."""

    flagged: int = 0
    any_column: int = 0
    windows: int = 0
    seconds: list[float] = field(default_factory=list)
    coefficients: list[float] = field(default_factory=list)

    def add(self, verdict: Verdict, seconds: float) -> None:
        self.flagged += verdict.flagged
        self.any_column += verdict.any_column
        self.windows += 1
        self.seconds.append(seconds)
        if verdict.coefficient is not None:
            self.coefficients.append(verdict.coefficient)


Tallies = dict[tuple[str, str, int], Tally]


def _above(tally: Tally, threshold: float) -> int:
    return sum(coefficient >= threshold for coefficient in tally.coefficients)


def _rate(count: int, total: int) -> str:
    return f"{count / total:.1%}" if total else "-"


def _jobs(sizes: list[int], repeats: int, null_repeats: int, seed: int) -> list[tuple[int, Scenario, int]]:
    """(repeat, scenario, size) for every window, in rounds that each cover the whole grid.

    Within a round the order is shuffled (with a fixed seed), so a run cut short by the time
    budget still has every scenario and size measured, just fewer times.
    """
    rounds: dict[int, list[tuple[int, Scenario, int]]] = defaultdict(list)
    for size in sizes:
        for scenario in SCENARIOS:
            count = repeats if scenario.drifted else null_repeats
            for repeat in range(count):
                rounds[repeat * repeats // count].append((repeat, scenario, size))
    rng = np.random.default_rng(seed)
    jobs: list[tuple[int, Scenario, int]] = []
    for number in sorted(rounds):
        jobs.extend(rounds[number][i] for i in rng.permutation(len(rounds[number])))
    return jobs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 1000, 5000, 20000])
    parser.add_argument("--baseline-rows", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=2, help="windows per drift scenario and size")
    parser.add_argument("--null-repeats", type=int, default=10, help="no-drift windows per size")
    parser.add_argument("--budget", type=float, default=240.0, help="stop starting windows after this many s")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--no-evidently", action="store_true")
    parser.add_argument("--quick", action="store_true", help="sizes 200 and 2000, fewer windows")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.repeats, args.null_repeats = [200, 2000], 1, 6

    detectors: dict[str, Detector] = {"mlgrid": ours}
    note = "Evidently skipped (--no-evidently)"
    if not args.no_evidently:
        evidently_detector, note = load_evidently()
        if evidently_detector is not None:
            detectors["evidently"] = evidently_detector
    print(f"mlgrid compute_drift, threshold {DEFAULT_THRESHOLD}; {note}")

    jobs = _jobs(args.sizes, args.repeats, args.null_repeats, args.seed)
    print(f"{len(jobs)} windows x {len(detectors)} detectors, baseline {args.baseline_rows} rows", flush=True)
    baselines: dict[int, pd.DataFrame] = {}
    tallies: Tallies = defaultdict(Tally)
    started = time.perf_counter()
    for done, (repeat, scenario, size) in enumerate(jobs):
        if time.perf_counter() - started > args.budget:
            print(f"  time budget of {args.budget:.0f} s reached: stopping after {done} windows")
            break
        if repeat not in baselines:
            baselines[repeat] = make_frame(args.baseline_rows, np.random.default_rng([args.seed, repeat]))
        rng = np.random.default_rng([args.seed, repeat, size, SCENARIOS.index(scenario)])
        window = make_frame(size, rng, scenario if scenario.drifted else None)
        for name, detect in detectors.items():
            clock = time.perf_counter()
            verdict = detect(baselines[repeat], window)
            tallies[name, scenario.label, size].add(verdict, time.perf_counter() - clock)
        if (done + 1) % 20 == 0 or done + 1 == len(jobs):
            print(f"  {done + 1}/{len(jobs)} windows, {time.perf_counter() - started:.0f} s", flush=True)

    _report(tallies, list(detectors), args.sizes)
    if "evidently" not in detectors:
        print(f"\nNOTE: only mlgrid was measured. {note}")
    return 0


def _report(tallies: Tallies, names: list[str], sizes: list[int]) -> None:
    label = " | ".join("Evidently dataset flag" if n == "evidently" else n for n in names)
    print(f"\nFlagged windows per scenario and window size ({label})")
    print(f"{'scenario':<28}" + "".join(f"{size:>17}" for size in sizes))
    for scenario in SCENARIOS:
        cells = [
            " | ".join(_rate(t.flagged, t.windows) for t in (tallies[n, scenario.label, size] for n in names))
            for size in sizes
        ]
        print(f"{scenario.label:<28}" + "".join(f"{cell:>17}" for cell in cells))

    print("\nmlgrid mean coefficient per scenario and window size")
    print(f"{'scenario':<28}" + "".join(f"{size:>17}" for size in sizes))
    for scenario in SCENARIOS:
        means = [tallies["mlgrid", scenario.label, size].coefficients for size in sizes]
        print(f"{scenario.label:<28}" + "".join(f"{np.mean(m) if m else float('nan'):>17.3f}" for m in means))

    print("\nSummary (detection: drift windows flagged; false alarms: no-drift windows flagged)")
    print(f"{'detector':<36}{'detection':>10}{'false alarms':>14}{'s/window':>10}{'max s':>8}")
    for name in names:
        drift = [tallies[name, s.label, size] for s in SCENARIOS if s.drifted for size in sizes]
        calm = [tallies[name, s.label, size] for s in SCENARIOS if not s.drifted for size in sizes]
        seconds = [x for t in drift + calm for x in t.seconds]
        drift_windows = sum(t.windows for t in drift)
        calm_windows = sum(t.windows for t in calm)
        print(
            f"{name + ' (default decision)':<36}"
            f"{_rate(sum(t.flagged for t in drift), drift_windows):>10}"
            f"{_rate(sum(t.flagged for t in calm), calm_windows):>14}"
            f"{np.mean(seconds) if seconds else float('nan'):>10.3f}"
            f"{max(seconds, default=float('nan')):>8.2f}"
        )
        if name == "mlgrid":
            for threshold in OTHER_THRESHOLDS:
                print(
                    f"{f'mlgrid (threshold {threshold})':<36}"
                    f"{_rate(sum(_above(t, threshold) for t in drift), drift_windows):>10}"
                    f"{_rate(sum(_above(t, threshold) for t in calm), calm_windows):>14}"
                )
        if name == "evidently":
            print(
                f"{'evidently (any column drifted)':<36}"
                f"{_rate(sum(t.any_column for t in drift), drift_windows):>10}"
                f"{_rate(sum(t.any_column for t in calm), calm_windows):>14}"
            )
    print(f"  ({drift_windows} drift windows, {calm_windows} no-drift windows)")

    print("\nNo-drift windows flagged, by window size")
    for name in names:
        calm_by_size = {size: tallies[name, SCENARIOS[0].label, size] for size in sizes}
        flagged = "  ".join(f"{size}: {_rate(t.flagged, t.windows)}" for size, t in calm_by_size.items())
        print(f"  {name:<24} {flagged}")
        if name == "evidently":
            any_column = "  ".join(
                f"{size}: {_rate(t.any_column, t.windows)}" for size, t in calm_by_size.items()
            )
            print(f"  {'evidently (any column)':<24} {any_column}")

    print("\nSeconds per window by size (mean)")
    for name in names:
        per_size = []
        for size in sizes:
            seconds = [x for s in SCENARIOS for x in tallies[name, s.label, size].seconds]
            per_size.append(f"{size}: {np.mean(seconds) if seconds else float('nan'):.3f}")
        print(f"  {name:<10} " + "  ".join(per_size))


if __name__ == "__main__":
    sys.exit(main())

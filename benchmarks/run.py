"""Run every benchmark and print one table: figure, value, floor, ratio, goal.

``make bench`` runs this (quick, a few minutes); ``make bench FULL=1`` (or ``--full``) runs the
long versions. Each benchmark measures its floor in the same process tree and the same minute
(an HTTP+JSON echo server for publishing, a bare aiohttp loop for delivery, direct scoring,
10 subscriptions for matching, a bare interpreter and a bare FastAPI app for start-up, a bare
asyncpg INSERT loop for a cluster of nodes on PostgreSQL) and
reports both figures; the ratio is ``value / floor``. On a shared machine the absolute figures
move with other load, the ratios much less, so read the ratios first.

The benchmarks' own output goes to one log file per benchmark (the path is printed); the table
is printed at the end, with the machine (CPU model, cores, load average at the start), and can
be written as Markdown for ``docs/performance.md`` (``--markdown FILE``). The exit status is
non-zero when any benchmark failed.

    .venv/bin/python benchmarks/run.py                 # quick
    .venv/bin/python benchmarks/run.py --full --markdown /tmp/bench.md
    .venv/bin/python benchmarks/run.py --only matching,startup
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from _common import free_port, process_cpu_seconds, report

HERE = Path(__file__).resolve().parent
BENCHMARKS = ("startup", "matching", "store", "publish", "delivery", "scoring", "cluster")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{cpu_model()}, {os.cpu_count()} cores, load average {load} at start"


def code_version() -> str:
    """Which code was measured: the commit, or what ``MLGRID_BENCH_CODE`` says (a checkout elsewhere)."""
    label = os.environ.get("MLGRID_BENCH_CODE")
    if label:
        return label
    try:
        found = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True,
                               text=True, check=False)
        return found.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


# --- start-up -------------------------------------------------------------------------------------


def best_run(command: list[str], repeats: int) -> tuple[float, float]:
    """The fastest of ``repeats`` runs of ``command``: (seconds of wall time, CPU seconds).

    CPU time (user + system of the child) is what other load on the machine changes least.
    """
    wall, cpu = float("inf"), float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode:
            raise RuntimeError(f"{command} exited with {process.returncode}")
        wall = min(wall, time.perf_counter() - started)
        cpu = min(cpu, usage.ru_utime + usage.ru_stime)
    return wall, cpu


def seconds_to_ready(command: list[str], url: str, timeout: float = 60.0) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process) from starting ``command`` to a 200 from ``url``;
    the process is stopped after."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={k: v for k, v in os.environ.items() if not k.startswith("MLGRID_")})
    try:
        while time.perf_counter() - started < timeout:
            if process.poll() is not None:
                raise RuntimeError(f"{command[2:4]} exited with {process.returncode} before it was ready")
            try:
                with urllib.request.urlopen(url, timeout=1.0) as answer:
                    if answer.status == 200:
                        cpu = process_cpu_seconds(process.pid)
                        return time.perf_counter() - started, cpu if cpu is not None else float("nan")
            except OSError:
                pass
            time.sleep(0.01)
        raise RuntimeError(f"{url} not ready within {timeout:g} s")
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def startup(report_path: str, full: bool) -> None:
    """``mlgrid --help`` against a bare interpreter; ``/readyz`` on an empty data directory against
    a bare FastAPI app's readiness, each the best of a few runs, alternating."""
    repeats = 5 if full else 3
    python = sys.executable
    help_s, help_cpu = best_run([python, "-m", "mlgrid.cli.main", "--help"], repeats)
    bare_s, bare_cpu = best_run([python, "-c", "pass"], repeats)
    report(report_path, "start-up: mlgrid --help, s wall", help_s, bare_s, "python -c pass", goal="<= 0.5 s")
    report(report_path, "start-up: mlgrid --help, s CPU", help_cpu, bare_cpu, "python -c pass")
    ready: list[tuple[float, float]] = []
    floor: list[tuple[float, float]] = []
    for _ in range(2 if full else 1):
        data_dir = tempfile.mkdtemp(prefix="mlgrid-bench-startup-")
        try:
            port = free_port()
            ready.append(seconds_to_ready(
                [python, "-m", "mlgrid.cli.main", "serve", "--port", str(port), "--data-dir", data_dir,
                 "--log-level", "warning"], f"http://127.0.0.1:{port}/readyz"))
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)
        port = free_port()
        floor.append(seconds_to_ready([python, str(HERE / "echo_server.py"), str(port)],
                                      f"http://127.0.0.1:{port}/readyz"))
    report(report_path, "start-up: mlgrid serve to /readyz 200, empty data dir, s wall", min(ready)[0],
           min(floor)[0], "uvicorn+FastAPI echo", goal="<= 2 s")
    report(report_path, "start-up: mlgrid serve to /readyz 200, empty data dir, s CPU",
           min(r[1] for r in ready), min(f[1] for f in floor), "uvicorn+FastAPI echo")
    print(f"mlgrid --help {help_s:.2f} s (python -c pass {bare_s:.2f} s); "
          f"/readyz after {min(ready)[0]:.2f} s (bare FastAPI {min(floor)[0]:.2f} s)")


# --- the table ------------------------------------------------------------------------------------


def scripts(name: str, full: bool) -> list[str]:
    """The command line of benchmark ``name`` (without ``--report``)."""
    quick = [] if full else ["--quick"]
    return {
        "matching": [sys.executable, str(HERE / "matching.py"), *quick],
        "store": [sys.executable, str(HERE / "store_ids.py"), *(["--full"] if full else [])],
        "publish": [sys.executable, str(HERE / "publish.py"), *(["--full"] if full else [])],
        "delivery": [sys.executable, str(HERE / "delivery.py"), *(["--full"] if full else [])],
        "scoring": [sys.executable, str(HERE / "scoring.py"), *(["--full"] if full else [])],
        "cluster": [sys.executable, str(HERE / "cluster.py"), *(["--full"] if full else ["--quick"])],
    }[name]


def fmt(x: float) -> str:
    if x >= 1000:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.3g}"


def table(rows: list[dict[str, object]], markdown: bool) -> str:
    header = ("figure", "value", "floor", "floor is", "ratio", "goal")
    body = []
    for row in rows:
        value, floor = float(row["value"]), float(row["floor"])  # type: ignore[arg-type]
        ratio = value / floor if floor else float("nan")
        body.append((str(row["figure"]), fmt(value), fmt(floor), str(row["floor_label"]), f"{ratio:.2f}",
                     str(row.get("goal", ""))))
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        return "\n".join(lines)
    widths = [max([len(h)] + [len(cells[i]) for cells in body]) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for cells in body:
        lines.append("  ".join(c.ljust(w) if i in (0, 3, 5) else c.rjust(w)
                               for i, (c, w) in enumerate(zip(cells, widths, strict=True))))
    return "\n".join(lines)


def side_by_side(before: list[dict[str, object]], after: list[dict[str, object]]) -> str:
    """A Markdown table of two runs' figures, matched by name (a figure only one run has shows '-')."""
    earlier = {str(row["figure"]): row for row in before}
    later = {str(row["figure"]): row for row in after}
    names = [*later, *(name for name in earlier if name not in later)]
    lines = ["| figure | before | floor | ratio | after | floor | ratio | goal |", "|" + "---|" * 8]
    for name in names:
        cells = [name]
        for row in (earlier.get(name), later.get(name)):
            if row is None:
                cells += ["-", "-", "-"]
                continue
            value, floor = float(row["value"]), float(row["floor"])  # type: ignore[arg-type]
            cells += [fmt(value), fmt(floor), f"{value / floor:.2f}" if floor else "-"]
        cells.append(str((later.get(name) or earlier.get(name) or {}).get("goal", "")))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--full", action="store_true", help="the long versions of every benchmark")
    parser.add_argument("--only", default=",".join(BENCHMARKS), help=f"a subset of {', '.join(BENCHMARKS)}")
    parser.add_argument("--markdown", default=None, help="also write the table as Markdown to this file")
    parser.add_argument("--against", default=None,
                        help="figures.jsonl of an earlier run: also print both runs side by side")
    parser.add_argument("--logs", default=None, help="where the benchmarks' output goes")
    args = parser.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmarks {unknown}")
    started = datetime.now(UTC)
    about = machine()
    code = code_version()
    logs = Path(args.logs or tempfile.mkdtemp(prefix="mlgrid-bench-logs-"))
    logs.mkdir(parents=True, exist_ok=True)
    report_path = str(logs / "figures.jsonl")
    Path(report_path).write_text("")
    print(f"mlgrid benchmarks ({'full' if args.full else 'quick'}), code {code}; {about}", flush=True)
    print(f"output of each benchmark: {logs}/<name>.log", flush=True)
    failed: list[str] = []
    for name in chosen:
        clock = time.perf_counter()
        print(f"  {name} ...", end=" ", flush=True)
        log = logs / f"{name}.log"
        if name == "startup":
            try:
                with log.open("w") as out:
                    sys.stdout, saved = out, sys.stdout
                    try:
                        startup(report_path, args.full)
                    finally:
                        sys.stdout = saved
                status = 0
            except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
                log.open("a").write(f"error: {exc}\n")
                status = 1
        else:
            with log.open("w") as out:
                status = subprocess.run([*scripts(name, args.full), "--report", report_path], cwd=HERE,
                                        stdout=out, stderr=subprocess.STDOUT, check=False).returncode
        print(f"{'ok' if status == 0 else f'FAILED (exit {status}, see {log})'} "
              f"in {time.perf_counter() - clock:.0f} s", flush=True)
        if status:
            failed.append(name)
    rows = [json.loads(line) for line in Path(report_path).read_text().splitlines() if line.strip()]
    print()
    print(f"{started:%Y-%m-%d %H:%M} UTC, code {code}; {about}")
    print(table(rows, markdown=False))
    if args.markdown:
        heading = f"{started:%Y-%m-%d %H:%M} UTC, code {code}; {about}; {'full' if args.full else 'quick'}"
        Path(args.markdown).write_text(f"{heading}\n\n{table(rows, markdown=True)}\n")
    if args.against:
        before = [json.loads(line) for line in Path(args.against).read_text().splitlines() if line.strip()]
        comparison = side_by_side(before, rows)
        print(f"\nagainst {args.against}:\n{comparison}")
        if args.markdown:
            with open(args.markdown, "a", encoding="utf-8") as out:
                out.write(f"\nBefore ({args.against}) and after, side by side:\n\n{comparison}\n")
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

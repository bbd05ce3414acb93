"""What containment costs when user code starts: ``/bin/true`` through ``workspace.processes``.

Starts the same trivial command N times uncontained (the baseline: a plain spawn in a private
directory) and contained the way this machine allows (as root: a fresh uid, plus the mount
namespace when the interpreter is under a closed directory; else bubblewrap), including the
private directory and the cleanup. Prints medians and the ratio; asserts nothing::

    .venv/bin/python benchmarks/process_start.py [N]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from mlgrid.workspace import processes


async def measure(containment: processes.Containment, runs: int, log: Path) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        sandbox = await asyncio.to_thread(containment.new_sandbox, "bench")
        command = processes.Command(["/bin/true"], {"PATH": "/usr/bin:/bin"}, log)
        process = await processes.start(containment, sandbox, command)
        await process.wait()
        await process.release()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    with tempfile.TemporaryDirectory() as data_dir:
        contained = processes.Containment.detect(Path(data_dir), unsafe_local_code=True)
        contained.prepare()
        baseline = processes.Containment(processes.UNSAFE, contained.sandbox_root)
        log = Path(data_dir) / "log"
        plain = await measure(baseline, runs, log)
        guarded = await measure(contained, runs, log)
        contained.close()
    print(f"start, wait and clean up /bin/true, median of {runs}:")
    print(f"  uncontained:                {plain:7.1f} ms")
    print(f"  contained ({contained.mode}, {len(contained.reach)} mounts): {guarded:7.1f} ms")
    print(f"  ratio: {guarded / plain:.1f}x")


if __name__ == "__main__":
    asyncio.run(main())

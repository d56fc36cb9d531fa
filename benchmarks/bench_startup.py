"""Start-up benchmark: wall time of `veto` commands, each a fresh process (DESIGN.md 8:
`--help`, `check`, `lint` and `approvals list` start in under 0.2 s).

    uv run python benchmarks/bench_startup.py [--runs 10]

Runs each command through the installed entry point's Python (the same
interpreter as ``veto``, without ``uv run``'s own start-up), reports the median
and the best wall time, the best CPU time (user + system: what the process itself
costs, close to the wall time on an idle machine), and ``python -c pass`` as the
floor. On a shared, busy machine the wall medians include waiting for a CPU.

Each command runs once untimed first, with ``PYTHONDONTWRITEBYTECODE`` removed from
its environment, so that the timed runs load cached bytecode as an installed
``veto`` does: with that variable set (some sandboxes set it) every module is
compiled from source on every run, which doubles the times measured.

That first run also fills the validated-policy cache (``policy/cache.py``), so the
``veto check`` and ``veto lint`` rows measure a policy validated before (the usual
case: the same policy checked again and again). The ``first run`` rows measure a
policy never seen before: each run gets an empty cache directory, so it imports
pydantic, validates every file and writes the cache entries.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
POLICY = REPO / "policies" / "demo.yaml"
TARGET_S = 0.2


def _time(
    argv: list[str], env: dict[str, str], runs: int, fresh_cache: Path | None
) -> tuple[list[float], list[float]]:
    """-> (wall times, CPU times: user + system of the child). With ``fresh_cache``,
    every run gets a new, empty policy cache directory under it."""
    walls, cpus = [], []
    for i in range(runs):
        if fresh_cache is not None:
            env = {**env, "VETO_POLICY_CACHE": str(fresh_cache / f"run-{i}-{time.time_ns()}")}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return walls, cpus


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="veto-bench-") as home:
        env = {**os.environ, "HOME": home, "VETO_DB": str(Path(home) / "veto.db")}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.pop("VETO_POLICY_CACHE", None)
        veto = [sys.executable, "-m", "veto_core.cli"]
        check = [*veto, "check", str(POLICY), "--tool", "read_file", "--json"]
        lint = [*veto, "lint", str(POLICY)]
        commands = {
            "python -c pass (floor)": [sys.executable, "-c", "pass"],
            "import veto_core": [sys.executable, "-c", "import veto_core"],
            "veto --help": [*veto, "--help"],
            "veto check": check,
            "veto lint": lint,
            "veto approvals list": [*veto, "approvals", "list"],
            "veto check (first run)": check,
            "veto lint (first run)": lint,
        }
        fresh = Path(home) / "fresh-caches"
        for argv in commands.values():  # create the db; write the bytecode and policy caches
            subprocess.run(argv, env=env, capture_output=True)
        print(
            f"{'command':<26}{'wall median':>12}{'wall best':>11}{'CPU best':>10}   target < {TARGET_S} s"
        )
        slow = []
        for name, argv in commands.items():
            first_run = "(first run)" in name
            walls, cpus = _time(argv, env, opts.runs, fresh if first_run else None)
            best, median, cpu = min(walls), statistics.median(walls), min(cpus)
            flag = "" if "veto " not in name or first_run or best < TARGET_S else "  SLOW"
            if flag:
                slow.append(name)
            print(f"{name:<26}{median:>11.3f}s{best:>10.3f}s{cpu:>9.3f}s{flag}")
        print(f"load average {os.getloadavg()[0]:.2f} (1 min); first runs have no target")
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())

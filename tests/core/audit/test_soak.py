"""``benchmarks/soak.py`` stays working: a few seconds with tiny parameters, on both stores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SOAK = Path(__file__).resolve().parents[3] / "benchmarks" / "soak.py"


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_soak_runs_clean(store: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    pg = "postgresql://postgres@127.0.0.1:5432/test"
    if store == "postgresql":
        pg = request.getfixturevalue("pg_url").split("?")[0]  # fails if PostgreSQL is down
    env = {**os.environ, "HOME": str(tmp_path)}
    env.pop("VETO_CONFIG", None)
    res = subprocess.run(
        [sys.executable, str(SOAK), "--store", store, "--processes", "2", "--threads", "2",
         "--seconds", "2", "--pg", pg, "--json"],
        capture_output=True, text=True, timeout=280, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    r = json.loads(res.stdout.strip().splitlines()[-1])
    assert r["ok"] and r["store"] == store
    assert r["calls"] > 0 and r["records"] == r["calls"] and r["lost"] == 0
    assert r["verify_ok"] and r["dashboard_reads"] > 0 and not r["dashboard_errors"]
    assert len(r["rss_mb"]) == 2 and r["p99_us"] >= r["p50_us"] > 0

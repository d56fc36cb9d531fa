"""Crash test: SIGKILL a process writing from 8 threads and 8 asyncio tasks at random
points, 24 times, for each durability setting.

After every kill: the chain verifies, and every record whose ``record_decision``
had returned (so the tool would have run) is in the store.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from veto_core.audit import open_audit

RUNS = 24
WRITER = Path(__file__).with_name("crash_writer.py")


@pytest.mark.parametrize("durability", ["fsync", "os"])
@pytest.mark.parametrize("url_kind", ["sqlite", "jsonl"])
def test_sigkill_never_loses_an_acknowledged_record(
    tmp_path: Path, url_kind: str, durability: str
) -> None:
    """Both durability settings survive a crash of the process (``os`` only not a
    power loss, which a test cannot cause)."""
    rng = random.Random(int.from_bytes(os.urandom(4), "big"))
    runs = RUNS if url_kind == "sqlite" else 6
    acknowledged: set[str] = set()
    total = 0
    for run in range(runs):
        if run % 4 == 0:  # a few restarts on the same store, then a fresh one (bounded verify cost)
            total += len(acknowledged)
            acknowledged = set()
            name = f"crash{run}"
            url = (
                str(tmp_path / f"{name}.db")
                if url_kind == "sqlite"
                else f"jsonl:///{tmp_path / name}.jsonl"
            )
        proc = subprocess.Popen(
            [sys.executable, str(WRITER), url, durability],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"READY\n", proc.stderr.read() if proc.stderr else b""
        time.sleep(rng.uniform(0.01, 0.4))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
        lines = out.decode().splitlines()
        complete = [ln for ln in lines if ln.count(" ") == 2]
        acknowledged.update(ln.split()[2] for ln in complete)
        log = open_audit(url)
        report = log.verify()
        assert report.ok, (run, report.first_broken)
        stored = {r.id for r in log.iter_records()}
        missing = acknowledged - stored
        assert not missing, (run, len(missing))
        log.close()
    total += len(acknowledged)
    assert total > runs  # the kills did land mid-stream

"""Coverage-guided fuzzing with atheris, bounded (issue 14).

Each target of fuzz_targets.py runs in its own process for VETO_FUZZ_SECONDS
(default 2) from a small seed corpus: the policy loader, the `veto check --batch`
line parser and every string operator. A run fails when an input raises anything
but the documented errors or takes more than 50 ms to decide; libFuzzer's crash
file and the traceback are in the assertion message.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from strategies import HOSTILE_STRINGS

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
TARGETS_FILE = HERE / "fuzz_targets.py"
SECONDS = int(os.environ.get("VETO_FUZZ_SECONDS", "2"))

STRING_OPERATORS = (
    "equals", "not_equals", "in", "not_in", "contains", "starts_with", "ends_with", "matches",
    "glob", "greater_than", "less_or_equal", "between", "length_greater_than", "path_within",
    "url_host_in", "email_domain_in", "ip_in_cidr", "time_between", "weekday_in",
)  # fmt: skip
TARGETS = ("loader", "batch", *(f"operator:{op}" for op in STRING_OPERATORS))

BATCH_SEEDS = [
    '{"tool": "fetch", "args": {"url": "https://api.example.com/v1"}}',
    '{"tool": "connect", "args": {"ip": "0x7f.1"}}',
    '{"tool": "refund", "args": {"amount": "-1e309", "items": [{"sku": "AB"}]}, "context": {"cap": 5}}',
    '{"tool": "send", "args": {"to": "Ann <a@example.com>"}, "principal": {"agent": "a", "roles": ["x"]}}',
    '{"tool": "read", "args": {"paths": ["/srv/a", "/srv/../etc"]}, "now": "2024-06-03T12:00:00Z"}',
    "not json",
]


def _seed_corpus(target: str, directory: Path) -> None:
    directory.mkdir()
    if target == "loader":
        seeds = [p.read_bytes() for p in sorted((REPO / "policies").glob("*.yaml"))]
    elif target == "batch":
        seeds = [("\n".join(BATCH_SEEDS[: i + 1]) + "\n").encode() for i in range(len(BATCH_SEEDS))]
    else:
        seeds = [s.encode("utf-8", "surrogatepass")[:4096] for s in HOSTILE_STRINGS]
        seeds.append(b'\x01{"a": [1, "2", null]}')
        seeds.append(b"\x00a@example.com\x00/srv/data/x")
    for i, seed in enumerate(seeds):
        (directory / f"seed-{i}").write_bytes(seed)


@pytest.mark.parametrize("target", TARGETS)
def test_fuzz_target(target: str, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    _seed_corpus(target, corpus)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VETO_")}
    proc = subprocess.run(
        [
            sys.executable,
            str(TARGETS_FILE),
            target,
            f"-max_total_time={SECONDS}",
            "-timeout=10",
            "-rss_limit_mb=3072",
            "-max_len=8192",
            f"-artifact_prefix={tmp_path}/",
            str(corpus),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=SECONDS + 180,
    )
    log = proc.stderr[-6000:]
    assert proc.returncode == 0, f"{target} found a failing input:\n{log}"
    assert "Done " in proc.stderr, log  # libFuzzer really ran

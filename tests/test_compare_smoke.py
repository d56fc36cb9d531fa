"""Smoke test of `benchmarks/compare.py`: one small run at 10 rules, and the equivalence checker.

The comparison engines are installed by the script into its own venvs under
~/.cache/veto-compare (from the package registry or uv's cache). One that cannot be
installed is skipped by the script, which says so; Veto and the equivalence check are
always exercised.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "compare.py"


def _compare() -> ModuleType:
    spec = importlib.util.spec_from_file_location("veto_compare", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["veto_compare"] = module
    spec.loader.exec_module(module)
    return module


def test_a_small_run_decides_identically_and_reports_every_engine() -> None:
    argv = ["--sizes", "10", "--calls", "200", "--batches", "2", "--budget", "5", "--json"]
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *argv],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    skipped = result["skipped"]
    print(f"engines skipped: {sorted(skipped) or 'none'}; {result['notes']}")
    row = result["sizes"]["10"]
    timed = set(row["engines"])
    # Veto always runs, on the common policy and on the full mix.
    assert {"veto", "veto-full"} <= timed
    # Every engine was either timed (after deciding every call as Veto did) or skipped.
    for engine in ("cedar", "casbin", "cel", "veto-0.15.2"):
        assert (engine in timed) != (engine in skipped), engine
        if engine in timed:
            assert result["versions"][engine] != "?"
    for stats in row["engines"].values():
        assert 0 < stats["p50_us"] <= stats["p99_us"]
        assert stats["load_ms"] > 0
        assert stats["calls"] > 0
    assert row["rules_full"] == 10
    # The common policy drops exactly the rules some engine cannot express, and says why.
    dropped = set().union(*row["unsupported"].values()) if row["unsupported"] else set()
    assert row["rules_common"] == 10 - len(dropped)
    for reasons in row["unsupported"].values():
        assert all(isinstance(why, str) and why for why in reasons.values())
    assert sum(row["effects_common"].values()) == 200
    # The Markdown renderer takes the same result.
    table = _compare().markdown(result)
    assert "| Veto (this repo), full mix |" in table


def test_the_equivalence_checker_reports_each_differing_call() -> None:
    compare = _compare()
    calls = [{"tool": f"t{i}", "args": {}} for i in range(4)]
    reference = ["allow", "deny", "require_approval", "deny"]
    assert compare.check_equivalence(reference, {"same": list(reference)}, calls) == []
    # A prefix (a slow engine decided only the first calls) is compared on that prefix.
    assert compare.check_equivalence(reference, {"prefix": reference[:2]}, calls) == []
    diff = compare.check_equivalence(
        reference, {"other": ["allow", "allow", "require_approval", "deny"]}, calls
    )
    assert len(diff) == 1
    assert "call #1" in diff[0] and "veto=deny" in diff[0] and "other=allow" in diff[0]
    assert '"tool": "t1"' in diff[0]
    assert compare.check_equivalence(reference, {"empty": []}, calls) == [
        "empty: 0 decisions for 4 calls"
    ]


def test_translation_writes_out_veto_missing_field_semantics() -> None:
    compare = _compare()
    deny = {
        "id": "d",
        "effect": "deny",
        "tools": ["t"],
        "if": {"field": "args.amount", "greater_than": 5},
    }
    allow = {**deny, "id": "a", "effect": "allow", "otherwise": "require_approval"}
    (d,) = compare.to_simple(deny)
    # A deny rule matches when the field is missing (an error counts as a match).
    assert d.cond == (
        "or",
        [("not", ("present", ("args", "amount"))), ("gt", ("args", "amount"), 5)],
    )
    a, otherwise = compare.to_simple(allow)
    # An allow rule needs the field; `otherwise` is the mirrored rule on "not true".
    assert a.cond == ("and", [("present", ("args", "amount")), ("gt", ("args", "amount"), 5)])
    assert otherwise.effect == "require_approval" and otherwise.cond == ("not", a.cond)
    regex = {**deny, "if": {"field": "args.q", "matches": "x"}}
    try:
        compare.to_simple(regex)
    except compare.Unsupported as exc:
        assert "matches" in str(exc)
    else:
        raise AssertionError("a regex rule must be reported as not translated")


def test_an_engine_that_cannot_be_installed_is_skipped_and_said(tmp_path: Path) -> None:
    # No `uv` on PATH and an empty cache: no comparison engine can be installed.
    env = {**os.environ, "PATH": str(tmp_path), "VETO_COMPARE_CACHE": str(tmp_path / "cache")}
    argv = ["--sizes", "10", "--calls", "100", "--batches", "2"]
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *argv],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for label in ("Cedar (cedarpy)", "Casbin (pycasbin)", "published veto 0.15.2"):
        assert f"Skipped {label}: not installable." in proc.stdout
    assert "| Veto (this repo) |" in proc.stdout
    assert "| Veto (this repo), full mix |" in proc.stdout

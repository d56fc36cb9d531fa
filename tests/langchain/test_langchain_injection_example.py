"""examples/langchain_injection.py runs offline: the payment to an IBAN taken from an injected email
is denied (its tool body never runs); the same IBAN named by the person is paid."""

from __future__ import annotations

from pathlib import Path

from injection_examples import check_injection_example


def test_injection_example_stops_the_injected_payment(tmp_path: Path) -> None:
    check_injection_example("langchain_injection.py", tmp_path)

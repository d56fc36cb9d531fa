"""Runs and data flow (DESIGN.md 2.7): run state, observation, taint."""

from __future__ import annotations

from .store import RunEvent, RunStore, RunStoreUnavailable

__all__ = ["RunEvent", "RunStore", "RunStoreUnavailable"]

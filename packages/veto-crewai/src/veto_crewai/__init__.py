"""Veto adapter for crewai (the adapter lands in its own issue; see the repository README)."""

__all__: list[str] = []

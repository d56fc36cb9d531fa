"""Veto adapter for openai (the adapter lands in its own issue; see the repository README)."""

__all__: list[str] = []

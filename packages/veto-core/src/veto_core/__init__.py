"""Veto core."""

"""Targeting (filled in next)."""

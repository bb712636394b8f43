"""Helpers shared by the projection engine's tests (``from support.engine import ...``)."""

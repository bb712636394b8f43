"""Projection workers: deterministic folds of the event stream into SQL tables."""

"""Experiment configurations (frozen dataclasses; a ``smoke`` variant of each)."""

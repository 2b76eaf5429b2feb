"""Routing: which deployments serve a requested model name."""

from parley.router.table import ModelTable, Target

__all__ = ["ModelTable", "Target"]

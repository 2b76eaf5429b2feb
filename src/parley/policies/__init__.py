"""Policies that attach around the provider call: auth, budgets, limits, guardrails, logging."""

from parley.policies.base import Authenticator, Policy

__all__ = ["Authenticator", "Policy"]

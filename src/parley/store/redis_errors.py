"""The error every Redis-backed piece of state raises when it must fall back to local state."""

from __future__ import annotations


class RedisUnavailable(Exception):
    """Redis is not configured or currently down: use local state."""

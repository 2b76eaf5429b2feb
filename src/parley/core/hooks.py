"""Which optional hooks an object overrides (filters, router observers): the chain and the router
list the objects to call for each hook once, so a hook nobody overrides costs nothing per request."""

from __future__ import annotations


def overrides(obj: object, base: type, hook: str) -> bool:
    """Whether `obj`'s class replaces `base`'s no-op `hook`."""
    return getattr(type(obj), hook) is not getattr(base, hook)

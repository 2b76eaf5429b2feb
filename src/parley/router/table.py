"""Resolve a client's model name to the deployments that serve it.

Exact `model_name`s win; then wildcard patterns, most specific (longest literal text) first, in
config order among equals. `router_settings.model_group_alias` maps extra names onto groups.
"""

from __future__ import annotations

import re

from parley.core.deployment import Deployment, Target

_CACHE_LIMIT = 4096


class ModelTable:
    def __init__(self, deployments: list[Deployment], aliases: dict[str, str] | None = None) -> None:
        self.deployments = deployments
        self.aliases = dict(aliases or {})
        self._exact: dict[str, list[Deployment]] = {}
        patterns: dict[str, list[Deployment]] = {}
        for dep in deployments:
            group = patterns if "*" in dep.model_name else self._exact
            group.setdefault(dep.model_name, []).append(dep)
        ordered = sorted(patterns.items(), key=lambda item: -len(item[0].replace("*", "")))
        self._patterns = [(re.compile(_pattern_regex(name)), deps) for name, deps in ordered]
        self._cache: dict[str, list[Target]] = {}

    def resolve(self, name: str) -> list[Target]:
        """All targets for `name`, in config order; empty when nothing serves it."""
        cached = self._cache.get(name)
        if cached is not None:
            return cached
        targets = self._lookup(self.aliases.get(name, name))
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[name] = targets
        return targets

    def _lookup(self, name: str) -> list[Target]:
        deps = self._exact.get(name)
        if deps:
            return [Target(d, d.upstream_model(None)) for d in deps]
        for regex, deps in self._patterns:
            match = regex.fullmatch(name)
            if match:
                part = match.group(1)
                return [Target(d, d.upstream_model(part)) for d in deps]
        return []

    def names(self) -> list[str]:
        """Model names as clients see them, config order, without duplicates."""
        seen: dict[str, None] = {}
        for dep in self.deployments:
            seen.setdefault(dep.model_name, None)
        for alias in self.aliases:
            seen.setdefault(alias, None)
        return list(seen)


def _pattern_regex(pattern: str) -> str:
    head, _, tail = pattern.partition("*")
    return re.escape(head) + "(.*)" + re.escape(tail).replace(r"\*", ".*")

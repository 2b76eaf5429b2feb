"""The children one kind of request updates, found with one dictionary lookup per request.

A `Row` is keyed by a request's labels (route, model, deployment, status class and, with
`metrics_key_labels`, key alias and team): the request counter and latency histogram every request
updates, and the token, spend and timing children it may update. Those start as `Pending`: the
first update makes the child (so `/metrics` lists only series that were updated, in the order they
first were) and puts it in the row in its place. Rows are as many as the request counter's series.
"""

from __future__ import annotations

from typing import Any

from parley.filters.metrics.families import Families, Labeled


class Pending:
    """Stands in for a child not made yet; its first update makes the child and replaces it."""

    __slots__ = ("family", "row", "slot", "values")

    def __init__(self, row: Row, slot: str, family: Labeled[Any], values: tuple[str, ...]) -> None:
        self.row, self.slot, self.family, self.values = row, slot, family, values

    def inc(self, amount: float = 1) -> None:
        self._made().inc(amount)

    def observe(self, amount: float) -> None:
        self._made().observe(amount)

    def _made(self) -> Any:
        child = self.family(*self.values)
        setattr(self.row, self.slot, child)
        return child


class Row:
    __slots__ = (
        "cache_read",
        "cache_write",
        "input",
        "latency",
        "output",
        "requests",
        "spend",
        "tpot",
        "ttft",
    )

    def __init__(self, f: Families, labels: tuple[str, ...]) -> None:
        route, model, dep, _status, *keys = labels
        self.requests: Any = f.requests(*labels)
        self.latency: Any = f.latency(route, model)
        self.input: Any = Pending(self, "input", f.tokens, (model, dep, "input"))
        self.output: Any = Pending(self, "output", f.tokens, (model, dep, "output"))
        self.cache_read: Any = Pending(self, "cache_read", f.tokens, (model, dep, "cache_read"))
        self.cache_write: Any = Pending(self, "cache_write", f.tokens, (model, dep, "cache_write"))
        self.spend: Any = Pending(self, "spend", f.spend, (model, *keys))
        self.ttft: Any = Pending(self, "ttft", f.ttft, (model,))
        self.tpot: Any = Pending(self, "tpot", f.tpot, (model,))

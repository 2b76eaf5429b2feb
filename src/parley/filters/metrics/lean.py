"""Lean in-memory metric values for a gateway with one worker, and the collector that renders them.

prometheus_client's children take a lock per value, check observability and exemplars on every
update and walk a histogram's buckets in Python. Here a counter's `inc` is one addition and a
histogram finds its bucket with `bisect` (C). There are no locks: every update happens on the event
loop's thread and the scrape (in a thread) only reads. Where `_lean.c` was built, its types (the
same attributes and methods) take these classes' place: an update is one C call. The collector
yields what prometheus_client yields for the same families and values: `_total` and `_created`
for counters; cumulative `_bucket`s up to `+Inf`, `_count`, `_sum` and `_created` for histograms;
one sample per gauge.
"""

from __future__ import annotations

import os
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import metrics as client_metrics
from prometheus_client.metrics_core import Metric
from prometheus_client.utils import INF, floatToGoString

from parley.core.native import native
from parley.filters.metrics.families import Labeled, Spec


class LeanCounter:
    __slots__ = ("created", "value")

    def __init__(self, created: float = 0.0) -> None:
        self.value = 0.0
        self.created = created  # Unix time

    def inc(self, amount: float = 1) -> None:
        self.value += amount


class LeanGauge:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        self.value += amount

    def dec(self, amount: float = 1) -> None:
        self.value -= amount

    def set(self, value: float) -> None:
        self.value = float(value)


class LeanHistogram:
    """Counts per bucket (not cumulative: the scrape adds them up), the sum, when it was made."""

    __slots__ = ("bounds", "counts", "created", "sum")

    def __init__(self, bounds: tuple[float, ...], created: float = 0.0) -> None:
        self.bounds = bounds  # ends with +Inf, so every value has a bucket
        self.counts = [0] * len(bounds)
        self.sum = 0.0
        self.created = created  # Unix time

    def observe(self, amount: float) -> None:
        self.counts[bisect_left(self.bounds, amount)] += 1  # the first bound >= amount (`le`)
        self.sum += amount


def lean_maker(
    spec: Spec, labels: tuple[str, ...], env: Mapping[str, str] = os.environ
) -> Callable[[tuple[str, ...]], Any]:
    """Lean children for `families.make_families`: `_lean.c`'s where built (the same attributes and
    methods, one C call per update), else the classes above."""
    compiled = native("parley.filters.metrics._lean", env)
    counter, gauge, histogram = (
        (compiled.Counter, compiled.Gauge, compiled.Histogram)
        if compiled is not None
        else (LeanCounter, LeanGauge, LeanHistogram)
    )
    if spec.kind == "counter":
        return lambda _values: counter(time.time())
    if spec.kind == "gauge":
        return lambda _values: gauge()
    bounds = (*spec.buckets, INF)
    return lambda _values: histogram(bounds, time.time())


class LeanCollector:
    """Renders lean families (register it on a `CollectorRegistry`)."""

    def __init__(self, families: list[Labeled[Any]]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        created = client_metrics._use_created  # PROMETHEUS_DISABLE_CREATED_SERIES, as the client reads it
        for family in self.families:
            spec = family.spec
            metric = Metric(spec.name, spec.help, spec.kind)
            names = family.labels
            for values, child in list(family.children.items()):  # a copy: the loop may add children
                labels = dict(zip(names, values, strict=True))
                if spec.kind == "histogram":
                    _histogram(metric, labels, child, created)
                elif spec.kind == "counter":
                    metric.add_sample(spec.name + "_total", labels, child.value)
                    if created:
                        metric.add_sample(spec.name + "_created", labels, child.created)
                else:
                    metric.add_sample(spec.name, labels, child.value)
            yield metric


def _histogram(metric: Metric, labels: dict[str, str], child: LeanHistogram, created: bool) -> None:
    name = metric.name
    acc = 0.0
    for bound, n in zip(child.bounds, list(child.counts), strict=True):
        acc += n
        metric.add_sample(name + "_bucket", {**labels, "le": floatToGoString(bound)}, acc)
    metric.add_sample(name + "_count", labels, acc)
    metric.add_sample(name + "_sum", labels, child.sum)
    if created:
        metric.add_sample(name + "_created", labels, child.created)

"""One worker's metric values (metrics/lean.py): the compiled types (`_lean.c`), their Python twins and
prometheus_client's own metrics, given the same updates, expose the same samples."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.samples import Sample

from fuzz_support import examples
from parley.core.native import native
from parley.filters.metrics.families import Labeled, Spec
from parley.filters.metrics.lean import LeanCollector, lean_maker

SPECS = (
    Spec("t_requests", "requests", "counter", ("route",)),
    Spec("t_in_flight", "in flight", "gauge", ("route",)),
    Spec("t_latency", "latency", "histogram", ("route",), buckets=(0.05, 0.1, 1.0, 10.0)),
)
amounts = st.one_of(st.integers(0, 10**6), st.floats(0, 1e6, allow_nan=False))
values = st.one_of(
    st.sampled_from([0.05, 0.1, 1.0, 10.0, 0.0, -1.0, math.inf, -math.inf]),
    st.floats(-1e3, 1e3, allow_nan=False),
)
updates = st.lists(
    st.one_of(
        st.tuples(st.just(0), st.sampled_from(["/a", "/b"]), st.sampled_from(["inc"]), amounts),
        st.tuples(st.just(1), st.sampled_from(["/a", "/b"]), st.sampled_from(["inc", "dec", "set"]), amounts),
        st.tuples(st.just(2), st.sampled_from(["/a", "/b"]), st.just("observe"), values),
    ),
    max_size=40,
)


def _lean_samples(ops: list[tuple[int, str, str, Any]], env: dict[str, str]) -> list[Sample]:
    families = [Labeled(spec, spec.labels, lean_maker(spec, spec.labels, env)) for spec in SPECS]
    for index, route, method, value in ops:
        getattr(families[index](route), method)(value)
    registry = CollectorRegistry()
    registry.register(LeanCollector(families))
    return _samples(registry)


def _client_samples(ops: list[tuple[int, str, str, Any]]) -> list[Sample]:
    registry = CollectorRegistry()
    metrics = [
        Counter("t_requests", "requests", ["route"], registry=registry),
        Gauge("t_in_flight", "in flight", ["route"], registry=registry),
        Histogram("t_latency", "latency", ["route"], registry=registry, buckets=(0.05, 0.1, 1.0, 10.0)),
    ]
    for index, route, method, value in ops:
        getattr(metrics[index].labels(route), method)(value)
    return _samples(registry)


def _samples(registry: CollectorRegistry) -> list[Sample]:
    """Every sample but the `_created` times, in a stable order."""
    out = [
        s._replace(value=repr(float(s.value)))  # repr: NaN (inf + -inf) equals NaN
        for family in registry.collect()
        for s in family.samples
        if not s.name.endswith("_created")
    ]
    return sorted(out, key=lambda s: (s.name, sorted(s.labels.items())))


def test_the_compiled_values_are_used_where_built() -> None:
    compiled = native("parley.filters.metrics._lean", {})
    assert compiled is not None, "metrics/_lean.c was not built (pip install -e . needs gcc and Python.h)"
    child = lean_maker(SPECS[2], ("route",), {})(("/a",))
    assert type(child) is compiled.Histogram
    assert child.bounds == (0.05, 0.1, 1.0, 10.0, math.inf)


@pytest.mark.parametrize("env", [{}, {"PARLEY_NATIVE": "0"}], ids=["c", "python"])
@settings(max_examples=examples(100), deadline=None)
@given(ops=updates)
def test_lean_values_expose_what_prometheus_client_exposes(
    env: dict[str, str], ops: list[tuple[int, str, str, Any]]
) -> None:
    assert _lean_samples(ops, env) == _client_samples(ops)

"""Shared fixtures: real processes on loopback (fake upstream, gateways)."""

from __future__ import annotations

import pytest

from parley.testing.procs import FakeUpstream, Gateway


@pytest.fixture(scope="session")
def fake_upstream():
    upstream = FakeUpstream()
    yield upstream
    upstream.stop()


@pytest.fixture
def upstream(fake_upstream):
    """The session's fake upstream, with an empty script and record for this test."""
    fake_upstream.reset()
    return fake_upstream


@pytest.fixture(scope="session")
def fake_upstream_b():
    """A second fake upstream, for tests with two deployments on different servers."""
    upstream = FakeUpstream()
    yield upstream
    upstream.stop()


@pytest.fixture
def b(fake_upstream_b):
    """The second fake upstream, emptied for this test."""
    fake_upstream_b.reset()
    return fake_upstream_b


@pytest.fixture(scope="session")
def start_gateway():
    """Start `parley serve` with a config dict; every gateway started is stopped at session end."""
    started: list[Gateway] = []

    def start(config: dict, **kw) -> Gateway:
        gw = Gateway(config, **kw)
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.stop()

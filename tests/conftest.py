"""Shared fixtures: the fake upstreams (real processes on loopback) and gateways, either real
`parley serve` processes (`start_gateway`) or the app run in this process (`start_inprocess`)."""

from __future__ import annotations

import pytest

from parley.testing.inprocess import InProcessGateway
from parley.testing.procs import FakeUpstream, Gateway


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "process: needs the gateway as a real `parley serve` process "
        "(streaming relays, disconnects), where a module runs in process",
    )


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


@pytest.fixture(scope="module")
def start_gateway():
    """Start `parley serve` with a config dict; every gateway started is stopped when the module ends
    (an idle gateway still runs its timers: spend flushes, batch polls; left running to the session's
    end, dozens of them took a good part of the machine's two cores)."""
    started: list[Gateway] = []

    def start(config: dict, **kw) -> Gateway:
        gw = Gateway(config, **kw)
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.stop()


def _inprocess_starter():
    started: list[InProcessGateway] = []

    def start(config: dict, **kw) -> InProcessGateway:
        gw = InProcessGateway(config, **kw).start()
        started.append(gw)
        return gw

    return start, started


@pytest.fixture
def start_inprocess():
    """Start the gateway app in this process for a config dict (see parley.testing.inprocess);
    every gateway started is stopped (lifespan shutdown) when the test ends."""
    start, started = _inprocess_starter()
    yield start
    for gw in reversed(started):
        gw.stop()


@pytest.fixture(scope="module")
def start_inprocess_module():
    """`start_inprocess` for module-scoped fixtures: the gateways are stopped when the module ends."""
    start, started = _inprocess_starter()
    yield start
    for gw in reversed(started):
        gw.stop()

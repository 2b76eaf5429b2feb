"""The batch store's leases and the capacity gate, on a real SQLite database in this process."""

from __future__ import annotations

import asyncio
import time

import pytest

from parley.batches.gate import CapacityGate
from parley.batches.store import BatchStore, NewItem
from parley.config import BatchSettings, RouterSettings
from parley.core.deployment import Deployment, Target
from parley.router.health import Health
from parley.store.db import make_engine, migrate


def test_a_lapsed_lease_moves_the_item_and_only_the_new_holder_writes_its_result(tmp_path):
    async def run() -> None:
        engine = make_engine(str(tmp_path / "parley.db"))
        await migrate(engine)
        store = BatchStore(engine)
        items = [NewItem(f"c{i}", "m", "{}") for i in range(3)]
        batch_id = await store.create(None, None, {}, items, 100.0, 1000.0)
        first = await store.claim("a", 2, now=100.0, lease=5.0)
        assert [c.idx for c in first] == [0, 1] and first[0].request_id == f"{batch_id}_0"
        late = await store.claim("b", 5, now=101.0, lease=5.0)
        assert [c.idx for c in late] == [2]  # a's leases still hold
        taken = await store.claim("b", 5, now=106.0, lease=5.0)  # a's leases ran out
        assert [c.idx for c in taken] == [0, 1] and taken[0].attempts == 2
        assert await store.finish("a", [(first[0], "succeeded", "{}")], 107.0) == 0
        assert await store.finish("b", [(taken[0], "succeeded", "{}")], 107.0) == 1
        await store.renew("b", [(batch_id, 1), (batch_id, 2)], 1000.0)
        await store.sweep(500.0)
        assert (await store.get(batch_id)).status == "in_progress"  # two items still running
        assert await store.claim("c", 5, now=200.0, lease=5.0) == []  # b renewed its leases
        for item in (taken[1], late[0]):
            assert await store.finish("b", [(item, "errored", "{}")], 501.0) == 1
        await store.sweep(502.0)
        row = await store.get(batch_id)
        assert row.status == "ended" and row.ended_at == 502.0
        assert (row.counts.succeeded, row.counts.errored, row.counts.processing) == (1, 2, 0)
        assert await store.purge(before=503.0) == 1 and await store.get(batch_id) is None
        await engine.dispose()

    asyncio.run(run())


def _deployment(**params) -> Deployment:
    return Deployment("d1", "m", "openai", "openai", "m", None, None, 60.0, {}, params)


@pytest.mark.parametrize("interactive", [0, 2])
def test_the_gate_leaves_capacity_to_interactive_calls(interactive):
    async def run() -> None:
        health = Health(RouterSettings())
        gate = CapacityGate(health, BatchSettings(deployment_concurrency=4, capacity_share=0.5))
        dep = _deployment()
        for _ in range(interactive):
            health.begin(dep.id)
        stop = asyncio.Event()
        slots = []
        for _ in range(4 if interactive == 0 else 1):
            slots.append(await gate.acquire([Target(dep, "m")], stop))
        assert not gate.has_room(dep)  # 4 alone; beside 2 interactive calls 4 * 0.5 - 2, at least 1
        gate.release(slots.pop())
        assert gate.has_room(dep)

    asyncio.run(run())


def test_the_gate_stops_at_the_share_of_the_deployments_rpm_and_tpm():
    health = Health(RouterSettings())
    gate = CapacityGate(health, BatchSettings(capacity_share=0.5))
    by_rpm, by_tpm = _deployment(rpm=10), _deployment(tpm=1000)
    for _ in range(4):
        health.begin("d1")
        health.end("d1", tokens=100)
    assert gate.has_room(by_rpm) and gate.has_room(by_tpm)
    health.begin("d1")
    health.end("d1", tokens=100)
    assert not gate.has_room(by_rpm) and not gate.has_room(by_tpm)  # 5 of 10 rpm, 500 of 1000 tpm


def test_batch_settings_are_checked_at_load():
    from parley.config import ConfigError, build_config

    config = build_config(
        {"batch_settings": {"expiry_hours": "2", "discount": 0.5, "colour": "red"}}, "cfg.yaml"
    )
    assert config.batches.expiry_hours == 2.0 and config.batches.discount == 0.5
    assert config.ignored == ["batch_settings.colour (unknown key)"]
    for bad, needle in (({"capacity_share": 2}, "capacity_share"), ({"discount": 1}, "discount")):
        with pytest.raises(ConfigError) as info:
            build_config({"batch_settings": bad}, "cfg.yaml")
        assert str(info.value).startswith(f"cfg.yaml: batch_settings.{needle}: must be")


def test_an_idle_runner_looks_for_work_less_often_and_a_new_batch_wakes_it(start_inprocess, tmp_path):
    """With no work, the runner's looks at the database back off from poll_interval (0.1 s here)
    to IDLE_POLL_SECONDS (an idle gateway used to query it 10 times a second here, 2 by default,
    forever); a batch created on the gateway still starts at once."""
    from keys_support import MASTER

    config = {
        "model_list": [{"model_name": "parley-mock", "params": {"model": "mock/parley-mock"}}],
        "general_settings": {"master_key": MASTER, "database_url": str(tmp_path / "parley.db")},
        "batch_settings": {"poll_interval": 0.1},
    }
    gw = start_inprocess(config)
    runner = gw.gateway.batches
    assert runner is not None
    claims: list[float] = []
    claim = runner.store.claim

    async def counted(*args, **kwargs):
        claims.append(time.monotonic())
        return await claim(*args, **kwargs)

    runner.store.claim = counted
    time.sleep(3.0)
    assert 2 <= len(claims) <= 7, len(claims)  # 0.1 s apart at first, then 0.2, 0.4 ... (30 before)
    requests = [
        {
            "custom_id": f"c{i}",
            "params": {
                "model": "parley-mock",
                "max_tokens": 8,
                "messages": [{"role": "user", "content": "hi"}],
            },
        }
        for i in range(3)
    ]
    headers = {"x-api-key": MASTER, "anthropic-version": "2023-06-01"}
    created = time.monotonic()
    batch = gw.post("/v1/messages/batches", json={"requests": requests}, headers=headers).json()
    while (
        gw.get(f"/v1/messages/batches/{batch['id']}", headers=headers).json()["processing_status"] != "ended"
    ):
        assert time.monotonic() - created < 3.0, "an idle runner was not woken by a new batch"
        time.sleep(0.05)

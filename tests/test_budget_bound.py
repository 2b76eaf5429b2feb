"""Issue 13, item 8: strict budgets hold when the upstream counts more input tokens than the local
estimate (reservations come from a bound, one token per byte of text), and when it counts more
than even the bound, the overshoot is at most that excess and the key is refused afterwards."""

from __future__ import annotations

import asyncio

import anthropic
import pytest

from keys_support import Admin, gateway_config
from parley.core.tokens import bound_request_tokens, count_request_tokens

PROMPT = "word " * 50  # 250 bytes: estimate 70 tokens (x 1.2 = 84), bound 257
BODY = {"model": "claude-sonnet-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": PROMPT}]}
IN, OUT = 3e-6, 15e-6  # claude-sonnet-4-5, USD per token
REPLY = {"content": [{"type": "text", "text": "ok"}], "delay": 0.3}  # 7 output tokens


def reply_cost(input_tokens: int) -> float:
    return input_tokens * IN + 7 * OUT


@pytest.fixture(scope="module")
def gateway(start_gateway, fake_upstream, tmp_path_factory):
    return start_gateway(gateway_config(fake_upstream, str(tmp_path_factory.mktemp("bound") / "p.db")))


async def _burst(url: str, key: str, n: int) -> list[int]:
    client = anthropic.AsyncAnthropic(base_url=url, api_key=key, max_retries=0, timeout=30)

    async def one() -> int:
        try:
            await client.messages.create(**BODY)
        except anthropic.APIStatusError as e:
            return e.status_code
        return 200

    try:
        return list(await asyncio.gather(*(one() for _ in range(n))))
    finally:
        await client.close()


def spend_until_refused(gateway, upstream, budget: float, input_tokens: int, n: int) -> tuple[Admin, str]:
    """Bursts of `n` concurrent requests until every one is refused; the admin API and the key."""
    admin = Admin(gateway.url)
    key = admin.post("/key/generate", {"max_budget": budget})["key"]
    upstream.script(*[{**REPLY, "usage": {"input_tokens": input_tokens}}] * 200)
    statuses: list[int] = []
    for _ in range(10):
        statuses = asyncio.run(_burst(gateway.url, key, n))
        assert set(statuses) <= {200, 402}
        if 200 not in statuses:
            return admin, key
    raise AssertionError(f"still served after 10 bursts: {statuses}")


def spent(admin: Admin, key: str) -> float:
    rows = admin.wait_logs(1, api_key=key)
    total = sum(r["spend"] for r in rows)
    assert admin.get("/key/info", key=key)["info"]["spend"] == pytest.approx(total)
    return total


def test_the_bound_covers_what_the_estimate_missed():
    assert count_request_tokens(BODY) == 70 and bound_request_tokens(BODY) == 257


def test_upstream_counting_more_than_the_estimate_does_not_overspend(gateway, upstream):
    """200 input tokens reported where the estimate reserved 84: before the bound, four requests fit
    in the budget at once and together spent 41% more than it."""
    budget = 0.002
    admin, key = spend_until_refused(gateway, upstream, budget, 200, 10)
    total = spent(admin, key)
    assert 0 < total <= budget + 1e-12


def test_upstream_counting_more_than_the_bound_overshoots_by_one_request_and_then_refuses(gateway, upstream):
    """2,000 input tokens reported where the bound reserved 257: one request at a time (sequential
    calls), the overshoot is at most that one request's excess; then the key gets 402."""
    budget = 0.005
    admin, key = spend_until_refused(gateway, upstream, budget, 2000, 1)
    total = spent(admin, key)
    excess = (2000 - bound_request_tokens(BODY)) * IN
    assert budget < total <= budget + excess + 1e-12
    assert asyncio.run(_burst(gateway.url, key, 3)) == [402, 402, 402]  # spend is over: refused

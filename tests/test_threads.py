"""Server-held threads on a translated backend, driven by the anthropic SDK's own thread helpers.

A real `parley serve` with a database holds the thread; the OpenAI-protocol fake upstream records
what the backend received. The SDK's requests are recorded on its HTTP client, so each test sees
both sides: the client sent only the new turn, the backend got the whole conversation.
"""

from __future__ import annotations

import anthropic
import httpx2
import orjson
import pytest
from anthropic import beta_tool
from anthropic.types import (
    ThreadAlreadyContinuedError,
    ThreadFingerprintMismatchError,
    ThreadNotFoundError,
)

from keys_support import Admin, create_pg_database, drop_pg_database

MASTER = "sk-parley-master-threads"


@beta_tool
def get_weather(city: str) -> str:
    """The weather in a city.

    Args:
        city: the city
    """
    return f"sunny in {city}"


@beta_tool
def get_time(tz: str) -> str:
    """The time in a timezone.

    Args:
        tz: the timezone
    """
    return f"12:00 {tz}"


def config(upstream, database_url: str) -> dict:
    return {
        "model_list": [
            {
                "model_name": "local",
                "params": {"model": "openai/qwen3", "api_base": upstream.url + "/v1", "api_key": "sk-x"},
            },
            {"model_name": "echo", "params": {"model": "mock/echo"}},
        ],
        "general_settings": {
            "master_key": MASTER,
            "database_url": database_url,
            "spend_flush_interval": 0.05,
        },
        "router_settings": {"num_retries": 0},
    }


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def gateway(request, start_gateway, fake_upstream, tmp_path_factory):
    if request.param == "sqlite":
        yield start_gateway(config(fake_upstream, str(tmp_path_factory.mktemp("threads") / "p.db")))
        return
    name, url = create_pg_database()
    gw = start_gateway(config(fake_upstream, url))
    yield gw
    gw.stop()
    drop_pg_database(name)


class Recorder:
    """The SDK's requests, as sent."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []

    def __call__(self, request: httpx2.Request) -> None:
        if request.url.path.endswith("/v1/messages"):
            self.bodies.append(orjson.loads(request.content))


def client_for(gateway, key: str = MASTER) -> tuple[anthropic.Anthropic, Recorder]:
    recorder = Recorder()
    http = httpx2.Client(event_hooks={"request": [recorder]})
    return anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0, http_client=http), recorder


def backend_bodies(upstream) -> list[dict]:
    return [orjson.loads(r["body"]) for r in upstream.requests() if r["path"] == "/v1/chat/completions"]


def test_tool_runner_thread_continued_across_three_turns(gateway, upstream):
    upstream.script(
        {"api": "openai", "tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]},
        {"api": "openai", "tool_calls": [{"name": "get_time", "arguments": {"tz": "CET"}}]},
        {"api": "openai", "content": "Sunny in Paris, 12:00 CET."},
    )
    client, sdk = client_for(gateway)
    runner = client.beta.messages.tool_runner(
        model="local",
        max_tokens=256,
        system="Be brief.",
        tools=[get_weather, get_time],
        messages=[{"role": "user", "content": "Weather and time in Paris?"}],
    )
    replies = list(runner)
    assert [r.stop_reason for r in replies] == ["tool_use", "tool_use", "end_turn"]
    assert replies[-1].content[0].text == "Sunny in Paris, 12:00 CET."

    # The SDK: a create with the question, then two continues carrying only the tool result.
    first, second, third = sdk.bodies
    assert first["thread"] == {"type": "create"} and len(first["messages"]) == 1
    assert second["thread"] == {"type": "continue", "previous_message_id": replies[0].id}
    assert third["thread"] == {"type": "continue", "previous_message_id": replies[1].id}
    for body in (second, third):
        assert "system" not in body and "tools" not in body
        assert [m["role"] for m in body["messages"]] == ["user"]
        assert body["messages"][0]["content"][0]["type"] == "tool_result"

    # The backend: the whole conversation each time, with the system prompt and the tools.
    last = backend_bodies(upstream)[-1]
    assert [m["role"] for m in last["messages"]] == [
        "system",
        "user",
        "assistant",
        "tool",
        "assistant",
        "tool",
    ]
    assert last["messages"][0]["content"] == "Be brief."
    assert last["messages"][2]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert last["messages"][3]["content"] == "sunny in Paris"
    assert last["messages"][4]["tool_calls"][0]["function"]["name"] == "get_time"
    assert last["messages"][5]["content"] == "12:00 CET"
    assert {t["function"]["name"] for t in last["tools"]} == {"get_weather", "get_time"}


def test_thread_helper_streams_and_continues(gateway, upstream):
    upstream.script(
        {"api": "openai", "content": "Hi Ada."}, {"api": "openai", "content": "Your name is Ada."}
    )
    client, sdk = client_for(gateway)
    thread = client.beta.messages.thread(model="local", max_tokens=64)
    with thread.stream({"role": "user", "content": "I am Ada."}) as stream:
        first = stream.get_final_message()
    second = thread.send({"role": "user", "content": "What is my name?"})
    assert second.content[0].text == "Your name is Ada."
    assert sdk.bodies[1]["thread"]["previous_message_id"] == first.id
    assert [m["role"] for m in sdk.bodies[1]["messages"]] == ["user"]
    history = backend_bodies(upstream)[-1]["messages"]
    assert history == [
        {"role": "user", "content": "I am Ada."},
        {"role": "assistant", "content": "Hi Ada."},
        {"role": "user", "content": "What is my name?"},
    ]


def test_a_reply_is_continued_once(gateway, upstream):
    upstream.script({"api": "openai", "content": "one"}, {"api": "openai", "content": "two"})
    client, _ = client_for(gateway)
    first = client.beta.messages.create(
        model="local", max_tokens=16, messages=[{"role": "user", "content": "a"}], thread={"type": "create"}
    )
    continue_first = {"type": "continue", "previous_message_id": first.id}
    client.beta.messages.create(
        model="local", max_tokens=16, messages=[{"role": "user", "content": "b"}], thread=continue_first
    )
    with pytest.raises(ThreadAlreadyContinuedError):
        client.beta.messages.create(
            model="local", max_tokens=16, messages=[{"role": "user", "content": "c"}], thread=continue_first
        )


def test_unknown_or_foreign_thread_is_not_found(gateway, upstream):
    upstream.script({"api": "openai", "content": "mine"})
    client, _ = client_for(gateway)
    mine = client.beta.messages.create(
        model="local", max_tokens=16, messages=[{"role": "user", "content": "a"}], thread={"type": "create"}
    )
    with pytest.raises(ThreadNotFoundError):
        client.beta.messages.create(
            model="local",
            max_tokens=16,
            messages=[{"role": "user", "content": "b"}],
            thread={"type": "continue", "previous_message_id": "msg_nobody_made_this"},
        )
    key = Admin(gateway.url, MASTER).post("/key/generate", {})["key"]
    other, _ = client_for(gateway, key)
    with pytest.raises(ThreadNotFoundError):  # another key cannot read this thread
        other.beta.messages.create(
            model="local",
            max_tokens=16,
            messages=[{"role": "user", "content": "b"}],
            thread={"type": "continue", "previous_message_id": mine.id},
        )


def test_changing_the_system_prompt_is_refused(gateway, upstream):
    upstream.script({"api": "openai", "content": "x"}, {"api": "openai", "content": "y"})
    client, _ = client_for(gateway)
    first = client.beta.messages.create(
        model="local",
        max_tokens=16,
        system="A",
        messages=[{"role": "user", "content": "a"}],
        thread={"type": "create"},
    )
    with pytest.raises(ThreadFingerprintMismatchError):
        client.beta.messages.create(
            model="local",
            max_tokens=16,
            system="B",
            messages=[{"role": "user", "content": "b"}],
            thread={"type": "continue", "previous_message_id": first.id},
        )
    # The failed continue gave the reply back: it can still be continued.
    reply = client.beta.messages.create(
        model="local",
        max_tokens=16,
        messages=[{"role": "user", "content": "b"}],
        thread={"type": "continue", "previous_message_id": first.id},
    )
    assert reply.content[0].text == "y"


def test_mock_model_threads_too(gateway):
    client, _ = client_for(gateway)
    thread = client.beta.messages.thread(model="echo", max_tokens=64)
    thread.send({"role": "user", "content": "first"})
    second = thread.send({"role": "user", "content": "second"})
    assert "second" in second.content[0].text and thread.previous_message_id == second.id


async def test_old_threads_are_pruned(tmp_path):
    from parley.store.db import make_engine, migrate
    from parley.store.threads import RETENTION_SECONDS, ThreadState, ThreadStore

    engine = make_engine(str(tmp_path / "prune.db"))
    await migrate(engine)
    store = ThreadStore(engine)
    await store.save("msg_old", None, "m", ThreadState(None, None, []), None)
    await store.save("msg_new", None, "m", ThreadState(None, None, []), None)
    assert await store.prune(older_than=RETENTION_SECONDS) == 0
    assert await store.prune(older_than=-1) == 2  # everything is older than the future
    with pytest.raises(Exception, match="thread_not_found"):
        await store.claim("msg_new", None, "req_x")
    await engine.dispose()


async def test_database_down_answers_thread_not_found():
    """The SDK then replays the whole history under a new thread: still the right conversation."""
    from parley.store.db import make_engine
    from parley.store.threads import ThreadClaim, ThreadStore
    from parley.testing.procs import free_port

    engine = make_engine(f"postgresql://127.0.0.1:{free_port()}/nothing_listens_here")
    with pytest.raises(ThreadClaim) as e:
        await ThreadStore(engine).claim("msg_x", None, "req_x")
    assert e.value.code == "thread_not_found"
    await ThreadStore(engine).release("msg_x", "req_x")  # logged, not raised
    await engine.dispose()


def test_thread_turns_bypass_the_response_cache(start_inprocess, fake_upstream, upstream, tmp_path):
    cfg = config(fake_upstream, str(tmp_path / "cache.db"))
    cfg["litellm_settings"] = {"cache": True, "cache_params": {"type": "local", "ttl": 600}}
    gw = start_inprocess(cfg)
    client = gw.anthropic(api_key=MASTER, max_retries=0)
    upstream.script({"api": "openai", "content": "first"}, {"api": "openai", "content": "second"})
    args = {"model": "local", "max_tokens": 16, "messages": [{"role": "user", "content": "same question"}]}
    one = client.beta.messages.create(**args, thread={"type": "create"})
    two = client.beta.messages.create(**args, thread={"type": "create"})
    assert (one.content[0].text, two.content[0].text) == ("first", "second") and one.id != two.id


def test_threads_switched_off(start_inprocess, fake_upstream, upstream, tmp_path):
    from anthropic.types import ThreadUnsupportedRequestError

    cfg = config(fake_upstream, str(tmp_path / "off.db"))
    cfg["general_settings"]["message_threads"] = False
    client = start_inprocess(cfg).anthropic(api_key=MASTER, max_retries=0)
    with pytest.raises(ThreadUnsupportedRequestError):
        client.beta.messages.create(
            model="local",
            max_tokens=16,
            messages=[{"role": "user", "content": "a"}],
            thread={"type": "create"},
        )

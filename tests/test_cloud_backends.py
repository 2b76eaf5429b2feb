"""Vertex AI (Claude and Gemini), the Gemini API and Azure OpenAI behind parley, end to end.

A `parley serve` process in front of the fake upstream's Google and Azure APIs (checked against the
official clients in test_fakes_cloud.py), driven by the anthropic and openai SDKs. Each test checks
what the client got, what the backend was sent, and what was billed."""

from __future__ import annotations

import time
import urllib.request

import anthropic
import openai
import orjson
import pytest

from keys_support import Admin
from parley.testing.fake_google import service_account_info

MASTER = "sk-parley-master-cloud"
WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


def config(upstream, database_url: str) -> dict:
    vertex = {
        "vertex_project": "proj",
        "vertex_location": "us-east5",
        "vertex_credentials": service_account_info(upstream.url + "/token", "proj"),
        "api_base": upstream.url,
    }
    gemini = {"api_key": "AIza-test", "api_base": upstream.url}
    azure = {"api_base": upstream.url, "api_key": "azure-key", "api_version": "2024-10-21"}

    def entry(name: str, model: str, **params) -> dict:
        return {"model_name": name, "params": {"model": model, **params}}

    return {
        "model_list": [
            entry("claude-vertex", "vertex_ai/claude-sonnet-4-5@20250929", **vertex),
            entry("gemini-vertex", "vertex_ai/gemini-3-pro-preview", **vertex),
            entry("gemini-flash", "gemini/gemini-2.5-flash", **gemini),
            entry("gemini-3", "gemini/gemini-3-pro-preview", **gemini),
            entry("gemini-badkey", "gemini/gemini-2.5-flash", api_key="wrong", api_base=upstream.url),
            entry("azure-gpt", "azure/my-gpt4o", base_model="gpt-4o", **azure),
            entry("azure-v1", "azure/gpt-4o", **dict(azure, api_version="v1")),
        ],
        "general_settings": {"master_key": MASTER, "database_url": database_url, "spend_flush_interval": 0.1},
        "router_settings": {"num_retries": 0},
    }


@pytest.fixture(scope="module")
def gw(start_gateway, fake_upstream, tmp_path_factory):
    return start_gateway(config(fake_upstream, str(tmp_path_factory.mktemp("cloud") / "parley.db")))


@pytest.fixture
def admin(gw):
    return Admin(gw.url, MASTER)


@pytest.fixture
def key(admin):
    return admin.post("/key/generate", {})["key"]


@pytest.fixture
def claude(gw, key):
    return anthropic.Anthropic(base_url=gw.url, api_key=key, max_retries=0)


@pytest.fixture
def gpt(gw, key):
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0)


def sent(upstream, n: int = -1) -> dict:
    request = [r for r in upstream.requests() if not r["path"].startswith(("/token", "/_fake"))][n]
    return dict(request, json=orjson.loads(request["body"]))


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


# ----------------------------------------------------------------------------- Claude on Vertex


def test_vertex_claude_reply_request_and_spend(claude, admin, key, upstream):
    upstream.script(
        {
            "usage": {
                "input_tokens": 100,
                "output_tokens": 40,
                "cache_creation_input_tokens": 2000,
                "cache_read_input_tokens": 10000,
            }
        }
    )
    message = claude.messages.create(
        model="claude-vertex",
        max_tokens=64,
        system=[{"type": "text", "text": "rules", "cache_control": {"type": "ephemeral"}}],
        messages=user("Hi"),
        extra_headers={"anthropic-beta": "context-1m-2025-08-07"},
    )
    assert message.content[0].text == "Hello! You said: Hi"
    wire = sent(upstream)
    assert wire["path"] == (
        "/v1/projects/proj/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5@20250929:rawPredict"
    )
    assert wire["json"]["anthropic_version"] == "vertex-2023-10-16" and "model" not in wire["json"]
    assert wire["json"]["system"][0]["cache_control"] == {"type": "ephemeral"}  # Anthropic's body, as sent
    assert wire["headers"]["authorization"].startswith("Bearer ya29.fake-")
    assert wire["headers"]["anthropic-beta"] == "context-1m-2025-08-07"
    assert key not in str(wire["headers"])
    [row] = admin.wait_logs(1, api_key=key)
    # Sonnet 4.5 per million: input $3, output $15, 5-minute cache write $3.75, cache read $0.30;
    # us-east5 is a regional endpoint: 10% over the global list price
    by_hand = (100 * 3 + 40 * 15 + 2000 * 3.75 + 10000 * 0.30) / 1e6 * 1.1
    assert row["spend"] == pytest.approx(by_hand, rel=1e-9)


def test_vertex_claude_stream_tool_loop_and_count(claude, upstream):
    upstream.script(
        {"content": [{"type": "tool_use", "name": "get_weather", "input": {"city": "Paris"}}]},
        {"content": [{"type": "text", "text": "Sunny."}], "usage": {"input_tokens": 77, "output_tokens": 5}},
    )
    messages = user("Weather in Paris?")
    with claude.messages.stream(
        model="claude-vertex", max_tokens=200, tools=[WEATHER], messages=messages
    ) as s:
        first = s.get_final_message()
    assert first.stop_reason == "tool_use" and first.content[0].input == {"city": "Paris"}
    assert sent(upstream)["path"].endswith(":streamRawPredict")
    messages += [
        {"role": "assistant", "content": [b.model_dump() for b in first.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": first.content[0].id, "content": "sunny"}],
        },
    ]
    with claude.messages.stream(
        model="claude-vertex", max_tokens=200, tools=[WEATHER], messages=messages
    ) as s:
        second = s.get_final_message()
    assert second.content[0].text == "Sunny." and second.usage.input_tokens == 77
    count = claude.messages.count_tokens(model="claude-vertex", messages=user("count me"))
    assert count.input_tokens > 0
    wire = sent(upstream)
    assert wire["path"].endswith("/publishers/anthropic/models/count-tokens:rawPredict")
    assert wire["json"]["model"] == "claude-sonnet-4-5@20250929"


def test_vertex_claude_thinking_and_image_reach_vertex_as_sent(claude, upstream):
    thinking = {"type": "thinking", "thinking": "Check the picture.", "signature": "EqQBCkYIBxgCKkB-sig"}
    call = {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Oslo"}}
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    messages = [
        {"role": "user", "content": [image, {"type": "text", "text": "Weather where this is?"}]},
        {"role": "assistant", "content": [thinking, call]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01A", "content": "-5C"}]},
    ]
    upstream.script(
        {"content": [{"type": "thinking", "thinking": "Cold."}, {"type": "text", "text": "Cold in Oslo."}]}
    )
    reply = claude.messages.create(
        model="claude-vertex",
        max_tokens=2000,
        thinking={"type": "enabled", "budget_tokens": 1024},
        tools=[WEATHER],
        messages=messages,
    )
    assert [b.type for b in reply.content] == ["thinking", "text"] and reply.content[0].signature
    body = sent(upstream)["json"]
    assert body["messages"] == messages and body["thinking"] == {"type": "enabled", "budget_tokens": 1024}


def test_vertex_claude_errors_keep_their_meaning(claude, gpt, upstream):
    upstream.script(
        {
            "status": 429,
            "google_error": {"status": "RESOURCE_EXHAUSTED", "message": "Quota exceeded for aiplatform"},
        },
        {"status": 400, "error": {"type": "invalid_request_error", "message": "max_tokens: too large"}},
        {"status": 429, "google_error": {"status": "RESOURCE_EXHAUSTED", "message": "Quota exceeded"}},
    )
    with pytest.raises(anthropic.RateLimitError) as e:
        claude.messages.create(model="claude-vertex", max_tokens=5, messages=user("x"))
    assert e.value.body["error"]["message"] == "Vertex AI: Quota exceeded for aiplatform"
    with pytest.raises(anthropic.BadRequestError) as e:
        claude.messages.create(model="claude-vertex", max_tokens=5, messages=user("x"))
    assert e.value.body["error"]["message"] == "max_tokens: too large"  # Anthropic's own, passed on
    with pytest.raises(openai.RateLimitError):
        gpt.chat.completions.create(model="claude-vertex", messages=user("x"))


def test_vertex_tokens_are_renewed_before_expiry(start_gateway, upstream, tmp_path):
    """The first token is fetched at startup; one close to expiry is still used while a renewal
    runs in the background, so no request waits on the token endpoint."""

    def google(payload: bytes | None = None) -> dict:
        req = urllib.request.Request(
            upstream.url + "/_fake/google", data=payload, method="POST" if payload else "GET"
        )
        with urllib.request.urlopen(req) as r:
            return orjson.loads(r.read())

    google(b'{"token_lifetime": 301.5}')
    try:
        cfg = config(upstream, str(tmp_path / "p.db"))
        cfg["model_list"] = cfg["model_list"][:1]
        at_start = len(google()["token_grants"])
        gw = start_gateway(cfg)
        client = anthropic.Anthropic(base_url=gw.url, api_key=MASTER, max_retries=0)
        deadline = time.monotonic() + 10
        while len(google()["token_grants"]) == at_start and time.monotonic() < deadline:
            time.sleep(0.05)  # the first token is fetched at startup, before any request
        before = len(google()["token_grants"])
        assert before == at_start + 1
        client.messages.create(model="claude-vertex", max_tokens=5, messages=user("a"))
        first = sent(upstream)["headers"]["authorization"]
        time.sleep(1.6)  # the token in hand is now within 300 s of its expiry
        client.messages.create(model="claude-vertex", max_tokens=5, messages=user("b"))
        assert sent(upstream)["headers"]["authorization"] == first  # served with it, not kept waiting
        deadline = time.monotonic() + 10
        while len(google()["token_grants"]) == before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(google()["token_grants"]) == before + 1
        client.messages.create(model="claude-vertex", max_tokens=5, messages=user("c"))
        assert sent(upstream)["headers"]["authorization"] != first  # the renewed one
    finally:
        google(b'{"token_lifetime": 3600}')


def test_vertex_token_failures_are_401_naming_vertex(start_gateway, upstream, claude):
    """A token endpoint that refuses (or a token Vertex rejects) is the caller's 401, never a 500."""
    bad = dict(service_account_info("http://127.0.0.1:9/token", "proj"))  # nothing listens there
    params = {"model": "vertex_ai/claude-haiku-4-5", "vertex_credentials": bad, "api_base": upstream.url}
    gw = start_gateway(
        {"model_list": [{"model_name": "v", "params": params}], "general_settings": {"master_key": MASTER}}
    )
    with pytest.raises(anthropic.AuthenticationError) as e:
        anthropic.Anthropic(base_url=gw.url, api_key=MASTER, max_retries=0).messages.create(
            model="v", max_tokens=5, messages=user("x")
        )
    assert e.value.body["error"]["message"].startswith("Vertex AI: could not get an access token")
    upstream.script(
        {
            "status": 401,
            "google_error": {
                "status": "UNAUTHENTICATED",
                "message": "Request had invalid authentication credentials.",
            },
        }
    )
    with pytest.raises(anthropic.AuthenticationError) as e:
        claude.messages.create(model="claude-vertex", max_tokens=5, messages=user("x"))
    assert e.value.body["error"]["message"] == "Vertex AI: Request had invalid authentication credentials."


def test_vertex_with_application_default_credentials(start_gateway, upstream, tmp_path):
    """No vertex_credentials and no vertex_project: ADC's key file names both."""
    key = tmp_path / "adc.json"
    key.write_bytes(orjson.dumps(service_account_info(upstream.url + "/token", "adc-project")))
    model = {
        "model": "vertex_ai/claude-haiku-4-5@20251001",
        "vertex_location": "europe-west1",
        "api_base": upstream.url,
    }
    gw = start_gateway(
        {
            "model_list": [{"model_name": "haiku", "params": model}],
            "general_settings": {"master_key": MASTER},
        },
        env={"GOOGLE_APPLICATION_CREDENTIALS": str(key)},
    )
    client = anthropic.Anthropic(base_url=gw.url, api_key=MASTER, max_retries=0)
    assert client.messages.create(model="haiku", max_tokens=5, messages=user("adc")).content[0].text
    assert sent(upstream)["path"].startswith(
        "/v1/projects/adc-project/locations/europe-west1/publishers/anthropic/"
    )
    assert sent(upstream)["headers"]["authorization"].startswith("Bearer ya29.fake-")


# ----------------------------------------------------------------------------- Gemini


def test_gemini_text_both_apis_streamed_and_not(claude, gpt, upstream):
    message = claude.messages.create(
        model="gemini-flash", max_tokens=50, system="Be brief.", messages=user("Hi")
    )
    assert message.content[0].text == "Hello! You said: Hi" and message.stop_reason == "end_turn"
    wire = sent(upstream)
    assert wire["path"] == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert wire["headers"]["x-goog-api-key"] == "AIza-test"
    assert wire["json"]["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert wire["json"]["generationConfig"]["maxOutputTokens"] == 50
    upstream.script({"api": "gemini", "text": "streamed in many small pieces", "piece": 4})
    with claude.messages.stream(model="gemini-flash", max_tokens=50, messages=user("go")) as s:
        texts = list(s.text_stream)
        final = s.get_final_message()
    assert len(texts) > 3 and final.content[0].text == "streamed in many small pieces"
    assert final.usage.output_tokens > 0
    assert sent(upstream)["query"] == "alt=sse"
    reply = gpt.chat.completions.create(model="gemini-flash", messages=user("from openai"))
    assert reply.choices[0].message.content == "Hello! You said: from openai"
    assert reply.choices[0].finish_reason == "stop" and reply.usage.prompt_tokens > 0
    upstream.script({"api": "gemini", "text": "chunked for openai", "piece": 3})
    stream = gpt.chat.completions.create(model="gemini-flash", messages=user("s"), stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "chunked for openai"


@pytest.mark.parametrize("model", ["gemini-3", "gemini-vertex"])
@pytest.mark.parametrize("streamed", [False, True])
def test_gemini_tool_loop_echoes_the_thought_signature(claude, upstream, model, streamed):
    """Gemini 3 refuses a function call sent back without its signature (the fake does too)."""
    upstream.script(
        {
            "api": "gemini",
            "thinking": "Need the weather tool.",
            "calls": [{"name": "get_weather", "args": {"city": "Oslo"}}],
        },
        {"api": "gemini", "text": "Cold in Oslo."},
    )
    thinking = {"type": "enabled", "budget_tokens": 1024}

    def ask(messages):
        kw = {
            "model": model,
            "max_tokens": 2000,
            "tools": [WEATHER],
            "thinking": thinking,
            "messages": messages,
        }
        if not streamed:
            return claude.messages.create(**kw)
        with claude.messages.stream(**kw) as s:
            return s.get_final_message()

    messages = user("Weather in Oslo?")
    first = ask(messages)
    kinds = [b.type for b in first.content]
    assert kinds == ["thinking", "tool_use"] and first.stop_reason == "tool_use"
    assert first.content[0].thinking == "Need the weather tool."
    assert first.content[1].input == {"city": "Oslo"}
    messages += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": first.content[1].id, "content": "-5C"}],
        },
    ]
    second = ask(messages)
    assert [b.text for b in second.content if b.type == "text"] == ["Cold in Oslo."]
    contents = sent(upstream)["json"]["contents"]
    call = contents[1]["parts"][-1]
    assert (
        call["functionCall"] == {"name": "get_weather", "args": {"city": "Oslo"}} and call["thoughtSignature"]
    )
    assert contents[2]["parts"][0]["functionResponse"] == {
        "name": "get_weather",
        "response": {"output": "-5C"},
    }
    if model == "gemini-vertex":
        assert sent(upstream)["headers"]["authorization"].startswith("Bearer ya29.fake-")


def test_gemini_tool_loop_through_chat_completions(gpt, upstream):
    upstream.script(
        {"api": "gemini", "calls": [{"name": "get_weather", "args": {"city": "Rome"}}]},
        {"api": "gemini", "text": "Warm."},
    )
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER["input_schema"]}}]
    messages: list[dict] = user("Rome?")
    first = gpt.chat.completions.create(model="gemini-3", messages=messages, tools=tools)
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls" and orjson.loads(call.function.arguments) == {
        "city": "Rome"
    }
    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "25C"},
    ]
    second = gpt.chat.completions.create(model="gemini-3", messages=messages, tools=tools)
    assert second.choices[0].message.content == "Warm."


def test_gemini_image_and_cached_usage_billed(claude, admin, key, upstream):
    upstream.script(
        {
            "api": "gemini",
            "text": "A pixel.",
            "usage": {
                "promptTokenCount": 1200,
                "candidatesTokenCount": 30,
                "cachedContentTokenCount": 1000,
                "thoughtsTokenCount": 20,
            },
        }
    )
    message = claude.messages.create(
        model="gemini-flash",
        max_tokens=100,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                    {"type": "text", "text": "What is this?"},
                ],
            }
        ],
    )
    assert message.content[0].text == "A pixel."
    assert (
        message.usage.input_tokens,
        message.usage.cache_read_input_tokens,
        message.usage.output_tokens,
    ) == (200, 1000, 50)
    parts = sent(upstream)["json"]["contents"][0]["parts"]
    assert parts[0] == {"inlineData": {"mimeType": "image/png", "data": PNG}}
    [row] = admin.wait_logs(1, api_key=key)
    # gemini-2.5-flash per million: input $0.30, output (thinking included) $2.50, cache read $0.03
    assert row["spend"] == pytest.approx((200 * 0.30 + 50 * 2.50 + 1000 * 0.03) / 1e6, rel=1e-9)


def test_gemini_errors_map_to_each_api(claude, gpt, upstream):
    with pytest.raises(anthropic.AuthenticationError) as e:
        claude.messages.create(model="gemini-badkey", max_tokens=5, messages=user("x"))
    assert e.value.body["error"]["message"].startswith("Gemini API: API key not valid")
    with pytest.raises(openai.AuthenticationError):
        gpt.chat.completions.create(model="gemini-badkey", messages=user("x"))
    upstream.script(
        {"api": "gemini", "status": 429, "error": {"status": "RESOURCE_EXHAUSTED", "message": "quota"}},
        {"api": "gemini", "status": 503, "error": {"status": "UNAVAILABLE", "message": "overloaded"}},
        {"api": "gemini", "text": "x" * 200, "error_after": 2},
    )
    with pytest.raises(anthropic.RateLimitError):
        claude.messages.create(model="gemini-flash", max_tokens=5, messages=user("x"))
    with pytest.raises(openai.InternalServerError):
        gpt.chat.completions.create(model="gemini-flash", messages=user("x"))
    stream = claude.messages.stream(model="gemini-flash", max_tokens=500, messages=user("x"))
    with pytest.raises(anthropic.APIStatusError) as e, stream as s:  # an error after the 200
        s.get_final_message()
    assert "Gemini API: The model is overloaded" in str(e.value)
    with pytest.raises(anthropic.BadRequestError) as e:  # parley's: the tool_use is not in the history
        claude.messages.create(
            model="gemini-flash",
            max_tokens=5,
            messages=[
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "nope", "content": "x"}]}
            ],
        )
    assert "no tool_use with this id" in e.value.message
    history = [  # a tool call Gemini did not sign (another model's conversation): Gemini 3's own 400
        {"role": "user", "content": "Paris?"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {}}],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": "sunny"}]},
    ]
    with pytest.raises(anthropic.BadRequestError) as e:
        claude.messages.create(model="gemini-3", max_tokens=5, tools=[WEATHER], messages=history)
    assert e.value.body["error"]["message"].startswith(
        "Gemini API: Function call is missing a thought_signature"
    )


def test_gemini_safety_block_is_a_refusal(claude, gpt, upstream):
    upstream.script(
        {"api": "gemini", "prompt_blocked": "SAFETY"},
        {"api": "gemini", "text": "I", "finish_reason": "SAFETY"},
    )
    assert (
        claude.messages.create(model="gemini-flash", max_tokens=5, messages=user("x")).stop_reason
        == "refusal"
    )
    reply = gpt.chat.completions.create(model="gemini-flash", messages=user("x"))
    assert reply.choices[0].finish_reason == "content_filter"


# ----------------------------------------------------------------------------- Azure OpenAI


def test_azure_through_both_apis(claude, gpt, admin, key, upstream):
    upstream.script(
        {
            "api": "openai",
            "content": "Hi from Azure",
            "usage": {"prompt_tokens": 1000, "completion_tokens": 100},
            "cached_tokens": 400,
        }
    )
    message = claude.messages.create(model="azure-gpt", max_tokens=50, messages=user("Hi"))
    assert message.content[0].text == "Hi from Azure" and message.usage.cache_read_input_tokens == 400
    wire = sent(upstream)
    assert wire["path"] == "/openai/deployments/my-gpt4o/chat/completions"
    assert wire["query"] == "api-version=2024-10-21" and wire["headers"]["api-key"] == "azure-key"
    assert "authorization" not in wire["headers"]
    [row] = admin.wait_logs(1, api_key=key)
    # gpt-4o (by base_model) per million: input $2.50, cached input $1.25, output $10
    assert row["spend"] == pytest.approx((600 * 2.50 + 400 * 1.25 + 100 * 10.0) / 1e6, rel=1e-9)
    with claude.messages.stream(model="azure-gpt", max_tokens=50, messages=user("streamed")) as s:
        assert (
            s.get_final_message().content[0].text == "Hello! You said: streamed"
        )  # after Azure's empty first chunk
    chunks = list(gpt.chat.completions.create(model="azure-gpt", messages=user("native"), stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello! You said: native"
    assert gpt.chat.completions.create(model="azure-v1", messages=user("v1")).choices[0].message.content
    assert sent(upstream)["path"] == "/openai/v1/chat/completions"


def test_azure_content_filter_and_errors(claude, gpt, upstream):
    upstream.script(
        {"api": "openai", "content": "", "finish_reason": "content_filter"},
        {"api": "openai", "content": "", "finish_reason": "content_filter"},
        {"api": "openai", "status": 429, "error": {"message": "Rate limit is exceeded.", "code": "429"}},
    )
    assert (
        claude.messages.create(model="azure-gpt", max_tokens=5, messages=user("x")).stop_reason == "refusal"
    )
    assert (
        gpt.chat.completions.create(model="azure-gpt", messages=user("x")).choices[0].finish_reason
        == "content_filter"
    )
    with pytest.raises(anthropic.RateLimitError):
        claude.messages.create(model="azure-gpt", max_tokens=5, messages=user("x"))
    filtered = {  # a prompt Azure's filter rejects: its 400, in each caller's envelope
        "api": "openai",
        "status": 400,
        "error": {
            "message": "The response was filtered due to the prompt triggering Azure OpenAI's content "
            "management policy.",
            "code": "content_filter",
            "param": "prompt",
        },
    }
    upstream.script(filtered, filtered)
    with pytest.raises(anthropic.BadRequestError) as e:
        claude.messages.create(model="azure-gpt", max_tokens=5, messages=user("x"))
    assert "content management policy" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        gpt.chat.completions.create(model="azure-gpt", messages=user("x"))
    assert e.value.code == "content_filter"


def test_azure_key_rejected_is_401(start_gateway, upstream):
    params = {"model": "azure/dep", "api_base": upstream.url, "api_key": "stale", "api_version": "2024-10-21"}
    gw = start_gateway(
        {"model_list": [{"model_name": "az", "params": params}], "general_settings": {"master_key": MASTER}}
    )
    with pytest.raises(anthropic.AuthenticationError) as e:
        anthropic.Anthropic(base_url=gw.url, api_key=MASTER, max_retries=0).messages.create(
            model="az", max_tokens=5, messages=user("x")
        )
    assert "Access denied due to invalid subscription key" in e.value.message

"""`bedrock/...` models end to end: the anthropic and openai SDKs -> `parley serve` -> the fake
Bedrock runtime (a separate process that checks every SigV4 signature with botocore and streams
real event-stream frames). Each test checks what the client got and what Bedrock was sent; spend
is read back from the spend log."""

from __future__ import annotations

import base64
import json
import os

import anthropic
import openai
import pytest

from keys_support import Admin
from parley.testing.fake_bedrock import API_KEYS, KEYS

MASTER = "sk-parley-master-bedrock"
CLAUDE = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
LLAMA = "meta.llama3-3-70b-instruct-v1:0"
NOVA = "amazon.nova-pro-v1:0"
ARN = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3"
KEY_ID, TEMP_ID, PROFILE_ID = "AKIAFAKEBEDROCK0001", "ASIAFAKEBEDROCKTEMP", "AKIAFAKEBEDROCK0001"
STATIC = {"aws_access_key_id": KEY_ID, "aws_secret_access_key": KEYS[KEY_ID][0]}
WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


def bedrock(name: str, model: str, upstream, **params) -> dict:
    return {
        "model_name": name,
        "params": {
            "model": f"bedrock/{model}",
            "api_base": upstream.url,
            "aws_region_name": "us-east-1",
            **params,
        },
    }


@pytest.fixture(scope="module")
def gateway(start_gateway, fake_upstream, tmp_path_factory):
    home = tmp_path_factory.mktemp("aws")
    (home / "credentials").write_text(
        f"[parley-test]\naws_access_key_id = {PROFILE_ID}\naws_secret_access_key = {KEYS[PROFILE_ID][0]}\n"
    )
    (home / "config").write_text("[profile parley-test]\nregion = us-east-1\n")
    config = {
        "model_list": [
            bedrock("claude-bedrock", CLAUDE, fake_upstream, **STATIC),
            bedrock(
                "claude-temp",
                CLAUDE,
                fake_upstream,
                aws_access_key_id=TEMP_ID,
                aws_secret_access_key=KEYS[TEMP_ID][0],
                aws_session_token=KEYS[TEMP_ID][1],
            ),
            bedrock("claude-profile", CLAUDE, fake_upstream, aws_profile_name="parley-test"),
            bedrock("claude-env", CLAUDE, fake_upstream),
            bedrock("claude-apikey", CLAUDE, fake_upstream, api_key=next(iter(API_KEYS))),
            bedrock(
                "claude-bad", CLAUDE, fake_upstream, aws_access_key_id=KEY_ID, aws_secret_access_key="wrong"
            ),
            bedrock("claude-arn", "invoke/" + ARN, fake_upstream, **STATIC),
            bedrock("claude-model-id", CLAUDE, fake_upstream, model_id=ARN, **STATIC),
            bedrock("llama", LLAMA, fake_upstream, **STATIC),
            bedrock("nova", NOVA, fake_upstream, **STATIC),
        ],
        "general_settings": {
            "master_key": MASTER,
            "database_url": str(home / "parley.db"),
            "spend_flush_interval": 0.1,
        },
        "router_settings": {"num_retries": 0},
    }
    env = {
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"),
        "AWS_CONFIG_FILE": str(home / "config"),
        "AWS_ACCESS_KEY_ID": KEY_ID,  # the environment's chain, for `claude-env`
        "AWS_SECRET_ACCESS_KEY": KEYS[KEY_ID][0],
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    assert not {"AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_BEARER_TOKEN_BEDROCK"} & os.environ.keys()
    return start_gateway(config, env=env)


@pytest.fixture
def admin(gateway):
    return Admin(gateway.url, MASTER)


@pytest.fixture
def key(admin):
    return admin.post("/key/generate", {})["key"]


def claude_client(gateway, key=MASTER) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0)


def gpt_client(gateway, key=MASTER) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)


def sent(upstream, index: int = -1) -> tuple[dict, dict]:
    request = upstream.requests()[index]
    return request, json.loads(request["body"])


# --- Claude through InvokeModel -------------------------------------------------------------------


def test_claude_text_reply_and_what_bedrock_got(gateway, upstream):
    message = claude_client(gateway).messages.create(
        model="claude-bedrock",
        max_tokens=64,
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"anthropic-beta": "context-1m-2025-08-07,interleaved-thinking-2025-05-14"},
    )
    assert message.content[0].text == "Hello! You said: hi"
    assert message.model == "claude-sonnet-4-5-20250929"
    request, body = sent(upstream)
    assert request["path"] == "/model/us.anthropic.claude-sonnet-4-5-20250929-v1:0/invoke"
    assert request["headers"]["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={KEY_ID}/")
    assert body["anthropic_version"] == "bedrock-2023-05-31"
    assert body["anthropic_beta"] == ["context-1m-2025-08-07", "interleaved-thinking-2025-05-14"]
    assert "model" not in body and "stream" not in body
    assert "anthropic-beta" not in request["headers"]


def test_claude_stream_split_frames_with_cache_tokens_billed(gateway, upstream, admin, key):
    usage = {
        "input_tokens": 40,
        "output_tokens": 12,
        "cache_read_input_tokens": 3000,
        "cache_creation_input_tokens": 500,
    }
    upstream.script(
        {"api": "bedrock", "split": 4, "usage": usage, "content": [{"type": "text", "text": "cached hello"}]}
    )
    with claude_client(gateway, key).messages.stream(
        model="claude-bedrock",
        max_tokens=64,
        system=[{"type": "text", "text": "rules", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "hi"}],
    ) as stream:
        final = stream.get_final_message()
    assert final.content[0].text == "cached hello"
    assert (final.usage.cache_read_input_tokens, final.usage.cache_creation_input_tokens) == (3000, 500)
    _, body = sent(upstream)
    assert body["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert upstream.requests()[-1]["path"].endswith("/invoke-with-response-stream")
    [row] = admin.wait_logs(1, api_key=key)
    assert (row["cache_read_input_tokens"], row["cache_creation_input_tokens"]) == (3000, 500)
    # Sonnet 4.5 on a us. (geographic) profile: list price x 1.1 (see docs/providers.md)
    by_hand = 1.1 * (40 * 3 + 12 * 15 + 3000 * 0.30 + 500 * 3.75) / 1e6
    assert row["spend"] == pytest.approx(by_hand, rel=1e-9)


@pytest.mark.parametrize("stream", [True, False])
def test_claude_usage_from_invocation_metrics(gateway, upstream, admin, key, stream):
    """The metrics on the last chunk (the token-count headers of a whole reply) are Bedrock's own
    count, cache reads and writes included; they are billed even where the events' usage says less
    (LiteLLM #34373 lost them)."""
    metrics = {
        "inputTokenCount": 11,
        "outputTokenCount": 5,
        "cacheReadInputTokenCount": 77,
        "cacheWriteInputTokenCount": 8,
    }
    upstream.script({"api": "bedrock", "metrics": metrics})
    client = claude_client(gateway, key)
    ask = [{"role": "user", "content": "hi"}]
    if stream:
        with client.messages.stream(model="claude-bedrock", max_tokens=64, messages=ask) as events:
            assert [e.type for e in events][-1] == "message_stop"
    else:  # the same counts come as x-amzn-bedrock-*-token-count headers
        client.messages.create(model="claude-bedrock", max_tokens=64, messages=ask)
    [row] = admin.wait_logs(1, api_key=key)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (11, 5)
    assert (row["cache_read_input_tokens"], row["cache_creation_input_tokens"]) == (77, 8)


def test_claude_tool_loop(gateway, upstream):
    upstream.script(
        {
            "api": "bedrock",
            "content": [{"type": "tool_use", "name": "get_weather", "input": {"city": "Oslo"}}],
        },
        {"api": "bedrock", "content": [{"type": "text", "text": "It is sunny in Oslo."}]},
    )
    client = claude_client(gateway)
    messages: list = [{"role": "user", "content": "Weather in Oslo?"}]
    first = client.messages.create(model="claude-bedrock", max_tokens=256, tools=[WEATHER], messages=messages)
    assert first.stop_reason == "tool_use"
    use = first.content[0]
    messages += [
        {"role": "assistant", "content": [b.model_dump() for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]},
    ]
    with client.messages.stream(
        model="claude-bedrock", max_tokens=256, tools=[WEATHER], messages=messages
    ) as s:
        second = s.get_final_message()
    assert second.content[0].text == "It is sunny in Oslo."
    _, body = sent(upstream)
    assert body["messages"][2]["content"][0] == {
        "type": "tool_result",
        "tool_use_id": use.id,
        "content": "sunny",
    }


def test_arn_in_the_path_and_cache_control_kept(gateway, upstream):
    claude_client(gateway).messages.create(
        model="claude-arn",
        max_tokens=32,
        messages=[
            {
                "role": "user",
                "content": [{"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}],
            }
        ],
    )
    request, body = sent(upstream)
    assert request["path"] == "/model/" + ARN + "/invoke"  # decoded by the fake; sent as one segment
    assert body["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral"}


def test_model_id_param_puts_the_arn_in_the_url_and_prices_by_model(gateway, upstream, admin, key):
    upstream.script({"api": "bedrock", "usage": {"input_tokens": 1000, "output_tokens": 100}})
    with claude_client(gateway, key).messages.stream(
        model="claude-model-id", max_tokens=64, messages=[{"role": "user", "content": "x"}]
    ) as stream:
        stream.get_final_message()
    assert upstream.requests()[-1]["path"] == "/model/" + ARN + "/invoke-with-response-stream"
    [row] = admin.wait_logs(1, api_key=key)
    assert row["spend"] == pytest.approx(1.1 * (1000 * 3 + 100 * 15) / 1e6, rel=1e-9)


@pytest.mark.parametrize("model", ["claude-temp", "claude-profile", "claude-env", "claude-apikey"])
def test_every_credential_source(gateway, upstream, model):
    message = claude_client(gateway).messages.create(
        model=model, max_tokens=16, messages=[{"role": "user", "content": "who am i"}]
    )
    assert message.content[0].text == "Hello! You said: who am i"
    headers = upstream.requests()[-1]["headers"]
    if model == "claude-apikey":
        assert headers["authorization"] == "Bearer " + next(iter(API_KEYS))
        return
    key_id = TEMP_ID if model == "claude-temp" else KEY_ID
    assert headers["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={key_id}/")
    assert ("x-amz-security-token" in headers) == (model == "claude-temp")


def stream_failure(gateway, model: str) -> anthropic.APIStatusError:
    """The error the anthropic SDK raises for a streamed call to `model`."""
    with (
        pytest.raises(anthropic.APIStatusError) as info,
        claude_client(gateway).messages.stream(
            model=model, max_tokens=64, messages=[{"role": "user", "content": "hi"}]
        ) as stream,
    ):
        stream.get_final_message()
    return info.value


@pytest.mark.parametrize("model", ["claude-bedrock", "llama"])
def test_stream_exception_becomes_the_anthropic_error_event(gateway, upstream, model):
    exc = {"type": "throttlingException", "message": "Too many tokens, please wait before trying again."}
    upstream.script({"api": "bedrock", "exception": exc, "exception_after": 3, "split": 3})
    error = stream_failure(gateway, model)
    assert error.body["error"]["type"] == "rate_limit_error"
    assert "Too many tokens" in error.body["error"]["message"]


@pytest.mark.parametrize("model", ["claude-bedrock", "llama"])
def test_corrupted_frame_mid_stream_ends_with_an_error_event(gateway, upstream, model):
    upstream.script({"api": "bedrock", "corrupt_after": 4})
    assert "corrupted" in stream_failure(gateway, model).body["error"]["message"]


def test_corrupted_first_frame_is_a_bad_gateway(gateway, upstream):
    upstream.script({"api": "bedrock", "corrupt_after": 0})
    assert stream_failure(gateway, "claude-bedrock").status_code == 502


@pytest.mark.parametrize("stream", [False, True])
def test_errors_map_to_each_sdks_classes(gateway, upstream, stream):
    throttle = {
        "api": "bedrock",
        "status": 429,
        "error": {"type": "ThrottlingException", "message": "Rate exceeded"},
    }
    invalid = {
        "api": "bedrock",
        "status": 400,
        "error": {"type": "ValidationException", "message": "bad input"},
    }
    upstream.script(throttle, invalid, throttle, invalid)
    claude, gpt = claude_client(gateway), gpt_client(gateway)
    ask = [{"role": "user", "content": "x"}]
    with pytest.raises(anthropic.RateLimitError) as info:
        claude.messages.create(model="claude-bedrock", max_tokens=8, messages=ask, stream=stream)
    assert info.value.body["error"]["type"] == "rate_limit_error"
    with pytest.raises(anthropic.BadRequestError):
        claude.messages.create(model="llama", max_tokens=8, messages=ask, stream=stream)
    with pytest.raises(openai.RateLimitError) as oinfo:
        gpt.chat.completions.create(model="llama", messages=ask, stream=stream)
    assert oinfo.value.body["type"] == "rate_limit_error"
    with pytest.raises(openai.BadRequestError):
        gpt.chat.completions.create(model="claude-bedrock", messages=ask, stream=stream)


def test_bad_credentials_are_401_naming_bedrock(gateway, upstream):
    with pytest.raises(anthropic.AuthenticationError) as info:
        claude_client(gateway).messages.create(
            model="claude-bad", max_tokens=8, messages=[{"role": "user", "content": "x"}]
        )
    assert "Amazon Bedrock" in info.value.message and "InvalidSignatureException" in info.value.message
    with pytest.raises(openai.AuthenticationError):
        gpt_client(gateway).chat.completions.create(
            model="claude-bad", messages=[{"role": "user", "content": "x"}]
        )


def test_count_tokens_by_bedrock_or_marked_estimate(gateway, upstream):
    client = claude_client(gateway)
    ask = [{"role": "user", "content": "count these words for me please"}]
    counted = client.messages.with_raw_response.count_tokens(model="claude-bedrock", messages=ask)
    assert counted.parse().input_tokens > 0
    assert "x-parley-token-count" not in counted.headers
    assert upstream.requests()[-1]["path"].endswith("/count-tokens")
    upstream.script({"api": "bedrock_count", "count_tokens": "unsupported"})
    estimated = client.messages.with_raw_response.count_tokens(model="claude-bedrock", messages=ask)
    assert estimated.headers["x-parley-token-count"] == "estimate"
    assert estimated.parse().input_tokens > 0


# --- other models through Converse ----------------------------------------------------------------


def test_converse_text_image_and_stop_sequence(gateway, upstream):
    upstream.script(
        {"api": "bedrock", "content": [{"type": "text", "text": "a red dot"}], "stop_reason": "stop_sequence"}
    )
    message = claude_client(gateway).messages.create(
        model="llama",
        max_tokens=64,
        stop_sequences=["END"],
        system="be brief",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                    {"type": "text", "text": "what is this?"},
                ],
            }
        ],
    )
    assert message.content[0].text == "a red dot"
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "END")
    request, body = sent(upstream)
    assert request["path"] == f"/model/{LLAMA}/converse"
    assert body["messages"][0]["content"][0] == {"image": {"format": "png", "source": {"bytes": PNG}}}
    assert body["system"] == [{"text": "be brief"}]
    assert body["inferenceConfig"] == {"maxTokens": 64, "stopSequences": ["END"]}


def test_converse_tool_loop_streamed(gateway, upstream):
    upstream.script(
        {
            "api": "bedrock",
            "split": 2,
            "content": [{"type": "tool_use", "name": "get_weather", "input": {"city": "Oslo"}}],
        },
        {"api": "bedrock", "content": [{"type": "text", "text": "Sunny."}]},
    )
    client = claude_client(gateway)
    messages: list = [{"role": "user", "content": "Weather in Oslo?"}]
    with client.messages.stream(model="llama", max_tokens=128, tools=[WEATHER], messages=messages) as s:
        first = s.get_final_message()
    assert first.stop_reason == "tool_use"
    use = first.content[0]
    assert (use.name, use.input) == ("get_weather", {"city": "Oslo"})
    messages += [
        {"role": "assistant", "content": [b.model_dump() for b in first.content]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": use.id, "content": "sunny", "is_error": False}
            ],
        },
    ]
    second = client.messages.create(model="llama", max_tokens=128, tools=[WEATHER], messages=messages)
    assert second.content[0].text == "Sunny."
    _, body = sent(upstream)
    assert body["messages"][1]["content"][0]["toolUse"] == {
        "toolUseId": use.id,
        "name": "get_weather",
        "input": {"city": "Oslo"},
    }
    assert body["messages"][2]["content"][0]["toolResult"] == {
        "toolUseId": use.id,
        "content": [{"text": "sunny"}],
    }
    assert body["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"] == {"json": WEATHER["input_schema"]}


def test_converse_reasoning_round_trip(gateway, upstream):
    thinking = [
        {"type": "thinking", "thinking": "two plus two", "signature": "sig-abc"},
        {"type": "text", "text": "4"},
    ]
    upstream.script({"api": "bedrock", "content": thinking}, {"api": "bedrock"})
    client = claude_client(gateway)
    with client.messages.stream(
        model="llama", max_tokens=128, messages=[{"role": "user", "content": "2+2"}]
    ) as s:
        first = s.get_final_message()
    assert first.content[0].type == "thinking"
    assert (first.content[0].thinking, first.content[0].signature) == ("two plus two", "sig-abc")
    client.messages.create(
        model="llama",
        max_tokens=128,
        messages=[
            {"role": "user", "content": "2+2"},
            {"role": "assistant", "content": [b.model_dump() for b in first.content]},
            {"role": "user", "content": "and 3+3?"},
        ],
    )
    _, body = sent(upstream)
    reasoning = body["messages"][1]["content"][0]["reasoningContent"]["reasoningText"]
    assert reasoning == {"text": "two plus two", "signature": "sig-abc"}


def test_converse_cache_points_and_billing(gateway, upstream, admin, key):
    usage = {
        "input_tokens": 100,
        "output_tokens": 20,
        "cache_read_input_tokens": 4000,
        "cache_creation_input_tokens": 0,
    }
    upstream.script({"api": "bedrock", "usage": usage})
    message = claude_client(gateway, key).messages.create(
        model="nova",
        max_tokens=64,
        system=[{"type": "text", "text": "long rules", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "hi"}],
    )
    assert message.usage.cache_read_input_tokens == 4000
    _, body = sent(upstream)
    assert body["system"] == [{"text": "long rules"}, {"cachePoint": {"type": "default"}}]
    [row] = admin.wait_logs(1, api_key=key)
    # Nova Pro per million: input $0.80, output $3.20, cache read $0.20
    assert row["spend"] == pytest.approx((100 * 0.80 + 20 * 3.20 + 4000 * 0.20) / 1e6, rel=1e-9)


# --- the OpenAI front door -----------------------------------------------------------------------


@pytest.mark.parametrize("model", ["llama", "claude-bedrock"])
def test_openai_sdk_text_streamed_and_not(gateway, upstream, model):
    gpt = gpt_client(gateway)
    reply = gpt.chat.completions.create(model=model, messages=[{"role": "user", "content": "hello"}])
    assert reply.choices[0].message.content == "Hello! You said: hello"
    assert reply.usage.prompt_tokens > 0
    chunks = list(
        gpt.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "again"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello! You said: again"
    assert chunks[-1].usage.completion_tokens > 0


def test_openai_sdk_tool_call_on_converse(gateway, upstream):
    upstream.script(
        {
            "api": "bedrock",
            "content": [{"type": "tool_use", "name": "get_weather", "input": {"city": "Rome"}}],
        }
    )
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER["input_schema"]}}
    reply = gpt_client(gateway).chat.completions.create(
        model="llama", messages=[{"role": "user", "content": "Rome?"}], tools=[tool]
    )
    call = reply.choices[0].message.tool_calls[0]
    assert reply.choices[0].finish_reason == "tool_calls"
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"city": "Rome"})


def test_redacted_reasoning_survives_as_base64(gateway, upstream):
    data = base64.b64encode(b"opaque").decode()
    upstream.script(
        {
            "api": "bedrock",
            "content": [{"type": "redacted_thinking", "data": data}, {"type": "text", "text": "ok"}],
        }
    )
    message = claude_client(gateway).messages.create(
        model="llama", max_tokens=32, messages=[{"role": "user", "content": "x"}]
    )
    assert message.content[0].type == "redacted_thinking" and message.content[0].data == data


def test_converse_stream_cut_by_the_client_is_billed_by_what_was_relayed(gateway, upstream, admin, key):
    story = "once upon a time " * 100
    upstream.script({"api": "bedrock", "content": [{"type": "text", "text": story}], "chunk_delay": 0.02})
    with claude_client(gateway, key).messages.stream(
        model="llama", max_tokens=2000, messages=[{"role": "user", "content": "a story"}]
    ) as stream:
        for i, _ in enumerate(stream):
            if i >= 20:
                break  # leaving the block closes the connection before Converse reports usage
    [row] = admin.wait_logs(1, api_key=key)
    assert row["estimated"] is True
    assert row["completion_tokens"] > 0 and row["prompt_tokens"] > 0


def test_claude_thinking_round_trip_and_image(gateway, upstream):
    thinking = {"type": "thinking", "thinking": "the user sent a dot", "signature": "EqQBCkgIBRABGAIiQL"}
    upstream.script(
        {"api": "bedrock", "content": [thinking, {"type": "text", "text": "a dot"}]}, {"api": "bedrock"}
    )
    client = claude_client(gateway)
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    ask = {"role": "user", "content": [image, {"type": "text", "text": "what is it?"}]}
    config = {"type": "enabled", "budget_tokens": 1024}
    with client.messages.stream(
        model="claude-bedrock", max_tokens=2048, thinking=config, messages=[ask]
    ) as s:
        first = s.get_final_message()
    assert (first.content[0].thinking, first.content[0].signature) == (
        thinking["thinking"],
        thinking["signature"],
    )
    _, body = sent(upstream)
    assert body["thinking"] == config and body["messages"][0]["content"][0] == image
    client.messages.create(
        model="claude-bedrock",
        max_tokens=2048,
        thinking=config,
        messages=[
            ask,
            {"role": "assistant", "content": [b.model_dump() for b in first.content]},
            {"role": "user", "content": "sure?"},
        ],
    )
    _, body = sent(upstream)
    assert body["messages"][1]["content"][0] == thinking  # signature intact, byte for byte


def test_openai_sdk_two_turn_tool_loop_on_converse(gateway, upstream):
    upstream.script(
        {
            "api": "bedrock",
            "content": [{"type": "tool_use", "name": "get_weather", "input": {"city": "Rome"}}],
        },
        {"api": "bedrock", "content": [{"type": "text", "text": "Rome is warm."}]},
    )
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER["input_schema"]}}
    gpt = gpt_client(gateway)
    messages: list = [{"role": "user", "content": "Rome?"}]
    chunks = list(gpt.chat.completions.create(model="llama", messages=messages, tools=[tool], stream=True))
    calls = [c.choices[0].delta.tool_calls for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    call_id = calls[0][0].id
    arguments = "".join(part[0].function.arguments or "" for part in calls)
    assert json.loads(arguments) == {"city": "Rome"}
    messages += [
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call_id, "content": "31C"},
    ]
    reply = gpt.chat.completions.create(model="llama", messages=messages, tools=[tool])
    assert reply.choices[0].message.content == "Rome is warm."
    _, body = sent(upstream)
    assert body["messages"][1]["content"][0]["toolUse"]["input"] == {"city": "Rome"}
    result = body["messages"][2]["content"][0]["toolResult"]
    assert result["content"] == [{"text": "31C"}]

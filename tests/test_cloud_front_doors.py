"""The Bedrock InvokeModel and Vertex rawPredict front doors, judged by the official clients:
AnthropicBedrock / AnthropicVertex (their stream accumulators included), boto3's bedrock-runtime
client, and botocore's event-stream decoder on the raw bytes. A `parley serve` process routes to
the fake upstream's Anthropic API (native) and OpenAI API (translated)."""

from __future__ import annotations

import base64
import signal
import threading
import time
import urllib.parse

import anthropic
import boto3
import httpx2 as httpx  # the HTTP client the official SDKs ship with
import orjson
import pytest
from botocore.config import Config as BotoConfig
from botocore.eventstream import EventStreamBuffer
from botocore.exceptions import ClientError, EventStreamError

from parley.testing.procs import Gateway, anthropic_deployment, openai_deployment

MASTER = "sk-parley-master-cloud"
BEDROCK_ID = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
VERTEX_ID = "claude-sonnet-4-5@20250929"
ARN = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-haiku-4-5-v1:0"


@pytest.fixture(scope="module")
def gateway(start_gateway, fake_upstream):
    return start_gateway(
        {
            "model_list": [
                openai_deployment(BEDROCK_ID, fake_upstream, model="oa-translated"),
                anthropic_deployment("claude-native", fake_upstream, model="native-upstream"),
                anthropic_deployment(VERTEX_ID, fake_upstream, model="vertex-native"),
                openai_deployment(ARN, fake_upstream, model="oa-arn"),
            ],
            "general_settings": {"master_key": MASTER},
        }
    )


def bedrock(gateway, key: str = MASTER) -> anthropic.AnthropicBedrock:
    return anthropic.AnthropicBedrock(
        api_key=key, aws_region="us-east-1", base_url=gateway.url, max_retries=0
    )


def vertex(gateway, key: str = MASTER) -> anthropic.AnthropicVertex:
    return anthropic.AnthropicVertex(
        access_token=key, project_id="proj-1", region="us-east5", base_url=gateway.url + "/v1", max_retries=0
    )


def frames(raw: bytes) -> list[tuple[dict, bytes]]:
    """(headers, payload) of each event-stream message, decoded by botocore."""
    buffer = EventStreamBuffer()
    buffer.add_data(raw)
    return [(m.headers, m.payload) for m in buffer]


# --- Bedrock: AnthropicBedrock ----------------------------------------------------------------


def test_bedrock_invoke_to_translated_backend(gateway, upstream):
    message = bedrock(gateway).messages.create(
        model=BEDROCK_ID, max_tokens=50, messages=[{"role": "user", "content": "over bedrock"}]
    )
    assert message.content[0].text == "Hello! You said: over bedrock"
    assert message.usage.output_tokens > 0
    sent = upstream.last_body()
    assert upstream.requests()[-1]["path"] == "/v1/chat/completions"
    assert sent["model"] == "oa-translated"
    assert "anthropic_version" not in sent and "anthropic_beta" not in sent


def test_bedrock_stream_accumulates_on_native_backend(gateway, upstream):
    client = bedrock(gateway)
    with client.beta.messages.stream(
        model="claude-native",
        max_tokens=50,
        betas=["interleaved-thinking-2025-05-14"],
        messages=[{"role": "user", "content": "stream me"}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello! You said: stream me"
    assert final.content[0].text == text and final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0
    seen = upstream.requests()[-1]
    body = orjson.loads(seen["body"])
    assert body["model"] == "native-upstream" and body["stream"] is True
    assert "anthropic_version" not in body and "anthropic_beta" not in body
    assert "interleaved-thinking-2025-05-14" in seen["headers"]["anthropic-beta"]
    assert not any(h.startswith(("x-amz", "amz-sdk")) for h in seen["headers"])


def test_bedrock_stream_to_translated_backend(gateway, upstream):
    with bedrock(gateway).messages.stream(
        model=BEDROCK_ID, max_tokens=50, messages=[{"role": "user", "content": "via openai"}]
    ) as stream:
        final = stream.get_final_message()
    assert final.content[0].text == "Hello! You said: via openai"
    assert upstream.last_body()["stream"] is True


def test_bedrock_arn_model_id(gateway, upstream):
    message = bedrock(gateway).messages.create(
        model=ARN, max_tokens=20, messages=[{"role": "user", "content": "arn"}]
    )
    assert message.content[0].text == "Hello! You said: arn"
    assert upstream.last_body()["model"] == "oa-arn"


def test_bedrock_errors_reach_the_client_typed(gateway, upstream):
    with pytest.raises(anthropic.NotFoundError) as missing:
        bedrock(gateway).messages.create(
            model="no-such-model", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert missing.value.response.headers["x-amzn-errortype"].startswith("ResourceNotFoundException")
    assert "no-such-model" in missing.value.body["message"]
    with pytest.raises(anthropic.AuthenticationError):
        bedrock(gateway, key="sk-wrong").messages.create(
            model=BEDROCK_ID, max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    too_long = "prompt is too long: 210000 tokens > 200000 maximum"
    upstream.script(
        {"api": "anthropic", "status": 400, "error": {"type": "invalid_request_error", "message": too_long}}
    )
    with pytest.raises(anthropic.BadRequestError) as refused:
        bedrock(gateway).messages.create(
            model="claude-native", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert refused.value.response.headers["x-amzn-errortype"].startswith("ValidationException")
    assert refused.value.body == {"message": too_long}  # the wording Claude Code recovers on


def test_bedrock_stream_error_is_an_exception_frame(gateway, upstream):
    upstream.script(
        {
            "api": "anthropic",
            "error_after": 3,
            "stream_error": {"type": "overloaded_error", "message": "Overloaded mid-stream"},
        }
    )
    with (
        pytest.raises(anthropic.APIStatusError, match="Overloaded mid-stream"),
        bedrock(gateway).messages.stream(
            model="claude-native", max_tokens=50, messages=[{"role": "user", "content": "x"}]
        ) as stream,
    ):
        stream.get_final_message()


# --- Bedrock: the raw frames and boto3 ------------------------------------------------------


def test_bedrock_frames_decode_with_botocore(gateway, upstream):
    url = f"{gateway.url}/model/{urllib.parse.quote('claude-native', safe='')}/invoke-with-response-stream"
    body = {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 40,
        "messages": [{"role": "user", "content": "frames"}],
    }
    reply = httpx.post(url, json=body, headers={"authorization": f"Bearer {MASTER}"}, timeout=30)
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/vnd.amazon.eventstream"
    events = []
    for headers, payload in frames(reply.content):
        assert headers == {
            ":event-type": "chunk",
            ":content-type": "application/json",
            ":message-type": "event",
        }
        events.append(orjson.loads(base64.b64decode(orjson.loads(payload)["bytes"])))
    types = [e["type"] for e in events]
    assert types[0] == "message_start" and types[-1] == "message_stop"
    assert "content_block_delta" in types
    metrics = events[-1]["amazon-bedrock-invocationMetrics"]
    assert metrics["outputTokenCount"] > 0 and metrics["inputTokenCount"] > 0
    assert metrics["invocationLatency"] >= metrics["firstByteLatency"] >= 0


def test_bedrock_stream_error_frame_headers(gateway, upstream):
    upstream.script(
        {
            "api": "anthropic",
            "error_after": 2,
            "stream_error": {"type": "rate_limit_error", "message": "busy"},
        }
    )
    reply = httpx.post(
        f"{gateway.url}/model/claude-native/invoke-with-response-stream",
        json={"max_tokens": 40, "messages": [{"role": "user", "content": "x"}]},
        headers={"x-api-key": MASTER},
        timeout=30,
    )
    last_headers, last_payload = frames(reply.content)[-1]
    assert last_headers[":message-type"] == "exception"
    assert last_headers[":exception-type"] == "throttlingException"
    assert orjson.loads(last_payload) == {"message": "busy"}


@pytest.fixture
def runtime(gateway):
    """boto3's bedrock-runtime client on the gateway, the parley key added as x-api-key."""
    client = boto3.client(
        "bedrock-runtime",
        endpoint_url=gateway.url,
        region_name="us-east-1",
        aws_access_key_id="unused",
        aws_secret_access_key="unused",
        config=BotoConfig(retries={"max_attempts": 1}),
    )

    def add_key(request, **_):
        request.headers["x-api-key"] = MASTER

    client.meta.events.register("before-send.bedrock-runtime.*", add_key)
    return client


def test_boto3_invoke_model(runtime, upstream):
    body = {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 30,
        "messages": [{"role": "user", "content": "boto"}],
    }
    reply = runtime.invoke_model(modelId=BEDROCK_ID, body=orjson.dumps(body))
    message = orjson.loads(reply["body"].read())
    assert message["content"][0]["text"] == "Hello! You said: boto"
    headers = reply["ResponseMetadata"]["HTTPHeaders"]
    assert int(headers["x-amzn-bedrock-output-token-count"]) == message["usage"]["output_tokens"]


def test_boto3_stream_and_errors(runtime, upstream):
    body = {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 30,
        "messages": [{"role": "user", "content": "boto stream"}],
    }
    reply = runtime.invoke_model_with_response_stream(modelId="claude-native", body=orjson.dumps(body))
    events = [orjson.loads(e["chunk"]["bytes"]) for e in reply["body"]]
    text = "".join(e["delta"].get("text", "") for e in events if e["type"] == "content_block_delta")
    assert text == "Hello! You said: boto stream"
    with pytest.raises(ClientError) as missing:
        runtime.invoke_model(modelId="no-such-model", body=orjson.dumps(body))
    assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    upstream.script(
        {
            "api": "anthropic",
            "error_after": 2,
            "stream_error": {"type": "overloaded_error", "message": "later"},
        }
    )
    reply = runtime.invoke_model_with_response_stream(modelId="claude-native", body=orjson.dumps(body))
    with pytest.raises(EventStreamError) as cut:
        list(reply["body"])
    assert cut.value.response["Error"] == {"Code": "serviceUnavailableException", "Message": "later"}


# --- Vertex: AnthropicVertex ----------------------------------------------------------------


def test_vertex_raw_predict_and_stream(gateway, upstream):
    client = vertex(gateway)
    message = client.messages.create(
        model=VERTEX_ID, max_tokens=30, messages=[{"role": "user", "content": "on vertex"}]
    )
    assert message.content[0].text == "Hello! You said: on vertex"
    seen = upstream.requests()[-1]
    body = orjson.loads(seen["body"])
    assert body["model"] == "vertex-native" and "anthropic_version" not in body
    assert seen["headers"]["x-api-key"] == "sk-ant-upstream-real"
    with client.messages.stream(
        model=BEDROCK_ID, max_tokens=30, messages=[{"role": "user", "content": "vertex stream"}]
    ) as stream:
        final = stream.get_final_message()
    assert final.content[0].text == "Hello! You said: vertex stream"
    assert upstream.last_body()["model"] == "oa-translated"


def test_vertex_count_tokens_and_errors(gateway, upstream):
    client = vertex(gateway)
    count = client.messages.count_tokens(model=VERTEX_ID, messages=[{"role": "user", "content": "count me"}])
    assert count.input_tokens > 0
    assert upstream.requests()[-1]["path"] == "/v1/messages/count_tokens"
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(model="nope", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.AuthenticationError):
        vertex(gateway, key="sk-wrong").messages.create(
            model=VERTEX_ID, max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    reply = httpx.post(
        f"{gateway.url}/v1/projects/p/locations/l/publishers/anthropic/models/{VERTEX_ID}:predict",
        json={},
        headers={"x-api-key": MASTER},
    )
    assert reply.status_code == 404 and reply.json()["error"]["type"] == "not_found_error"


def test_boto3_count_tokens(runtime, upstream):
    """Bedrock's CountTokens (Claude Code calls it through the AWS SDK): counted upstream on a
    native deployment, locally on a translated one."""
    body = {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 30,
        "anthropic_beta": ["token-counting-2024-11-01"],
        "messages": [{"role": "user", "content": "count these words please"}],
    }
    native = runtime.count_tokens(
        modelId="claude-native", input={"invokeModel": {"body": orjson.dumps(body)}}
    )
    assert native["inputTokens"] > 0
    seen = upstream.requests()[-1]
    assert seen["path"] == "/v1/messages/count_tokens"
    assert set(orjson.loads(seen["body"])) == {"model", "messages"}
    translated = runtime.count_tokens(modelId=BEDROCK_ID, input={"invokeModel": {"body": orjson.dumps(body)}})
    assert translated["inputTokens"] > 0
    with pytest.raises(ClientError) as converse:
        runtime.count_tokens(
            modelId=BEDROCK_ID,
            input={"converse": {"messages": [{"role": "user", "content": [{"text": "x"}]}]}},
        )
    assert converse.value.response["Error"]["Code"] == "ValidationException"


def test_bedrock_stream_cut_by_shutdown_ends_with_an_exception_frame(upstream):
    """A gateway stop mid-stream: the AnthropicBedrock client reads Bedrock's exception, not a
    framing error (no SSE blank line in front of it)."""
    gw = Gateway(
        {
            "model_list": [anthropic_deployment("claude-native", upstream)],
            "general_settings": {"master_key": MASTER},
        },
        extra_args=["--shutdown-timeout", "0.5"],
    )
    upstream.script({"content": [{"type": "text", "text": "slow " * 200}], "piece": 5, "chunk_delay": 0.2})
    seen: list[str] = []
    failure: list[BaseException] = []

    def read() -> None:
        try:
            with bedrock(gw).messages.stream(
                model="claude-native", max_tokens=2000, messages=[{"role": "user", "content": "go"}]
            ) as stream:
                seen.extend(event.type for event in stream)
        except BaseException as e:
            failure.append(e)

    reader = threading.Thread(target=read)
    reader.start()
    deadline = time.monotonic() + 10
    while "content_block_delta" not in seen and time.monotonic() < deadline:
        time.sleep(0.05)
    gw.proc.send_signal(signal.SIGTERM)
    reader.join(10)
    gw.proc.wait(10)
    gw.stop()
    assert "content_block_delta" in seen and "message_stop" not in seen
    assert failure and isinstance(failure[0], anthropic.APIStatusError), failure
    assert "shut down before the stream ended" in str(failure[0])
    assert "serviceUnavailableException" in str(failure[0])


def test_litellm_style_prefixes(gateway, upstream):
    """`/bedrock` and `/vertex_ai/v1`: the base URLs LiteLLM users already give Claude Code."""
    b = anthropic.AnthropicBedrock(
        api_key=MASTER, aws_region="us-east-1", base_url=gateway.url + "/bedrock", max_retries=0
    )
    message = b.messages.create(
        model="claude-native", max_tokens=9, messages=[{"role": "user", "content": "b"}]
    )
    assert message.content[0].text == "Hello! You said: b"
    v = anthropic.AnthropicVertex(
        access_token=MASTER, project_id="p", region="r", base_url=gateway.url + "/vertex_ai/v1", max_retries=0
    )
    message = v.messages.create(model=VERTEX_ID, max_tokens=9, messages=[{"role": "user", "content": "v"}])
    assert message.content[0].text == "Hello! You said: v"

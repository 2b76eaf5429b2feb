"""The fake Bedrock runtime judged by the official clients: botocore/boto3's bedrock-runtime client
and the anthropic SDK's AnthropicBedrock. If they accept its replies, signatures and event streams
(and reject what AWS rejects), the fake is a fair stand-in for Bedrock in the gateway's tests."""

from __future__ import annotations

import json

import anthropic
import boto3
import botocore.config
import botocore.eventstream
import pytest
from botocore.exceptions import ClientError, EventStreamError

from parley.testing.fake_bedrock import API_KEYS, KEYS

CLAUDE = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
LLAMA = "meta.llama3-3-70b-instruct-v1:0"
KEY_ID = "AKIAFAKEBEDROCK0001"
TEMP_ID = "ASIAFAKEBEDROCKTEMP"
WEATHER_TOOL = {
    "toolSpec": {
        "name": "get_weather",
        "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}}},
    }
}


def client(upstream, key_id=KEY_ID, secret=None, token=None):
    secret = secret if secret is not None else KEYS[key_id][0]
    return boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        endpoint_url=upstream.url,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        aws_session_token=token,
        config=botocore.config.Config(retries={"total_max_attempts": 1}),
    )


def claude_body(text="hello", **extra):
    return json.dumps(
        {
            "anthropic_version": "bedrock-2023-05-31",
            "max_tokens": 100,
            "messages": [{"role": "user", "content": text}],
            **extra,
        }
    )


def test_invoke_model_signed_and_parsed(upstream):
    reply = client(upstream).invoke_model(modelId=CLAUDE, body=claude_body("ping"))
    message = json.loads(reply["body"].read())
    assert message["content"][0]["text"] == "Hello! You said: ping"
    assert message["model"] == "claude-sonnet-4-5-20250929"
    assert reply["contentType"] == "application/json"
    request = upstream.requests()[-1]
    assert request["path"] == "/model/us.anthropic.claude-sonnet-4-5-20250929-v1:0/invoke"
    assert request["headers"]["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIAFAKEBEDROCK0001/")


def test_invoke_stream_split_frames_and_metrics(upstream):
    upstream.script({"api": "bedrock", "split": 3, "usage": {"cache_read_input_tokens": 7}})
    reply = client(upstream).invoke_model_with_response_stream(modelId=CLAUDE, body=claude_body("stream me"))
    events = [json.loads(e["chunk"]["bytes"]) for e in reply["body"]]
    assert events[0]["type"] == "message_start"
    assert events[-1]["type"] == "message_stop"
    metrics = events[-1]["amazon-bedrock-invocationMetrics"]
    assert metrics["cacheReadInputTokenCount"] == 7
    text = "".join(e["delta"].get("text", "") for e in events if e["type"] == "content_block_delta")
    assert text == "Hello! You said: stream me"


def test_stream_exception_frame_raises_in_botocore(upstream):
    exc = {"type": "throttlingException", "message": "Too many tokens, please wait"}
    upstream.script({"api": "bedrock", "exception": exc, "exception_after": 2})
    reply = client(upstream).invoke_model_with_response_stream(modelId=CLAUDE, body=claude_body())
    seen = []
    with pytest.raises(EventStreamError) as info:
        for event in reply["body"]:
            seen.append(event)
    assert len(seen) == 2
    assert info.value.response["Error"]["Code"] == "throttlingException"


def test_corrupted_frame_fails_the_crc_check(upstream):
    upstream.script({"api": "bedrock", "corrupt_after": 1})
    reply = client(upstream).invoke_model_with_response_stream(modelId=CLAUDE, body=claude_body())
    with pytest.raises(botocore.eventstream.ChecksumMismatch):
        list(reply["body"])


def test_bad_secret_is_an_invalid_signature(upstream):
    with pytest.raises(ClientError) as info:
        client(upstream, secret="not-the-secret").invoke_model(modelId=CLAUDE, body=claude_body())
    assert info.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_session_token_is_required_for_temporary_keys(upstream):
    token = KEYS[TEMP_ID][1]
    ok = client(upstream, TEMP_ID, token=token).invoke_model(modelId=CLAUDE, body=claude_body())
    assert json.loads(ok["body"].read())["type"] == "message"
    with pytest.raises(ClientError) as info:
        client(upstream, TEMP_ID, token="wrong").invoke_model(modelId=CLAUDE, body=claude_body())
    assert info.value.response["Error"]["Code"] == "UnrecognizedClientException"


def test_throttling_error_as_botocore_sees_it(upstream):
    upstream.script(
        {"api": "bedrock", "status": 429, "error": {"type": "ThrottlingException", "message": "slow"}}
    )
    with pytest.raises(ClientError) as info:
        client(upstream).invoke_model(modelId=CLAUDE, body=claude_body())
    assert info.value.response["Error"] == {"Code": "ThrottlingException", "Message": "slow"}
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429


def test_invoke_body_checked_as_bedrock_does(upstream):
    with pytest.raises(ClientError) as info:
        client(upstream).invoke_model(modelId=CLAUDE, body=claude_body(model="claude"))
    assert info.value.response["Error"]["Code"] == "ValidationException"
    assert "extraneous key [model]" in info.value.response["Error"]["Message"]


def test_converse_with_tools(upstream):
    upstream.script(
        {
            "api": "bedrock",
            "content": [{"type": "tool_use", "name": "get_weather", "input": {"city": "Oslo"}}],
        }
    )
    reply = client(upstream).converse(
        modelId=LLAMA,
        messages=[{"role": "user", "content": [{"text": "weather?"}]}],
        toolConfig={"tools": [WEATHER_TOOL]},
        inferenceConfig={"maxTokens": 50},
    )
    assert reply["stopReason"] == "tool_use"
    use = reply["output"]["message"]["content"][0]["toolUse"]
    assert use["name"] == "get_weather" and use["input"] == {"city": "Oslo"}
    assert reply["usage"]["totalTokens"] == reply["usage"]["inputTokens"] + reply["usage"]["outputTokens"]


def test_converse_stream_events(upstream):
    upstream.script(
        {
            "api": "bedrock",
            "split": 2,
            "content": [
                {"type": "thinking", "thinking": "let me think", "signature": "sig-1"},
                {"type": "text", "text": "four"},
            ],
        }
    )
    reply = client(upstream).converse_stream(
        modelId=LLAMA, messages=[{"role": "user", "content": [{"text": "2+2"}]}]
    )
    events = list(reply["stream"])
    kinds = [next(iter(e)) for e in events]
    assert kinds[0] == "messageStart" and kinds[-2:] == ["messageStop", "metadata"]
    deltas = [e["contentBlockDelta"]["delta"] for e in events if "contentBlockDelta" in e]
    assert {"reasoningContent": {"signature": "sig-1"}} in deltas
    assert "".join(d.get("text", "") for d in deltas) == "four"


def test_converse_schema_is_botocores(upstream):
    import urllib.request

    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    body = json.dumps({"messages": [{"role": "user", "content": [{"text": "a", "image": {}}]}]}).encode()
    url = f"{upstream.url}/model/{LLAMA.replace(':', '%3A')}/converse"
    request = AWSRequest("POST", url, headers={"content-type": "application/json"}, data=body)
    SigV4Auth(Credentials(KEY_ID, KEYS[KEY_ID][0]), "bedrock", "us-east-1").add_auth(request)
    prepared = request.prepare()
    raw = urllib.request.Request(url, data=body, headers=dict(prepared.headers), method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(raw, timeout=10)
    assert info.value.code == 400
    assert info.value.headers["x-amzn-ErrorType"].startswith("ValidationException")
    assert "tagged union" in json.loads(info.value.read())["message"]


def test_count_tokens_through_boto3(upstream):
    reply = client(upstream).count_tokens(
        modelId=CLAUDE, input={"invokeModel": {"body": claude_body("count these words please")}}
    )
    assert reply["inputTokens"] > 0


def test_anthropic_bedrock_client(upstream):
    claude = anthropic.AnthropicBedrock(
        aws_access_key=KEY_ID,
        aws_secret_key=KEYS[KEY_ID][0],
        aws_region="us-east-1",
        base_url=upstream.url,
        max_retries=0,
    )
    message = claude.messages.create(
        model=CLAUDE, max_tokens=64, messages=[{"role": "user", "content": "hi"}]
    )
    assert message.content[0].text == "Hello! You said: hi"
    with claude.messages.stream(
        model=CLAUDE, max_tokens=64, messages=[{"role": "user", "content": "yo"}]
    ) as s:
        final = s.get_final_message()
    assert final.content[0].text == "Hello! You said: yo"
    assert final.usage.output_tokens > 0
    upstream.script(
        {"api": "bedrock", "status": 429, "error": {"type": "ThrottlingException", "message": "slow"}}
    )
    with pytest.raises(anthropic.RateLimitError):
        claude.messages.create(model=CLAUDE, max_tokens=8, messages=[{"role": "user", "content": "x"}])


def test_anthropic_bedrock_stream_exception(upstream):
    claude = anthropic.AnthropicBedrock(
        aws_access_key=KEY_ID, aws_secret_key=KEYS[KEY_ID][0], aws_region="us-east-1", base_url=upstream.url
    )
    upstream.script(
        {
            "api": "bedrock",
            "exception": {"type": "throttlingException", "message": "busy"},
            "exception_after": 3,
        }
    )
    with (
        pytest.raises(anthropic.APIStatusError) as info,
        claude.messages.stream(
            model=CLAUDE, max_tokens=64, messages=[{"role": "user", "content": "yo"}]
        ) as s,
    ):
        s.get_final_message()
    assert "busy" in str(info.value)


def test_bedrock_api_key_as_bearer(upstream):
    import urllib.request

    url = f"{upstream.url}/model/{CLAUDE.replace(':', '%3A')}/invoke"
    for key, expected in ((next(iter(API_KEYS)), 200), ("ABSKwrong", 403)):
        headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
        raw = urllib.request.Request(url, data=claude_body().encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(raw, timeout=10) as r:
                status = r.status
        except urllib.error.HTTPError as e:
            status = e.code
        assert status == expected

"""Fuzz the Bedrock and Vertex front doors' bodies (the strategies of test_fuzz_bodies): no 5xx,
Bedrock's error shape (`{"message"}` + `x-amzn-errortype`) or a stream botocore decodes on the
Bedrock routes, the Messages envelope on the Vertex ones, and a bounded time per request."""

from __future__ import annotations

import base64

import orjson
import pytest
from botocore.eventstream import EventStreamBuffer
from hypothesis import given

import test_fuzz_bodies as fuzz
from test_fuzz_bodies import BODIES, NOT_JSON, SETTINGS, check_reply, send

gateway = fuzz.gateway  # the same in-process gateway and thread pool fixtures
pool = fuzz.pool

BEDROCK_ROUTES = ["/model/m/invoke", "/model/oa/invoke-with-response-stream", "/model/oa/count-tokens"]
VERTEX_ROUTES = [
    "/v1/projects/p/locations/l/publishers/anthropic/models/m:rawPredict",
    "/v1/projects/p/locations/l/publishers/anthropic/models/oa:streamRawPredict",
    "/v1/projects/p/locations/l/publishers/anthropic/models/count-tokens:rawPredict",
]


def check_bedrock(path: str, reply) -> None:
    status, kind = reply.status_code, reply.headers.get("content-type", "")
    assert status < 500, f"{path} {status}: {reply.text[:500]}"
    if kind == "application/vnd.amazon.eventstream":
        assert status == 200
        buffer = EventStreamBuffer()
        buffer.add_data(reply.content)
        for message in buffer:
            if message.headers[":message-type"] == "event":
                base64.b64decode(orjson.loads(message.payload)["bytes"], validate=True)
            else:
                assert isinstance(orjson.loads(message.payload)["message"], str)
        return
    assert kind.startswith("application/json"), kind
    if status >= 400:
        assert isinstance(reply.json()["message"], str), reply.text[:500]
        assert reply.headers["x-amzn-errortype"].endswith(
            "Exception:http://internal.amazon.com/coral/com.amazon.bedrock/"
        )


def count_tokens_body(body: bytes) -> bytes:
    return orjson.dumps({"input": {"invokeModel": {"body": base64.b64encode(body).decode()}}})


@pytest.mark.parametrize("path", BEDROCK_ROUTES)
@SETTINGS
@given(body=BODIES)
def test_bedrock_bodies(gateway, pool, path, body):
    check_bedrock(path, send(gateway, pool, path, count_tokens_body(body) if "count" in path else body))


@pytest.mark.parametrize("path", BEDROCK_ROUTES)
@SETTINGS
@given(body=NOT_JSON)
def test_bedrock_not_json(gateway, pool, path, body):
    check_bedrock(path, send(gateway, pool, path, body))


@pytest.mark.parametrize("path", VERTEX_ROUTES)
@SETTINGS
@given(body=BODIES)
def test_vertex_bodies(gateway, pool, path, body):
    check_reply(path, send(gateway, pool, path, body))

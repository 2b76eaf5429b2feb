"""The Bedrock InvokeModel and Vertex rawPredict front doors: Messages bodies behind cloud URLs.

Claude Code (and the AnthropicBedrock / AnthropicVertex clients) can speak to a gateway as if it
were Bedrock (`POST /model/{model}/invoke`, `/invoke-with-response-stream`) or Vertex
(`.../publishers/anthropic/models/{model}:rawPredict`, `:streamRawPredict`,
`count-tokens:rawPredict`). The body is a Messages request without `model` (it is in the URL),
with `anthropic_version` and, on Bedrock, the betas in `anthropic_beta`. Each endpoint turns it
into the hub request and runs exactly what `/v1/messages` runs (routing by `model_list`, filters,
any backend). Bedrock replies are re-framed: streams as AWS event-stream `chunk` events, errors as
Bedrock's JSON error bodies and stream exceptions. Vertex replies are the Messages replies.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

import orjson

from parley.core.context import RequestContext
from parley.core.errors import invalid_request
from parley.core.sse import event_object
from parley.core.stream import UpstreamReply
from parley.pipeline.body import parse_object
from parley.pipeline.lifecycle import Outcome, Pipeline
from parley.pipeline.messages import MessagesEndpoint
from parley.translate.eventstream import (
    EVENTSTREAM_CONTENT_TYPE,
    EventStreamSource,
    chunk_frame,
    exception_name,
    stream_error_frame,
)

_CLOUD_HEADERS = ("x-amz-", "x-amzn-", "amz-sdk-")  # AWS SDK headers: for AWS, not a backend
BEDROCK_PING = chunk_frame(b'{"type":"ping"}')


def hub_headers(headers: Mapping[str, str], body_betas: list[str]) -> dict[str, str]:
    """The client's headers as `/v1/messages` would have had them: AWS SDK headers and the event-
    stream `accept` dropped, the body's `anthropic_beta` joined to the `anthropic-beta` header."""
    out: dict[str, str] = {}
    for k, v in headers.items():
        if k.startswith(_CLOUD_HEADERS) or k == "accept":
            continue
        out[k] = out[k] + "," + v if k in out else v
    betas = [b.strip() for b in out.get("anthropic-beta", "").split(",") if b.strip()]
    betas.extend(body_betas)
    if betas:
        out["anthropic-beta"] = ",".join(dict.fromkeys(betas))
    return out


def _betas(body: dict[str, Any]) -> list[str]:
    betas = body.pop("anthropic_beta", None)
    if betas is None:
        return []
    if not isinstance(betas, list) or not all(isinstance(b, str) for b in betas):
        raise invalid_request("anthropic_beta: must be a list of strings", param="anthropic_beta")
    return betas


class CloudEndpoint(MessagesEndpoint):
    """A Messages endpoint whose model (and whether it streams) comes from the URL."""

    def __init__(
        self, pipeline: Pipeline, route: str, model: str | None, stream: bool, *, count_tokens: bool = False
    ) -> None:
        super().__init__(pipeline, count_tokens=count_tokens)
        self.route = route
        self.path_model = model
        self.streams = stream

    def parse(self, ctx: RequestContext, raw: bytes) -> dict[str, Any]:
        body = parse_object(raw)
        body.pop("anthropic_version", None)
        ctx.headers = hub_headers(ctx.headers, _betas(body))
        if self.path_model is not None:
            body["model"] = self.path_model
        if self.streams:
            body["stream"] = True
        else:
            body.pop("stream", None)
        if self.count_tokens:
            body.pop("max_tokens", None)  # Bedrock counts an InvokeModel body; count_tokens takes none
        self.check(ctx, body)
        return body

    async def send(self, ctx: RequestContext, body: dict[str, Any] | None, raw: bytes) -> UpstreamReply:
        return await super().send(ctx, body, b"")  # the client's bytes are not a Messages body


class BedrockEndpoint(CloudEndpoint):
    """`/model/{model}/invoke` and `/invoke-with-response-stream`, answered as Bedrock does."""

    ping_frame = BEDROCK_PING

    def error_frame(self, ctx: RequestContext, type_: str, message: str) -> bytes:
        return stream_error_frame(type_, message)

    def cut_frame(self, ctx: RequestContext, type_: str, message: str) -> bytes:
        return self.error_frame(ctx, type_, message)  # only whole frames were sent before it

    def client_form(self, ctx: RequestContext, outcome: Outcome) -> Outcome:
        reply, headers = outcome.reply, outcome.headers
        headers["x-amzn-requestid"] = ctx.request_id
        if reply.source is not None:
            reply.source = EventStreamSource(reply.source, ctx)
            headers["content-type"] = EVENTSTREAM_CONTENT_TYPE
            headers["x-amzn-bedrock-content-type"] = "application/json"
        elif reply.status >= 400:
            name, message = _bedrock_error(reply)
            reply.body = orjson.dumps({"message": message})
            headers["content-type"] = "application/json"
            headers["x-amzn-errortype"] = f"{name}:http://internal.amazon.com/coral/com.amazon.bedrock/"
        elif not self.count_tokens:
            headers["x-amzn-bedrock-input-token-count"] = str(ctx.usage.input_tokens)
            headers["x-amzn-bedrock-output-token-count"] = str(ctx.usage.output_tokens)
            headers["x-amzn-bedrock-invocation-latency"] = str(round(ctx.latency_ms))
        return outcome


def _bedrock_error(reply: UpstreamReply) -> tuple[str, str]:
    """The Bedrock exception name and message for an Anthropic error reply."""
    try:
        data = orjson.loads(reply.body or b"")
    except orjson.JSONDecodeError:
        data = None
    error = data.get("error") if isinstance(data, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    if not isinstance(message, str):
        message = (reply.body or b"")[:500].decode("utf-8", "replace") or f"HTTP {reply.status}"
    return exception_name(reply.status), message


class BedrockCountEndpoint(BedrockEndpoint):
    """`POST /model/{model}/count-tokens` (Bedrock's CountTokens, which Claude Code calls through
    the AWS SDK): `{"input": {"invokeModel": {"body": <base64 InvokeModel body>}}}` in,
    `{"inputTokens": n}` out."""

    def __init__(self, pipeline: Pipeline, model: str) -> None:
        super().__init__(pipeline, "/model/{model}/count-tokens", model, False, count_tokens=True)

    def parse(self, ctx: RequestContext, raw: bytes) -> dict[str, Any]:
        request = parse_object(raw)
        source = request.get("input")
        invoke = source.get("invokeModel") if isinstance(source, dict) else None
        encoded = invoke.get("body") if isinstance(invoke, dict) else None
        if not isinstance(encoded, str):
            raise invalid_request(
                "input.invokeModel.body: required, the InvokeModel body in base64 (Converse input is "
                "not supported here)",
                param="input",
            )
        try:
            inner = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise invalid_request("input.invokeModel.body: not valid base64", param="input") from None
        return super().parse(ctx, inner)

    def client_form(self, ctx: RequestContext, outcome: Outcome) -> Outcome:
        reply = outcome.reply
        if reply.source is None and reply.status < 400:
            count = event_object((reply.body or b"").decode("utf-8", "replace")).get("input_tokens")
            reply.body = orjson.dumps({"inputTokens": count})
        return super().client_form(ctx, outcome)


class VertexEndpoint(CloudEndpoint):
    """`...:rawPredict`, `:streamRawPredict` and `count-tokens:rawPredict`; the replies and errors
    are the Messages API's, as Vertex passes them on from the model."""

"""Amazon Bedrock backend: Claude through InvokeModel, every other model through Converse.

`bedrock/<model id or ARN>` picks the API by the model (Anthropic models: InvokeModel with the
Anthropic body; others: Converse); `bedrock/invoke/...` and `bedrock/converse/...` choose
explicitly, as in LiteLLM (an application inference profile ARN for Claude needs `invoke/`, or
LiteLLM's `model_id` param: the ARN goes in the URL, `model` still picks the API and the price).
Requests are signed per deployment (`bedrock_auth`); replies come back in the hub shape with usage
recorded, errors in Anthropic's envelope with the status a Messages client expects.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import orjson

from parley.config import ConfigError
from parley.core.context import RequestContext
from parley.core.deployment import Deployment, Target
from parley.core.errors import GatewayError, anthropic_error_body
from parley.core.stream import ChunkSource, UpstreamReply
from parley.core.tokens import count_request_tokens
from parley.providers.anthropic import forwardable_headers, note_json_reply
from parley.providers.base import HubCall
from parley.providers.bedrock_auth import AwsSettings, AwsSigner, aws_settings
from parley.providers.bedrock_streams import ConverseStreamSource, InvokeSniffingSource, InvokeStreamSource
from parley.translate.bedrock.converse_request import is_anthropic_model, to_converse_request
from parley.translate.bedrock.converse_response import ConverseStreamTranslator, to_anthropic_message
from parley.translate.bedrock.errors import error_from_reply
from parley.translate.bedrock.invoke import count_tokens_input, invoke_body, model_path, split_betas
from parley.transport.http import HttpClient

JSON = "application/json"
EVENT_STREAM = "application/vnd.amazon.eventstream"
_SSE_HEADERS = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}
_LOCAL_COUNT_STATUSES = (400, 404)
_STREAMING = {
    "invoke": "invoke-with-response-stream",
    "converse": "converse-stream",
}  # CountTokens not offered for this model or region


def bedrock_route(model: str) -> tuple[str, str]:
    """("invoke" or "converse", the model id or ARN) for a deployment's upstream model."""
    for api in ("invoke", "converse"):
        if model.startswith(api + "/"):
            return api, model[len(api) + 1 :]
    return ("invoke" if is_anthropic_model(model) else "converse"), model


class BedrockProvider:
    api = "bedrock"

    def __init__(self, http: HttpClient, env: Mapping[str, str] | None = None) -> None:
        self.http = http
        self.env = os.environ if env is None else env
        self._signers: dict[str, AwsSigner] = {}

    def check(self, deployments: list[Deployment]) -> None:
        """Fail at startup on missing or malformed AWS params, naming the model_list entry."""
        for dep in deployments:
            if dep.api == "bedrock":
                self.signer(dep)

    def signer(self, dep: Deployment) -> AwsSigner:
        signer = self._signers.get(dep.id)
        if signer is None:
            try:
                settings = aws_settings(dep.params, dep.api_base, self.env)
            except ConfigError as e:
                raise ConfigError(f"model_list entry {dep.model_name!r}: {e}") from None
            signer = self._signers[dep.id] = AwsSigner(settings)
        return signer

    async def messages(self, ctx: RequestContext, call: HubCall) -> UpstreamReply:
        api, model_id = bedrock_route(call.target.upstream_model)
        model_id = str(call.target.deployment.params.get("model_id") or model_id)  # LiteLLM's ARN param
        betas = split_betas(forwardable_headers(call.headers).get("anthropic-beta"))
        if api == "invoke":
            body = invoke_body(call.body, betas)
            if call.count_tokens:
                return await self._count(ctx, call, model_id, count_tokens_input(body, None))
            return await self._invoke(ctx, call, model_id, body)
        converse, dropped = to_converse_request(call.body, model_id, betas)
        if dropped:
            ctx.dropped.extend(d for d in dropped if d not in ctx.dropped)
        if call.count_tokens:
            return await self._count(ctx, call, model_id, count_tokens_input(None, converse))
        return await self._converse(ctx, call, model_id, converse)

    async def _post(self, target: Target, path: str, body: bytes, stream: bool) -> UpstreamReply:
        dep = target.deployment
        signer = self.signer(dep)
        settings: AwsSettings = signer.settings
        url = settings.endpoint + path
        headers = {"content-type": JSON, "accept": EVENT_STREAM if stream else JSON}
        headers = await signer.headers("POST", url, body, headers)
        headers.update(dep.extra_headers)
        return await self.http.send(
            "POST",
            url,  # already percent-encoded: sent as it is
            headers,
            body,
            dep.timeout,
            stream,
            dep.params.get("connect_timeout"),
        )

    async def _send(
        self, call: HubCall, model_id: str, operation: str, body: dict[str, Any]
    ) -> UpstreamReply:
        """One InvokeModel or Converse call, its streaming variant when the client streams."""
        if call.stream:
            operation = _STREAMING[operation]
        return await self._post(call.target, model_path(model_id, operation), orjson.dumps(body), call.stream)

    async def _invoke(
        self, ctx: RequestContext, call: HubCall, model_id: str, body: dict[str, Any]
    ) -> UpstreamReply:
        reply = await self._send(call, model_id, "invoke", body)
        if reply.status >= 400:
            return self._error(ctx, reply)
        if call.stream:
            source = InvokeSniffingSource(InvokeStreamSource(_event_stream(reply), ctx), ctx)
            return UpstreamReply(200, _headers(reply, _SSE_HEADERS), source=source)
        out = UpstreamReply(reply.status, _headers(reply, {"content-type": JSON}), body=reply.body)
        note_json_reply(ctx, out)
        if out.status < 400:
            apply_count_headers(ctx, reply.headers)
        return out

    async def _converse(
        self, ctx: RequestContext, call: HubCall, model_id: str, converse: dict[str, Any]
    ) -> UpstreamReply:
        reply = await self._send(call, model_id, "converse", converse)
        if reply.status >= 400:
            return self._error(ctx, reply)
        model = str(call.body.get("model") or model_id)
        message_id = "msg_bdrk_" + reply.headers.get("x-amzn-requestid", os.urandom(12).hex()).replace(
            "-", ""
        )
        stops = list(call.body.get("stop_sequences") or [])
        if call.stream:
            machine = ConverseStreamTranslator(
                model=model,
                message_id=message_id,
                stop_sequences=stops,
                input_estimate=count_request_tokens(call.body),
            )
            source = ConverseStreamSource(_event_stream(reply), ctx, machine)
            return UpstreamReply(200, _headers(reply, _SSE_HEADERS), source=source)
        try:
            data = orjson.loads(reply.body or b"")
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("output"), dict):
            raise GatewayError(502, "Amazon Bedrock returned a reply that is not a Converse response")
        message = to_anthropic_message(data, model=model, message_id=message_id, stop_sequences=stops)
        ctx.usage.update(message["usage"])
        return UpstreamReply(200, _headers(reply, {"content-type": JSON}), body=orjson.dumps(message))

    async def _count(self, ctx: RequestContext, call: HubCall, model_id: str, body: bytes) -> UpstreamReply:
        """Bedrock's CountTokens; where it is not offered (a 400 or 404), the local estimate,
        marked by `x-parley-token-count: estimate`."""
        reply = await self._post(call.target, model_path(model_id, "count-tokens"), body, False)
        if 200 <= reply.status < 300:
            try:
                count = orjson.loads(reply.body or b"")["inputTokens"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                raise GatewayError(
                    502, "Amazon Bedrock returned a CountTokens reply without inputTokens"
                ) from None
            payload = {"input_tokens": count}
            return UpstreamReply(200, _headers(reply, {"content-type": JSON}), body=orjson.dumps(payload))
        if reply.status not in _LOCAL_COUNT_STATUSES:
            return self._error(ctx, reply)
        ctx.response_headers["x-parley-token-count"] = "estimate"
        payload = {"input_tokens": count_request_tokens(call.body)}
        return UpstreamReply(200, {"content-type": JSON}, body=orjson.dumps(payload))

    def _error(self, ctx: RequestContext, reply: UpstreamReply) -> UpstreamReply:
        status, kind, message = error_from_reply(reply.status, reply.headers, reply.body)
        ctx.error_type, ctx.error_message = kind, message
        return UpstreamReply(
            status,
            _headers(reply, {"content-type": JSON}),
            body=anthropic_error_body(kind, message, ctx.request_id),
        )


_COUNT_HEADERS = (
    ("x-amzn-bedrock-input-token-count", "input_tokens"),
    ("x-amzn-bedrock-output-token-count", "output_tokens"),
    ("x-amzn-bedrock-cache-read-input-token-count", "cache_read_input_tokens"),
    ("x-amzn-bedrock-cache-write-input-token-count", "cache_creation_input_tokens"),
)


def apply_count_headers(ctx: RequestContext, headers: Mapping[str, str]) -> None:
    """Bedrock's own token counts of an InvokeModel reply (its headers), cache reads and writes
    included: they are what is billed where they are given."""
    for name, field in _COUNT_HEADERS:
        value = headers.get(name, "")
        if value.isdigit():
            setattr(ctx.usage, field, int(value))


def _event_stream(reply: UpstreamReply) -> ChunkSource:
    if reply.source is None:
        raise GatewayError(502, "Amazon Bedrock answered a streaming call without an event stream")
    return reply.source


def _headers(reply: UpstreamReply, base: dict[str, str]) -> dict[str, str]:
    headers = dict(base)
    if "x-amzn-requestid" in reply.headers:
        headers["request-id"] = reply.headers["x-amzn-requestid"]  # shown as upstream-request-id
    return headers

"""The Amazon Bedrock runtime side of the fake upstream (InvokeModel, Converse, CountTokens).

It follows the published protocol: every request must be signed with SigV4 for service `bedrock`
by one of the fake's key pairs (the signature is recomputed with botocore; a wrong one gets AWS's
403 InvalidSignatureException) or carry one of its Bedrock API keys as a bearer token. Bodies are
checked as Bedrock does: Converse and CountTokens against botocore's own schema of the service,
Claude InvokeModel bodies for `anthropic_version` and the keys Bedrock refuses. Streams use the
real event-stream framing. Errors carry `x-amzn-errortype` and a `{"message"}` body.

Reply specs (queued like the Anthropic fake's, `"api": "bedrock"` to target only this side):
    content, stop_reason, usage, model          as for the Anthropic fake (Anthropic terms)
    status + error {"type": "ThrottlingException", "message"}   an HTTP error
    exception {"type": "throttlingException", "message"}, exception_after: n   a stream exception
    split: n            each stream frame written in n pieces (frames split across reads)
    corrupt_after: n    frame n arrives with a bad CRC
    no_metrics: true    no amazon-bedrock-invocationMetrics on the last Claude event
    metrics: {...}      invocation metrics (and token-count headers) that differ from the body's usage
    count_tokens: "unsupported"   with "api": "bedrock_count": CountTokens answers ValidationException,
                        as for models and regions without it
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import hmac
import itertools
import re
import secrets
from functools import cache
from typing import Any
from urllib.parse import unquote

import orjson
from aiohttp import web

from parley.core.anthropic_stream import message_events
from parley.core.tokens import count_request_tokens, text_tokens
from parley.testing import eventstream
from parley.testing.fake_anthropic import build_message
from parley.testing.fake_state import STATE, FakeState, sleep

REGION_ANY = "*"
# access key id -> (secret key, session token or None)
KEYS = {
    "AKIAFAKEBEDROCK0001": ("fake/secret/key/0001", None),
    "ASIAFAKEBEDROCKTEMP": ("fake/secret/temporary", "fake-session-token-0001"),
}
API_KEYS = frozenset({"ABSKfakebedrockapikey0001"})
# Bedrock's documented version, or the dated API version newer anthropic SDKs' AnthropicBedrock sends.
_VERSION = re.compile(r"^(bedrock-2023-05-31|\d{4}-\d{2}-\d{2})$")
MAX_SKEW = datetime.timedelta(minutes=15)
STATUS = {
    "ValidationException": 400,
    "AccessDeniedException": 403,
    "UnrecognizedClientException": 403,
    "InvalidSignatureException": 403,
    "ResourceNotFoundException": 404,
    "ModelTimeoutException": 408,
    "ModelErrorException": 424,
    "ThrottlingException": 429,
    "ModelNotReadyException": 429,
    "InternalServerException": 500,
    "ServiceUnavailableException": 503,
}
_AUTH = re.compile(
    r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, ?"
    r"SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$"
)


def add_routes(app: web.Application) -> None:
    app.router.add_post(r"/model/{model_id:.+}/invoke", invoke)
    app.router.add_post(r"/model/{model_id:.+}/invoke-with-response-stream", invoke)
    app.router.add_post(r"/model/{model_id:.+}/converse", converse)
    app.router.add_post(r"/model/{model_id:.+}/converse-stream", converse)
    app.router.add_post(r"/model/{model_id:.+}/count-tokens", count_tokens)


def aws_error(name: str, message: str, status: int | None = None) -> web.Response:
    return web.Response(
        status=status or STATUS.get(name, 400),
        body=orjson.dumps({"message": message}),
        content_type="application/json",
        headers={
            "x-amzn-ErrorType": f"{name}:http://internal.amazon.com/coral/com.amazon.bedrock/",
            "x-amzn-RequestId": _request_id(),
        },
    )


def _request_id() -> str:
    h = secrets.token_hex(16)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def check_auth(request: web.Request, body: bytes) -> web.Response | None:
    """None when the request is signed (or bearer-authenticated) as AWS requires, else AWS's error."""
    auth = request.headers.get("authorization", "")
    if auth.startswith("Bearer "):
        if auth[7:] in API_KEYS:
            return None
        return aws_error(
            "UnrecognizedClientException", "Invalid API Key format: Must start with pre-defined prefix", 403
        )
    if not auth:
        return aws_error("UnrecognizedClientException", "Missing Authentication Token", 403)
    match = _AUTH.match(auth)
    if match is None:
        return aws_error(
            "IncompleteSignatureException",
            f"Authorization header requires existence of a valid Credential: {auth[:60]}",
            403,
        )
    key_id, day, region, service, signed, signature = match.groups()
    if key_id not in KEYS:
        return aws_error(
            "UnrecognizedClientException", "The security token included in the request is invalid.", 403
        )
    secret, token = KEYS[key_id]
    if token is not None and request.headers.get("x-amz-security-token") != token:
        return aws_error(
            "UnrecognizedClientException", "The security token included in the request is invalid.", 403
        )
    amz_date = request.headers.get("x-amz-date", "")
    problem = _scope_problem(amz_date, day, service)
    if problem:
        return aws_error("InvalidSignatureException", problem, 403)
    expected = _signature(request, body, signed.split(";"), (key_id, secret, token), region, amz_date)
    if not hmac.compare_digest(expected, signature):
        return aws_error(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. Check your "
            "AWS Secret Access Key and signing method. Consult the service documentation for details.",
            403,
        )
    return None


def _scope_problem(amz_date: str, day: str, service: str) -> str | None:
    if service != "bedrock":
        return f"Credential should be scoped to correct service: 'bedrock'. (got {service!r})"
    try:
        when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
    except ValueError:
        return "Authorization header requires existence of an X-Amz-Date header"
    if not amz_date.startswith(day):
        return "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP"
    if abs(datetime.datetime.now(datetime.UTC) - when) > MAX_SKEW:
        return f"Signature expired: {amz_date} is now earlier or later than the allowed 15 minutes"
    return None


def _signature(
    request: web.Request,
    body: bytes,
    signed: list[str],
    creds: tuple[str, str, str | None],
    region: str,
    amz_date: str,
) -> str:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    headers = {name: request.headers.get(name, "") for name in signed}
    url = f"{request.scheme}://{request.headers.get('host', request.host)}{request.raw_path}"
    aws = AWSRequest(method=request.method, url=url, headers=headers, data=body)
    aws.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(*creds), "bedrock", region)
    canonical = signer.canonical_request(aws)
    return signer.signature(signer.string_to_sign(aws, canonical), aws)


@cache
def _service() -> Any:
    from botocore.loaders import Loader
    from botocore.model import ServiceModel

    return ServiceModel(Loader().load_service_model("bedrock-runtime", "service-2"))


def schema_errors(operation: str, params: dict[str, Any]) -> str | None:
    """botocore's own validation of `params` against the operation's input shape (None: valid)."""
    from botocore.validate import ParamValidator

    shape = _service().operation_model(operation).input_shape
    report = ParamValidator().validate(params, shape)
    return report.generate_report() if report.has_errors() else None


async def _start(request: web.Request) -> tuple[FakeState, bytes, str, web.Response | None]:
    state = request.app[STATE]
    raw, _ = await state.record(request)
    model_id = unquote(request.match_info["model_id"])
    return state, raw, model_id, check_auth(request, raw)


async def _start_json(
    request: web.Request, operation: str
) -> tuple[FakeState, dict[str, Any], str] | web.Response:
    """A signed JSON request that botocore's schema of `operation` accepts, or AWS's error."""
    state, raw, model_id, denied = await _start(request)
    if denied is not None:
        return denied
    body = _json(raw)
    if body is None:
        return aws_error("SerializationException", "Unable to parse request body as JSON", 400)
    problem = schema_errors(operation, dict(body, modelId=model_id))
    if problem:
        return aws_error("ValidationException", problem)
    return state, body, model_id


def _json(raw: bytes) -> dict[str, Any] | None:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None


def _scripted_error(spec: dict[str, Any]) -> web.Response | None:
    if spec.get("status", 200) < 400:
        return None
    err = spec.get("error") or {}
    return aws_error(
        err.get("type", "InternalServerException"), err.get("message", "scripted error"), spec["status"]
    )


def claude_name(model_id: str) -> str:
    """`us.anthropic.claude-sonnet-4-5-20250929-v1:0` -> `claude-sonnet-4-5-20250929`."""
    name = model_id.rsplit("/", 1)[-1].split("anthropic.", 1)[-1]
    return re.sub(r"-v\d+(:\d+)?$", "", name)


def _invoke_problem(body: dict[str, Any] | None) -> str | None:
    if body is None:
        return "Malformed input request, please reformat your input and try again."
    if not _VERSION.match(str(body.get("anthropic_version"))):
        return "Malformed input request: #: required key [anthropic_version] not found or invalid"
    for key in ("model", "stream"):
        if key in body:
            return f"Malformed input request: #: extraneous key [{key}] is not permitted"
    if not isinstance(body.get("max_tokens"), int):
        return "Malformed input request: #: required key [max_tokens] not found"
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        return "Malformed input request: #: required key [messages] not found"
    return None


async def invoke(request: web.Request) -> web.StreamResponse:
    state, raw, model_id, denied = await _start(request)
    if denied is not None:
        return denied
    body = _json(raw)
    problem = _invoke_problem(body)
    if problem is not None:
        return aws_error("ValidationException", problem)
    assert body is not None
    spec = state.next_reply("bedrock", dict(body, model=model_id)) or {}  # "match" sees the model id
    await sleep(spec.get("delay"))
    error = _scripted_error(spec)
    if error is not None:
        return error
    message = build_message(dict(body, model=spec.get("model", claude_name(model_id))), spec)
    usage = message["usage"]
    metrics = dict(_metrics(usage), **(spec.get("metrics") or {}))
    if not request.path.endswith("-with-response-stream"):
        headers = {
            "x-amzn-RequestId": _request_id(),
            "X-Amzn-Bedrock-Input-Token-Count": str(metrics["inputTokenCount"]),
            "X-Amzn-Bedrock-Output-Token-Count": str(metrics["outputTokenCount"]),
            "X-Amzn-Bedrock-Cache-Read-Input-Token-Count": str(metrics["cacheReadInputTokenCount"]),
            "X-Amzn-Bedrock-Cache-Write-Input-Token-Count": str(metrics["cacheWriteInputTokenCount"]),
        }
        return web.Response(body=orjson.dumps(message), content_type="application/json", headers=headers)
    frames = []
    for name, payload in message_events(message, spec.get("piece", 16)):
        if name == "message_stop" and not spec.get("no_metrics"):
            payload = dict(payload, **{"amazon-bedrock-invocationMetrics": metrics})
        chunk = {"bytes": base64.b64encode(orjson.dumps(payload)).decode(), "p": _padding()}
        frames.append(eventstream.event("chunk", orjson.dumps(chunk)))
    return await _send_frames(request, state, frames, spec)


def _metrics(usage: dict[str, int]) -> dict[str, int]:
    return {
        "inputTokenCount": usage["input_tokens"],
        "outputTokenCount": usage["output_tokens"],
        "invocationLatency": 120,
        "firstByteLatency": 40,
        "cacheReadInputTokenCount": usage["cache_read_input_tokens"],
        "cacheWriteInputTokenCount": usage["cache_creation_input_tokens"],
    }


def _padding() -> str:
    return "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"[: secrets.randbelow(40) + 1]


async def _send_frames(
    request: web.Request, state: FakeState, frames: list[bytes], spec: dict[str, Any]
) -> web.StreamResponse:
    if spec.get("exception") is not None:
        at = int(spec.get("exception_after", 0))
        exc = spec["exception"]
        payload = orjson.dumps({"message": exc.get("message", "scripted exception")})
        frames = [*frames[:at], eventstream.exception(exc.get("type", "throttlingException"), payload)]
    if spec.get("corrupt_after") is not None:
        at = int(spec["corrupt_after"])
        frames = [*frames[:at], eventstream.corrupt(frames[at]), *frames[at + 1 :]]
    response = web.StreamResponse(
        status=200,
        headers={"content-type": "application/vnd.amazon.eventstream", "x-amzn-RequestId": _request_id()},
    )
    await response.prepare(request)
    pieces = max(1, int(spec.get("split", 1)))
    try:
        for frame in frames:
            step = max(1, -(-len(frame) // pieces))
            for i in range(0, len(frame), step):
                await response.write(frame[i : i + step])
                if pieces > 1:
                    await asyncio.sleep(0.001)  # separate reads: the frame arrives in pieces
            await sleep(spec.get("chunk_delay"))
        await response.write_eof()
        state.events.append({"stream_completed": True, "events": len(frames)})
    except (ConnectionResetError, asyncio.CancelledError, RuntimeError):
        state.events.append({"stream_aborted": True})
    return response


async def converse(request: web.Request) -> web.StreamResponse:
    stream = request.path.endswith("-stream")
    started = await _start_json(request, "ConverseStream" if stream else "Converse")
    if isinstance(started, web.Response):
        return started
    state, body, model_id = started
    problem = _converse_problem(body)
    if problem:
        return aws_error("ValidationException", problem)
    spec = state.next_reply("bedrock", dict(body, model=model_id)) or {}  # "match" sees the model id
    await sleep(spec.get("delay"))
    error = _scripted_error(spec)
    if error is not None:
        return error
    message = build_message(_as_anthropic(body, model_id), spec)
    blocks = [_converse_block(b) for b in message["content"]]
    usage = _converse_usage(message["usage"])
    if not stream:
        reply = {
            "output": {"message": {"role": "assistant", "content": blocks}},
            "stopReason": message["stop_reason"],
            "usage": usage,
            "metrics": {"latencyMs": 87},
        }
        return web.Response(
            body=orjson.dumps(reply),
            content_type="application/json",
            headers={"x-amzn-RequestId": _request_id()},
        )
    frames = [_frame("messageStart", {"role": "assistant"})]
    for index, block in enumerate(blocks):
        frames.extend(_block_frames(index, block, spec.get("piece", 16)))
    frames.append(_frame("messageStop", {"stopReason": message["stop_reason"]}))
    frames.append(_frame("metadata", {"usage": usage, "metrics": {"latencyMs": 87}}))
    return await _send_frames(request, state, frames, spec)


def _converse_problem(body: dict[str, Any]) -> str | None:
    messages = body["messages"]
    if not messages or messages[0]["role"] != "user":
        return "A conversation must start with a user message."
    for a, b in itertools.pairwise(messages):
        if a["role"] == b["role"]:
            return "A conversation must alternate between user and assistant roles."
    uses_tools = any("toolUse" in c or "toolResult" in c for m in messages for c in m["content"])
    if uses_tools and not body.get("toolConfig"):
        return "The toolConfig field must be defined when using toolUse and toolResult content blocks."
    return None


def _as_anthropic(body: dict[str, Any], model_id: str) -> dict[str, Any]:
    """Just enough of the request in Anthropic terms for the fake's reply builder."""
    messages = []
    for m in body["messages"]:
        texts = [{"type": "text", "text": c["text"]} for c in m["content"] if "text" in c]
        messages.append({"role": m["role"], "content": texts})
    return {
        "model": model_id,
        "messages": messages,
        "max_tokens": (body.get("inferenceConfig") or {}).get("maxTokens"),
        "system": " ".join(s.get("text", "") for s in body.get("system") or []),
    }


def _converse_block(block: dict[str, Any]) -> dict[str, Any]:
    kind = block["type"]
    if kind == "tool_use":
        return {"toolUse": {"toolUseId": block["id"], "name": block["name"], "input": block["input"]}}
    if kind == "thinking":
        return {
            "reasoningContent": {
                "reasoningText": {"text": block["thinking"], "signature": block["signature"]}
            }
        }
    if kind == "redacted_thinking":
        return {"reasoningContent": {"redactedContent": block["data"]}}
    return {"text": block.get("text", "")}


def _converse_usage(usage: dict[str, int]) -> dict[str, int]:
    out = {
        "inputTokens": usage["input_tokens"],
        "outputTokens": usage["output_tokens"],
        "totalTokens": sum(
            usage[k]
            for k in (
                "input_tokens",
                "output_tokens",
                "cache_read_input_tokens",
                "cache_creation_input_tokens",
            )
        ),
    }
    if usage["cache_read_input_tokens"] or usage["cache_creation_input_tokens"]:
        out["cacheReadInputTokens"] = usage["cache_read_input_tokens"]
        out["cacheWriteInputTokens"] = usage["cache_creation_input_tokens"]
    return out


def _frame(event_type: str, payload: dict[str, Any]) -> bytes:
    return eventstream.event(event_type, orjson.dumps(dict(payload, p=_padding())))


def _block_frames(index: int, block: dict[str, Any], piece: int) -> list[bytes]:
    frames = []

    def delta(d: dict[str, Any]) -> None:
        frames.append(_frame("contentBlockDelta", {"contentBlockIndex": index, "delta": d}))

    if "toolUse" in block:
        use = block["toolUse"]
        start = {"toolUse": {"toolUseId": use["toolUseId"], "name": use["name"]}}
        frames.append(_frame("contentBlockStart", {"contentBlockIndex": index, "start": start}))
        arguments = orjson.dumps(use["input"]).decode()
        for i in range(0, len(arguments), piece):
            delta({"toolUse": {"input": arguments[i : i + piece]}})
    elif "reasoningContent" in block:
        reasoning = block["reasoningContent"]
        if "redactedContent" in reasoning:
            delta({"reasoningContent": {"redactedContent": reasoning["redactedContent"]}})
        else:
            text = reasoning["reasoningText"]
            for i in range(0, len(text["text"]), piece):
                delta({"reasoningContent": {"text": text["text"][i : i + piece]}})
            delta({"reasoningContent": {"signature": text["signature"]}})
    else:
        for i in range(0, max(1, len(block["text"])), piece):
            delta({"text": block["text"][i : i + piece]})
    frames.append(_frame("contentBlockStop", {"contentBlockIndex": index}))
    return frames


async def count_tokens(request: web.Request) -> web.Response:
    started = await _start_json(request, "CountTokens")
    if isinstance(started, web.Response):
        return started
    state, body, _ = started
    spec = state.next_reply("bedrock_count", body) or {}
    if spec.get("count_tokens") == "unsupported":
        return aws_error("ValidationException", "The provided model doesn't support counting tokens.")
    given = body["input"]
    if "invokeModel" in given:
        invoke_body = _json(base64.b64decode(given["invokeModel"]["body"]))
        if _invoke_problem(invoke_body):
            return aws_error("ValidationException", str(_invoke_problem(invoke_body)))
        count = count_request_tokens(invoke_body)
    else:
        count = text_tokens(orjson.dumps(given["converse"]).decode())
    return web.Response(body=orjson.dumps({"inputTokens": count}), content_type="application/json")

"""A hostile upstream: the fake sends HTML, truncated JSON, SSE cut mid-event, giant lines, errors
with status 200, streams that hang or never end. The official SDKs must get a clear API error
(never parley's own 500) within a bounded time. The gateway runs in process."""

from __future__ import annotations

import concurrent.futures
import time

import anthropic
import openai
import pytest

from fuzz_support import LONG
from parley.testing.procs import anthropic_deployment, openai_deployment

MASTER = "sk-parley-master-hostile"
BOUND = 6.0  # seconds a client may wait for its error (deployment timeout: 2 s)
EVENT = 'event: message_start\ndata: {"type": "message_start", "message": {"id": "msg_1", "type": "message", '
DELTA = 'event: ping\ndata: {"type": "ping"}\n\n'
HOSTILE = {
    "html": {"raw": "<html><body>502 Bad Gateway</body></html>", "content_type": "text/html"},
    "truncated_json": {"raw": '{"id": "msg_1", "type": "message", "content": [{"type": "te'},
    "error_with_200": {"raw": '{"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}'},
    "openai_error_with_200": {"raw": '{"error": {"message": "busy", "type": "server_error"}}'},
    "empty": {"raw": ""},
    "giant_line": {"raw": "x", "raw_repeat": 4 << 20, "content_type": "text/event-stream"},
    "sse_cut_mid_event": {"raw_chunks": [EVENT], "content_type": "text/event-stream", "then": "disconnect"},
    "sse_then_hang": {"raw_chunks": [EVENT], "content_type": "text/event-stream", "then": "hang"},
    "json_then_hang": {"raw_chunks": ['{"id": "msg_1"'], "then": "hang"},
    "headers_then_hang": {"raw_chunks": [], "content_type": "text/event-stream", "then": "hang"},
}
LONG_ONLY = {"json_then_hang"}  # each waits out the 2 s timeout: `make fuzz` runs them


def cases(api: str) -> list:
    out = []
    for name in sorted(HOSTILE):
        for stream in ("json", "stream"):
            marks = []
            if name in LONG_ONLY and not LONG:
                marks.append(pytest.mark.skip(reason="long fuzz only (make fuzz)"))
            out.append(pytest.param(name, stream == "stream", marks=marks, id=f"{name}-{stream}"))
    return out


@pytest.fixture(scope="module")
def gateway(start_inprocess_module, fake_upstream):
    return start_inprocess_module(
        {
            "model_list": [
                anthropic_deployment("ant", fake_upstream, timeout=2),
                openai_deployment("oa", fake_upstream, timeout=2),
            ],
            "general_settings": {"master_key": MASTER, "max_response_size_mb": 1},
            "router_settings": {"num_retries": 0, "allowed_fails": 100000},
        }
    )


@pytest.fixture(scope="module")
def pool():
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as executor:
        yield executor


def _ask_anthropic(gateway, model: str, stream: bool) -> None:
    client = gateway.anthropic(api_key=MASTER, max_retries=0)
    args = dict(model=model, max_tokens=16, messages=[{"role": "user", "content": "hi"}])
    if not stream:
        client.messages.create(**args)
        return
    with client.messages.stream(**args) as events:
        for _ in events:
            pass
        events.get_final_message()


def _ask_openai(gateway, model: str, stream: bool) -> None:
    client = gateway.openai(api_key=MASTER, max_retries=0)
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=16, stream=stream
    )
    if stream:
        for _ in reply:
            pass
    elif not reply.choices:
        raise openai.APIError("no choices", request=None, body=None)  # type: ignore[arg-type]


def _outcome(pool, call, *args) -> tuple[BaseException | None, float]:
    started = time.monotonic()
    future = pool.submit(call, *args)
    try:
        future.result(timeout=BOUND)
    except concurrent.futures.TimeoutError:
        pytest.fail(f"no answer within {BOUND} s")
    except Exception as e:
        return e, time.monotonic() - started
    return None, time.monotonic() - started


def _assert_clear_error(error: BaseException | None, api_error: type[BaseException]) -> None:
    assert error is not None, "a hostile reply was taken as a success"
    assert isinstance(error, api_error), repr(error)
    assert "internal gateway error" not in str(error), str(error)
    assert getattr(error, "status_code", None) != 500, str(error)


@pytest.mark.parametrize("name, stream", cases("anthropic"))
def test_anthropic_client_gets_a_clear_error(gateway, pool, upstream, name, stream):
    upstream.script(dict(HOSTILE[name], api="anthropic"))
    error, _ = _outcome(pool, _ask_anthropic, gateway, "ant", stream)
    _assert_clear_error(error, anthropic.APIError)


@pytest.mark.parametrize("name, stream", cases("openai"))
def test_openai_client_gets_a_clear_error(gateway, pool, upstream, name, stream):
    upstream.script(dict(HOSTILE[name], api="openai"))
    error, _ = _outcome(pool, _ask_openai, gateway, "oa", stream)
    _assert_clear_error(error, openai.APIError)


BIG = 2 << 20  # over the module's max_response_size_mb: 1


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
@pytest.mark.parametrize("api", ["anthropic", "openai"])
def test_a_reply_larger_than_the_limit_is_refused_not_buffered(gateway, pool, upstream, api, declared):
    body = '{"pad": "' + "x" * BIG + '"}'
    spec = {"raw_chunks": [body[: BIG // 2], body[BIG // 2 :]], "api": api}
    if declared:
        spec["headers"] = {"Content-Length": str(len(body))}
    upstream.script(spec)
    if api == "anthropic":
        error, _ = _outcome(pool, _ask_anthropic, gateway, "ant", False)
        _assert_clear_error(error, anthropic.APIError)
    else:
        error, _ = _outcome(pool, _ask_openai, gateway, "oa", False)
        _assert_clear_error(error, openai.APIError)
    assert getattr(error, "status_code", None) == 502
    assert "max_response_size_mb" in str(error)

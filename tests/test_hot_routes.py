"""The plain ASGI dispatcher for the hot routes (server/hot.py), which `parley serve` runs in front
of Starlette: the same replies as through Starlette, everything else falls through, and a bug in a
handler is a 500 in the called API's envelope."""

from __future__ import annotations

import anthropic
import httpx2 as httpx
import openai
import orjson

from parley.config import build_config
from parley.gateway import build_gateway
from parley.server.api import ApiRoutes
from parley.server.app import create_app
from parley.server.hot import HotRoutes

CONFIG = {"model_list": [{"model_name": "m", "params": {"model": "mock/m"}}]}


def _served():
    config = build_config(CONFIG, "test")
    gw = build_gateway(config)
    app = create_app(config, gw)
    return gw, HotRoutes(app, ApiRoutes(gw))


def _http(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://parley.test")


async def test_hot_routes_answer_the_official_clients_and_the_rest_falls_through():
    gw, hot = _served()
    await gw.start()
    try:
        claude = anthropic.AsyncAnthropic(base_url="http://parley.test", api_key="k", http_client=_http(hot))
        message = await claude.messages.create(
            model="m", max_tokens=32, messages=[{"role": "user", "content": "hello"}]
        )
        assert message.type == "message" and message.content[0].type == "text"
        async with claude.messages.stream(
            model="m", max_tokens=32, messages=[{"role": "user", "content": "hello"}]
        ) as stream:
            final = await stream.get_final_message()
        assert final.stop_reason is not None
        oa = openai.AsyncOpenAI(base_url="http://parley.test/v1", api_key="k", http_client=_http(hot))
        chat = await oa.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        assert chat.choices[0].message.role == "assistant"
        async with _http(hot) as client:
            health = await client.get("/health/liveness")
            assert health.status_code == 200 and health.json()["status"] == "healthy"
            missing = await client.post("/v1/nothing-here", json={})
            assert missing.status_code == 404 and missing.json()["type"] == "error"
            wrong_method = await client.get("/v1/messages")
            assert wrong_method.status_code == 405
            unknown_model = await client.post(
                "/v1/messages", json={"model": "nope", "max_tokens": 5, "messages": []}
            )
            assert unknown_model.status_code in (400, 404)
            assert unknown_model.json()["error"]["type"] in ("not_found_error", "invalid_request_error")
    finally:
        await gw.stop()


class Broken:
    async def hot_messages(self, scope, receive):
        raise RuntimeError("a bug")

    hot_chat = hot_messages


async def test_a_bug_before_the_reply_is_a_500_in_the_called_apis_envelope(caplog):
    _gw, served = _served()
    hot = HotRoutes(served.app, Broken())  # type: ignore[arg-type]
    async with _http(hot) as client:
        native = await client.post("/v1/messages", json={"model": "m"})
        chat = await client.post("/v1/chat/completions", json={"model": "m"})
    assert native.status_code == 500
    body = orjson.loads(native.content)
    assert body["type"] == "error" and body["error"]["type"] == "api_error"
    assert body["request_id"] == native.headers["request-id"]
    assert chat.status_code == 500 and chat.json()["error"]["type"] == "api_error"
    assert "RuntimeError: a bug" in caplog.text

"""Run the gateway in this process for tests: no port, no child process, no uvicorn.

Built only on the public app factory (`parley.server.app.create_app`) and `parley.config.build_config`,
so it does not care how the gateway is put together inside.

    with InProcessGateway({"model_list": [...]}) as gw:
        client = gw.anthropic(api_key="sk-test", max_retries=0)   # anthropic.Anthropic
        reply = gw.post("/v1/messages", json={...}, headers={"x-api-key": "..."})  # httpx.Response

The synchronous side is Starlette's TestClient: entering it runs the app's lifespan (startup, and
shutdown on exit) on an event loop in a background thread, and every request made through
`gw.http` (or an SDK client built by `gw.anthropic()` / `gw.openai()`) runs the ASGI app on that
same loop, so the gateway's connection pools, database engine and background writers live on one
loop exactly as they do under uvicorn. Async clients (`gw.async_anthropic()`, `gw.async_openai()`,
`gw.async_http()`) work from any event loop: each request is handed to that loop from a worker
thread.

`AsyncInProcessGateway` is the all-async variant: `async with` runs the lifespan on the current
event loop and its clients use `httpx.ASGITransport` directly.

What this cannot show: anything about uvicorn itself (HTTP parsing, keep-alive, worker processes,
signals), the process's log output, or a client dropping its connection mid-stream. Tests about
those start `parley serve` (see parley.testing.procs).
"""

from __future__ import annotations

import asyncio
import http.client
import io
import urllib.error
import urllib.request
import urllib.response
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx2 as httpx  # the HTTP client the official SDKs ship with
import yaml
from starlette.testclient import TestClient

from parley.config import build_config
from parley.gateway import build_gateway
from parley.server.app import create_app

BASE_URL = "http://parley.inprocess"
CLIENT_ADDR = ("127.0.0.1", 50000)
CONFIG_PATH = "<in-process config>"


def _config_from(doc: dict, path: str) -> Any:
    # the same round trip `parley serve --config` makes: what YAML can't say, the test can't either
    return build_config(yaml.safe_load(yaml.safe_dump(doc)) or {}, path)


class _SharedTransport(httpx.BaseTransport):
    """Lends the TestClient's transport to other httpx.Clients; closing them leaves it open."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self.inner.handle_request(request)

    def close(self) -> None:
        pass


class _ThreadedStream(httpx.AsyncByteStream):
    """An async view of a sync response body; each chunk is read in a worker thread."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        stream = response.stream
        assert isinstance(stream, httpx.SyncByteStream)  # the TestClient answers synchronously
        self.chunks = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        import anyio.to_thread

        it = iter(self.chunks)
        while True:
            chunk = await anyio.to_thread.run_sync(next, it, None)
            if chunk is None:
                return
            yield chunk

    async def aclose(self) -> None:
        import anyio.to_thread

        await anyio.to_thread.run_sync(self.response.close)


class _BridgeTransport(httpx.AsyncBaseTransport):
    """Async transport for a gateway whose loop runs in another thread (the TestClient's portal)."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        import anyio.to_thread

        body = await request.aread()
        sync_request = httpx.Request(
            request.method, request.url, headers=request.headers, content=body, extensions=request.extensions
        )
        response = await anyio.to_thread.run_sync(self.inner.handle_request, sync_request)
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_ThreadedStream(response),
            extensions=response.extensions,
            request=request,
        )


class _Clients:
    """Client constructors shared by both harnesses; subclasses say how a request reaches the app."""

    url = BASE_URL  # only a name: nothing listens on it

    def _sync_transport(self) -> httpx.BaseTransport:
        raise NotImplementedError

    def _async_transport(self) -> httpx.AsyncBaseTransport:
        raise NotImplementedError

    # raw HTTP

    def client(self, headers: dict[str, str] | None = None, **kw: Any) -> httpx.Client:
        """A new httpx.Client on the gateway (base URL set)."""
        return httpx.Client(transport=self._sync_transport(), base_url=self.url, headers=headers, **kw)

    def async_http(self, headers: dict[str, str] | None = None, **kw: Any) -> httpx.AsyncClient:
        """A new httpx.AsyncClient on the gateway (base URL set)."""
        return httpx.AsyncClient(transport=self._async_transport(), base_url=self.url, headers=headers, **kw)

    # the official SDKs

    def anthropic(self, **kw: Any) -> Any:
        """`anthropic.Anthropic` on the gateway; keyword arguments go to the client (api_key, ...)."""
        import anthropic

        return anthropic.Anthropic(
            base_url=kw.pop("base_url", self.url),
            http_client=httpx.Client(transport=self._sync_transport()),
            **kw,
        )

    def async_anthropic(self, **kw: Any) -> Any:
        import anthropic

        return anthropic.AsyncAnthropic(
            base_url=kw.pop("base_url", self.url),
            http_client=httpx.AsyncClient(transport=self._async_transport()),
            **kw,
        )

    def openai(self, **kw: Any) -> Any:
        """`openai.OpenAI` on the gateway's /v1 (keyword arguments go to the client)."""
        import openai

        return openai.OpenAI(
            base_url=kw.pop("base_url", self.url + "/v1"),
            http_client=httpx.Client(transport=self._sync_transport()),
            **kw,
        )

    def async_openai(self, **kw: Any) -> Any:
        import openai

        return openai.AsyncOpenAI(
            base_url=kw.pop("base_url", self.url + "/v1"),
            http_client=httpx.AsyncClient(transport=self._async_transport()),
            **kw,
        )


class InProcessGateway(_Clients):
    """The gateway app for one config dict, its lifespan run by Starlette's TestClient.

    `start()` / `stop()` or use it as a context manager. `http` is the TestClient itself (an
    httpx.Client); `request`, `get` and `post` are shorthands on it taking paths."""

    def __init__(self, config: dict, headers: dict[str, str] | None = None, path: str = CONFIG_PATH) -> None:
        self.config = _config_from(config, path)
        self.gateway = build_gateway(self.config)  # (its parts, for tests that look inside)
        self.app = create_app(self.config, self.gateway)
        # server errors come back as the 500 response a real client would get, not as exceptions
        self.http = TestClient(
            self.app,
            base_url=self.url,
            raise_server_exceptions=False,
            client=CLIENT_ADDR,
            headers=dict(headers or {}),
        )
        self.started = False

    def start(self) -> InProcessGateway:
        if not self.started:
            self.http.__enter__()  # runs the lifespan startup; raises if it fails
            self.started = True
        return self

    def stop(self) -> None:
        if self.started:
            self.started = False
            self.http.__exit__(None, None, None)  # lifespan shutdown

    def __enter__(self) -> InProcessGateway:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _sync_transport(self) -> httpx.BaseTransport:
        if not self.started:
            raise RuntimeError("the in-process gateway is not started")
        return _SharedTransport(self.http._transport)

    def _async_transport(self) -> httpx.AsyncBaseTransport:
        return _BridgeTransport(self._sync_transport())

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """One request (httpx keyword arguments: content, json, headers, params, ...)."""
        if not self.started:
            raise RuntimeError("the in-process gateway is not started")
        return self.http.request(method, path, **kw)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("POST", path, **kw)

    def delete(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("DELETE", path, **kw)

    def urlopen(
        self, req: urllib.request.Request | str, data: bytes | None = None, timeout: float | None = None
    ) -> Any:
        """`urllib.request.urlopen` answered by the in-process app, for tests written against it:
        same method, headers and body (with urllib's default content type when a body has none),
        a response with .status/.headers/.read(), and urllib.error.HTTPError for 4xx/5xx."""
        if isinstance(req, str):
            req = urllib.request.Request(req)
        if data is not None:
            req.data = data
        headers = dict(req.header_items())
        if req.data is not None and not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        reply = self.request(req.get_method(), req.full_url, content=req.data, headers=headers)
        message = http.client.HTTPMessage()
        for name, value in reply.headers.multi_items():
            message[name] = value
        if reply.status_code >= 400:
            raise urllib.error.HTTPError(
                req.full_url, reply.status_code, reply.reason_phrase, message, io.BytesIO(reply.content)
            )
        return urllib.response.addinfourl(io.BytesIO(reply.content), message, req.full_url, reply.status_code)


class AsyncInProcessGateway(_Clients):
    """The gateway app run on the current event loop: `async with AsyncInProcessGateway(cfg) as gw`.

    The lifespan runs as a task on this loop; clients use httpx.ASGITransport. Only async clients
    are offered (a sync client would block the loop the app runs on)."""

    def __init__(self, config: dict, path: str = CONFIG_PATH) -> None:
        self.config = _config_from(config, path)
        self.gateway = build_gateway(self.config)  # (its parts, for tests that look inside)
        self.app = create_app(self.config, self.gateway)
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> AsyncInProcessGateway:
        self._to_app: asyncio.Queue = asyncio.Queue()
        self._from_app: asyncio.Queue = asyncio.Queue()
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
        self._task = asyncio.ensure_future(self.app(scope, self._to_app.get, self._from_app.put))
        await self._lifespan("startup")
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._task is not None:
            try:
                await self._lifespan("shutdown")
                await self._task
            finally:
                self._task = None

    async def _lifespan(self, phase: str) -> None:
        task = self._task
        assert task is not None
        await self._to_app.put({"type": f"lifespan.{phase}"})
        reply = asyncio.ensure_future(self._from_app.get())
        await asyncio.wait([reply, task], return_when=asyncio.FIRST_COMPLETED)
        if not reply.done():
            reply.cancel()
            task.result()  # the app raised without answering: raise that
            raise RuntimeError(f"the app ended without answering lifespan.{phase}")
        message = reply.result()
        if message["type"] != f"lifespan.{phase}.complete":
            error = task.exception() if task.done() else None
            if error is not None:
                raise error
            raise RuntimeError(f"lifespan.{phase} failed: {message.get('message', '')}")

    def _sync_transport(self) -> httpx.BaseTransport:
        raise TypeError("AsyncInProcessGateway serves async clients only (use InProcessGateway)")

    def _async_transport(self) -> httpx.AsyncBaseTransport:
        if self._task is None:
            raise RuntimeError("the in-process gateway is not started")
        return httpx.ASGITransport(self.app, raise_app_exceptions=False, client=CLIENT_ADDR)

    async def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        async with self.async_http() as client:
            return await client.request(method, path, **kw)

    async def get(self, path: str, **kw: Any) -> httpx.Response:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, **kw: Any) -> httpx.Response:
        return await self.request("POST", path, **kw)


def started(config: dict, **kw: Any) -> Iterator[InProcessGateway]:
    """Generator for fixtures: yields a started InProcessGateway and stops it afterwards."""
    gw = InProcessGateway(config, **kw).start()
    try:
        yield gw
    finally:
        gw.stop()


def anthropic_client(gw: Any, **kw: Any) -> Any:
    """`anthropic.Anthropic` for either kind of gateway: in process, or a `parley serve` process
    (anything with a `.url`), for test modules that use both."""
    if isinstance(gw, _Clients):
        return gw.anthropic(**kw)
    import anthropic

    kw.setdefault("base_url", gw.url)
    return anthropic.Anthropic(**kw)


def openai_client(gw: Any, **kw: Any) -> Any:
    """`openai.OpenAI` on /v1 for either kind of gateway (see anthropic_client)."""
    if isinstance(gw, _Clients):
        return gw.openai(**kw)
    import openai

    kw.setdefault("base_url", gw.url + "/v1")
    return openai.OpenAI(**kw)

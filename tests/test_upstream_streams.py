"""The upstream HTTP client's timeouts, stream back-pressure, abandoned streams and cancellation,
against real loopback servers (tests/upstream_support.py). Each test runs on asyncio's loop and on uvloop."""

from __future__ import annotations

import asyncio
import socket

import pytest

from parley.transport.http import HttpClient, UpstreamBroken
from upstream_support import (
    Conn,
    RawServer,
    Seen,
    chunked,
    closed_within,
    failure,
    hang,
    reply,
    run,
    wait_closed,
)

MB = 1 << 20
_ = run  # the fixture: each test on asyncio and on uvloop


# -- timeouts --


def test_connect_timeout_is_504(run):
    async def main():
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)  # never accepted: once its queue is full, new SYNs are dropped
        port = listener.getsockname()[1]
        fillers = []
        for _ in range(4):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            fillers.append(s)
        await asyncio.sleep(0.1)
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            error = await failure(
                HttpClient().send("GET", f"http://127.0.0.1:{port}/", {}, None, 5, False, connect_timeout=0.3)
            )
        finally:
            for s in [*fillers, listener]:
                s.close()
        assert (error.status, error.message) == (504, "upstream timed out after 5s")
        assert loop.time() - started < 2

    run(main)


def test_no_answer_is_504_after_the_timeout_and_the_connection_is_closed(run):
    async def main():
        async with RawServer(hang) as server:
            client = HttpClient()
            loop = asyncio.get_running_loop()
            started = loop.time()
            error = await failure(client.send("POST", server.url, {}, b"{}", 0.4, False))
            assert (error.status, error.type) == (504, "timeout_error")
            assert 0.35 < loop.time() - started < 2
            assert await closed_within(server.conns[0], 2)
            await client.close()

    run(main)


def test_a_trickling_reply_meets_the_total_timeout_but_a_trickling_stream_does_not(run):
    async def answer(seen: Seen, conn: Conn) -> bool:
        kind = "text/event-stream" if seen.target == "/sse" else "text/plain"
        conn.writer.write(f"HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: 8\r\n\r\n".encode())
        for _ in range(8):  # a byte every 0.1 s: never idle for the timeout, 0.8 s in all
            await asyncio.sleep(0.1)
            conn.writer.write(b"x")
            await conn.writer.drain()
        return True

    async def main():
        async with RawServer(answer) as server:
            client = HttpClient()
            error = await failure(client.send("GET", server.url, {}, None, 0.5, False))
            assert error.status == 504
            streamed = await client.send("GET", server.url + "/sse", {}, None, 0.5, True)
            assert streamed.source is not None
            got = b""
            while (chunk := await streamed.source.next_chunk()) is not None:
                got += chunk
            assert got == b"x" * 8
            await client.close()

    run(main)


def test_a_stream_that_goes_silent_breaks_after_the_timeout(run):
    async def answer(seen: Seen, conn: Conn) -> bool:
        conn.writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 100\r\n\r\ndata: 1\n\n"
        )
        await wait_closed(conn)
        return False

    async def main():
        async with RawServer(answer) as server:
            client = HttpClient()
            streamed = await client.send("GET", server.url, {}, None, 0.4, True)
            assert streamed.source is not None
            assert await streamed.source.next_chunk() == b"data: 1\n\n"
            with pytest.raises(UpstreamBroken, match=r"no data from upstream for 0\.4s"):
                await streamed.source.next_chunk()
            assert await closed_within(server.conns[0], 2)
            await client.close()

    run(main)


# -- streams: back-pressure, abandoning, cancellation --


def test_a_slow_reader_pauses_the_upstream_instead_of_buffering(run):
    total = 48 * MB
    sent = [0]

    async def answer(seen: Seen, conn: Conn) -> bool:
        conn.writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: %d\r\n\r\n" % total
        )
        block = b"y" * 65536
        while sent[0] < total:
            conn.writer.write(block)
            await conn.writer.drain()  # waits while the client's socket is full
            sent[0] += len(block)
        return True

    async def main():
        async with RawServer(answer) as server:
            client = HttpClient()
            streamed = await client.send("GET", server.url, {}, None, 10, True)
            assert streamed.source is not None
            first = await streamed.source.next_chunk()
            await asyncio.sleep(0.5)  # the reader lags
            assert sent[0] < 24 * MB  # kernel buffers at most; the client stopped reading
            size = len(first or b"")
            while (chunk := await streamed.source.next_chunk()) is not None:
                assert len(chunk) < 8 * MB
                size += len(chunk)
            assert size == total
            await client.close()

    run(main)


def test_an_abandoned_stream_closes_its_connection(run):
    async def answer(seen: Seen, conn: Conn) -> bool:
        if seen.target == "/plain":
            conn.writer.write(reply())
            return True
        conn.writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        for frame in chunked([b"data: %d\n\n" % i for i in range(100)]):
            conn.writer.write(frame)
            await conn.writer.drain()
            await asyncio.sleep(0.05)
        return True

    async def main():
        async with RawServer(answer) as server:
            client = HttpClient()
            streamed = await client.send("GET", server.url, {}, None, 5, True)
            assert streamed.source is not None
            assert (await streamed.source.next_chunk() or b"").startswith(b"data: 0")
            streamed.source.close()  # the client went away mid-stream
            assert (await client.send("GET", server.url + "/plain", {}, None, 5, False)).body == b"ok"
            assert server.connections == 2  # the half-read connection was not reused
            await client.close()

    run(main)


@pytest.mark.parametrize("where", ["before the head", "mid-body"])
def test_a_cancelled_request_leaves_no_connection_behind(run, where):
    async def answer(seen: Seen, conn: Conn) -> bool:
        if seen.target == "/slow":
            if where == "mid-body":
                conn.writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf")
            await wait_closed(conn)
            return False
        conn.writer.write(reply())
        return True

    async def main():
        async with RawServer(answer) as server:
            client = HttpClient()
            task = asyncio.ensure_future(client.send("GET", server.url + "/slow", {}, None, 5, False))
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await closed_within(server.conns[0], 2)
            assert (await client.send("GET", server.url, {}, None, 5, False)).body == b"ok"
            assert server.connections == 2
            await client.close()

    run(main)

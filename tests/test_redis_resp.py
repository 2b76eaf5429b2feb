"""The lean connection the admission and settle calls use (`parley.store.resp`), against real
redis-server processes: replies matched to callers in order, scripts loaded again after a flush,
a password and a database, a paused Redis bounded by the link's timeout, and the URLs it leaves
to redis-py."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pytest
import redis

from parley.store.redis_link import RedisLink, RedisUnavailable
from parley.store.resp import lean_params
from parley.testing.procs import RedisServer, free_port

ECHO = "return {KEYS[1], ARGV[1], redis.call('INCR', KEYS[1])}"


@pytest.fixture
def own_redis():
    server = RedisServer(free_port())
    yield server
    server.stop()


async def test_concurrent_calls_each_get_their_own_reply(own_redis):
    link = RedisLink(own_redis.url, "t")
    script = link.script(ECHO)
    try:
        replies = await asyncio.gather(*(link.eval(script, [f"k{i % 7}"], [f"v{i}"]) for i in range(300)))
    finally:
        await link.close()
    assert [r[1] for r in replies] == [f"v{i}".encode() for i in range(300)]
    assert [r[0] for r in replies] == [f"k{i % 7}".encode() for i in range(300)]
    assert sorted(r[2] for r in replies if r[0] == b"k0") == list(range(1, 44))  # each INCR once


async def test_a_flushed_script_is_loaded_again(own_redis):
    link = RedisLink(own_redis.url, "t")
    script = link.script(ECHO)
    try:
        assert (await link.eval(script, ["a"], ["x"]))[2] == 1
        redis.Redis(port=own_redis.port).script_flush()  # as after a Redis restart
        assert (await link.eval(script, ["a"], ["y"]))[1:] == [b"y", 2]
    finally:
        await link.close()


async def test_password_and_database_from_the_url():
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--requirepass", "s3cret", "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
    )
    try:
        _wait_ping(port, "s3cret")
        link = RedisLink(f"redis://:s3cret@127.0.0.1:{port}/3", "t")
        assert lean_params(link.url) is not None
        await link.eval(link.script("return redis.call('SET', KEYS[1], ARGV[1])"), ["where"], ["db3"])
        await link.close()
        assert redis.Redis(port=port, password="s3cret", db=3).get("where") == b"db3"
        assert redis.Redis(port=port, password="s3cret", db=0).get("where") is None
        wrong = RedisLink(f"redis://:nope@127.0.0.1:{port}/0", "t")
        with pytest.raises(RedisUnavailable):
            await wrong.eval(wrong.script("return 1"), [], [])
        assert "WRONGPASS" in (wrong.last_error or "") or "invalid" in (wrong.last_error or "")
    finally:
        proc.terminate()
        proc.wait(10)


def _wait_ping(port: int, password: str) -> None:
    deadline = time.monotonic() + 5
    while True:
        try:
            redis.Redis(port=port, password=password).ping()
            return
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


async def test_a_paused_redis_costs_one_timeout_and_the_replies_stay_in_step(own_redis):
    link = RedisLink(own_redis.url, "t", timeout=0.3, retry_interval=0.5)
    script = link.script(ECHO)
    try:
        assert (await link.eval(script, ["p"], ["before"]))[1] == b"before"
        own_redis.pause()
        started = time.monotonic()
        try:
            with pytest.raises(RedisUnavailable):
                await link.eval(script, ["p"], ["lost"])
            took = time.monotonic() - started
            with pytest.raises(RedisUnavailable):  # marked down: no call, no wait
                await link.eval(script, ["p"], ["skipped"])
        finally:
            own_redis.resume()
        assert 0.25 <= took < 1.0
        await asyncio.sleep(0.6)  # the retry interval
        # the reply to the call that timed out arrives late and is dropped, not given to this one
        assert (await link.eval(script, ["p"], ["after"]))[1] == b"after"
        assert not link.last_error
    finally:
        await link.close()


@pytest.mark.parametrize(
    "url",
    ["rediss://127.0.0.1:6380/0", "redis://127.0.0.1:6379/0?socket_timeout=3"],
)
def test_urls_the_lean_connection_leaves_to_redis_py(url):
    assert lean_params(url) is None


async def test_the_redis_py_path_runs_scripts_too(own_redis):
    link = RedisLink(own_redis.url + "?socket_keepalive=true", "t")
    assert lean_params(link.url) is None
    script = link.script(ECHO)
    try:
        assert (await link.eval(script, ["r"], ["one"]))[1:] == [b"one", 1]
        redis.Redis(port=own_redis.port).script_flush()
        assert (await link.eval(script, ["r"], ["two"]))[1:] == [b"two", 2]
    finally:
        await link.close()


LATE_LOOP = """
import asyncio, sys, time
import uvloop
from parley.store.redis_link import RedisLink

async def main():
    url, kind = sys.argv[1], sys.argv[2]
    link = RedisLink(url, "late", timeout=0.2, retry_interval=30.0)
    script = link.script("return ARGV[1]")
    if kind == "run":  # redis-py: imported, connected and answered while the loop is blocked
        call = lambda i: link.run(lambda c: c.incr("late:n"))
    else:  # the lean connection, connected on first use
        call = lambda i: link.eval(script, [], [f"v{i}"])
    calls = [asyncio.ensure_future(call(i)) for i in range(3)]
    await asyncio.sleep(0)
    time.sleep(0.3)  # blocked past the deadline (a CPU-overloaded gateway)
    await asyncio.sleep(0)
    time.sleep(0.3)  # and again, once the commands are written
    print(sorted(await asyncio.gather(*calls)), link.up, link.errors)
    await link.close()

(uvloop.run if sys.argv[3] == "uvloop" else asyncio.run)(main())
"""


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
@pytest.mark.parametrize("kind", ["run", "eval"])
def test_a_late_event_loop_is_not_a_slow_redis(own_redis, kind, loop_kind):
    """Redis answers in time, but the gateway's loop is blocked past the 0.2 s deadline, twice
    (before the commands are written, and after): every call gets its reply and the link stays
    up (a link marked down would move budgets to per-process holds). In a fresh process, so
    redis-py's import on first use happens too."""
    out = subprocess.run(
        [sys.executable, "-c", LATE_LOOP, own_redis.url, kind, loop_kind],
        capture_output=True,
        text=True,
        timeout=60,
    )
    expected = "[1, 2, 3]" if kind == "run" else "[b'v0', b'v1', b'v2']"
    assert out.stdout.strip() == f"{expected} True 0", out.stderr[-2000:]


async def test_a_silent_redis_still_fails_the_call_on_a_late_loop(own_redis):
    """The late-loop allowance is given once: a paused Redis still fails the call, within about
    twice the timeout plus the loop's own delay."""
    link = RedisLink(own_redis.url, "t", timeout=0.2, retry_interval=30.0)
    script = link.script(ECHO)
    try:
        await link.eval(script, ["s"], ["warm"])
        await link.run(lambda c: c.ping())
        own_redis.pause()
        try:
            for call in (link.eval(script, ["s"], ["x"]), link.run(lambda c: c.ping())):
                link._retry_at = 0.0  # (the first failure marked the link down: try anyway)
                task = asyncio.ensure_future(call)
                await asyncio.sleep(0)
                started = time.monotonic()
                time.sleep(0.4)  # the loop is late
                with pytest.raises(RedisUnavailable):
                    await task
                assert time.monotonic() - started < 1.0
        finally:
            own_redis.resume()
    finally:
        await link.close()


@pytest.mark.parametrize("url_kind", ["lean", "redis-py"])
async def test_commands_carry_any_bytes_both_ways(own_redis, url_kind):
    """GET and SET as the response cache sends them (`RedisLink.command`): text, non-ASCII text
    and bytes that are not UTF-8 come back byte for byte, on the lean connection and through
    redis-py (a URL with a query option)."""
    url = own_redis.url if url_kind == "lean" else own_redis.url + "?socket_keepalive=true"
    link = RedisLink(url, "t")
    values = [b'{"a": 1}', "héllo ✓".encode(), bytes(range(256)) * 3, b""]
    try:
        for i, value in enumerate(values):
            assert await link.command("SET", f"t:bin:{i}", value, "PX", 60_000) in (b"OK", True)
        got = [await link.command("GET", f"t:bin:{i}") for i in range(len(values))]
        assert await link.command("GET", "t:bin:missing") is None
    finally:
        await link.close()
    assert got == values
    assert redis.Redis(port=own_redis.port).get("t:bin:2") == bytes(range(256)) * 3

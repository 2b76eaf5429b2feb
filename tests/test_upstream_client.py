"""The upstream HTTP client against real loopback servers (tests/upstream_support.py writes every reply byte
by hand): keep-alive, framing, decompression, size limits, request headers and https. Timeouts,
streams and cancellation: test_upstream_streams.py. Each test runs on asyncio's loop and on uvloop
(what `parley serve` uses)."""

from __future__ import annotations

import asyncio
import socket
import zlib

import pytest

from parley.transport.http import HttpClient
from upstream_support import (
    Conn,
    RawServer,
    Seen,
    chunked,
    closed_within,
    failure,
    gzipped,
    reply,
    run,
    wait_closed,
)

MB = 1 << 20
_ = run  # the fixture: each test on asyncio and on uvloop


# -- keep-alive --


def test_connections_are_reused_one_per_concurrent_request(run):
    async def main():
        async with RawServer() as server:
            client = HttpClient()
            for i in range(5):
                got = await client.send("POST", f"{server.url}/v1/x?i={i}", {"x-k": "v"}, b"abc", 5, False)
                assert (got.status, got.body) == (200, f"ok:/v1/x?i={i}".encode())
            assert server.connections == 1
            together = await asyncio.gather(
                *(client.send("GET", server.url + "/c", {}, None, 5, False) for _ in range(3))
            )
            assert [r.body for r in together] == [b"ok:/c"] * 3
            assert server.connections == 3
            for _ in range(6):
                await client.send("GET", server.url + "/again", {}, None, 5, False)
            assert server.connections == 3
            assert [s.body for s in server.seen[:5]] == [b"abc"] * 5
            await client.close()

    run(main)


def test_a_connection_the_server_closed_while_idle_is_not_used_again(run):
    async def answer(seen: Seen, conn: Conn) -> bool:
        conn.writer.write(reply())
        await conn.writer.drain()
        return False  # close right after the reply, as a server with a short keep-alive does

    async def main():
        async with RawServer(answer) as server:
            client = HttpClient()
            assert (await client.send("GET", server.url, {}, None, 5, False)).body == b"ok"
            await asyncio.sleep(0.2)  # the FIN arrives while the connection is idle in the pool
            assert (await client.send("POST", server.url, {}, b"x", 5, False)).body == b"ok"
            assert server.connections == 2 and len(server.seen) == 2  # nothing failed, nothing resent
            await client.close()

    run(main)


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(("HTTP/1.1", "Connection: close\r\n"), id="connection-close"),
        pytest.param(("HTTP/1.0", ""), id="http-1.0"),
    ],
)
def test_a_reply_that_ends_keep_alive_is_never_reused_even_if_the_socket_stays_open(run, head):
    version, header = head

    async def answer(seen: Seen, conn: Conn) -> bool:
        conn.writer.write(reply(b"once", version=version, headers=header))
        return True  # the server keeps reading: only the client's obedience closes it

    async def main():
        async with RawServer(answer) as server:
            client = HttpClient()
            for _ in range(3):
                assert (await client.send("GET", server.url, {}, None, 5, False)).body == b"once"
            assert server.connections == 3
            assert all(await asyncio.gather(*(closed_within(c, 2) for c in server.conns)))
            await client.close()

    run(main)


def test_idle_connections_expire_after_the_keepalive(run):
    async def main():
        async with RawServer() as server:
            client = HttpClient(keepalive=0.3)
            await client.send("GET", server.url, {}, None, 5, False)
            assert await closed_within(server.conns[0], 2)  # the client closed it, unasked
            await client.send("GET", server.url, {}, None, 5, False)
            assert server.connections == 2
            await client.close()

    run(main)


def _dies_on_second_request():
    async def answer(seen: Seen, conn: Conn) -> bool:
        if seen.index == 2:  # the keep-alive race: the server closed as the request went out
            return False
        conn.writer.write(reply(b"ok%d" % conn.number))
        return True

    return answer


@pytest.mark.parametrize("method, headers", [("GET", {}), ("POST", {"Idempotency-Key": "abc"})])
def test_a_replayable_request_is_sent_again_once_on_a_new_connection(run, method, headers):
    async def main():
        async with RawServer(_dies_on_second_request()) as server:
            client = HttpClient()
            body = b"x" if method == "POST" else None
            assert (await client.send(method, server.url, dict(headers), body, 5, False)).body == b"ok1"
            assert (await client.send(method, server.url, dict(headers), body, 5, False)).body == b"ok2"
            assert [(s.conn, s.index) for s in server.seen] == [(1, 1), (1, 2), (2, 1)]
            await client.close()

    run(main)


def test_a_post_that_was_written_is_never_sent_again(run):
    async def main():
        async with RawServer(_dies_on_second_request()) as server:
            client = HttpClient()
            await client.send("POST", server.url, {}, b"first", 5, False)
            error = await failure(client.send("POST", server.url, {}, b"second", 5, False))
            assert error.status == 502 and error.message.startswith("upstream unreachable")
            assert [s.body for s in server.seen] == [b"first", b"second"]  # once each
            assert server.connections == 1
            await client.close()

    run(main)


def test_an_unreachable_upstream_is_502(run):
    async def main():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]  # bound, not listening: refused
            error = await failure(HttpClient().send("GET", f"http://127.0.0.1:{port}/", {}, None, 5, False))
        assert error.status == 502 and error.type == "api_error"
        assert error.message.startswith(f"upstream unreachable: cannot connect to http://127.0.0.1:{port}")

    run(main)


# -- framing --


def test_chunked_replies_whole_and_streamed(run):
    pieces = [b"data: one\n\n", b"data: two\n\n", b"data: three\n\n"]

    async def answer(seen: Seen, conn: Conn) -> bool:
        kind = "text/event-stream" if seen.target == "/sse" else "application/json"
        conn.writer.write(
            f"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: {kind}\r\n\r\n".encode()
        )
        for frame in chunked(pieces):
            conn.writer.write(frame)
            await conn.writer.drain()
            await asyncio.sleep(0.02)
        return True

    async def main():
        async with RawServer(answer) as server:
            client = HttpClient()
            whole = await client.send("POST", server.url + "/json", {}, b"{}", 5, False)
            assert whole.body == b"".join(pieces) and "transfer-encoding" not in whole.headers
            streamed = await client.send("POST", server.url + "/sse", {}, b"{}", 5, True)
            assert streamed.source is not None and streamed.headers["content-type"] == "text/event-stream"
            got = []
            while (chunk := await streamed.source.next_chunk()) is not None:
                got.append(chunk)
            assert b"".join(got) == b"".join(pieces) and len(got) >= 2  # as they came, not at the end
            streamed.source.close()
            await client.send("GET", server.url, {}, None, 5, False)
            assert server.connections == 1  # the stream read to its end gave the connection back
            await client.close()

    run(main)


def test_a_reply_without_length_is_read_to_eof_and_its_connection_closed(run):
    async def answer(seen: Seen, conn: Conn) -> bool:
        kind = "text/event-stream" if seen.target == "/sse" else "text/plain"
        conn.writer.write(f"HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\n\r\npart one, ".encode())
        await conn.writer.drain()
        await asyncio.sleep(0.05)
        conn.writer.write(b"part two")
        return False  # the end of the body is the end of the connection

    async def main():
        async with RawServer(answer) as server:
            client = HttpClient()
            assert (await client.send("GET", server.url, {}, None, 5, False)).body == b"part one, part two"
            streamed = await client.send("GET", server.url + "/sse", {}, None, 5, True)
            assert streamed.source is not None
            got = b""
            while (chunk := await streamed.source.next_chunk()) is not None:
                got += chunk
            assert got == b"part one, part two"
            assert server.connections == 2
            await client.close()

    run(main)


def test_a_body_cut_short_is_a_502(run):
    async def answer(seen: Seen, conn: Conn) -> bool:
        conn.writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
        return False

    async def main():
        async with RawServer(answer) as server:
            error = await failure(HttpClient().send("GET", server.url, {}, None, 5, False))
            assert error.status == 502 and error.message.startswith("upstream connection failed")

    run(main)


def test_interim_replies_are_skipped_and_head_204_304_have_no_body(run):
    async def answer(seen: Seen, conn: Conn) -> bool:
        if seen.target == "/continue":
            conn.writer.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n")
            conn.writer.write(reply(b"final"))
        elif seen.method == "HEAD":
            conn.writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nX-Size: big\r\n\r\n")
        else:
            status = seen.target.strip("/")
            conn.writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 5\r\nETag: e\r\n\r\n".encode())
        return True

    async def main():
        async with RawServer(answer) as server:
            client = HttpClient()
            got = await client.send("POST", server.url + "/continue", {}, b"{}", 5, False)
            assert (got.status, got.body, "link" in got.headers) == (200, b"final", False)
            for status in (204, 304):
                got = await client.send("GET", f"{server.url}/{status}", {}, None, 5, False)
                assert (got.status, got.body, got.headers["etag"]) == (status, b"", "e")
            assert server.connections == 1  # no body was waited for: the connection stayed in step
            got = await client.send("HEAD", server.url + "/h", {}, None, 5, False)
            assert (got.status, got.body, got.headers["x-size"]) == (200, b"", "big")
            assert (await client.send("GET", server.url + "/204", {}, None, 5, False)).status == 204
            await client.close()

    run(main)


# -- decompression and size limits --


def test_gzip_and_deflate_replies_are_decompressed(run):
    text = b'{"text": "' + b"hello " * 1000 + b'"}'
    bodies = {
        "/gzip": ("gzip", gzipped(text)),
        "/deflate": ("deflate", zlib.compress(text)),
        "/raw-deflate": ("deflate", zlib.compress(text, wbits=-15)),
        "/br": ("br", b"\x1b\x00not-decoded"),
    }

    async def answer(seen: Seen, conn: Conn) -> bool:
        if seen.target == "/sse":
            data = gzipped(text)
            head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Encoding: gzip\r\n"
            conn.writer.write(f"{head}Transfer-Encoding: chunked\r\n\r\n".encode())
            for frame in chunked([data[:100], data[100:]]):
                conn.writer.write(frame)
                await conn.writer.drain()
                await asyncio.sleep(0.02)
            return True
        encoding, data = bodies[seen.target]
        conn.writer.write(reply(data, headers=f"Content-Encoding: {encoding}\r\n"))
        return True

    async def main():
        async with RawServer(answer) as server:
            client = HttpClient()
            for path in ("/gzip", "/deflate", "/raw-deflate"):
                got = await client.send("GET", server.url + path, {}, None, 5, False)
                assert got.body == text and "content-encoding" not in got.headers, path
            got = await client.send("GET", server.url + "/br", {}, None, 5, False)
            assert got.body == bodies["/br"][1] and got.headers["content-encoding"] == "br"
            streamed = await client.send("GET", server.url + "/sse", {}, None, 5, True)
            assert streamed.source is not None
            out = b""
            while (chunk := await streamed.source.next_chunk()) is not None:
                out += chunk
            assert out == text
            assert {s.headers["accept-encoding"] for s in server.seen} == {"gzip, deflate"}
            await client.close()

    run(main)


@pytest.mark.parametrize("framing", ["declared", "chunked", "gzip"])
def test_a_reply_over_the_limit_is_refused_without_buffering_it(run, framing):
    async def answer(seen: Seen, conn: Conn) -> bool:
        if framing == "declared":  # the head alone says too much: the body is never waited for
            conn.writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (2 * MB))
            await wait_closed(conn)
        elif framing == "chunked":
            conn.writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for frame in chunked([b"x" * 65536] * 32):
                conn.writer.write(frame)
                await conn.writer.drain()
        else:  # 2 MB of zeros in ~2 KB: counted after decompression
            conn.writer.write(reply(gzipped(bytes(2 * MB)), headers="Content-Encoding: gzip\r\n"))
        return False

    async def main():
        async with RawServer(answer) as server:
            client = HttpClient(max_response_bytes=MB)
            error = await failure(client.send("GET", server.url, {}, None, 5, False))
            assert error.status == 502 and error.type == "api_error"
            assert "larger than 1 MiB (general_settings.max_response_size_mb)" in error.message
            if framing == "declared":
                assert await closed_within(server.conns[0], 2)
            await client.close()

    run(main)


# -- request headers --


def test_request_headers_host_length_and_hop_by_hop(run):
    async def main():
        async with RawServer() as server:
            client = HttpClient()
            caller = {
                "Content-Type": "application/json",
                "anthropic-beta": "a,b",
                "Connection": "upgrade",
                "Keep-Alive": "timeout=5",
                "Transfer-Encoding": "chunked",
                "TE": "trailers",
                "Upgrade": "h2c",
                "Proxy-Authorization": "Basic x",
                "Content-Length": "999",
                "Accept-Encoding": "br",
                "Expect": "100-continue",
            }
            await client.send("POST", server.url + "/v1/messages?beta=true", caller, b"12345", 5, False)
            [seen] = server.seen
            assert seen.target == "/v1/messages?beta=true"
            assert seen.headers == {
                "content-type": "application/json",
                "anthropic-beta": "a,b",
                "host": f"{server.host}:{server.port}",
                "accept": "*/*",
                "accept-encoding": "gzip, deflate",
                "content-length": "5",
            }
            await client.send(
                "GET", server.url, {"Host": "api.example.com", "Accept": "text/plain"}, None, 5, False
            )
            assert server.seen[1].headers["host"] == "api.example.com"
            assert (
                server.seen[1].headers["accept"] == "text/plain"
                and "content-length" not in server.seen[1].headers
            )
            await client.send("POST", server.url + "?q=1", {}, None, 5, False)
            assert (server.seen[2].target, server.seen[2].headers["content-length"]) == ("/?q=1", "0")
            await client.send("GET", server.url + "/a b/é?x=y z#frag", {}, None, 5, False)
            assert server.seen[3].target == "/a%20b/%C3%A9?x=y%20z"
            await client.close()

    run(main)


@pytest.mark.parametrize(
    "url, headers",
    [
        ("/", {"x-evil": "1\r\nX-Injected: yes"}),
        ("/", {"x-evil": "1\nX-Injected: yes"}),
        ("/", {"x-bad name": "1"}),
        ("/", {"Host": "h\r\nX-Injected: yes"}),
    ],
)
def test_header_injection_is_refused_before_anything_is_sent(run, url, headers):
    async def main():
        async with RawServer() as server:
            error = await failure(HttpClient().send("GET", server.url + url, headers, None, 5, False))
            assert error.status == 502
            assert "refused" in error.message or "not a valid HTTP token" in error.message
            await asyncio.sleep(0.05)
            assert server.connections == 0

    run(main)


def test_ipv6_literal(run):
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")

    async def main():
        async with RawServer(host="::1") as server:
            client = HttpClient()
            got = await client.send("GET", f"http://[::1]:{server.port}/p?q=1", {}, None, 5, False)
            assert got.body == b"ok:/p?q=1"
            assert server.seen[0].headers["host"] == f"[::1]:{server.port}"
            await client.close()

    run(main)


# -- https --


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """A CA and a server certificate for `localhost` signed by it (openssl's command line). P-256
    keys: an RSA key's prime search cost up to seconds of CPU on a loaded machine."""
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("tls")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=parley test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    )
    openssl(
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    )
    (d / "ext.cnf").write_text("subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n")
    openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    )
    return d


def test_https_verifies_the_certificate_and_sends_sni(run, certs, monkeypatch):
    import ssl

    monkeypatch.setenv("SSL_CERT_FILE", str(certs / "ca.pem"))  # the default context trusts our CA
    names: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs / "server.pem", certs / "server.key")
    context.sni_callback = lambda sock, name, ctx: names.append(name)  # type: ignore[assignment,misc]

    async def main():
        async with RawServer(host="127.0.0.1", tls=context) as server:  # localhost must reach it
            client = HttpClient()
            for _ in range(2):
                got = await client.send(
                    "GET", f"https://localhost:{server.port}/v1/models", {}, None, 5, False
                )
                assert got.body == b"ok:/v1/models"
            assert server.connections == 1 and names == ["localhost"]
            assert server.seen[0].headers["host"] == f"localhost:{server.port}"
            error = await failure(client.send("GET", f"https://127.0.0.1:{server.port}/", {}, None, 5, False))
            assert error.status == 502 and "TLS" in error.message and "127.0.0.1" in error.message
            await client.close()

    run(main)


def test_a_large_request_body_arrives_whole(run):
    body = bytes(range(256)) * (20 * 1024)  # 5 MB, written while the server reads it

    async def main():
        async with RawServer() as server:
            client = HttpClient()
            for _ in range(2):
                assert (await client.send("POST", server.url + "/up", {}, body, 10, False)).body == b"ok:/up"
            assert [s.body == body for s in server.seen] == [True, True] and server.connections == 1
            await client.close()

    run(main)

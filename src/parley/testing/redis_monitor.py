"""Watch what clients send a redis-server: its MONITOR feed, read on a thread.

Each command a client sent is one `Command`; the commands a Lua script runs inside Redis are
left out (they cost no round trip). A pipeline's commands show as one each, but parley sends
none on the request path: one command is one round trip there.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from dataclasses import dataclass

_LINE = re.compile(r"^\+(\d+\.\d+) \[\d+ ([^\]]*)\] (.*)$")
_ARG = re.compile(r'"((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True, slots=True)
class Command:
    at: float  # the server's clock
    client: str  # "127.0.0.1:port"
    args: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.args[0].upper() if self.args else ""


class RedisMonitor:
    """`with RedisMonitor(port) as m: ...; m.commands()` (everything sent while inside)."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.address = (host, port)
        self._commands: list[Command] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    def __enter__(self) -> RedisMonitor:
        sock = socket.create_connection(self.address, timeout=5)
        sock.sendall(b"MONITOR\r\n")
        buf = b""
        while b"\r\n" not in buf:
            buf += sock.recv(4096)
        head, _, rest = buf.partition(b"\r\n")
        if head != b"+OK":
            raise RuntimeError(f"MONITOR refused: {head!r}")
        sock.settimeout(0.1)
        self._sock = sock
        self._thread = threading.Thread(target=self._read, args=(rest,), daemon=True)
        self._thread.start()
        return self

    def _read(self, buf: bytes) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            while b"\r\n" in buf:
                line, _, buf = buf.partition(b"\r\n")
                self._add(line.decode("utf-8", "replace"))
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            buf += chunk

    def _add(self, line: str) -> None:
        m = _LINE.match(line)
        if m is None or m.group(2) == "lua":
            return
        args = tuple(a.encode().decode("unicode_escape") for a in _ARG.findall(m.group(3)))
        with self._lock:
            self._commands.append(Command(float(m.group(1)), m.group(2), args))

    def commands(self, settle: float = 0.0) -> list[Command]:
        """What was seen so far (after waiting `settle` seconds for late commands)."""
        if settle:
            time.sleep(settle)
        with self._lock:
            return list(self._commands)

    def clear(self) -> None:
        with self._lock:
            self._commands.clear()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._sock is not None:
            self._sock.close()

"""A private PostgreSQL server for fault tests (initdb in a temp dir, its own port), which a test can
stop, kill -9, pause (SIGSTOP) and resume. Run as user postgres when the tests run as root."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from parley.testing.procs import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def postgres_available() -> bool:
    return (PG_BIN / "initdb").exists()


class PgServer:
    """`initdb` at construction; `start` runs the postmaster in its own process group, so `kill`,
    `pause` and `resume` reach it and every backend at once (by that group's id, nothing else)."""

    def __init__(self, port: int | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="parley-pg-"))
        self.port = port or free_port()
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(self.dir, "postgres")
        self.data = self.dir / "data"
        subprocess.run(
            [*self.as_user, str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres"],
            check=True,
            capture_output=True,
        )
        self.proc: subprocess.Popen | None = None
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self, timeout: float = 20.0) -> None:
        argv = [str(PG_BIN / "postgres"), "-D", str(self.data), "-p", str(self.port), "-k", str(self.dir)]
        with open(self.dir / "postgres.log", "ab") as log:
            self.proc = subprocess.Popen(
                [*self.as_user, *argv, "-h", "127.0.0.1"],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not self.ready():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"postgres did not start: {self.log()[-2000:]}")
            time.sleep(0.1)

    def log(self) -> str:
        return (self.dir / "postgres.log").read_text(errors="replace")

    def ready(self) -> bool:
        argv = [str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)]
        return subprocess.run(argv, capture_output=True).returncode == 0

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """Fast shutdown of the postmaster (by its pid), waiting for it to exit."""
        if self.proc is None or not self.running():
            return
        self.resume()
        pid = int((self.data / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGINT)
        self.proc.wait(20)

    def kill(self) -> None:
        """kill -9 of the postmaster and all its backends; `start` recovers the data directory."""
        self._signal_group(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)
        # The postmaster (runuser's child) may stay a zombie nobody reaps, which would make the
        # next start think it is still running: every process of the group is dead, so drop its locks.
        for stale in (self.data / "postmaster.pid", self.dir / f".s.PGSQL.{self.port}.lock"):
            stale.unlink(missing_ok=True)

    def pause(self) -> None:
        self._signal_group(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal_group(signal.SIGCONT)

    def _signal_group(self, sig: signal.Signals) -> None:
        if self.running() and self.proc is not None:
            os.killpg(self.proc.pid, sig)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

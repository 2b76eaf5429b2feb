"""The spend journal: every spend row on local disk before the writer commits it to the database.

One journal per process: a lock file `spend-<db>-<pid>-<random>.lock`, `flock`ed for the process's
lifetime, and segments `spend-<db>-<pid>-<random>.<n>.rows`: a first line `{"columns": [...]}`,
then one orjson line per row, the row tuple as a JSON array in those columns' order (a row queued as
a mapping is written as a JSON object). `<db>` names the database, so journals of different
databases in one directory never mix. Replay also reads the `.<n>.jsonl` segments of earlier
versions (one JSON object per row); those versions do not see `.rows` segments, so after a
downgrade they stay on disk for the next upgraded start instead of being read as empty.

`append` only queues the row (no I/O or serialization on the event loop); a background thread
turns the queued rows into lines, writes and fsyncs them every `fsync_seconds`, rotates the segment
every `segment_seconds`, and deletes closed segments once the writer reports their rows committed
(`committed(seq)`: rows are numbered 1, 2, ... in append order and committed in that order). A
kill -9 loses at most the rows queued since the last tick; `close` writes the rest and keeps the
segments that still hold uncommitted rows, for the next start to replay (`claim_orphans`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson
from sqlalchemy.engine import make_url

from parley.core.runtime import name_os_thread
from parley.spend.rows import COLUMNS, SpendRow

log = logging.getLogger("parley.spend")
_LINE = orjson.OPT_APPEND_NEWLINE
_HEADER = orjson.dumps({"columns": COLUMNS}, option=_LINE)  # a segment's first line
_SEGMENTS = ("*.rows", "*.jsonl")  # this version's segments, and those of versions before it


def _sqlite_file(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(str(parsed.database)).expanduser().absolute()


def database_key(url: str) -> str:
    """A short stable name for a (normalized) database URL, used in journal file names: the
    absolute file for SQLite, the password-free URL otherwise."""
    db = _sqlite_file(url)
    name = str(db) if db is not None else make_url(url).render_as_string(hide_password=True)
    return hashlib.sha256(name.encode()).hexdigest()[:12]


def default_directory(url: str, env: Mapping[str, str] | None = None) -> Path:
    """Next to the SQLite file (`<file>.spend-journal/`), else `$XDG_STATE_HOME/parley/spend-journal`
    (default `~/.local/state/parley/spend-journal`)."""
    db = _sqlite_file(url)
    if db is not None:
        return db.parent / (db.name + ".spend-journal")
    environ = os.environ if env is None else env
    state = environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "parley" / "spend-journal"


@dataclass
class _Segment:
    path: Path
    last_seq: int = 0
    opened_at: float = field(default_factory=time.monotonic)
    file: IO[bytes] | None = None


class SpendJournal:
    def __init__(
        self, directory: Path, db_key: str, *, fsync_seconds: float = 0.05, segment_seconds: float = 1.0
    ) -> None:
        self.directory = directory
        self.db_key = db_key
        self.name = f"spend-{db_key}-{os.getpid()}-{secrets.token_hex(4)}"
        self.fsync_seconds = fsync_seconds
        self.segment_seconds = segment_seconds
        self._rows: list[SpendRow | Mapping[str, Any]] = []
        self._appended = 0  # seq of the last row appended
        self._durable = 0  # ... written and fsync'd
        self._committed = 0  # ... in the database
        self._guard = threading.Lock()  # _rows, _appended, _committed
        self._tick_lock = threading.Lock()  # one tick at a time (thread, sync, close)
        self._closed: list[_Segment] = []
        self._current: _Segment | None = None
        self._counter = 0
        self._lock_fd: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def lock_path(self) -> Path:
        return self.directory / f"{self.name}.lock"

    def open(self) -> None:
        """Create the directory and this process's locked lock file; start the writer thread."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock_fd = _locked_file(self.directory, self.lock_path)
        self._thread = threading.Thread(target=self._loop, name="parley-spend-journal", daemon=True)
        self._thread.start()

    def append(self, row: SpendRow | Mapping[str, Any]) -> int:
        """Queue one row (a tuple in `rows.COLUMNS` order, or a mapping) for the disk; its sequence
        number. No I/O or serialization here: the row must not change afterwards."""
        with self._guard:
            self._rows.append(row)
            self._appended += 1
            return self._appended

    @property
    def last_appended(self) -> int:
        """The sequence number of the newest row appended."""
        with self._guard:
            return self._appended

    def durable(self, seq: int) -> bool:
        """Whether rows up to `seq` are on disk (fsynced)."""
        return self._durable >= seq

    def committed(self, seq: int) -> None:
        """Rows up to `seq` are in the database: their segments may go."""
        with self._guard:
            self._committed = max(self._committed, seq)

    def uncommitted(self) -> int:
        with self._guard:
            return self._appended - self._committed

    def sync(self) -> None:
        """Write and fsync everything appended so far (blocking: call it off the event loop)."""
        self._tick()

    def close(self) -> int:
        """Stop the thread, write the rest; delete the journal if every row is committed, else
        keep it for the next start. Returns the rows kept. Blocking: call it off the event loop."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._tick()
        kept = self.uncommitted()
        with self._tick_lock:
            self._retire_current()
            self._drop_committed()
            if kept == 0:
                with contextlib.suppress(OSError):
                    self.lock_path.unlink()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None
        return kept

    def _loop(self) -> None:
        name_os_thread()
        while not self._stop.wait(self.fsync_seconds):
            try:
                self._tick()
            except OSError:
                log.exception("spend journal: could not write %s", self.directory)

    def _tick(self) -> None:
        with self._tick_lock:
            with self._guard:
                rows, self._rows = self._rows, []
                last = self._appended
            if rows:
                segment = self._segment()
                assert segment.file is not None
                segment.file.write(b"".join([_line(row) for row in rows]))
                segment.file.flush()
                os.fsync(segment.file.fileno())
                segment.last_seq = last
            self._durable = last
            current = self._current
            if current is not None and time.monotonic() - current.opened_at >= self.segment_seconds:
                self._retire_current()
            self._drop_committed()

    def _segment(self) -> _Segment:
        if self._current is None:
            self._counter += 1
            path = self.directory / f"{self.name}.{self._counter:06d}.rows"
            file = open(path, "ab")  # noqa: SIM115  # closed on retire
            file.write(_HEADER)
            self._current = _Segment(path, file=file)
            _fsync_dir(self.directory)
        return self._current

    def _retire_current(self) -> None:
        if self._current is not None and self._current.file is not None:
            self._current.file.close()
            self._closed.append(self._current)
        self._current = None

    def _drop_committed(self) -> None:
        with self._guard:
            committed = self._committed
        keep = []
        for segment in self._closed:
            if segment.last_seq <= committed:
                with contextlib.suppress(FileNotFoundError):
                    segment.path.unlink()
            else:
                keep.append(segment)
        self._closed = keep


def _line(row: SpendRow | Mapping[str, Any]) -> bytes:
    """One journal line: a row tuple as a JSON array (no dict built per row), a mapping as a JSON
    object; a value JSON cannot hold is written as text."""
    try:
        return orjson.dumps(row, option=_LINE)
    except orjson.JSONEncodeError:
        return orjson.dumps(row, option=_LINE, default=str)


def _locked_file(directory: Path, path: Path) -> int:
    """Create `path` already locked: lock a temporary file, then rename it into place, so a lock
    file anyone can see is either held or left by a process that is gone."""
    temp = directory / f".{path.name}.{secrets.token_hex(4)}"
    fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.rename(temp, path)
    _fsync_dir(directory)
    return fd


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class Orphans:
    """Journals of processes that are gone, locked by this process until `release`."""

    rows: list[dict[str, Any]]
    files: list[Path]
    journals: int
    lock_fds: list[int]

    def release(self) -> None:
        """Delete the replayed files (segments first, lock files last) and drop their locks."""
        for path in sorted(self.files, key=lambda p: p.suffix == ".lock"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        for fd in self.lock_fds:
            os.close(fd)
        self.lock_fds = []


def claim_orphans(directory: Path, db_key: str, own_name: str = "") -> Orphans:
    """Lock and read every journal in `directory` for this database not held by a live process.
    Blocking: call it off the event loop."""
    prefix = f"spend-{db_key}-"
    out = Orphans([], [], 0, [])
    if not directory.is_dir():
        return out
    names = {p.name.split(".", 1)[0] for p in directory.glob(prefix + "*") if not p.name.startswith(".")}
    for name in sorted(names - {own_name}):
        lock = directory / f"{name}.lock"
        try:
            fd = _try_lock(lock)
        except BlockingIOError:
            continue  # a live process holds it
        segments = sorted(p for pattern in _SEGMENTS for p in directory.glob(f"{name}.{pattern}"))
        for segment in segments:
            out.rows.extend(_read_rows(segment))
        out.files.extend([*segments, lock])
        out.journals += 1
        if fd is not None:
            out.lock_fds.append(fd)
    return out


def _try_lock(path: Path) -> int | None:
    """The locked fd of a lock file; None when there is no lock file; BlockingIOError when held."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise
    return fd


def _read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a segment as mappings; a torn last line (the process died mid-write) is skipped."""
    rows = []
    columns: list[str] | None = None
    with open(path, "rb") as f:
        for line in f:
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError:
                log.warning("spend journal: skipped a torn line in %s", path)
                continue
            if isinstance(row, dict) and columns is None and "columns" in row and "request_id" not in row:
                columns = row["columns"]  # the header of a `.rows` segment
                continue
            if isinstance(row, list):
                if columns is None or len(row) != len(columns):
                    log.warning("spend journal: skipped a row that does not fit its columns in %s", path)
                    continue
                row = dict(zip(columns, row, strict=True))
            if isinstance(row, dict) and row.get("request_id"):
                rows.append(row)
    return rows

"""Logging for the server: records are handed to a background thread that formats them and writes
whatever has queued up in one write, so a log line (one per request: the access log) never blocks
the event loop on stderr, and a busy gateway makes one write per batch rather than per line."""

from __future__ import annotations

import atexit
import logging
import logging.handlers
import queue
import sys
import threading
from typing import TextIO

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class BatchWriter(threading.Thread):
    """Drains the queue: formats every waiting record and writes them together."""

    def __init__(self, records: queue.SimpleQueue, stream: TextIO, formatter: logging.Formatter) -> None:
        super().__init__(name="parley-log-writer", daemon=True)
        self.records = records
        self.stream = stream
        self.formatter = formatter

    def run(self) -> None:
        while True:
            batch = [self.records.get()]
            while len(batch) < 1000:
                try:
                    batch.append(self.records.get_nowait())
                except queue.Empty:
                    break
            lines = [self.formatter.format(r) + "\n" for r in batch if r is not None]
            if lines:
                try:
                    self.stream.write("".join(lines))
                    self.stream.flush()
                except (OSError, ValueError):  # stderr closed: nothing else to do with logs
                    pass
            if None in batch:
                return

    def stop(self) -> None:
        self.records.put(None)
        self.join(timeout=2)


def setup_logging(level: str = "info") -> None:
    """Route the root logger through a queue to one stderr writer thread (idempotent)."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    if any(isinstance(h, logging.handlers.QueueHandler) for h in root.handlers):
        return
    for handler in list(root.handlers):
        root.removeHandler(handler)
    records: queue.SimpleQueue = queue.SimpleQueue()
    writer = BatchWriter(records, sys.stderr, logging.Formatter(FORMAT))
    writer.start()
    atexit.register(writer.stop)
    root.addHandler(logging.handlers.QueueHandler(records))

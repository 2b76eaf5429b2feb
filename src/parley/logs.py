"""Logging for the server: records are handed to a background thread that formats and writes
them, so a log line (one per request: the access log) never blocks the event loop on stderr."""

from __future__ import annotations

import atexit
import logging
import logging.handlers
import queue
import sys

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: str = "info") -> None:
    """Route the root logger through a queue to one stderr writer thread (idempotent)."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    if any(isinstance(h, logging.handlers.QueueHandler) for h in root.handlers):
        return
    for handler in list(root.handlers):
        root.removeHandler(handler)
    records: queue.SimpleQueue = queue.SimpleQueue()
    writer = logging.StreamHandler(sys.stderr)
    writer.setFormatter(logging.Formatter(FORMAT))
    listener = logging.handlers.QueueListener(records, writer, respect_handler_level=True)
    listener.start()
    atexit.register(listener.stop)
    root.addHandler(logging.handlers.QueueHandler(records))

"""Whether parley's compiled parts are used: `_spans.c` and `metrics/_lean.c`, built by `pip install`
where a C compiler and the Python headers are found (setup.py). Each has a pure-Python twin that
does the same work; PARLEY_NATIVE=0 uses the twins (to compare, or to rule the C out)."""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from types import ModuleType

ENV = "PARLEY_NATIVE"


def native(name: str, env: Mapping[str, str] = os.environ) -> ModuleType | None:
    """The compiled module `name` (e.g. "parley.filters._spans"), or None when it was not built or
    PARLEY_NATIVE=0."""
    if env.get(ENV) == "0":
        return None
    try:
        return importlib.import_module(name)
    except ImportError:
        return None

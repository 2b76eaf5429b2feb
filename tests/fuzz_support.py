"""What the fuzz tests share: how many examples to run, and per-request time bounds.

The default suite runs a few dozen examples per target; `make fuzz` sets FUZZ_EXAMPLES (and
FUZZ_SEED unset means a random run instead of the default suite's fixed one). The property tests
of the translators and stream editors take their count from `examples()`: a short run by default,
FUZZ_EXAMPLES in `make fuzz`."""

from __future__ import annotations

import os

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
LONG = "FUZZ_EXAMPLES" in os.environ
ADMIN_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "6"))  # per admin operation (about 30 of them)


def examples(short: int) -> int:
    """Examples for a property test (tests/test_translate_*.py ...): `short` in the default suite,
    FUZZ_EXAMPLES in `make fuzz`, which runs these modules too."""
    return int(os.environ.get("FUZZ_EXAMPLES", short))

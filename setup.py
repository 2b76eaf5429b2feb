"""parley's compiled parts, each with a pure-Python twin that does the same work:

- parley.filters._spans (src/parley/filters/_spans.c): the OTLP span writer's common case;
- parley.filters.metrics._lean (src/parley/filters/metrics/_lean.c): one worker's metric values.

Optional: where they cannot be built (no compiler, no Python headers) the install goes on and the
twins do the work (`parley.core.native`). Everything else about the package is in pyproject.toml.
"""

from setuptools import Extension, setup

# the same float arithmetic as CPython's (no fused multiply-add): span times are bit-identical
FLAGS = ["-O2", "-ffp-contract=off"]

setup(
    ext_modules=[
        Extension(name, [source], optional=True, extra_compile_args=FLAGS)
        for name, source in (
            ("parley.filters._spans", "src/parley/filters/_spans.c"),
            ("parley.filters.metrics._lean", "src/parley/filters/metrics/_lean.c"),
        )
    ]
)

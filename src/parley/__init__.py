"""parley: an Anthropic-native LLM gateway, and an SDK with the same powers in process.

The SDK names (`messages`, `completion`, `Router`, ...) load on first use, so importing one
module of the gateway does not import the whole SDK.
"""

from __future__ import annotations

from typing import Any

from parley.core import errors
from parley.core.version import __version__

_SDK = ("Router", "acompletion", "completion", "messages")


def __getattr__(name: str) -> Any:
    if name in _SDK or name == "anthropic":
        from types import SimpleNamespace

        from parley.sdk import api

        return SimpleNamespace(messages=api.messages) if name == "anthropic" else getattr(api, name)
    raise AttributeError(f"module 'parley' has no attribute {name!r}")


__all__ = ["Router", "__version__", "acompletion", "anthropic", "completion", "errors", "messages"]

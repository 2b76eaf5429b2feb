"""parley: an Anthropic-native LLM gateway, and an SDK with the same powers in process."""

from types import SimpleNamespace

from parley import errors
from parley.sdk.api import Router, acompletion, completion, messages

__version__ = "0.1.0"

anthropic = SimpleNamespace(messages=messages)

__all__ = ["Router", "acompletion", "anthropic", "completion", "errors", "messages", "__version__"]

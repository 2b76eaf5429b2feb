"""How local OpenAI-compatible servers differ, for the fake upstream's `"server"` reply spec key.

Each flavour generates tokens the way that server does, as far as a client can see it: which
request field limits the reply (a server that ignores the field generates until its context is
full), whether a stream reports usage, and one token per streamed chunk. The fake's "tokens" are
word pieces of at most four characters (`tokens()`); its usage counts them, so a test knows the
true count a backend would report.

    llamacpp   llama-cpp-python's server: only `max_tokens`; streams never carry usage
    vllm       vLLM: `max_tokens` or `max_completion_tokens`; a usage chunk on include_usage
    ollama     Ollama's OpenAI API: only `max_tokens`; a usage chunk on include_usage
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TOKEN = re.compile(r"\s*[^\s]{1,4}|\s+")


@dataclass(frozen=True, slots=True)
class Flavour:
    limit_fields: tuple[str, ...]  # request fields the server reads as the output limit
    stream_usage: bool  # answers stream_options.include_usage with a usage chunk
    context: int = 2048  # tokens generated when no limit field it reads was sent


FLAVOURS = {
    "llamacpp": Flavour(("max_tokens",), stream_usage=False),
    "vllm": Flavour(("max_completion_tokens", "max_tokens"), stream_usage=True),
    "ollama": Flavour(("max_tokens",), stream_usage=True),
}


def tokens(text: str) -> list[str]:
    """The fake's tokenization: word pieces of up to four characters, leading space included."""
    return _TOKEN.findall(text)


def generate(flavour: Flavour, body: dict, text: str) -> tuple[list[str], bool]:
    """The tokens the server emits for a reply `text`, and whether it stopped at its limit. With
    no limit it reads, it keeps generating (the text again) until its context is full."""
    limit = next((body[f] for f in flavour.limit_fields if isinstance(body.get(f), int)), None)
    pieces = tokens(text)
    if limit is None:
        limit = flavour.context
        while pieces and len(pieces) < limit:
            pieces += tokens(" " + text)
    if len(pieces) > limit:
        return pieces[:limit], True
    return pieces, False

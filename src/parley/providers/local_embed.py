"""The built-in embedding model, served as `local/parley-embed`, with no network and no download.

The model is WordLlama's `l2_supercat` (static token embeddings distilled from LLaMA 2's embedding
layer, 256 dimensions, float16): its weights and tokenizer ship inside the `wordllama` wheel and are
read from site-packages. Loaded lazily, once per process, off the event loop (about 1 s and 40 MB);
embedding is a table lookup and an average, so small inputs are embedded inline.
"""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from parley.config import ConfigError
from parley.core.context import RequestContext
from parley.core.deployment import Deployment, Target
from parley.core.errors import GatewayError, invalid_request
from parley.core.stream import UpstreamReply

if TYPE_CHECKING:  # numpy is imported when something is embedded, not by every gateway
    import numpy as np

MODEL_NAMES = frozenset({"parley-embed", "wordllama-l2-supercat"})
DIMENSIONS = 256
TRUNCATIONS = (64, 128, 256)  # Matryoshka-trained: a prefix of the vector is a smaller embedding
MAX_INPUTS = 2048  # as OpenAI's embeddings API
MAX_INPUT_CHARS = 1_000_000
INLINE_CHARS = 20_000  # below this, embedding on the loop is cheaper than a thread hop


@dataclass(frozen=True, slots=True)
class Embedded:
    vectors: np.ndarray  # (n, d) float32, unit length
    tokens: int


class LocalEmbedder:
    """The model, loaded on first use. `embed` may run on the loop; `aembed` picks the cheaper side."""

    def __init__(self) -> None:
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                import wordllama
                from safetensors import safe_open
                from tokenizers import Tokenizer
                from wordllama.inference import WordLlamaInference

                root = Path(wordllama.__file__).parent
                tokenizer = Tokenizer.from_file(
                    str(root / "tokenizers" / "l2_supercat_tokenizer_config.json")
                )
                with safe_open(str(root / "weights" / "l2_supercat_256.safetensors"), framework="np") as f:
                    weights = f.get_tensor("embedding.weight")
                self._model = WordLlamaInference(weights, tokenizer)
            return self._model

    async def warm(self) -> None:
        """Load the model in a thread (at startup, when a feature will need it on every request)."""
        await asyncio.get_running_loop().run_in_executor(None, self._load)

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def embed(self, texts: Sequence[str], dimensions: int = DIMENSIONS) -> Embedded:
        import numpy as np

        model = self._load()
        if not texts:
            return Embedded(np.zeros((0, dimensions), dtype=np.float32), 0)
        vectors = np.asarray(model.embed(list(texts), norm=False), dtype=np.float32)[:, :dimensions]
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = (vectors / np.where(norms == 0, 1.0, norms)).astype(np.float32)
        tokens = sum(len(e.ids) for e in model.tokenizer.encode_batch(list(texts), add_special_tokens=False))
        return Embedded(vectors, tokens)

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        """Character (start, end) of each token of `text` (for chunking by tokens)."""
        return [tuple(span) for span in self._load().tokenizer.encode(text, add_special_tokens=False).offsets]

    async def aembed(self, texts: Sequence[str], dimensions: int = DIMENSIONS) -> Embedded:
        if self.loaded and sum(len(t) for t in texts) <= INLINE_CHARS:
            return self.embed(texts, dimensions)
        return await asyncio.get_running_loop().run_in_executor(None, self.embed, texts, dimensions)


class LocalEmbedProvider:
    """`local/...` deployments: embeddings only, in OpenAI's shape; priced at $0."""

    api = "local"

    def __init__(self, embedder: LocalEmbedder) -> None:
        self.embedder = embedder

    def check(self, deployments: list[Deployment]) -> None:
        for dep in deployments:
            if dep.api == "local" and dep.model not in MODEL_NAMES:
                raise ConfigError(
                    f"model_list entry {dep.model_name!r}: local model {dep.model!r} is not built in; "
                    f"use local/parley-embed"
                )

    async def messages(self, ctx: RequestContext, call: Any) -> UpstreamReply:
        raise GatewayError(
            400,
            f"model {ctx.model!r} is an embedding model: call /v1/embeddings",
            "invalid_request_error",
        )

    async def embeddings(self, ctx: RequestContext, target: Target, body: dict[str, Any]) -> UpstreamReply:
        texts = self._texts(body.get("input"))
        dimensions = _dimensions(body.get("dimensions"))
        out = await self.embedder.aembed(texts, dimensions)
        ctx.usage.input_tokens = out.tokens
        as_base64 = body.get("encoding_format") == "base64"
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": base64.b64encode(v.astype("<f4").tobytes()).decode()
                if as_base64
                else v.tolist(),
            }
            for i, v in enumerate(out.vectors)
        ]
        reply = {
            "object": "list",
            "data": data,
            "model": ctx.model,
            "usage": {"prompt_tokens": out.tokens, "total_tokens": out.tokens},
        }
        return UpstreamReply(200, {"content-type": "application/json"}, body=orjson.dumps(reply))

    @staticmethod
    def _texts(value: Any) -> list[str]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value:
            raise invalid_request(
                "input: must be a string, a list of strings or of token lists", param="input"
            )
        if len(value) > MAX_INPUTS:
            raise invalid_request(f"input: at most {MAX_INPUTS} items", param="input")
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            value = [value]
        texts = []
        for item in value:
            if isinstance(item, str):
                texts.append(item)
            elif isinstance(item, list):
                raise invalid_request(
                    "input: the local model takes text, not token ids (another model's tokenizer made "
                    "them; with LangChain set check_embedding_ctx_length=False)",
                    param="input",
                )
            else:
                raise invalid_request("input: items must be strings or lists of token ids", param="input")
        if sum(len(t) for t in texts) > MAX_INPUT_CHARS:
            raise invalid_request(f"input: at most {MAX_INPUT_CHARS} characters in all", param="input")
        return texts


def _b64(vector: np.ndarray) -> str:
    return base64.b64encode(vector.astype("<f4").tobytes()).decode()


def _dimensions(value: Any) -> int:
    if value is None:
        return DIMENSIONS
    if value not in TRUNCATIONS or isinstance(value, bool):
        raise invalid_request(
            f"dimensions: the local model gives {', '.join(map(str, TRUNCATIONS))}", param="dimensions"
        )
    return int(value)

"""How much of each Claude Code turn an OpenAI-compatible server's prefix cache can reuse, with
and without Claude Code's per-request attribution line in the prompt.

A three-turn conversation of Claude Code-shaped requests (bench/bodies.py, ~100 KB), each with its
own `x-anthropic-billing-header ... cch=<random>` line first in `system`, goes through parley's
translator; the prompt is rendered the way chat templates do (system text, tools, each message).
A prefix cache reuses the longest common prefix of consecutive prompts. "kept" renders the line as
the translator did before it removed it.

    PYTHONPATH=src python bench/prefix_cache.py

This counts reusable prompt characters; it does not time a server (no prefix-caching server runs
offline here), so it says nothing by itself about time to first token.
"""

from __future__ import annotations

import os
import secrets

import orjson

from bodies import claude_code_body
from parley.translate.anthropic_to_openai import to_openai_request
from parley.translate.openai_options import OpenAIOptions

LINE = "x-anthropic-billing-header: cc_version=2.1.37.e4f; cc_entrypoint=cli; cch={};"


def render(body: dict) -> str:
    """The prompt as Qwen's and Llama 3's chat templates lay it out: the system text, the tool
    definitions inside the system turn, then each message."""
    messages = body["messages"]
    tools = orjson.dumps(body.get("tools") or []).decode()
    head = f"<|system|>{messages[0]['content']}\n\n# Tools\n{tools}"
    return head + "".join(f"<|{m['role']}|>{orjson.dumps(m.get('content')).decode()}" for m in messages[1:])


def common_prefix(a: str, b: str) -> int:
    return len(os.path.commonprefix([a, b]))  # noqa: RUF071 (characters are what is wanted)


def turns(count: int = 3) -> list[dict]:
    base = orjson.loads(claude_code_body("qwen3-coder"))
    out = []
    for turn in range(count):
        body = dict(base, messages=list(base["messages"]))
        for i in range(turn):
            body["messages"] += [
                {"role": "assistant", "content": f"Answer {i}: " + "done. " * 200},
                {"role": "user", "content": f"Next step {i + 1}"},
            ]
        line = LINE.format(secrets.token_hex(3))
        body["system"] = [{"type": "text", "text": line}, *base["system"]]
        out.append(body)
    return out


def main() -> None:
    options = OpenAIOptions()
    removed, kept = [], []
    for body in turns():
        out, _ = to_openai_request(body, options, model="qwen3-coder")
        removed.append(render(out))
        line = body["system"][0]["text"]
        with_line = dict(out, messages=[dict(out["messages"][0]), *out["messages"][1:]])
        with_line["messages"][0]["content"] = line + "\n\n" + with_line["messages"][0]["content"]
        kept.append(render(with_line))
    print("turn | prompt chars | reusable, line kept | reusable, line removed")
    for n in range(1, len(removed)):
        size = len(removed[n])
        a = common_prefix(kept[n - 1], kept[n])
        b = common_prefix(removed[n - 1], removed[n])
        print(f"{n + 1} | {size} | {a} ({100 * a / size:.1f}%) | {b} ({100 * b / size:.1f}%)")


if __name__ == "__main__":
    main()

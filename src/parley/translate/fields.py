"""What happens to each top-level Messages request field on each kind of backend.

The one table the translators and `docs/compatibility.md` share (`scripts/compatibility.py`
regenerates the document from it and from the installed anthropic SDK's request types;
`tests/test_compatibility.py` fails when the SDK gains a field this table does not name).

Fates: `forwarded` (sent as the client sent it), `translated` (mapped to the backend's own field),
`emulated` (parley does it itself), `dropped` (not sent; named in the `x-parley-dropped` reply
header), `refused` (an error in the shape the anthropic SDK handles).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from parley.core.errors import invalid_request, thread_error


class Fate(StrEnum):
    FORWARDED = "forwarded"
    TRANSLATED = "translated"
    EMULATED = "emulated"
    DROPPED = "dropped"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class FieldFate:
    """A field's fate on an Anthropic deployment (bytes forwarded) and on an OpenAI-compatible one
    (translated), with one line on how."""

    anthropic: Fate
    openai: Fate
    how: str


F, T, E, D, R = Fate.FORWARDED, Fate.TRANSLATED, Fate.EMULATED, Fate.DROPPED, Fate.REFUSED

# Body fields. Fields the installed SDK no longer lists (sampling, `output_format`) stay: clients
# built on older SDKs still send them.
BODY_FIELDS: dict[str, FieldFate] = {
    "model": FieldFate(T, T, "rewritten to the deployment's upstream model id"),
    "messages": FieldFate(F, T, "to `messages` (content blocks mapped; see below)"),
    "max_tokens": FieldFate(
        F, T, "`max_completion_tokens` on api.openai.com, `max_tokens` on every other server"
    ),
    "system": FieldFate(
        F, T, "a `system` message; Claude Code's `x-anthropic-billing-header` line is removed"
    ),
    "metadata": FieldFate(F, T, "`metadata.user_id` to `user` (per-server switch `user_field`)"),
    "stop_sequences": FieldFate(F, T, "`stop` (capped at 4 on api.openai.com; the rest dropped)"),
    "stream": FieldFate(F, T, "`stream` with `stream_options.include_usage`"),
    "temperature": FieldFate(F, T, "`temperature`"),
    "top_p": FieldFate(F, T, "`top_p`"),
    "top_k": FieldFate(F, T, "`top_k` where the server takes it (`supports_top_k`), else dropped"),
    "tools": FieldFate(
        F,
        T,
        "client tools to `functions`; server tools dropped, refused (400) when the request relies on one",
    ),
    "tool_choice": FieldFate(F, T, "`tool_choice` (`any` to `required`), `parallel_tool_calls`"),
    "thinking": FieldFate(F, T, "`reasoning_effort` from the budget where the server takes it"),
    "output_config": FieldFate(F, T, "`effort` to `reasoning_effort`, `format` to `response_format`"),
    "output_format": FieldFate(F, T, "`response_format` (the older spelling of `output_config.format`)"),
    "thread": FieldFate(
        F,
        E,
        "parley holds the thread in its database and sends the whole history; without a database "
        "400 `thread_unsupported_request`, and the SDK sends the whole conversation itself",
    ),
    "compaction": FieldFate(
        F, E, "the backend summarizes the conversation; the reply is one `compaction` block"
    ),
    "billing_policy": FieldFate(
        F, D, "`bill_to: self` dropped (the default); `bill_to: user_profile` refused (400)"
    ),
    "cache_control": FieldFate(F, D, "servers cache prefixes on their own"),
    "service_tier": FieldFate(F, D, "no equivalent"),
    "container": FieldFate(F, D, "no code-execution containers"),
    "inference_geo": FieldFate(F, D, "no equivalent"),
    "mcp_servers": FieldFate(F, D, "no server-side MCP connector"),
    "context_management": FieldFate(F, D, "no server-side context editing"),
    "speed": FieldFate(F, D, "no equivalent"),
    "diagnostics": FieldFate(F, D, "no equivalent"),
    "fallbacks": FieldFate(F, D, "use parley's `router_settings.fallbacks`"),
    "fallback_credit_token": FieldFate(F, D, "no equivalent"),
}

# SDK parameters sent as headers: (header, fate).
HEADER_FIELDS: dict[str, tuple[str, FieldFate]] = {
    "betas": ("anthropic-beta", FieldFate(F, D, "Anthropic feature flags")),
    "user_profile_id": ("anthropic-user-profile-id", FieldFate(F, D, "not sent to other servers")),
    "workspace_id": ("anthropic-workspace-id", FieldFate(F, D, "not sent to other servers")),
}

# Body fields an OpenAI-compatible backend cannot take: removed and named in x-parley-dropped.
OPENAI_DROPPED = tuple(name for name, fate in BODY_FIELDS.items() if fate.openai is Fate.DROPPED)
# Headers never sent to an OpenAI-compatible backend; named in x-parley-dropped when present.
OPENAI_DROPPED_HEADERS = tuple(header for header, fate in HEADER_FIELDS.values() if fate.openai is D)


# Content blocks in `messages` on an OpenAI-compatible backend (Anthropic gets them as sent).
# Types not named here are dropped and listed as `content.<type>`.
BLOCK_FATES: dict[str, tuple[Fate, str]] = {
    "text": (T, "text content"),
    "image": (T, "`image_url` (base64 or url; a Files API source is refused)"),
    "document": (T, "PDF to a `file` part where the server takes PDFs (else refused); text as text"),
    "search_result": (T, "text with its title and source"),
    "tool_use": (T, "`tool_calls` of the assistant message"),
    "tool_result": (T, "a `tool` message (images move to a user message after it)"),
    "thinking": (T, "the server's reasoning field in history where it has one (`reasoning_field`)"),
    "redacted_thinking": (D, "opaque to other models: not sent"),
    "compaction": (T, "text: the summary of the conversation so far"),
    "mid_conv_system": (T, "a `system` message at that point"),
    "server_tool_use": (D, "server tools do not run here"),
    "web_search_tool_result": (D, "server tool output"),
    "web_fetch_tool_result": (D, "server tool output"),
    "advisor_tool_result": (D, "server tool output"),
    "code_execution_tool_result": (D, "server tool output"),
    "bash_code_execution_tool_result": (D, "server tool output"),
    "text_editor_code_execution_tool_result": (D, "server tool output"),
    "tool_search_tool_result": (D, "server tool output"),
    "mcp_tool_use": (D, "server-side MCP connector"),
    "mcp_tool_result": (D, "server-side MCP connector"),
    "mcp_tool_listing": (D, "server-side MCP connector"),
    "container_upload": (D, "no code-execution containers"),
    "fallback": (D, "a server-side fallback marker"),
    "tool_addition": (D, "server-side tool set changes"),
    "tool_removal": (D, "server-side tool set changes"),
}

# Tool definitions by type, without the version date (`bash_20250124` is `bash`).
TOOL_FATES: dict[str, tuple[Fate, str]] = {
    "custom": (T, "a `function` tool"),
    "bash": (T, "a `bash` function with Anthropic's input schema; the client runs it"),
    "text_editor": (T, "a `str_replace_based_edit_tool` function with Anthropic's schema"),
    "memory": (T, "a `memory` function with Anthropic's schema; the client keeps the files"),
    "computer": (D, "needs Anthropic's computer-use model; refused when the request relies on it"),
    "computer_toolset": (D, "as `computer`"),
    "browser_toolset": (D, "runs on Anthropic's servers; refused when the request relies on it"),
    "web_search": (D, "runs on Anthropic's servers; refused when the request relies on it"),
    "web_fetch": (D, "runs on Anthropic's servers; refused when the request relies on it"),
    "code_execution": (D, "runs on Anthropic's servers; refused when the request relies on it"),
    "tool_search_tool_bm25": (D, "runs on Anthropic's servers"),
    "tool_search_tool_regex": (D, "runs on Anthropic's servers"),
    "advisor": (D, "runs on Anthropic's servers"),
    "mcp_toolset": (D, "server-side MCP connector"),
}


def tool_kind(tool_type: str) -> str:
    """A tool type without its version date: `web_search_20250305` -> `web_search`."""
    head, _, tail = tool_type.rpartition("_")
    return head if head and tail.isdigit() and len(tail) == 8 else tool_type


def check_thread(body: dict[str, Any], api: str) -> None:
    """A `thread` still in the body when it reaches a backend that is not Anthropic: parley's
    thread store is off (no database, or `message_threads: false`). The SDK's own error, so that
    it sends the whole conversation instead."""
    if api != "anthropic" and body.get("thread") is not None:
        raise thread_error(
            400,
            "thread_unsupported_request",
            "thread: this model's backend holds no threads and parley's thread store is off; "
            "send the whole conversation without `thread`",
        )


def check_unemulated(body: dict[str, Any], dropped: list[str]) -> None:
    """For translated backends without parley's compaction emulation (Gemini, Bedrock Converse):
    `compaction` is refused (a plain reply would be taken for a summary), `billing_policy` is
    dropped when it bills the caller and refused when it bills a user profile."""
    if body.get("compaction") is not None:
        raise invalid_request(
            "compaction: not available on this model's backend; use an Anthropic or "
            "OpenAI-compatible deployment",
            param="compaction",
        )
    policy = body.get("billing_policy")
    if policy is None:
        return
    if not isinstance(policy, dict) or policy.get("bill_to", "self") != "self":
        raise invalid_request(
            "billing_policy: only bill_to 'self' can be served by this model's backend",
            param="billing_policy",
        )
    dropped.append("billing_policy")

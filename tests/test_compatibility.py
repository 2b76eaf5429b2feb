"""docs/compatibility.md against the installed anthropic SDK, and the table's fates on a translated
backend as the SDK sees them.

The first tests fail when a new SDK release adds a request field, content block or tool type that
`src/parley/translate/fields.py` does not name, or when the document was not regenerated. The rest
send every field through the real SDK to an OpenAI-protocol fake upstream and check its fate:
dropped fields are named in `x-parley-dropped` and never reach the backend, the others arrive
translated, the emulated ones behave as the API does.
"""

from __future__ import annotations

import sys
from pathlib import Path

import anthropic
import orjson
import pytest
from anthropic.types import ThreadUnsupportedRequestError

from parley.testing.inprocess import anthropic_client
from parley.translate.fields import BODY_FIELDS, HEADER_FIELDS, OPENAI_DROPPED, Fate

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import compatibility


def test_every_sdk_request_field_has_a_fate():
    assert compatibility.missing_fields() == [], (
        "the installed anthropic SDK has request fields docs/compatibility.md does not cover: add them "
        "to src/parley/translate/fields.py, make the translator do it, run scripts/compatibility.py"
    )
    assert compatibility.missing_blocks_and_tools() == []


def test_the_table_knows_the_sdks_fields():
    """The check itself can fail: the SDK's lists are read, not empty, and hold today's fields."""
    fields = compatibility.sdk_fields()
    assert {"thread", "compaction", "billing_policy", "messages", "betas"} <= set(fields)
    assert "beta.messages.create" in fields["thread"] and "messages.create" not in fields["thread"]
    assert {"compaction", "tool_result", "thinking"} <= compatibility.sdk_blocks()
    assert {"memory", "bash", "web_search", "custom"} <= compatibility.sdk_tools()


def test_document_is_current():
    assert compatibility.DOC.read_text() == compatibility.render(), "run python scripts/compatibility.py"


# ----------------------------------------------------------------------------- on a translated backend

SAMPLES = {  # a valid value of each dropped field, as the SDK would send it
    "cache_control": {"type": "ephemeral"},
    "service_tier": "auto",
    "container": "container_011abc",
    "inference_geo": "us",
    "mcp_servers": [{"type": "url", "url": "https://mcp.example.com/sse", "name": "example"}],
    "context_management": {"edits": []},
    "speed": "fast",
    "diagnostics": {"previous_message_id": None},
    "fallbacks": "default",
    "fallback_credit_token": "fct_abc",
    "billing_policy": {"type": "billing_policy", "bill_to": "self"},
}


def gateway_config(fake_upstream):
    return {
        "model_list": [
            {
                "model_name": "local",
                "params": {"model": "openai/qwen3", "api_base": fake_upstream.url + "/v1", "api_key": "sk-x"},
            }
        ],
        "router_settings": {"num_retries": 0},
    }


@pytest.fixture
def client(start_inprocess, fake_upstream, upstream):
    gw = start_inprocess(gateway_config(fake_upstream))
    return anthropic_client(gw, api_key="sk-any", max_retries=0)


def sent(upstream) -> dict:
    return orjson.loads([r for r in upstream.requests() if r["path"] == "/v1/chat/completions"][-1]["body"])


def test_samples_cover_every_dropped_field():
    assert set(SAMPLES) == set(OPENAI_DROPPED)


@pytest.mark.parametrize("name", sorted(OPENAI_DROPPED))
def test_dropped_field_is_named_and_not_sent(client, upstream, name):
    upstream.script({"api": "openai", "content": "ok"})
    raw = client.beta.messages.with_raw_response.create(
        model="local",
        max_tokens=16,
        messages=[{"role": "user", "content": "hi"}],
        extra_body={name: SAMPLES[name]},
    )
    assert raw.parse().content[0].text == "ok"
    assert name in raw.headers["x-parley-dropped"].split(",")
    assert name not in sent(upstream)


def test_header_fields_dropped_and_named(client, upstream):
    upstream.script({"api": "openai", "content": "ok"})
    raw = client.beta.messages.with_raw_response.create(
        model="local",
        max_tokens=16,
        messages=[{"role": "user", "content": "hi"}],
        betas=["context-management-2025-06-27"],
        user_profile_id="uprof_1",
        workspace_id="wrkspc_1",
    )
    assert raw.parse().content[0].text == "ok"
    dropped = raw.headers["x-parley-dropped"].split(",")
    for header, fate in HEADER_FIELDS.values():
        assert fate.openai is Fate.DROPPED and header in dropped
    headers = {k.lower() for k in upstream.requests()[-1]["headers"]}
    assert not headers & {h for h, _ in HEADER_FIELDS.values()}


def test_billing_a_user_profile_is_refused(client, upstream):
    with pytest.raises(anthropic.BadRequestError) as e:
        client.beta.messages.create(
            model="local",
            max_tokens=16,
            messages=[{"role": "user", "content": "hi"}],
            billing_policy={"type": "billing_policy", "bill_to": "user_profile"},
        )
    assert "billing_policy" in e.value.message and not upstream.requests()


def test_thread_without_a_database_is_the_error_the_sdk_handles(client, upstream):
    with pytest.raises(ThreadUnsupportedRequestError):
        client.beta.messages.create(
            model="local",
            max_tokens=16,
            messages=[{"role": "user", "content": "hi"}],
            thread={"type": "create"},
        )
    assert not upstream.requests()


def test_compaction_is_emulated(client, upstream):
    upstream.script({"api": "openai", "content": "The user greeted; the assistant answered."})
    reply = client.beta.messages.create(
        model="local",
        max_tokens=256,
        messages=[
            {"role": "user", "content": "hello"},
            {"role": "assistant", "content": "hi there"},
            {"role": "user", "content": "compact please"},
        ],
        compaction={"type": "summarize", "instructions": "One sentence."},
    )
    assert reply.stop_reason == "compaction"
    assert reply.content[0].type == "compaction"
    assert reply.content[0].content == "The user greeted; the assistant answered."
    body = sent(upstream)
    assert body["messages"][-1] == {"role": "user", "content": "One sentence."} and "stream" not in body
    # The next request sends the block first: the backend reads the summary as text.
    upstream.script({"api": "openai", "content": "go on"})
    client.beta.messages.create(
        model="local",
        max_tokens=64,
        messages=[
            {"role": "assistant", "content": [reply.content[0].to_dict()]},
            {"role": "user", "content": "next"},
        ],
    )
    assert "The user greeted" in sent(upstream)["messages"][0]["content"]


def test_compaction_streamed(client, upstream):
    upstream.script({"api": "openai", "content": "A summary."})
    with client.beta.messages.stream(
        model="local",
        max_tokens=256,
        messages=[{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"}],
        compaction={"type": "summarize"},
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "compaction" and final.content[0].content == "A summary."


def test_every_body_field_is_known_to_the_translator():
    from parley.translate.anthropic_to_openai import KNOWN_FIELDS

    assert set(BODY_FIELDS) == KNOWN_FIELDS


def test_tool_runner_without_a_database_falls_back_to_whole_history(client, upstream):
    """The SDK's recovery: after thread_unsupported_request it sends every turn in full."""
    from anthropic import beta_tool

    @beta_tool
    def add(a: int, b: int) -> str:
        """Add two numbers.

        Args:
            a: first
            b: second
        """
        return str(a + b)

    upstream.script(
        {"api": "openai", "tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]},
        {"api": "openai", "content": "5"},
    )
    replies = list(
        client.beta.messages.tool_runner(
            model="local", max_tokens=64, tools=[add], messages=[{"role": "user", "content": "2+3?"}]
        )
    )
    assert replies[-1].content[0].text == "5"
    last = sent(upstream)
    assert [m["role"] for m in last["messages"]] == ["user", "assistant", "tool"]
    assert last["messages"][2]["content"] == "5"


def test_reply_model_is_what_the_backend_reports(client, upstream):
    """The documented rule (docs/compatibility.md), on the translated path, whole and streamed."""
    upstream.script(
        {"api": "openai", "content": "a", "model": "qwen3-30b-a3b-instruct"},
        {"api": "openai", "content": "b", "model": "qwen3-30b-a3b-instruct"},
        {"api": "openai", "content": "c", "model": ""},
    )
    args = {"model": "local", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    assert client.messages.create(**args).model == "qwen3-30b-a3b-instruct"
    with client.messages.stream(**args) as stream:
        assert stream.get_final_message().model == "qwen3-30b-a3b-instruct"
    assert client.messages.create(**args).model == "qwen3"  # none reported: the deployment's name


def test_reply_model_on_the_mock(start_inprocess):
    gw = start_inprocess({"model_list": [{"model_name": "echo", "params": {"model": "mock/parley-echo"}}]})
    reply = anthropic_client(gw, api_key="x").messages.create(
        model="echo", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
    )
    assert reply.model == "parley-echo"


def test_other_translated_backends_refuse_what_they_cannot_do():
    """Gemini and Bedrock Converse have no compaction emulation; no backend but Anthropic holds a
    thread by itself (parley's store takes it off the body first when it is on)."""
    from parley.core.errors import GatewayError
    from parley.translate.bedrock.converse_request import to_converse_request
    from parley.translate.fields import check_thread
    from parley.translate.gemini.request import to_gemini_request

    base = {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    for api in ("openai", "gemini", "bedrock", "vertex", "azure", "mock"):
        with pytest.raises(GatewayError) as e:
            check_thread(dict(base, thread={"type": "create"}), api)
        assert e.value.details == {"error_code": "thread_unsupported_request"}
    check_thread(dict(base, thread={"type": "create"}), "anthropic")  # Anthropic holds it
    for translate in (lambda b: to_gemini_request(b), lambda b: to_converse_request(b, "meta.llama3", [])):
        with pytest.raises(GatewayError, match="compaction"):
            translate(dict(base, compaction={"type": "summarize"}))
        with pytest.raises(GatewayError, match="billing_policy"):
            translate(dict(base, billing_policy={"type": "billing_policy", "bill_to": "user_profile"}))
        _, dropped = translate(dict(base, billing_policy={"type": "billing_policy", "bill_to": "self"}))
        assert "billing_policy" in dropped

"""The Google and Azure fakes checked against the providers' official clients first: google-auth's
service-account flow and google-genai (Gemini API and Vertex AI), the anthropic SDK's
AnthropicVertex, the openai SDK's AzureOpenAI. If these pass, the fakes speak the published
protocols, so what parley does against them is what it does against the clouds."""

from __future__ import annotations

import anthropic
import openai
import pytest
from google.auth.transport.requests import Request
from google.genai import Client, errors, types
from google.oauth2 import service_account

from parley.testing.fake_google import SCOPE, service_account_info

WEATHER = types.FunctionDeclaration(
    name="get_weather",
    description="Weather for a city",
    parameters_json_schema={"type": "object", "properties": {"city": {"type": "string"}}},
)


def credentials(upstream):
    info = service_account_info(upstream.url + "/token")
    return service_account.Credentials.from_service_account_info(info, scopes=[SCOPE])


@pytest.fixture
def vertex_genai(upstream):
    return Client(
        vertexai=True,
        project="fake-project",
        location="us-central1",
        credentials=credentials(upstream),
        http_options=types.HttpOptions(base_url=upstream.url),
    )


@pytest.fixture
def studio(upstream):
    return Client(api_key="AIza-test-key", http_options=types.HttpOptions(base_url=upstream.url))


def test_gemini_api_text_and_stream(studio, upstream):
    reply = studio.models.generate_content(model="gemini-2.5-flash", contents="Hi there")
    assert reply.text == "Hello! You said: Hi there"
    assert reply.usage_metadata.prompt_token_count > 0
    sent = upstream.requests()[-1]
    assert sent["path"] == "/v1/models/gemini-2.5-flash:generateContent"
    assert sent["headers"]["x-goog-api-key"] == "AIza-test-key"
    upstream.script({"api": "gemini", "text": "a streamed answer in pieces", "piece": 5})
    chunks = list(studio.models.generate_content_stream(model="gemini-2.5-flash", contents="go"))
    assert len(chunks) > 3
    assert "".join(c.text or "" for c in chunks) == "a streamed answer in pieces"
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert upstream.requests()[-1]["query"] == "alt=sse"


def test_gemini_api_key_errors(upstream):
    bad = Client(api_key="not-a-key", http_options=types.HttpOptions(base_url=upstream.url))
    with pytest.raises(errors.ClientError) as e:
        bad.models.generate_content(model="gemini-2.5-flash", contents="Hi")
    assert e.value.code == 400 and "API key not valid" in e.value.message
    upstream.script({"api": "gemini", "status": 429, "error": {"status": "RESOURCE_EXHAUSTED"}})
    good = Client(api_key="AIza-k", http_options=types.HttpOptions(base_url=upstream.url))
    with pytest.raises(errors.ClientError) as e:
        good.models.generate_content(model="gemini-2.5-flash", contents="Hi")
    assert e.value.code == 429 and e.value.status == "RESOURCE_EXHAUSTED"


def test_vertex_gemini_tool_loop_needs_the_thought_signature(vertex_genai, upstream):
    """Gemini 3 refuses a function call sent back without its signature; google-genai keeps it."""
    upstream.script(
        {
            "api": "gemini",
            "thinking": "I should look it up",
            "calls": [{"name": "get_weather", "args": {"city": "Paris"}}],
        },
        {"api": "gemini", "text": "Sunny in Paris"},
    )
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[WEATHER])],
        thinking_config=types.ThinkingConfig(include_thoughts=True),
    )
    first = vertex_genai.models.generate_content(
        model="gemini-3-pro-preview", contents="Paris?", config=config
    )
    call_part = next(p for p in first.candidates[0].content.parts if p.function_call)
    assert call_part.function_call.args == {"city": "Paris"} and call_part.thought_signature
    assert any(p.thought for p in first.candidates[0].content.parts)
    history = [
        types.Content(role="user", parts=[types.Part(text="Paris?")]),
        first.candidates[0].content,
        types.Content(
            role="user",
            parts=[types.Part.from_function_response(name="get_weather", response={"output": "sunny"})],
        ),
    ]
    second = vertex_genai.models.generate_content(
        model="gemini-3-pro-preview", contents=history, config=config
    )
    assert second.text == "Sunny in Paris"
    path = upstream.requests()[-1]["path"]
    assert path == (
        "/v1beta1/projects/fake-project/locations/us-central1/publishers/google/models/"
        "gemini-3-pro-preview:generateContent"
    )
    call_part.thought_signature = None  # a client that lost it
    with pytest.raises(errors.ClientError) as e:
        vertex_genai.models.generate_content(model="gemini-3-pro-preview", contents=history, config=config)
    assert e.value.code == 400 and "thought_signature" in e.value.message


def test_vertex_rejects_tokens_it_did_not_issue(upstream):
    client = Client(
        vertexai=True,
        project="p",
        location="us-central1",
        credentials=service_account.Credentials.from_service_account_info(
            service_account_info("http://127.0.0.1:9/token"),
            scopes=[SCOPE],  # a token endpoint that is not there
        ),
        http_options=types.HttpOptions(base_url=upstream.url),
    )
    with pytest.raises(Exception):  # noqa: B017  # google-auth cannot refresh: no token, no call
        client.models.generate_content(model="gemini-2.5-flash", contents="Hi")
    vertex = anthropic.AnthropicVertex(
        region="us-east5",
        project_id="p",
        access_token="ya29.forged",
        base_url=upstream.url + "/v1",
        max_retries=0,
    )
    with pytest.raises(anthropic.AuthenticationError) as e:
        vertex.messages.create(
            model="claude-sonnet-4-5@20250929", max_tokens=50, messages=[{"role": "user", "content": "Hi"}]
        )
    assert e.value.body["error"]["status"] == "UNAUTHENTICATED"


def test_anthropic_vertex_messages_stream_and_count(upstream):
    creds = credentials(upstream)
    creds.refresh(Request())  # the fake's token endpoint accepts google-auth's signed JWT grant
    assert creds.token.startswith("ya29.fake-")
    client = anthropic.AnthropicVertex(
        region="us-east5", project_id="proj", access_token=creds.token, base_url=upstream.url + "/v1"
    )
    message = client.messages.create(
        model="claude-sonnet-4-5@20250929", max_tokens=100, messages=[{"role": "user", "content": "Hi"}]
    )
    assert message.content[0].text == "Hello! You said: Hi"
    sent = upstream.requests()[-1]
    assert sent["path"] == (
        "/v1/projects/proj/locations/us-east5/publishers/anthropic/models/"
        "claude-sonnet-4-5@20250929:rawPredict"
    )
    with client.messages.stream(
        model="claude-haiku-4-5@20251001", max_tokens=100, messages=[{"role": "user", "content": "streamed"}]
    ) as stream:
        final = stream.get_final_message()
    assert final.content[0].text == "Hello! You said: streamed"
    assert upstream.requests()[-1]["path"].endswith("claude-haiku-4-5@20251001:streamRawPredict")
    count = client.messages.count_tokens(
        model="claude-sonnet-4-5@20250929", messages=[{"role": "user", "content": "Hi"}]
    )
    assert count.input_tokens > 0


def test_azure_openai_deployment_and_v1(upstream):
    client = openai.AzureOpenAI(azure_endpoint=upstream.url, api_version="2024-10-21", api_key="azure-key")
    reply = client.chat.completions.create(model="my-gpt4o", messages=[{"role": "user", "content": "Hi"}])
    assert reply.choices[0].message.content == "Hello! You said: Hi"
    sent = upstream.requests()[-1]
    assert sent["path"] == "/openai/deployments/my-gpt4o/chat/completions"
    assert sent["query"] == "api-version=2024-10-21" and sent["headers"]["api-key"] == "azure-key"
    stream = client.chat.completions.create(
        model="my-gpt4o", messages=[{"role": "user", "content": "streamed"}], stream=True
    )
    chunks = list(stream)
    assert chunks[0].choices == []  # Azure's prompt-filter chunk first
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello! You said: streamed"
    )
    v1 = openai.OpenAI(base_url=upstream.url + "/openai/v1", api_key="azure-key")
    assert v1.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "v1"}]).choices
    wrong = openai.AzureOpenAI(
        azure_endpoint=upstream.url, api_version="2024-10-21", api_key="nope", max_retries=0
    )
    with pytest.raises(openai.AuthenticationError):
        wrong.chat.completions.create(model="my-gpt4o", messages=[{"role": "user", "content": "Hi"}])

"""Claude Code sessions: `X-Claude-Code-Session-Id` (or the session in `metadata.user_id`) on every
spend row, whichever front door the request came through; `/spend/logs?session_id=` and
`/spend/report?group_by=session`; one session stays on one deployment. SQLite and Postgres, each
behind a `parley serve` process."""

from __future__ import annotations

import anthropic
import orjson
import pytest

from keys_support import MASTER, Admin, create_pg_database, drop_pg_database
from parley.testing.procs import anthropic_deployment, openai_deployment


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def gateway(request, start_gateway, fake_upstream, fake_upstream_b, tmp_path_factory):
    if request.param == "sqlite":
        url, name = str(tmp_path_factory.mktemp("sessions") / "parley.db"), None
    else:
        name, url = create_pg_database()
    gw = start_gateway(
        {
            "model_list": [
                anthropic_deployment("claude-s", fake_upstream, model="native-s"),
                openai_deployment("claude-t", fake_upstream, model="translated-t"),
                anthropic_deployment("claude-pair", fake_upstream, model="pair-a"),
                anthropic_deployment("claude-pair", fake_upstream_b, model="pair-b"),
            ],
            "general_settings": {"master_key": MASTER, "database_url": url, "spend_flush_interval": 0.1},
        }
    )
    yield gw
    gw.stop()
    if name is not None:
        drop_pg_database(name)


def ask(client, model: str = "claude-s", **kw) -> None:
    client.messages.create(model=model, max_tokens=10, messages=[{"role": "user", "content": "hi"}], **kw)


def test_session_on_every_row_and_in_the_report(gateway, upstream):
    admin = Admin.of(gateway)
    key = admin.post("/key/generate", {})["key"]
    plain = anthropic.Anthropic(api_key=key, base_url=gateway.url, max_retries=0)
    header = {"X-Claude-Code-Session-Id": "sess-a"}
    ask(plain, extra_headers=header)
    ask(plain, model="claude-t", extra_headers=header)
    bedrock = anthropic.AnthropicBedrock(api_key=key, aws_region="us-east-1", base_url=gateway.url)
    with bedrock.messages.stream(
        model="claude-t", max_tokens=10, messages=[{"role": "user", "content": "hi"}], extra_headers=header
    ) as stream:
        stream.get_final_message()
    user_id = orjson.dumps({"device_id": "d1", "account_uuid": "", "session_id": "sess-b"}).decode()
    vertex = anthropic.AnthropicVertex(
        access_token=key, project_id="p", region="us-east5", base_url=gateway.url + "/v1", max_retries=0
    )
    ask(vertex, metadata={"user_id": user_id})
    ask(plain, extra_headers={"X-Claude-Code-Session-Id": "x" * 300})  # too long: cut, not lost
    ask(plain)

    rows = admin.wait_logs(6, api_key=key)
    sessions = sorted((r["session_id"] or "-", r["route"]) for r in rows)
    assert sessions == [
        ("-", "/v1/messages"),
        ("sess-a", "/model/{model}/invoke-with-response-stream"),
        ("sess-a", "/v1/messages"),
        ("sess-a", "/v1/messages"),
        (
            "sess-b",
            "/v1/projects/{project}/locations/{location}/publishers/anthropic/models/{model}:rawPredict",
        ),
        ("x" * 255, "/v1/messages"),
    ]
    assert len(admin.get("/spend/logs", api_key=key, session_id="sess-a")["data"]) == 3
    report = admin.get("/spend/report", api_key=key, group_by="session")
    assert report["group_by"] == "session"
    by_session = {row["group"]: row["requests"] for row in report["data"]}
    assert by_session == {None: 1, "sess-a": 3, "sess-b": 1, "x" * 255: 1}
    bad = admin.call("GET", "/spend/report", group_by="sessions")
    assert bad.status_code == 400 and "session" in bad.text


def test_a_session_stays_on_one_deployment(gateway, upstream, b):
    plain = anthropic.Anthropic(api_key=MASTER, base_url=gateway.url, max_retries=0)
    bedrock = anthropic.AnthropicBedrock(api_key=MASTER, aws_region="us-east-1", base_url=gateway.url)
    for session in ("s-1", "s-2", "s-3", "s-4"):
        for client in (plain, bedrock, plain):
            ask(client, model="claude-pair", extra_headers={"X-Claude-Code-Session-Id": session})
    served = {}
    for server in (upstream, b):
        for r in server.requests():
            served.setdefault(r["headers"]["x-claude-code-session-id"], set()).add(
                orjson.loads(r["body"])["model"]
            )
    assert sorted(served) == ["s-1", "s-2", "s-3", "s-4"]
    assert all(len(models) == 1 for models in served.values())

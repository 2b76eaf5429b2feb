"""Claude Code (the real `claude` CLI) running a Bash tool loop through parley to Claude on Vertex AI
and to Gemini 3 (whose thought signature must come back with the tool result, or the second turn
is refused). Claude Code's own model names are mapped by `model_list`; its side requests (titles,
summaries) go to the `*` deployment on the fake's Anthropic API. See test_claude_code.py for how
the CLI is installed."""

from __future__ import annotations

import orjson

from parley.testing.fake_google import service_account_info
from parley.testing.procs import anthropic_deployment
from test_claude_code import ANSWER, MASTER, claude_binary, run_claude

BASH = {"command": "echo parley-ok", "description": "Print a marker"}


def start(start_gateway, upstream, main: dict):
    return start_gateway(
        {
            "model_list": [
                {"model_name": "claude-main", "params": main},
                anthropic_deployment("*", upstream, model="cc-side"),
            ],
            "general_settings": {"master_key": MASTER},
        }
    )


def tool_results(contents: list[dict]) -> list[dict]:
    return [p for c in contents for p in c.get("parts", ()) if "functionResponse" in p]


def test_claude_code_bash_loop_on_vertex_claude(start_gateway, fake_upstream, upstream):
    claude = claude_binary()
    gateway = start(
        start_gateway,
        fake_upstream,
        {
            "model": "vertex_ai/claude-sonnet-4-5@20250929",
            "vertex_project": "proj",
            "vertex_location": "global",
            "vertex_credentials": service_account_info(fake_upstream.url + "/token", "proj"),
            "api_base": fake_upstream.url,
        },
    )
    match = {"model": "claude-sonnet-4-5@20250929", "has_tools": True}
    upstream.script(
        {
            "api": "anthropic",
            "match": match,
            "content": [{"type": "tool_use", "name": "Bash", "input": BASH}],
        },
        {"api": "anthropic", "match": match, "content": [{"type": "text", "text": ANSWER}]},
    )
    result = run_claude(claude, gateway)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{gateway.log()[-3000:]}"
    assert ANSWER in result.stdout
    main = [
        r
        for r in upstream.requests()
        if "/publishers/anthropic/models/claude-sonnet-4-5@20250929" in r["path"]
    ]
    assert len(main) >= 2 and main[0]["path"].startswith("/v1/projects/proj/locations/global/")
    last = orjson.loads(main[-1]["body"])
    results = [
        b
        for m in last["messages"]
        if isinstance(m["content"], list)
        for b in m["content"]
        if b.get("type") == "tool_result"
    ]
    assert results and "parley-ok" in orjson.dumps(results[0]["content"]).decode()


def test_claude_code_bash_loop_on_gemini_3(start_gateway, fake_upstream, upstream):
    claude = claude_binary()
    gateway = start(
        start_gateway,
        fake_upstream,
        {"model": "gemini/gemini-3-pro-preview", "api_key": "AIza-cc", "api_base": fake_upstream.url},
    )
    upstream.script(
        {"api": "gemini", "match": {"has_tools": True}, "calls": [{"name": "Bash", "args": BASH}]},
        {"api": "gemini", "match": {"has_tools": True}, "text": ANSWER},
    )
    result = run_claude(claude, gateway)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{gateway.log()[-3000:]}"
    assert ANSWER in result.stdout, (upstream.events(), gateway.log()[-3000:])
    main = [orjson.loads(r["body"]) for r in upstream.requests() if "gemini-3-pro-preview:" in r["path"]]
    assert len(main) >= 2
    contents = main[-1]["contents"]
    call = next(p for c in contents for p in c["parts"] if "functionCall" in p)
    assert call["functionCall"]["name"] == "Bash" and call["thoughtSignature"]  # echoed back intact
    [response] = tool_results(contents)
    assert "parley-ok" in orjson.dumps(response).decode()

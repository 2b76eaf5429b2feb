"""Claude Code (the real `claude` CLI) through parley to Claude on Amazon Bedrock (the fake Bedrock
runtime, which checks every SigV4 signature): a Bash tool loop, its model names mapped by model_list.
The CLI comes from `test_claude_code.claude_binary` (npm, cached; skipped only when npm cannot
install it)."""

from __future__ import annotations

import orjson

from parley.testing.fake_bedrock import KEYS
from test_claude_code import ANSWER, MASTER, claude_binary, run_claude

MAIN = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
SIDE = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
KEY_ID = "AKIAFAKEBEDROCK0001"


def deployment(name: str, model: str, upstream) -> dict:
    params = {
        "model": f"bedrock/{model}",
        "api_base": upstream.url,
        "aws_region_name": "us-east-1",
        "aws_access_key_id": KEY_ID,
        "aws_secret_access_key": KEYS[KEY_ID][0],
    }
    return {"model_name": name, "params": params}


def test_claude_code_runs_bash_through_bedrock(start_gateway, fake_upstream, upstream):
    claude = claude_binary()
    gateway = start_gateway(
        {
            "model_list": [
                deployment("claude-main", MAIN, fake_upstream),
                deployment("*", SIDE, fake_upstream),
            ],
            "general_settings": {"master_key": MASTER},
        }
    )
    bash = {"command": "echo parley-ok", "description": "Print a marker"}
    upstream.script(
        {
            "api": "bedrock",
            "match": {"model": MAIN, "has_tools": True},
            "split": 3,
            "content": [{"type": "tool_use", "id": "toolu_bdrk1", "name": "Bash", "input": bash}],
        },
        {
            "api": "bedrock",
            "match": {"model": MAIN, "has_tools": True},
            "content": [{"type": "text", "text": ANSWER}],
        },
    )
    result = run_claude(claude, gateway)
    assert result.returncode == 0, (
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}\n{gateway.log()[-3000:]}"
    )
    assert ANSWER in result.stdout
    main = [
        r
        for r in upstream.requests()
        if r["path"].startswith(f"/model/{MAIN}/invoke") and orjson.loads(r["body"]).get("tools")
    ]
    assert len(main) >= 2
    assert main[0]["path"].endswith("/invoke-with-response-stream")  # Claude Code streams
    first = orjson.loads(main[0]["body"])
    assert first["anthropic_version"] == "bedrock-2023-05-31"
    assert "claude-code-20250219" in first.get("anthropic_beta", [])
    last = orjson.loads(main[-1]["body"])
    results = [
        b
        for m in last["messages"]
        if m["role"] == "user" and isinstance(m["content"], list)
        for b in m["content"]
        if b.get("type") == "tool_result"
    ]
    assert results and results[0]["tool_use_id"] == "toolu_bdrk1"
    assert "parley-ok" in orjson.dumps(results[0]["content"]).decode()

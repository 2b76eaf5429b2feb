"""Claude Code (the real `claude` CLI) through the gateway, to an OpenAI-protocol backend and to
an Anthropic-protocol one.

The CLI is installed with npm into .cache/claude-code (gitignored) on first use; the test is
skipped, with the reason shown, only when npm cannot install it. The fake upstream plays the
model: on the main turn it calls Bash (`echo parley-ok`), then answers once the tool result is
back. Side requests Claude Code makes (titles, summaries) get the fake's default echo.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import orjson
import pytest

from parley.testing.procs import anthropic_deployment, openai_deployment

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "claude-code"
CLAUDE = CACHE / "node_modules" / ".bin" / "claude"
MASTER = "sk-parley-master-cc"
ANSWER = "The Bash command printed parley-ok, so the gateway works."

BASH_CALL = {
    "api": "openai",
    "match": {"model": "cc-main", "has_tools": True},
    "piece": 6,
    "tool_calls": [
        {
            "id": "call_bash1",
            "name": "Bash",
            "arguments": {"command": "echo parley-ok", "description": "Print a marker"},
        }
    ],
}
MAIN_ANSWER = {"api": "openai", "match": {"model": "cc-main", "has_tools": True}, "content": ANSWER}


def claude_binary() -> Path:
    if CLAUDE.exists():
        return CLAUDE
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed, so @anthropic-ai/claude-code cannot be installed")
    CACHE.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [npm, "install", "--prefix", str(CACHE), "--no-audit", "--no-fund", "@anthropic-ai/claude-code"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0 or not CLAUDE.exists():
        pytest.skip(f"npm could not install @anthropic-ai/claude-code: {result.stderr[-500:]}")
    return CLAUDE


@pytest.fixture(scope="module")
def gateway(start_gateway, fake_upstream):
    return start_gateway(
        {
            "model_list": [
                openai_deployment("claude-main", fake_upstream, model="cc-main"),
                openai_deployment("*", fake_upstream, model="cc-side"),
            ],
            "general_settings": {"master_key": MASTER},
        }
    )


def openai_tool_loop(result: subprocess.CompletedProcess, gateway, upstream) -> list[dict]:
    """Claude Code ended well with the scripted answer; the main turn's chat requests upstream."""
    assert result.returncode == 0, (
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}\n{gateway.log()[-3000:]}"
    )
    assert ANSWER in result.stdout
    main = [
        orjson.loads(r["body"])
        for r in upstream.requests()
        if r["path"] == "/v1/chat/completions"
        and orjson.loads(r["body"])["model"] == "cc-main"
        and orjson.loads(r["body"]).get("tools")
    ]
    assert len(main) >= 2
    return main


PROMPT = "Run `echo parley-ok` with the Bash tool and tell me what it printed."


def run_claude(
    claude: Path,
    gateway,
    mode: dict[str, str] | None = None,
    prompt: str = PROMPT,
    home: str | None = None,
) -> subprocess.CompletedProcess:
    """`claude -p` in `home` (a fresh temporary one by default); `mode` replaces ANTHROPIC_BASE_URL
    (the Bedrock or Vertex settings)."""
    if home is None:
        with tempfile.TemporaryDirectory(prefix="parley-cc-") as tmp:
            return run_claude(claude, gateway, mode, prompt, tmp)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ANTHROPIC_", "CLAUDE", "AWS_", "CLOUD_ML", "GOOGLE_"))
    }
    env.update(mode or {"ANTHROPIC_BASE_URL": gateway.url})
    env.update(
        {
            "HOME": home,
            "ANTHROPIC_API_KEY": MASTER,
            "ANTHROPIC_MODEL": "claude-main",
            "ANTHROPIC_DEFAULT_HAIKU_MODEL": "claude-side",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_AUTOUPDATER": "1",
            "CLAUDE_CODE_MAX_RETRIES": "0",
        }
    )
    return subprocess.run(
        [str(claude), "-p", prompt, "--allowedTools", "Bash", "--output-format", "text"],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )


@pytest.mark.parametrize("mode", ["messages", "bedrock", "vertex"])
def test_claude_code_runs_bash_through_anthropic_backend(mode, start_gateway, fake_upstream, upstream):
    """Each of Claude Code's three gateway formats onto an Anthropic backend: the betas it sends
    (as a header, or in the Bedrock body) reach the backend as the `anthropic-beta` header."""
    claude = claude_binary()
    gateway = start_gateway(
        {
            "model_list": [
                anthropic_deployment("claude-main", fake_upstream, model="cc-native-main"),
                anthropic_deployment("*", fake_upstream, model="cc-native-side"),
            ],
            "general_settings": {"master_key": MASTER},
        }
    )
    upstream.script(
        {
            "api": "anthropic",
            "match": {"model": "cc-native-main", "has_tools": True},
            "content": [
                {
                    "type": "tool_use",
                    "id": "toolu_native1",
                    "name": "Bash",
                    "input": {"command": "echo parley-ok", "description": "Print a marker"},
                }
            ],
        },
        {
            "api": "anthropic",
            "match": {"model": "cc-native-main", "has_tools": True},
            "content": [{"type": "text", "text": ANSWER}],
        },
    )
    result = run_claude(claude, gateway, CLOUD_MODES[mode](gateway.url) if mode in CLOUD_MODES else None)
    assert result.returncode == 0, (
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}\n{gateway.log()[-3000:]}"
    )
    assert ANSWER in result.stdout
    main = [
        r
        for r in upstream.requests()
        if r["path"] == "/v1/messages"
        and orjson.loads(r["body"])["model"] == "cc-native-main"
        and orjson.loads(r["body"]).get("tools")
    ]
    assert len(main) >= 2
    assert main[0]["headers"]["x-api-key"] == "sk-ant-upstream-real"
    betas = main[0]["headers"].get("anthropic-beta", "").split(",")
    assert "claude-code-20250219" in betas and "interleaved-thinking-2025-05-14" in betas
    assert not {"anthropic_version", "anthropic_beta"} & set(orjson.loads(main[0]["body"]))
    last = orjson.loads(main[-1]["body"])
    results = [
        b
        for m in last["messages"]
        if m["role"] == "user" and isinstance(m["content"], list)
        for b in m["content"]
        if b.get("type") == "tool_result"
    ]
    assert results and results[0]["tool_use_id"] == "toolu_native1"
    assert "parley-ok" in orjson.dumps(results[0]["content"]).decode()
    # Claude Code's attribution line reaches Anthropic as sent (it reads it).
    assert "x-anthropic-billing-header: cc_version=" in orjson.dumps(last["system"]).decode()


def test_claude_code_runs_bash_through_openai_backend(gateway, upstream):
    claude = claude_binary()
    upstream.script(BASH_CALL, MAIN_ANSWER)
    main = openai_tool_loop(run_claude(claude, gateway), gateway, upstream)
    history = main[-1]["messages"]
    call = next(m for m in history if m["role"] == "assistant" and m.get("tool_calls"))
    assert call["tool_calls"][0]["function"]["name"] == "Bash"
    results = [m for m in history if m["role"] == "tool"]
    assert results and results[0]["tool_call_id"] == call["tool_calls"][0]["id"] == "toolu_call_bash1"
    assert "parley-ok" in results[0]["content"]
    assert main[0]["stream"] is True
    # Its per-request attribution line never reaches an OpenAI-compatible backend's prompt.
    sent = [r["body"] for r in upstream.requests() if r["path"] == "/v1/chat/completions"]
    assert sent and not [b for b in sent if "x-anthropic-billing-header" in b]


CLOUD_MODES = {
    # Claude Code skips AWS / Google auth and sends ANTHROPIC_API_KEY as x-api-key.
    "bedrock": lambda url: {
        "CLAUDE_CODE_USE_BEDROCK": "1",
        "ANTHROPIC_BEDROCK_BASE_URL": url,
        "CLAUDE_CODE_SKIP_BEDROCK_AUTH": "1",
        "AWS_REGION": "us-east-1",
    },
    "vertex": lambda url: {
        "CLAUDE_CODE_USE_VERTEX": "1",
        "ANTHROPIC_VERTEX_BASE_URL": url + "/v1",
        "CLAUDE_CODE_SKIP_VERTEX_AUTH": "1",
        "ANTHROPIC_VERTEX_PROJECT_ID": "parley-test",
        "CLOUD_ML_REGION": "us-east5",
    },
}


@pytest.mark.parametrize("mode", sorted(CLOUD_MODES))
def test_claude_code_cloud_format_runs_bash_through_openai_backend(mode, gateway, upstream):
    """CLAUDE_CODE_USE_BEDROCK / CLAUDE_CODE_USE_VERTEX against parley: the same tool loop, the
    Bedrock event-stream or Vertex SSE on the client side, a translated backend behind."""
    claude = claude_binary()
    upstream.script(BASH_CALL, MAIN_ANSWER)
    marker = (
        '"route":"/model/{model}/invoke-with-response-stream"' if mode == "bedrock" else ':streamRawPredict"'
    )
    before = gateway.log().count(marker)
    main = openai_tool_loop(run_claude(claude, gateway, CLOUD_MODES[mode](gateway.url)), gateway, upstream)
    results = [m for m in main[-1]["messages"] if m["role"] == "tool"]
    assert results and "parley-ok" in results[0]["content"]
    assert gateway.log().count(marker) >= before + 2  # the access log names the front door used

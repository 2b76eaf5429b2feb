"""Claude Code (the real `claude` CLI) with a PII guardrail on: it reads a file holding an email
address and an AWS key with Bash, then writes the address to another file with Bash. The
upstream (the fake, playing the model) never sees either value, only placeholders; the commands
Claude Code runs get the real values back."""

from __future__ import annotations

import tempfile
from pathlib import Path

from parley.testing.procs import anthropic_deployment
from test_claude_code import MASTER, claude_binary, run_claude

EMAIL = "dana.whitfield@example.com"
AWS = "AKIAIOSFODNN7EXAMPLE"
ANSWER = "Done: the address is saved in out.txt."
PROMPT = "Read contact.txt with Bash, then save the address in it to out.txt."


def test_claude_code_bash_loop_with_pii_masked(start_gateway, fake_upstream, upstream):
    claude = claude_binary()
    gateway = start_gateway(
        {
            "model_list": [
                anthropic_deployment("claude-main", fake_upstream, model="cc-guard-main"),
                anthropic_deployment("*", fake_upstream, model="cc-guard-side"),
            ],
            "general_settings": {"master_key": MASTER},
            "guardrails": [
                {
                    "guardrail_name": "pii",
                    "litellm_params": {
                        "guardrail": "parley_pii",
                        "default_on": True,
                        "output_parse_pii": True,
                        "pii_entities_config": {"EMAIL_ADDRESS": "MASK", "AWS_ACCESS_KEY": "MASK"},
                    },
                }
            ],
        }
    )
    main = {"api": "anthropic", "match": {"model": "cc-guard-main", "has_tools": True}}
    upstream.script(
        {**main, "content": [_bash("toolu_g1", "cat contact.txt")]},
        {**main, "content": [_bash("toolu_g2", "echo <EMAIL_1> > out.txt")]},
        {**main, "content": [{"type": "text", "text": ANSWER}]},
    )
    with tempfile.TemporaryDirectory(prefix="parley-cc-guard-") as home:
        Path(home, "contact.txt").write_text(f"contact: {EMAIL}\naws_access_key_id = {AWS}\n")
        result = run_claude(claude, gateway, prompt=PROMPT, home=home)
        out = Path(home, "out.txt").read_text() if Path(home, "out.txt").exists() else ""
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{gateway.log()[-3000:]}"
    assert ANSWER in result.stdout
    assert out.strip() == EMAIL  # the command ran with the real address
    bodies = [r["body"] for r in upstream.requests() if r["path"] == "/v1/messages"]
    assert bodies and not any(EMAIL in b or AWS in b for b in bodies)
    assert any("<EMAIL_1>" in b and "<AWS_ACCESS_KEY_1>" in b for b in bodies)  # the tool result


def _bash(tool_id: str, command: str) -> dict:
    return {
        "type": "tool_use",
        "id": tool_id,
        "name": "Bash",
        "input": {"command": command, "description": "run"},
    }

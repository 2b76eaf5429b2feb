"""LiteLLM's command-line habits: `parley --config FILE` serves, its flags are accepted or answered
with one line naming parley's equivalent."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "parley", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=dict(os.environ),
    )


@pytest.mark.parametrize(
    ("flag", "answer"),
    [
        (
            ["--api_base", "http://x"],
            "--api_base is a LiteLLM flag parley does not take: set api_base in the model's",
        ),
        (
            ["--telemetry", "False"],
            "--telemetry is a LiteLLM flag parley does not take: parley sends no telemetry",
        ),
        (["--run_gunicorn"], "use --workers N"),
        (["--add_key"], "create keys with POST /key/generate"),
    ],
)
def test_litellm_flags_are_answered_with_the_equivalent(flag, answer):
    result = run("--config", "config/default.yaml", *flag)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("parley: ") and answer in line


def test_serve_help_lists_the_litellm_spellings():
    help_text = run("serve", "--help").stdout
    for flag in ("--num_workers", "--detailed_debug", "--debug"):
        assert flag in help_text


def test_top_level_help_and_version_still_work():
    assert run("--version").stdout.startswith("parley ")
    assert "serve" in run("--help").stdout

"""`guardrail: presidio` (extra `parley[presidio]`): Presidio's pattern recognizers find the spans,
parley masks and restores them. Judged by the anthropic SDK against `parley serve` and the fake
upstream; the not-installed case runs `parley serve` in a subprocess where the import fails."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import anthropic
import pytest
import yaml

from parley.config.guardrails import PRESIDIO_ENTITIES
from parley.testing.inprocess import anthropic_client
from parley.testing.procs import anthropic_deployment

MASTER = "sk-parley-master-presidio"
EMAIL = "jane.roe@example.org"
CARD = "4111 1111 1111 1111"
SSN = "536-22-8726"
ASK = f"Write to {EMAIL}; charge card {CARD}."


def gateway_config(fake_upstream) -> dict:
    return {
        "model_list": [anthropic_deployment("claude", fake_upstream, model="claude-sonnet-4-5")],
        "general_settings": {"master_key": MASTER},
        "guardrails": [
            {
                "guardrail_name": "presidio",
                "litellm_params": {
                    "guardrail": "presidio",
                    "mode": "pre_call",
                    "default_on": True,
                    "output_parse_pii": True,
                    "pii_entities_config": {
                        "EMAIL_ADDRESS": "MASK",
                        "CREDIT_CARD": "MASK",
                        "US_SSN": "BLOCK",
                    },
                    "patterns": [{"name": "EMPLOYEE_ID", "pattern": r"EMP-\d{6}", "action": "MASK"}],
                },
            }
        ],
    }


@pytest.fixture(scope="module")
def claude(start_gateway, fake_upstream):
    return anthropic_client(start_gateway(gateway_config(fake_upstream)), api_key=MASTER, max_retries=0)


def sent(upstream) -> str:
    return upstream.requests()[-1]["body"]


def test_presidio_masks_the_request_and_restores_a_streamed_reply(claude, upstream):
    upstream.script({"content": [{"type": "text", "text": "Mailed <EMAIL_1> and charged <CARD_1>, done."}]})
    with claude.messages.stream(
        model="claude", max_tokens=64, messages=[{"role": "user", "content": ASK + " Badge EMP-004211."}]
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
        header = stream.response.headers["x-parley-guardrails"]
    assert final.content[0].text == f"Mailed {EMAIL} and charged {CARD}, done."
    assert "".join(pieces) == final.content[0].text and len(pieces) > 2
    body = sent(upstream)
    assert EMAIL not in body and CARD not in body and "EMP-004211" not in body
    assert "<EMAIL_1>" in body and "<CARD_1>" in body and "<EMPLOYEE_ID_1>" in body
    assert header == "presidio:masked=3"


def test_presidio_whole_reply_restored(claude, upstream):
    upstream.script({"content": [{"type": "text", "text": "Sent to <EMAIL_1>."}]})
    message = claude.messages.create(
        model="claude", max_tokens=32, messages=[{"role": "user", "content": ASK}]
    )
    assert message.content[0].text == f"Sent to {EMAIL}."
    assert EMAIL not in sent(upstream)


def test_presidio_block_is_a_400_naming_the_type(claude, upstream):
    before = len(upstream.requests())
    with pytest.raises(anthropic.BadRequestError) as info:
        claude.messages.create(
            model="claude", max_tokens=32, messages=[{"role": "user", "content": f"SSN {SSN}"}]
        )
    assert "US_SSN" in info.value.message and SSN not in info.value.message
    assert len(upstream.requests()) == before


def test_presidio_entities_match_the_installed_recognizers():
    """The entity names the config accepts are exactly what the offline engine can find."""
    from parley.filters.guardrails.presidio import PresidioAnalyzer, supported

    analyzer = PresidioAnalyzer(frozenset({"EMAIL_ADDRESS"}), (), ("US",))
    assert supported(analyzer.engine) == PRESIDIO_ENTITIES


_BLOCK_IMPORT = """
import sys
class _NoPresidio:
    def find_spec(self, name, path=None, target=None):
        if name == "presidio_analyzer" or name.startswith("presidio_analyzer."):
            raise ModuleNotFoundError("No module named 'presidio_analyzer'", name=name)
        return None
sys.meta_path.insert(0, _NoPresidio())
from parley.cli import main
sys.exit(main(["serve", "--config", sys.argv[1]]))
"""


def test_not_installed_says_how_to_install(tmp_path: Path, fake_upstream):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(gateway_config(fake_upstream)))
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_BLOCK_IMPORT), str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "pip install 'parley[presidio]'" in lines[0] and "guardrail" in lines[0]


_NO_NETWORK = """
import socket, sys
calls = []
def no_network(*args, **kwargs):
    calls.append(args)
    raise OSError("network disabled in this test")
socket.getaddrinfo = no_network
socket.socket.connect = no_network
from parley.filters.guardrails.presidio import PresidioAnalyzer
analyzer = PresidioAnalyzer(frozenset({"EMAIL_ADDRESS"}), (), ("US",))
text = "mail jane.roe@example.org today"
print([text[f.start : f.end] for f in analyzer.analyze(text)], len(calls))
"""


def test_presidio_never_touches_the_network(tmp_path: Path):
    """Presidio's default e-mail check fetches the Public Suffix List (then caches it on disk, so
    the check runs with an empty tldextract cache); ours uses the bundled copy."""
    done = subprocess.run(
        [sys.executable, "-c", _NO_NETWORK],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TLDEXTRACT_CACHE": str(tmp_path / "tldextract")},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"[{EMAIL!r}] 0"


def test_presidio_masks_model_output_with_post_call():
    from parley.filters.guardrails.mask import PiiMasker
    from parley.filters.guardrails.output import mask_output
    from parley.filters.guardrails.presidio import PresidioAnalyzer

    entities = {"EMAIL_ADDRESS": "MASK", "CREDIT_CARD": "REDACT"}
    masker = PiiMasker("p", PresidioAnalyzer(frozenset(entities), (), ("US",)), entities)
    tally: Counter[str] = Counter()
    out = mask_output(masker, f"Ask {EMAIL} or use {CARD}; <EMAIL_1> stays.", tally)
    assert out == "Ask <EMAIL_ADDRESS> or use [REDACTED]; <EMAIL_1> stays."
    assert tally == Counter({"mask:EMAIL_ADDRESS": 1, "redact:CREDIT_CARD": 1})

"""Bedrock credentials: resolved once in a worker thread (the event loop keeps running while a slow
credential source answers), refreshed in the background when they near expiry, checked at load.

The credential source is real botocore: a profile whose `credential_process` is a script that
takes half a second and hands out temporary keys with an expiry, counting its calls."""

from __future__ import annotations

import asyncio
import sys
import time

import pytest

from parley.config import ConfigError
from parley.providers.bedrock_auth import AwsSigner, aws_settings
from parley.testing.fake_bedrock import KEYS

SCRIPT = """
import datetime, json, sys, time
time.sleep(0.5)
open(sys.argv[1], "a").write("x")
expiry = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=int(sys.argv[2]))
print(json.dumps({"Version": 1, "AccessKeyId": "ASIAFAKEBEDROCKTEMP", "SecretAccessKey": "s",
                  "SessionToken": "t", "Expiration": expiry.isoformat()}))
"""


@pytest.fixture
def profile(tmp_path, monkeypatch):
    def make(seconds: int) -> tuple[AwsSigner, object]:
        script, calls = tmp_path / "creds.py", tmp_path / "calls"
        script.write_text(SCRIPT)
        (tmp_path / "config").write_text(
            f"[profile slow]\ncredential_process = {sys.executable} {script} {calls} {seconds}\n"
        )
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
        settings = aws_settings({"aws_region_name": "us-east-1", "aws_profile_name": "slow"}, None, {})
        return AwsSigner(settings), calls

    return make


def calls_of(path) -> int:
    return len(path.read_text()) if path.exists() else 0


async def sign(signer: AwsSigner) -> dict[str, str]:
    return await signer.headers(
        "POST", "https://bedrock-runtime.us-east-1.amazonaws.com/model/m/invoke", b"{}", {}
    )


async def test_resolving_never_blocks_the_loop_and_happens_once(profile):
    signer, calls = profile(3600)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    started = time.monotonic()
    first = await asyncio.gather(*(sign(signer) for _ in range(5)))  # concurrent first requests
    waited = time.monotonic() - started
    task.cancel()
    assert waited >= 0.5 and ticks >= 20  # the loop ran while the script slept
    assert calls_of(calls) == 1  # one resolution for all five
    assert all(
        h["authorization"].startswith("AWS4-HMAC-SHA256 Credential=ASIAFAKEBEDROCKTEMP/") for h in first
    )
    assert first[0]["x-amz-security-token"] == "t"
    started = time.monotonic()
    await sign(signer)
    assert time.monotonic() - started < 0.1 and calls_of(calls) == 1  # cached afterwards


async def test_near_expiry_refreshes_in_the_background(profile):
    # 12 minutes left: inside botocore's 15-minute advisory window, far from parley's 1-minute one
    signer, calls = profile(12 * 60)
    await sign(signer)
    before = calls_of(calls)
    started = time.monotonic()
    await sign(signer)  # signs with the current keys at once; the refresh (0.5 s) runs on the side
    assert time.monotonic() - started < 0.2
    for _ in range(100):
        if calls_of(calls) > before:
            break
        await asyncio.sleep(0.05)
    assert calls_of(calls) > before


async def test_expiring_credentials_are_waited_for(profile):
    signer, calls = profile(30)  # 30 s left: each use waits for fresh keys first
    await sign(signer)
    before = calls_of(calls)
    started = time.monotonic()
    await sign(signer)
    assert time.monotonic() - started >= 0.5 and calls_of(calls) > before


async def test_a_failing_source_is_a_401_naming_bedrock(tmp_path, monkeypatch):
    from parley.core.errors import GatewayError

    (tmp_path / "config").write_text(
        f"[profile broken]\ncredential_process = {sys.executable} -c 'raise SystemExit(3)'\n"
    )
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    signer = AwsSigner(aws_settings({"aws_region_name": "us-east-1", "aws_profile_name": "broken"}, None, {}))
    with pytest.raises(GatewayError) as info:
        await sign(signer)
    assert info.value.status == 401 and "Amazon Bedrock" in info.value.message


async def test_static_keys_and_bearer_need_no_lookup():
    key_id = "AKIAFAKEBEDROCK0001"
    static = AwsSigner(
        aws_settings(
            {
                "aws_region_name": "eu-west-1",
                "aws_access_key_id": key_id,
                "aws_secret_access_key": KEYS[key_id][0],
            },
            None,
            {},
        )
    )
    headers = await sign(static)
    assert "/eu-west-1/bedrock/aws4_request" in headers["authorization"]
    bearer = AwsSigner(
        aws_settings({"aws_region_name": "us-east-1"}, None, {"AWS_BEARER_TOKEN_BEDROCK": "ABSKk"})
    )
    assert (await sign(bearer))["authorization"] == "Bearer ABSKk"


def test_settings_are_checked_at_load():
    with pytest.raises(ConfigError, match="aws_region_name: required"):
        aws_settings({}, None, {})
    with pytest.raises(ConfigError, match="give both or neither"):
        aws_settings({"aws_region_name": "us-east-1", "aws_access_key_id": "AKIA"}, None, {})
    settings = aws_settings({"region_name": "eu-central-1"}, None, {})
    assert settings.endpoint == "https://bedrock-runtime.eu-central-1.amazonaws.com"
    assert (
        aws_settings({}, "http://127.0.0.1:9/", {"AWS_REGION": "us-west-2"}).endpoint == "http://127.0.0.1:9"
    )


def test_startup_error_names_the_entry(monkeypatch):
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    from parley.config import build_config
    from parley.gateway import build_gateway

    doc = {"model_list": [{"model_name": "nova", "params": {"model": "bedrock/amazon.nova-pro-v1:0"}}]}
    with pytest.raises(ConfigError, match=r"model_list entry 'nova': params.aws_region_name: required"):
        build_gateway(build_config(doc, "cfg.yaml", env={}))

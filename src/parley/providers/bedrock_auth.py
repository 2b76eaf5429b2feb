"""Amazon Bedrock credentials and request signing (SigV4 by botocore, or a Bedrock API key).

Per deployment, with LiteLLM's names: `aws_access_key_id` + `aws_secret_access_key` (+
`aws_session_token`), else `aws_profile_name`, else the environment's credential chain (variables,
shared files, SSO, container and instance roles); `api_key` (or AWS_BEARER_TOKEN_BEDROCK when no
AWS credentials are given) is a Bedrock API key sent as a bearer token instead. Credentials are
resolved once, in a worker thread, and refreshed in the background before they expire; signing
itself is a few HMACs on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from parley.config import ConfigError
from parley.core.errors import GatewayError

log = logging.getLogger("parley.providers.bedrock")

SERVICE = "bedrock"
MANDATORY_REFRESH_SECONDS = 60  # closer to expiry than this, a request waits for fresh credentials


@dataclass(frozen=True, slots=True)
class AwsSettings:
    """The Bedrock params of one deployment, validated at load."""

    region: str
    endpoint: str  # scheme://host[:port], no trailing slash
    access_key: str | None = None
    secret_key: str | None = None
    session_token: str | None = None
    profile: str | None = None
    bearer: str | None = None


def aws_settings(params: Mapping[str, Any], api_base: str | None, env: Mapping[str, str]) -> AwsSettings:
    """Read and check a deployment's AWS params (raises ConfigError naming the field)."""
    text = {name: _text(params, name) for name in _AWS_PARAMS}
    region = (
        text["aws_region_name"]
        or _text(params, "region_name")
        or env.get("AWS_REGION")
        or env.get("AWS_DEFAULT_REGION")
    )
    if not region:
        raise ConfigError("params.aws_region_name: required for bedrock/ models (or set AWS_REGION)")
    access, secret = text["aws_access_key_id"], text["aws_secret_access_key"]
    if bool(access) != bool(secret):
        raise ConfigError("params.aws_access_key_id and aws_secret_access_key: give both or neither")
    endpoint = text["aws_bedrock_runtime_endpoint"] or api_base
    if endpoint and not endpoint.startswith(("http://", "https://")):
        raise ConfigError(f"params.aws_bedrock_runtime_endpoint: must be an http(s) URL, got {endpoint!r}")
    bearer = _text(params, "api_key")
    if bearer is None and not access and not text["aws_profile_name"]:
        bearer = env.get("AWS_BEARER_TOKEN_BEDROCK") or None
    return AwsSettings(
        region=region,
        endpoint=(endpoint or f"https://bedrock-runtime.{region}.amazonaws.com").rstrip("/"),
        access_key=access,
        secret_key=secret,
        session_token=text["aws_session_token"],
        profile=text["aws_profile_name"],
        bearer=bearer,
    )


_AWS_PARAMS = (
    "aws_region_name",
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "aws_profile_name",
    "aws_bedrock_runtime_endpoint",
)


def _text(params: Mapping[str, Any], name: str) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"params.{name}: must be a string, got {value!r}")
    return value


class AwsSigner:
    """Signs Bedrock requests for one deployment; holds its resolved credentials."""

    def __init__(self, settings: AwsSettings) -> None:
        self.settings = settings
        self._credentials: Any = None  # botocore Credentials (maybe refreshable)
        self._frozen: Any = None  # botocore ReadOnlyCredentials used for signing
        self._resolving: asyncio.Task[None] | None = None

    async def headers(self, method: str, url: str, body: bytes, headers: dict[str, str]) -> dict[str, str]:
        """`headers` plus the auth headers for this request."""
        if self.settings.bearer:
            return dict(headers, authorization="Bearer " + self.settings.bearer)
        frozen = await self._current()
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        request = AWSRequest(method=method, url=url, headers=dict(headers), data=body)
        SigV4Auth(frozen, SERVICE, self.settings.region).add_auth(request)
        return {k.lower(): str(v) for k, v in request.headers.items()}

    async def _current(self) -> Any:
        creds = self._credentials
        if self._frozen is None or (creds is not None and _refresh_needed(creds, MANDATORY_REFRESH_SECONDS)):
            await self._refresh()  # nothing usable yet, or about to expire: wait for fresh ones
        elif creds is not None and _refresh_needed(creds, None) and self._resolving is None:
            task = self._resolving = asyncio.get_running_loop().create_task(self._resolve_in_thread())
            task.add_done_callback(self._background_done)  # meanwhile the current ones sign
        return self._frozen

    async def _refresh(self) -> None:
        task = self._resolving
        if task is None or task.done():
            task = self._resolving = asyncio.get_running_loop().create_task(self._resolve_in_thread())
        try:
            await asyncio.shield(task)
        finally:
            if task.done() and self._resolving is task:
                self._resolving = None

    def _background_done(self, task: asyncio.Task[None]) -> None:
        if self._resolving is task:
            self._resolving = None
        if not task.cancelled() and task.exception() is not None:
            log.warning("Amazon Bedrock: refreshing AWS credentials failed: %s", task.exception())

    async def _resolve_in_thread(self) -> None:
        self._credentials, self._frozen = await asyncio.to_thread(self._resolve)

    def _resolve(self) -> tuple[Any, Any]:
        """Blocking (files, SSO, instance metadata): runs in a worker thread."""
        try:
            return self._load()
        except GatewayError:
            raise
        except Exception as e:  # botocore's ProfileNotFound, a failing credential_process, ...
            raise GatewayError(
                401, f"Amazon Bedrock: AWS credentials could not be loaded: {e}", "authentication_error"
            ) from None

    def _load(self) -> tuple[Any, Any]:
        import botocore.session
        from botocore.credentials import Credentials

        if self._credentials is not None:  # refreshable: botocore refreshes them here
            return self._credentials, self._credentials.get_frozen_credentials()
        s = self.settings
        if s.access_key and s.secret_key:
            creds = Credentials(s.access_key, s.secret_key, s.session_token)
            return None, creds.get_frozen_credentials()
        creds = botocore.session.Session(profile=s.profile).get_credentials()
        if creds is None:
            raise GatewayError(
                401,
                "Amazon Bedrock: no AWS credentials found (set aws_access_key_id/aws_secret_access_key, "
                "aws_profile_name, an api_key, or the AWS environment variables)",
                "authentication_error",
            )
        return creds, creds.get_frozen_credentials()


def _refresh_needed(creds: Any, within: int | None) -> bool:
    check = getattr(creds, "refresh_needed", None)
    return bool(check(within)) if check is not None else False

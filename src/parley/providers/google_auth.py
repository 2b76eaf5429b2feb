"""OAuth access tokens for Vertex AI, from google-auth: fetched off the event loop, cached, renewed
ahead of expiry.

`vertex_credentials` (LiteLLM's name) is a service-account (or authorized-user) JSON file path, the
JSON text itself, or a mapping; without it, application default credentials (ADC: the
GOOGLE_APPLICATION_CREDENTIALS file, gcloud's user credentials, the metadata server). Explicit
credentials are read at startup, so a bad file stops `parley serve` with one line; ADC is looked up
on first use. A token within `RENEW_AHEAD` seconds of expiry is still used while a background
refresh replaces it, so requests wait on the token endpoint only for the very first token (and
`warm` fetches that one at startup).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
from collections.abc import Mapping
from typing import Any

import orjson

from parley.config import ConfigError
from parley.core.errors import GatewayError

log = logging.getLogger("parley.providers.google_auth")

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
RENEW_AHEAD = 300.0  # seconds before expiry a token is renewed in the background


def load_credentials(value: Any, where: str) -> Any | None:
    """google-auth credentials for a `vertex_credentials` value (None: use ADC at first use)."""
    if value is None:
        return None
    from google.oauth2 import credentials as user_credentials
    from google.oauth2 import service_account

    info: Any = value
    if isinstance(value, str):
        text = value.strip()
        if not text.startswith("{"):
            if not os.path.isfile(text):
                raise ConfigError(f"{where}.vertex_credentials: no such file {text!r}")
            with open(text, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        try:
            info = orjson.loads(text)
        except orjson.JSONDecodeError:
            raise ConfigError(f"{where}.vertex_credentials: not valid JSON") from None
    if not isinstance(info, Mapping):
        raise ConfigError(f"{where}.vertex_credentials: must be a file path, JSON text or a mapping")
    kind = info.get("type")
    try:  # only these two kinds: a config must not make parley run an external credential source
        if kind == "service_account":
            return service_account.Credentials.from_service_account_info(dict(info), scopes=list(SCOPES))
        if kind == "authorized_user":
            return user_credentials.Credentials.from_authorized_user_info(dict(info), scopes=list(SCOPES))
    except (ValueError, KeyError) as e:
        raise ConfigError(f"{where}.vertex_credentials: {e}") from None
    raise ConfigError(
        f"{where}.vertex_credentials: type {kind!r} is not supported "
        "(service_account or authorized_user; other kinds through application default credentials)"
    )


def project_of(credentials: Any, value: Any) -> str | None:
    """The project named by the credentials (service accounts carry one), if any."""
    project = getattr(credentials, "project_id", None) or getattr(credentials, "quota_project_id", None)
    if project:
        return str(project)
    if isinstance(value, Mapping) and value.get("project_id"):
        return str(value["project_id"])
    return None


class TokenSource:
    """Bearer tokens for one set of credentials (or ADC when `credentials` is None)."""

    def __init__(self, credentials: Any | None, backend: str = "Vertex AI") -> None:
        self._credentials = credentials
        self.backend = backend
        self.adc_project: str | None = None
        self._lock = asyncio.Lock()
        self._renewing: asyncio.Task[None] | None = None

    async def token(self) -> str:
        token, remaining = self._cached()
        if token is not None and remaining > RENEW_AHEAD:
            return token
        if token is not None and remaining > 10:
            if self._renewing is None or self._renewing.done():
                self._renewing = asyncio.get_running_loop().create_task(self._refresh_quietly())
            return token
        await self._refresh()
        token, _ = self._cached()
        if token is None:
            raise GatewayError(401, f"{self.backend}: the credentials gave no access token")
        return token

    async def warm(self) -> None:
        """Fetch the first token now (startup); a failure is logged and retried on first use."""
        await self._refresh_quietly()

    def _cached(self) -> tuple[str | None, float]:
        creds = self._credentials
        token = getattr(creds, "token", None) if creds is not None else None
        if not token:
            return None, 0.0
        expiry = getattr(creds, "expiry", None)
        if expiry is None:
            return token, float("inf")
        now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)  # google-auth: naive UTC
        return token, (expiry - now).total_seconds()

    async def _refresh_quietly(self) -> None:
        try:
            await self._refresh()
        except GatewayError as e:
            log.warning("%s token refresh failed: %s", self.backend, e.message)

    async def _refresh(self) -> None:
        async with self._lock:
            token, remaining = self._cached()
            if token is not None and remaining > RENEW_AHEAD:
                return  # another caller renewed it while this one waited
            try:
                await asyncio.to_thread(self._refresh_blocking)
            except GatewayError:
                raise
            except Exception as e:  # google-auth raises RefreshError, TransportError, OSError ...
                raise GatewayError(
                    401, f"{self.backend}: could not get an access token: {e}", "authentication_error"
                ) from None

    def _refresh_blocking(self) -> None:
        import google.auth
        import google.auth.transport.requests
        from google.auth.exceptions import DefaultCredentialsError

        if self._credentials is None:
            try:
                self._credentials, self.adc_project = google.auth.default(scopes=list(SCOPES))
            except DefaultCredentialsError as e:
                raise GatewayError(
                    401,
                    f"{self.backend}: no credentials: set params.vertex_credentials or "
                    f"GOOGLE_APPLICATION_CREDENTIALS ({e})",
                    "authentication_error",
                ) from None
        self._credentials.refresh(google.auth.transport.requests.Request())

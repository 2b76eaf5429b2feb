"""Fuzz the admin API from its own OpenAPI document (`GET /openapi.json`) with schemathesis.

The gateway app runs in process on a SQLite file in a tmp dir, with the master key. Every
generated call (valid and invalid bodies, query strings and path keys) must get no 5xx, a status
the document lists, JSON, and for errors the documented Anthropic envelope. FUZZ_EXAMPLES raises
the number of cases per operation (`make fuzz`). Also here: the admin body limit and the SQLite
file's mode, which the fuzzing brought up."""

from __future__ import annotations

import os
import stat

import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from fuzz_support import ADMIN_EXAMPLES
from parley.server.app import create_app
from parley.testing.inprocess import InProcessGateway, _config_from

MASTER = "sk-parley-master-fuzz-admin"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def _config(database: str) -> dict:
    return {
        "model_list": [{"model_name": "m", "params": {"model": "mock/m"}}],
        "general_settings": {"master_key": MASTER, "database_url": database, "spend_flush_interval": 0.05},
    }


@pytest.fixture(scope="module")
def admin_schema(tmp_path_factory):
    app = create_app(_config_from(_config(str(tmp_path_factory.mktemp("fuzzadmin") / "parley.db")), "<fuzz>"))
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    from schemathesis.python import asgi

    asgi.shutdown_lifespans()


schema = schemathesis.pytest.from_fixture("admin_schema")


@schema.parametrize()
@settings(max_examples=ADMIN_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_admin_api_answers_every_generated_call_in_its_documented_shape(case):
    case.call_and_validate(headers={"x-api-key": MASTER}, checks=CHECKS)


@pytest.fixture(scope="module")
def gateway(start_inprocess_module, tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzzadmin2")
    return start_inprocess_module(_config(str(folder / "parley.db")))


def _post(gateway, path: str, body: bytes):
    headers = {"x-api-key": MASTER, "content-type": "application/json"}
    return gateway.post(path, content=body, headers=headers)


@pytest.mark.parametrize(
    "path, body, field",
    [
        # found by the fuzzer: each was a 500 or a 503 "database unavailable" before
        ("/key/generate", {"duration": "99999999d"}, "duration"),
        ("/key/generate", {"budget_duration": "99999999mo"}, "budget_duration"),
        ("/key/generate", {"expires": 1e300}, "expires"),
        ("/key/generate", {"tpm_limit": 2**64 - 1}, "tpm_limit"),
        ("/key/delete", {"key_aliases": [{"a": 1}]}, "key_aliases"),
    ],
)
def test_out_of_range_admin_fields_are_400_naming_the_field(gateway, path, body, field):
    reply = _post(gateway, path, orjson.dumps(body))
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error" and field in error["message"]


def test_admin_body_over_the_limit_is_413_in_the_anthropic_envelope(gateway):
    body = orjson.dumps({"metadata": {"x": "y" * (2 << 20)}})
    reply = _post(gateway, "/key/generate", body)
    assert reply.status_code == 413
    data = reply.json()
    assert data["type"] == "error" and data["error"]["type"] == "request_too_large"
    assert data["request_id"] == reply.headers["request-id"]


def test_admin_body_over_the_limit_without_content_length_is_413(gateway):
    def chunks():
        yield b'{"metadata": {"x": "'
        for _ in range(40):
            yield b"y" * 65536
        yield b'"}}'

    reply = gateway.post("/key/generate", content=chunks(), headers={"x-api-key": MASTER})
    assert reply.status_code == 413 and reply.json()["error"]["type"] == "request_too_large"


def test_the_sqlite_file_is_created_owner_only(tmp_path):
    path = tmp_path / "private.db"
    old = os.umask(0o022)
    try:
        with InProcessGateway(_config(str(path))) as gw:
            assert _post(gw, "/key/generate", b"{}").status_code == 200
    finally:
        os.umask(old)
    for name in ("private.db", "private.db-wal", "private.db-shm"):
        if (tmp_path / name).exists():
            assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name

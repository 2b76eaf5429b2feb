"""The admin API as a LiteLLM user expects it: a key may read its own /key/info, spend shows as
0.3 rather than 0.30000000000000004 (stored exact), reports name keys by alias. The gateway has a
master key and no database_url: keys live in the embedded parley.db."""

from __future__ import annotations

import anthropic
import pytest

from keys_support import Admin
from parley.testing.procs import Gateway, anthropic_deployment

MASTER = "sk-master-niceties"


@pytest.fixture
def gateway(upstream):
    gw = Gateway(
        {
            "model_list": [
                anthropic_deployment("m", upstream, input_cost_per_token=0.1, output_cost_per_token=0)
            ],
            "general_settings": {"master_key": MASTER},
        },
        env={"DATABASE_URL": "", "REDIS_URL": ""},
    )
    yield gw
    gw.stop()


def test_a_key_reads_its_own_info_and_no_other(gateway, upstream):
    admin = Admin(gateway.url, MASTER)
    mine = admin.post("/key/generate", {"key_alias": "mine"})["key"]
    other = admin.post("/key/generate", {"key_alias": "other"})["key"]
    as_key = Admin(gateway.url, mine)
    assert as_key.get("/key/info")["info"]["key_alias"] == "mine"
    assert as_key.get("/key/info", key=mine)["info"]["key_alias"] == "mine"
    assert as_key.call("GET", "/key/info", key=other).status_code == 403  # a key, not an admin key
    assert as_key.call("GET", "/key/list").status_code == 403
    assert Admin(gateway.url, "sk-not-a-key").call("GET", "/key/info").status_code == 401
    assert admin.get("/key/info", key=other)["info"]["key_alias"] == "other"


def test_spend_is_rounded_for_display_and_reports_name_the_alias(gateway, upstream):
    admin = Admin(gateway.url, MASTER)
    key = admin.post("/key/generate", {"key_alias": "team-a"})["key"]
    upstream.script({"api": "anthropic", "usage": {"input_tokens": 3, "output_tokens": 0}})
    client = anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0)
    client.messages.create(model="m", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    [row] = admin.wait_logs(1)
    assert 3 * 0.1 == 0.30000000000000004  # what is stored
    assert row["spend"] == 0.3
    assert Admin(gateway.url, key).get("/key/info")["info"]["spend"] == 0.3
    by_key = admin.get("/spend/report", group_by="key")
    assert [(r["key_alias"], r["spend"]) for r in by_key["data"]] == [("team-a", 0.3)]
    assert by_key["total_spend"] == 0.3
    by_alias = admin.get("/spend/report", group_by="key_alias")
    assert [(r["group"], r["requests"]) for r in by_alias["data"]] == [("team-a", 1)]

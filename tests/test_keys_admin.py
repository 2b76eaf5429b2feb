"""Every admin endpoint, migrations from empty, and restarts, against SQLite and real Postgres.
The gateway runs in process; the test reading the gateway's log uses a `parley serve` process."""

from __future__ import annotations

import asyncio
import hashlib
import time

import anthropic
import pytest

from keys_support import MASTER, Admin, create_pg_database, drop_pg_database, gateway_config, pick_gateway
from parley.testing.inprocess import anthropic_client


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def database_url(request, tmp_path_factory):
    if request.param == "sqlite":
        yield str(tmp_path_factory.mktemp("db") / "parley.db")
        return
    name, url = create_pg_database()
    yield url
    drop_pg_database(name)


@pytest.fixture(scope="module")
def in_process(start_inprocess_module, fake_upstream, database_url):
    gw = start_inprocess_module(gateway_config(fake_upstream, database_url))
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def served(start_gateway, fake_upstream, database_url):
    gw = start_gateway(gateway_config(fake_upstream, database_url))
    yield gw
    gw.stop()


@pytest.fixture
def gateway(request, database_url):  # database_url: parametrizes every test using the gateway
    return pick_gateway(request, "in_process", "served")


@pytest.fixture
def admin(gateway):
    return Admin.of(gateway)


def sdk(gateway, key):
    return anthropic_client(gateway, api_key=key, max_retries=0)


def ask(client, model="claude-sonnet-4-5", **kw):
    return client.messages.create(
        model=model, max_tokens=32, messages=[{"role": "user", "content": "hello"}], **kw
    )


@pytest.mark.process  # reads the gateway's log
def test_generate_returns_key_once_and_stores_only_its_hash(admin, gateway, upstream):
    made = admin.post(
        "/key/generate",
        {
            "key_alias": "gen-1",
            "models": ["claude-*"],
            "max_budget": 5,
            "budget_duration": "1mo",
            "metadata": {"team": "x"},
            "tags": ["proj-a"],
        },
    )
    assert made["key"].startswith("sk-")
    assert made["token"] == hashlib.sha256(made["key"].encode()).hexdigest()
    assert made["key_name"].endswith(made["key"][-4:])
    assert made["budget_reset_at"] and made["max_budget"] == 5.0
    info = admin.get("/key/info", key=made["key"])
    assert info["info"]["key_alias"] == "gen-1"
    assert "key" not in info["info"] and made["key"] not in str(info)
    assert admin.get("/key/info", key=made["token"])["info"]["token"] == made["token"]
    assert ask(sdk(gateway, made["key"])).content[0].text.startswith("Hello")
    assert made["key"] not in gateway.log()


def test_key_update_block_unblock_regenerate_delete(admin, gateway, upstream):
    made = admin.post("/key/generate", {"key_alias": "life"})
    client = sdk(gateway, made["key"])
    ask(client)
    updated = admin.post(
        "/key/update", {"key": made["key"], "max_budget": 2.5, "rpm_limit": 7, "budget_mode": "soft"}
    )
    assert (updated["max_budget"], updated["rpm_limit"], updated["budget_mode"]) == (2.5, 7, "soft")
    assert admin.post("/key/block", {"key": made["key"]})["blocked"] is True
    with pytest.raises(anthropic.AuthenticationError, match="blocked"):
        ask(client)
    assert admin.post("/key/unblock", {"key": made["token"]})["blocked"] is False
    ask(client)
    fresh = admin.post("/key/regenerate", {"key": made["key"]})
    assert fresh["key"] != made["key"] and fresh["key_alias"] == "life"
    with pytest.raises(anthropic.AuthenticationError):
        ask(client)
    ask(sdk(gateway, fresh["key"]))
    again = admin.post(f"/key/{fresh['key']}/regenerate", {"max_budget": 9})
    assert again["max_budget"] == 9.0
    assert admin.post("/key/delete", {"key_aliases": ["life"]})["deleted_keys"] == [again["token"]]
    with pytest.raises(anthropic.AuthenticationError):
        ask(sdk(gateway, again["key"]))
    assert admin.call("POST", "/key/delete", {"keys": [again["key"]]}).status_code == 404


def test_key_list_filters_and_pages(admin):
    team = admin.post("/team/new", {"team_alias": "listing"})["team_id"]
    tokens = [admin.post("/key/generate", {"team_id": team})["token"] for _ in range(3)]
    first = admin.get("/key/list", team_id=team, size=2)
    assert first["total_count"] == 3 and first["total_pages"] == 2 and first["keys"] == tokens[:2]
    second = admin.get("/key/list", team_id=team, size=2, page=2, return_full_object="true")
    assert [k["token"] for k in second["keys"]] == tokens[2:]


def test_users_teams_customers(admin, gateway, upstream):
    user = admin.post(
        "/user/new", {"user_id": "u-crud", "user_email": "a@b.c", "max_budget": 10, "rpm_limit": 5}
    )
    assert user["key"].startswith("sk-") and user["user_email"] == "a@b.c"
    assert admin.post("/user/update", {"user_id": "u-crud", "max_budget": 20})["max_budget"] == 20.0
    info = admin.get("/user/info", user_id="u-crud")
    assert info["user_info"]["max_budget"] == 20.0 and len(info["keys"]) == 1
    assert any(u["user_id"] == "u-crud" for u in admin.get("/user/list", page_size=1000)["users"])

    team = admin.post("/team/new", {"team_id": "t-crud", "team_alias": "crud", "models": ["claude-*"]})
    assert team["models"] == ["claude-*"]
    assert admin.post("/team/update", {"team_id": "t-crud", "tpm_limit": 1000})["tpm_limit"] == 1000
    key = admin.post("/key/generate", {"team_id": "t-crud"})
    assert admin.get("/team/info", team_id="t-crud")["keys"][0]["token"] == key["token"]
    assert any(t["team_id"] == "t-crud" for t in admin.get("/team/list"))
    ask(sdk(gateway, key["key"]))
    admin.post("/team/block", {"team_id": "t-crud"})
    with pytest.raises(anthropic.AuthenticationError, match="team"):
        ask(sdk(gateway, key["key"]))
    admin.post("/team/unblock", {"team_id": "t-crud"})
    ask(sdk(gateway, key["key"]))

    admin.post("/key/update", {"key": key["key"], "end_users": ["c-crud"]})
    cust = admin.post("/customer/new", {"user_id": "c-crud", "alias": "Cust", "max_budget": 3})
    assert cust["alias"] == "Cust"
    assert admin.post("/customer/update", {"user_id": "c-crud", "rpm_limit": 9})["rpm_limit"] == 9
    assert admin.get("/customer/info", end_user_id="c-crud")["max_budget"] == 3.0
    admin.post("/customer/block", {"user_ids": ["c-crud"]})
    with pytest.raises(anthropic.PermissionDeniedError, match="c-crud"):
        ask(sdk(gateway, key["key"]), extra_headers={"x-parley-end-user": "c-crud"})
    admin.post("/customer/unblock", {"user_ids": ["c-crud"]})
    ask(sdk(gateway, key["key"]), extra_headers={"x-parley-end-user": "c-crud"})
    assert any(c["user_id"] == "c-crud" for c in admin.get("/customer/list"))

    assert admin.post("/customer/delete", {"user_ids": ["c-crud"]})
    assert admin.call("GET", "/customer/info", end_user_id="c-crud").status_code == 404
    assert admin.post("/team/delete", {"team_ids": ["t-crud"]})
    assert admin.call("GET", "/team/info", team_id="t-crud").status_code == 404
    assert admin.post("/user/delete", {"user_ids": ["u-crud"]})
    assert admin.call("GET", "/user/info", user_id="u-crud").status_code == 404


def test_spend_logs_filters_and_report(admin, gateway, upstream):
    team = admin.post("/team/new", {"team_alias": "spenders"})["team_id"]
    admin.post("/user/new", {"user_id": "u-spend", "auto_create_key": False})
    key = admin.post("/key/generate", {"team_id": team, "user_id": "u-spend", "tags": ["k-tag"]})
    other = admin.post("/key/generate", {})
    client = sdk(gateway, key["key"])
    start = time.time()
    ask(client, extra_body={"litellm_metadata": {"tags": ["red"], "user": "cust-a"}})
    ask(client, model="claude-haiku-4-5", extra_headers={"x-parley-tags": "blue,green"})
    ask(sdk(gateway, other["key"]))
    rows = admin.wait_logs(2, api_key=key["key"])
    assert len(rows) == 2 and all(r["spend"] > 0 and r["status"] == 200 for r in rows)
    assert {r["user"] for r in rows} == {"u-spend"} and {r["team_id"] for r in rows} == {team}
    assert "litellm_metadata" not in upstream.requests()[0]["body"]
    assert [r["model"] for r in admin.get("/spend/logs", team_id=team, tag="red")["data"]] == [
        "claude-sonnet-4-5"
    ]
    assert len(admin.get("/spend/logs", user_id="u-spend", tag="k-tag")["data"]) == 2
    assert admin.get("/spend/logs", key_alias=key["key_name"])["total"] == 2
    assert [r["end_user"] for r in admin.get("/spend/logs", end_user="cust-a")["data"]] == ["cust-a"]
    assert len(admin.get("/spend/logs", api_key=key["token"], model="claude-haiku-4-5")["data"]) == 1
    assert admin.get("/spend/logs", api_key=key["key"], start_date=time.time() + 60)["total"] == 0
    assert admin.get("/spend/logs", api_key=key["key"], start_date=start - 1)["total"] == 2
    paged = admin.get("/spend/logs", api_key=key["key"], page_size=1, page=2)
    assert paged["total_pages"] == 2 and len(paged["data"]) == 1
    total = sum(r["spend"] for r in rows)
    by_key = admin.get("/spend/report", group_by="key", api_key=key["key"])
    assert by_key["data"][0]["group"] == key["token"]
    assert by_key["total_spend"] == pytest.approx(total) and by_key["total_requests"] == 2
    by_tag = {
        r["group"]: r["spend"] for r in admin.get("/spend/report", group_by="tag", user_id="u-spend")["data"]
    }
    assert set(by_tag) == {"red", "blue", "green", "k-tag"}
    assert by_tag["k-tag"] == pytest.approx(total)
    for group in ("user", "team", "customer", "model"):
        assert admin.get("/spend/report", group_by=group, api_key=key["key"])["total_requests"] == 2
    assert admin.get("/key/info", key=key["key"])["info"]["spend"] == pytest.approx(total)
    assert admin.get("/team/info", team_id=team)["team_info"]["spend"] == pytest.approx(total)
    assert admin.get("/user/info", user_id="u-spend")["user_info"]["spend"] == pytest.approx(total)


def test_admin_errors_are_anthropic_style(admin, gateway):
    wrong = Admin.of(gateway, key="sk-not-master")
    r = wrong.call("POST", "/key/generate", {})
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    made = admin.post("/key/generate", {})
    r = Admin.of(gateway, key=made["key"]).call("GET", "/key/list")
    assert r.status_code == 403 and "not an admin key" in r.json()["error"]["message"]
    boss = admin.post("/user/new", {"user_id": f"boss-{made['token'][:8]}", "user_role": "proxy_admin"})
    assert Admin.of(gateway, key=boss["key"]).call("GET", "/key/list").status_code == 200
    r = admin.raw("POST", "/key/generate", b"{nope")
    assert r.status_code == 400 and r.json()["type"] == "error"
    for body in (
        {"max_budget": "lots"},
        {"models": "claude"},
        {"budget_duration": "soon"},
        {"budget_mode": "hard"},
        {"team_id": "no-such-team"},
    ):
        r = admin.call("POST", "/key/generate", body)
        assert r.status_code == 400, body
        assert r.json()["error"]["type"] == "invalid_request_error"
    assert admin.call("GET", "/key/info", key="sk-unknown").status_code == 404
    assert admin.call("GET", "/spend/report", group_by="planet").status_code == 400
    assert admin.call("GET", "/spend/logs", start_date="yesterday-ish").status_code == 400
    spec = admin.get("/openapi.json")
    for path in (
        "/key/generate",
        "/key/update",
        "/key/delete",
        "/key/info",
        "/key/list",
        "/key/block",
        "/key/unblock",
        "/key/regenerate",
        "/user/new",
        "/team/new",
        "/customer/new",
        "/spend/logs",
        "/spend/report",
    ):
        assert path in spec["paths"]


def test_migrations_from_empty_and_rerun_keeps_rows(database_url):
    import sqlalchemy as sa

    from parley.store import tables as t
    from parley.store.db import current_revision, head_revision, make_engine, migrate

    async def run(url: str) -> None:
        engine = make_engine(url, {})
        try:
            assert await current_revision(engine) is None
            await migrate(engine)
            assert await current_revision(engine) == head_revision()
            async with engine.begin() as conn:
                await conn.execute(
                    sa.insert(t.tags).values(tag="kept", spend=1.5, created_at=1, updated_at=1)
                )
            await migrate(engine)
            async with engine.connect() as conn:
                rows = (await conn.execute(sa.select(t.tags.c.spend))).all()
            assert rows == [(1.5,)]
        finally:
            await engine.dispose()

    if database_url.startswith("postgresql"):
        name, url = create_pg_database()
        try:
            asyncio.run(run(url))
        finally:
            drop_pg_database(name)
    else:
        asyncio.run(run(database_url + ".fresh.db"))


def test_restart_keeps_keys_and_spend(start_inprocess, fake_upstream, upstream, database_url, gateway):
    admin = Admin.of(gateway)
    made = admin.post("/key/generate", {"key_alias": "survivor", "max_budget": 1})
    ask(sdk(gateway, made["key"]))
    gateway.stop()  # graceful (lifespan shutdown): the spend writer flushes
    again = start_inprocess(gateway_config(fake_upstream, database_url))
    try:
        admin = Admin.of(again)
        info = admin.get("/key/info", key=made["key"])["info"]
        assert info["key_alias"] == "survivor" and info["spend"] > 0
        rows = admin.get("/spend/logs", api_key=made["key"])["data"]
        assert len(rows) == 1 and rows[0]["spend"] == pytest.approx(info["spend"])
        ask(sdk(again, made["key"]))
        assert MASTER
    finally:
        again.stop()

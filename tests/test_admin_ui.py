"""The admin web page at /ui, driven by Playwright in Debian's chromium against a real gateway
process: sign in, create a key, make calls with it, see the spend total equal the spend log's,
filter the log by the key, see a failed call's error; non-admin keys are refused; 50,000 spend
rows load the spend page in under 2 s. PARLEY_UI_SCREENSHOTS=dir saves a screenshot of each page."""

from __future__ import annotations

import os
import random
import shutil
import time
import uuid

import anthropic
import pytest
import sqlalchemy as sa

from keys_support import MASTER, Admin
from parley.testing.procs import anthropic_deployment

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = os.environ.get("PARLEY_UI_SCREENSHOTS")
MODEL = "claude-sonnet-4-5"

pytestmark = pytest.mark.process


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (make test installs it: apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


def _config(upstream, db: str) -> dict:
    return {
        "model_list": [anthropic_deployment(MODEL, upstream, model="claude-sonnet-4-5-20250929")],
        "general_settings": {"master_key": MASTER, "database_url": db, "spend_flush_interval": 0.05},
        "router_settings": {"num_retries": 0},
    }


@pytest.fixture(scope="module")
def gateway(start_gateway, fake_upstream, tmp_path_factory):
    return start_gateway(_config(fake_upstream, str(tmp_path_factory.mktemp("ui") / "parley.db")))


def _shot(page, name: str) -> None:
    if SHOTS:
        os.makedirs(SHOTS, exist_ok=True)
        page.screenshot(path=os.path.join(SHOTS, f"ui-{name}.png"), full_page=True)


def _sign_in(page, url: str, key: str) -> None:
    page.goto(url + "/ui")
    page.fill("#signin-key", key)
    page.click("#signin-form button")


def test_sign_in_create_a_key_and_follow_its_spend(browser, gateway, upstream):
    page = browser.new_page()
    _sign_in(page, gateway.url, "sk-wrong")
    page.wait_for_selector("#signin-error:has-text('master key')")
    _shot(page, "signin")
    page.fill("#signin-key", MASTER)
    page.click("#signin-form button")
    page.wait_for_selector("#keys:not([hidden])")

    alias = f"ui-{uuid.uuid4().hex[:6]}"
    page.click("#key-new summary")
    page.fill("#key-form [name=key_alias]", alias)
    page.fill("#key-form [name=max_budget]", "5")
    page.fill("#key-form [name=models]", MODEL)
    page.click("#key-form button")
    page.wait_for_selector("#key-secret:not([hidden])")
    key = page.inner_text("#key-secret-value")
    assert key.startswith("sk-")
    page.wait_for_selector(f"#key-table td:has-text('{alias}')")
    _shot(page, "keys")

    client = anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0)
    for text in ("one", "two", "three"):
        client.messages.create(model=MODEL, max_tokens=16, messages=[{"role": "user", "content": text}])
    upstream.script({"status": 429, "error": {"type": "rate_limit_error", "message": "slow down"}})
    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(model=MODEL, max_tokens=16, messages=[{"role": "user", "content": "four"}])
    admin = Admin(gateway.url)
    rows = admin.wait_logs(4, api_key=key)
    logged = sum(r["spend"] for r in admin.get("/spend/logs", page_size=1000)["data"])

    page.click("nav a[href='#spend']")
    page.wait_for_selector("#spend-chart svg rect")
    shown = page.inner_text("#spend-total")
    assert shown == f"${logged:.6f}" if logged < 1 else f"${logged:.2f}"
    _shot(page, "spend")

    page.click("nav a[href='#logs']")
    page.fill("#log-form [name=key]", key)
    page.click("#log-form button")
    page.wait_for_selector("#log-total:has-text('4')")
    assert page.locator("#log-table tbody tr").count() == len(rows) == 4
    failed = page.locator("#log-table tbody tr.failed")
    assert failed.count() == 1 and "429 rate_limit_error" in failed.inner_text()
    failed.click()
    assert '"error_type": "rate_limit_error"' in page.inner_text("#log-table tr.detail")
    _shot(page, "logs")

    page.click("nav a[href='#models']")
    page.wait_for_selector(f"#model-table td:has-text('{MODEL}')")
    _shot(page, "models")
    page.close()


def test_a_key_that_is_not_an_admin_key_is_refused(browser, gateway):
    key = Admin(gateway.url).post("/key/generate", {})["key"]
    page = browser.new_page()
    _sign_in(page, gateway.url, key)
    page.wait_for_selector("#signin-error:has-text('not an admin key')")
    assert page.locator("#nav").is_hidden()
    page.close()


def test_fifty_thousand_spend_rows_load_in_under_two_seconds(browser, start_gateway, fake_upstream, tmp_path):
    db = str(tmp_path / "parley.db")
    gw = start_gateway(_config(fake_upstream, db))  # creates and migrates the database
    _seed(db, 50_000)
    page = browser.new_page()
    _sign_in(page, gw.url, MASTER)
    page.wait_for_selector("#keys:not([hidden])")
    started = time.monotonic()
    page.click("nav a[href='#spend']")
    page.wait_for_selector("#spend-chart svg rect")
    elapsed = time.monotonic() - started
    assert page.inner_text("#spend-requests") == "50000"
    assert elapsed < 2.0, f"spend page took {elapsed:.2f} s"
    page.close()


def _seed(db: str, count: int) -> None:
    from parley.store import tables as t

    engine = sa.create_engine("sqlite:///" + db)
    now, rng = time.time(), random.Random(3)
    rows = []
    for i in range(count):
        start = now - rng.uniform(0, 30 * 86400)
        rows.append(
            {
                "request_id": f"seed-{i}",
                "key_alias": f"key-{i % 20}",
                "api_key": f"{i % 20:064d}",
                "route": "/v1/messages",
                "model": ("claude-sonnet-4-5", "claude-haiku-4-5", "gpt-5")[i % 3],
                "prompt_tokens": 100,
                "completion_tokens": 50,
                "total_tokens": 150,
                "spend": 0.001,
                "status": 200,
                "start_time": start,
                "end_time": start + 1,
                "day": time.strftime("%Y-%m-%d", time.gmtime(start)),
            }
        )
    with engine.begin() as conn:
        conn.execute(sa.insert(t.spend_logs), rows)
    engine.dispose()

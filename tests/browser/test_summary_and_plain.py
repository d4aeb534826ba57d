"""The summary page of the lab service, and the dashboard of a plain lock server read without JavaScript."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from lablease.testing.lockserver import LockServer, start_lock_server
from tests.browser.conftest import VIEWPORT, playwright_expect
from tests.integration.test_lab_service import DOMAIN, OWNER

pytestmark = [pytest.mark.integration, pytest.mark.browser]
expect = playwright_expect()


def test_the_summary_shows_counts_use_over_the_day_launch_times_and_the_reconcilers_last_pass(lab, page, shot):
    lab.add("node51", "node52", "node53")
    assert lab.lock_many(2).status_code == 200
    assert lab.http.post("/lab/reconcile/").status_code == 200
    page.goto(f"{lab.url}/ui/")
    page.get_by_role("link", name="Summary").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Summary")
    counts = page.locator("table.counts")
    expect(counts.locator("tbody tr")).to_have_text(["dev idle 1 1 0", "dev ready 2 2 2"], use_inner_text=True)
    expect(page.get_by_text("2 locked now")).to_be_visible()
    expect(page.get_by_role("img", name="Nodes locked over the last 24 hours")).to_be_visible()
    launches = page.locator("table.launches tbody tr").first
    expect(launches.locator("th")).to_have_text("dev")
    expect(launches.locator("td").nth(1)).to_have_text(re.compile(r"^\d+\.\d s$"))  # p50
    expect(page.locator("table.reconciler tbody tr").first.locator("th")).to_have_text("dev")
    shot(page, "summary", full_page=True)


@pytest.fixture
def plain(tmp_path) -> Iterator[LockServer]:
    """``lablease serve`` without a libcloud: section: a plain lock server, no lab service."""
    server = start_lock_server(tmp_path / "plain", lab_domain=DOMAIN)
    yield server
    server.stop()


def test_a_plain_lock_server_serves_it_without_cloud_parts_and_all_of_it_works_without_javascript(
        plain, browser, shot):
    with httpx.Client(base_url=plain.url) as http:
        for name, kind in (("smithi001", "smithi"), ("smithi002", "smithi"), ("mira001", "mira")):
            assert http.post("/nodes/", json={"name": f"{name}.{DOMAIN}", "machine_type": kind, "up": True}).is_success
        assert http.post("/nodes/lock_many/", json={"count": 1, "machine_type": "smithi", "locked_by": OWNER,
                                                    "description": "job 7"}).status_code == 200
    context = browser.new_context(java_script_enabled=False, viewport=VIEWPORT)
    page = context.new_page()
    try:
        page.goto(f"{plain.url}/")
        assert page.url == f"{plain.url}/ui/"
        headers = page.locator("thead th a").evaluate_all("links => links.map((a) => a.firstChild.textContent)")
        assert headers == ["Name", "Machine type", "State", "Owner", "Locked since", "Description", "OS", "Address"]
        expect(page.locator('tr[data-node] [data-col="state"]')).to_have_text(["free", "locked", "free"])  # mira001, smithi001, smithi002
        page.get_by_label("Machine type").select_option("smithi")
        page.get_by_label("State").select_option("free")
        page.get_by_role("button", name="Filter").click()  # a plain form GET
        expect(page.locator("tr[data-node] th")).to_have_text([f"smithi002.{DOMAIN}"])
        page.get_by_role("link", name="Clear").click()
        page.get_by_role("link", name="Owner").click()
        page.get_by_role("link", name="Owner").click()
        expect(page.locator('th[aria-sort="descending"]')).to_contain_text("Owner")
        expect(page.locator("tr[data-node] th").first).to_have_text(f"smithi001.{DOMAIN}")
        shot(page, "plain-nodes")

        page.get_by_role("link", name=f"smithi001.{DOMAIN}").click()
        expect(page.get_by_role("heading", name="In the cloud")).to_have_count(0)
        expect(page.locator("table.events tbody tr").first).to_contain_text(OWNER)
        for who, outcome in (("mallory@lab", "Refused: Cannot unlock - locked_by values must match"),
                             (OWNER, "Unlocked.")):
            page.get_by_label("Your name as the lock's owner").fill(who)
            page.get_by_role("button", name="Unlock").click()
            expect(page.get_by_role("heading", level=1)).to_have_text(f"Unlock smithi001.{DOMAIN}?")
            page.get_by_role("button", name=f"Yes, unlock smithi001.{DOMAIN}").click()
            expect(page.locator("#message")).to_contain_text(outcome)
        shot(page, "plain-unlocked")

        page.get_by_role("link", name="Summary").click()
        expect(page.get_by_role("heading", name="Launch times, last 24 hours")).to_have_count(0)
        expect(page.locator("table.counts tfoot")).to_have_text("Total 3 3 0", use_inner_text=True)
    finally:
        context.close()

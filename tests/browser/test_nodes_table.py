"""The nodes table in a browser, against a live lab service with devcloud: live provisioning, filters, sorting."""

from __future__ import annotations

import concurrent.futures
import re

import pytest

from tests.browser.conftest import playwright_expect
from tests.integration.test_lab_service import OWNER

pytestmark = [pytest.mark.integration, pytest.mark.browser]
expect = playwright_expect()

# Collects what every node row showed while the test ran: (node, state, stage) each time the table changed.
WATCH_ROWS = """() => {
  window.seen = [];
  const note = () => document.querySelectorAll("tr[data-node]").forEach((row) => window.seen.push(
    [row.dataset.node, row.dataset.state, row.querySelector('[data-col="stage"]')?.textContent.trim() ?? ""]));
  new MutationObserver(note).observe(document.querySelector("main"), {subtree: true, childList: true, characterData: true});
  window.samePage = true;
}"""
MID_LAUNCH = """() => [...document.querySelectorAll('td[data-col="stage"]')].some(
  (td) => ["create", "boot", "volume", "dns", "ssh"].includes(td.textContent.trim().split(" ")[0]))"""


def test_the_table_shows_nodes_appearing_and_becoming_ready_during_a_lock_many(lab, page, shot):
    names = lab.add("node1", "node2", "node3", "node4", "node5")
    lab.add("node6", machine_type="smithi")  # a plain machine type beside the cloud one, locked by someone else
    assert lab.http.post("/nodes/lock_many/", json={"count": 1, "machine_type": "smithi", "locked_by": "bob@lab",
                                                    "description": "teuthology run 42"}).status_code == 200
    lab.cloud.set_faults({"latency": [{"match": "POST *", "seconds": 0.5}]})  # stages long enough to be seen
    mine = page.context.new_page()
    mine.goto(f"{lab.url}/ui/?owner={OWNER}")
    expect(mine.locator("td.empty")).to_have_text("No node matches these filters.")
    mine.evaluate(WATCH_ROWS)
    page.goto(f"{lab.url}/ui/")
    expect(page.locator("tr[data-node]")).to_have_count(6)
    expect(page.locator('tr[data-state="idle"]')).to_have_count(5)

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        answer = pool.submit(lab.lock_many, 3, request_id="browser-1", os_type="ubuntu", os_version="22.04")
        expect(mine.locator("tr[data-node]")).to_have_count(3)  # they appear under the owner's filter
        page.wait_for_function(MID_LAUNCH)
        shot(page, "lock-many-in-progress", docs="dashboard-nodes.png")
        assert answer.result().status_code == 200, answer.result().text

    expect(mine.locator('tr[data-state="ready"]')).to_have_count(3)
    expect(page.locator('tr[data-state="ready"]')).to_have_count(3)
    shot(mine, "lock-many-ready")
    assert mine.evaluate("window.samePage") is True  # refreshed in place, never reloaded
    seen = mine.evaluate("window.seen")
    for name in names[:3]:
        states = [state for node, state, _ in seen if node == name]
        assert states[0] == "provisioning" and states[-1] == "ready", states
    stages = {stage.split()[0] for _, state, stage in seen if stage}
    assert len(stages & {"auth", "image", "size", "network", "create", "boot", "volume", "dns", "ssh", "ready"}) >= 2, \
        stages
    row = page.locator(f'tr[data-node="{names[0]}"]')
    expect(row.locator('[data-col="owner"]')).to_have_text(OWNER)
    expect(row.locator('[data-col="os"]')).to_have_text("ubuntu 22.04")
    expect(row.locator('[data-col="address"]')).to_have_text(lab.node(names[0])["addresses"][0])
    expect(row.locator('[data-col="since"]')).to_have_text(re.compile(r"^\d+ s$"))  # locked seconds ago


def _names(page) -> list[str]:
    return page.locator("tr[data-node]").evaluate_all("rows => rows.map((r) => r.dataset.node.split('.')[0])")


def test_filters_and_sorting_work_in_place_and_in_the_address(lab, page, shot):
    lab.add("node3", "node4", "node21", "node22")
    lab.add("node30", machine_type="smithi")
    got = lab.http.post("/nodes/lock_many/", json={"count": 1, "machine_type": "smithi", "locked_by": "zed@lab",
                                                   "description": "plain lock"})
    assert got.status_code == 200, got.text
    assert lab.lock_many(2).status_code == 200  # node21, node22 (the first two in name order): alice@lab's
    page.goto(f"{lab.url}/ui/")
    page.evaluate("window.samePage = true")
    assert _names(page) == ["node3", "node4", "node21", "node22", "node30"]  # natural order by name

    page.get_by_label("Machine type").select_option("dev")
    expect(page.locator("tr[data-node]")).to_have_count(4)
    page.get_by_label("State").select_option("ready")
    expect(page.locator("tr[data-node]")).to_have_count(2)
    assert "type=dev" in page.url and "state=ready" in page.url
    page.get_by_label("State").select_option("")
    page.get_by_label("Machine type").select_option("")
    page.get_by_label("Owner").fill("ZED")  # part of the name, any case
    expect(page.locator("tr[data-node]")).to_have_count(1)
    expect(page.locator('tr[data-node] [data-col="state"]')).to_have_text("locked")  # a plain machine type
    page.get_by_label("Owner").fill("")
    expect(page.locator("tr[data-node]")).to_have_count(5)

    page.get_by_role("link", name="Owner").click()
    expect(page.locator('th[aria-sort="ascending"]')).to_have_text("Owner▲")
    assert _names(page)[:3] == ["node21", "node22", "node30"] and "sort=owner" in page.url
    page.get_by_role("link", name="Owner").click()
    expect(page.locator('th[aria-sort="descending"]')).to_have_text("Owner▼")
    assert _names(page)[:3] == ["node30", "node21", "node22"]  # nodes without an owner stay last
    page.get_by_role("link", name="State").click()
    expect(page.locator('th[aria-sort="ascending"]')).to_have_text("State▲")
    assert _names(page) == ["node3", "node4", "node30", "node21", "node22"]  # idle, idle, locked, ready, ready
    shot(page, "sorted-by-state")
    assert page.evaluate("window.samePage") is True

    page.go_back()  # the address holds the view: back is the previous sort
    expect(page.locator('th[aria-sort="descending"]')).to_have_text("Owner▼")
    page.reload()
    expect(page.locator('th[aria-sort="descending"]')).to_have_text("Owner▼")

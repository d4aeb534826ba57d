"""The usage page in a browser, against a live lab service with devcloud: node-hours per owner and type, a chart."""

from __future__ import annotations

import pytest

from tests.browser.conftest import playwright_expect
from tests.integration.test_lab_service import OWNER

pytestmark = [pytest.mark.integration, pytest.mark.browser]
expect = playwright_expect()


def test_the_usage_page_shows_node_hours_per_owner_and_per_machine_type_with_a_chart_of_nodes_in_use(
        lab, page, shot):
    names = lab.add("node51", "node52")
    assert lab.lock_many(2).status_code == 200
    assert lab.unlock_many(names[:1]).status_code == 200  # one lock ended, one still in use
    report = lab.http.get("/lab/usage/", params={"by": "owner", "since": "2000-01-01"}).json()
    page.goto(f"{lab.url}/ui/summary")
    page.get_by_role("link", name="Usage").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Usage")
    row = page.locator("table.usage tbody tr", has_text=OWNER)
    expect(row).to_have_count(1)
    expect(row.locator("td").nth(2)).to_have_text(str(next(r["locks"] for r in report["rows"] if r["key"] == OWNER)))
    expect(page.locator("figure.chart svg path.line")).to_have_count(1)
    expect(page.locator("figure.chart")).to_contain_text("in use")
    shot(page, "usage-owner", docs="dashboard-usage.png")
    page.select_option("#by", "type")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("table.usage tbody th")).to_have_text(["dev"])  # every node of these tests, removed or not
    shot(page, "usage-type")

"""A node's page in a browser, against a live lab service with devcloud: record, cloud parts, history, unlock."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.browser.conftest import playwright_expect
from tests.integration.test_lab_service import OWNER

pytestmark = [pytest.mark.integration, pytest.mark.browser]
expect = playwright_expect()


def test_the_node_page_shows_its_record_its_cloud_parts_every_event_with_its_error_and_the_failed_boots_console(
        lab, page, shot, tmp_path):
    [name] = lab.add("node41")  # a name no other test uses: its events outlive the record
    lab.cloud.set_faults({"boot_error": {"match_name": "node41", "console": "Kernel panic - not syncing: test"}})
    failed = lab.lock_many(1)  # both attempts fail at boot: undone, 503 with the cloud's reason
    assert failed.status_code == 503 and "went to ERROR" in failed.json()["message"], failed.text
    lab.cloud.clear_faults()
    assert lab.lock_many(1, openstack={"volumes": {"count": 1, "size": 1}}).status_code == 200
    node = lab.node(name)
    [volume] = lab.cloud.resources()["volumes"]
    page.goto(f"{lab.url}/ui/")
    page.get_by_role("link", name=name).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(name)
    expect(page.locator("#node-region .badge").first).to_have_text("ready")
    cloud = page.locator("section", has=page.get_by_role("heading", name="In the cloud"))
    for text in (node["cloud_server_id"], volume["id"], node["addresses"][0], "SHA256:"):
        expect(cloud).to_contain_text(text)
    expect(cloud.locator("dd").nth(2)).to_have_text(name)  # the DNS name

    events = page.locator("table.events tbody tr")
    trail = lab.http.get(f"/nodes/{name}/events/").json()
    bookkeeping = [e for e in trail if e["action"] in ("attempt", "lease")]
    grouped = events.filter(has=page.locator("details"))  # lease and attempt updates: one line per stretch
    expect(events).to_have_count(len(trail) - len(bookkeeping) + grouped.count())
    assert 0 < grouped.count() < len(bookkeeping)
    expect(grouped.locator("details li")).to_have_count(len(bookkeeping))  # every one still there, one click away
    moves = events.filter(has_text="state: ")
    expect(moves.first).to_contain_text("provisioning → ready")  # newest first
    expect(moves.first.locator("td").nth(2)).to_have_text("lablease")  # who: the service
    expect(moves.last).to_contain_text("idle → provisioning")
    expect(moves.last.locator("td").nth(2)).to_have_text(OWNER)  # who: the lock's owner
    undone = moves.filter(has_text="provisioning → idle")  # its attempts made nothing left: freed at once
    expect(undone.locator("td.error-text")).to_contain_text("went to ERROR: No valid host was found")
    for attempt in ("status=retry attempt=1", "status=failed attempt=2"):
        expect(events.filter(has_text=f"stage=boot {attempt}").locator("td.error-text")).to_contain_text("went to ERROR")
    expect(events.filter(has_text="stage=ssh").first).to_be_visible()
    consoles = page.locator("section", has=page.get_by_role("heading", name="Console log of a failed boot"))
    expect(consoles.locator("pre.console")).to_have_count(2)  # the retried attempt's and the failed one's
    expect(consoles.locator("pre.console").first).to_contain_text("Kernel panic - not syncing: test")
    shot(page, "node-page", full_page=True)
    consoles.screenshot(path=str(tmp_path / "console.png"))
    if os.environ.get("LABLEASE_DOCS_SCREENSHOTS"):  # the docs' picture of the node page's console section
        shutil.copyfile(tmp_path / "console.png", Path(os.environ["LABLEASE_DOCS_SCREENSHOTS"]) / "dashboard-console.png")


def test_unlock_from_the_page_is_refused_with_the_apis_message_unless_by_the_owner(lab, page, shot):
    [name] = lab.add("node42")
    assert lab.lock_many(1).status_code == 200
    page.goto(f"{lab.url}/ui/nodes/{name}")
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.accept() if len(dialogs) != 2 else d.dismiss()))
    owner = page.get_by_label("Your name as the lock's owner")
    unlock = page.get_by_role("button", name="Unlock and destroy")

    owner.fill("mallory@lab")
    unlock.click()
    api = lab.unlock_many([name], owner="mallory@lab")  # what the API answers the same request
    assert api.status_code == 403
    expect(page.get_by_role("alert")).to_have_text(f"Refused: {api.json()['message']}")
    assert "locked_by values must match" in api.json()["message"]
    assert (lab.node(name)["state"], len(lab.cloud.resources()["servers"])) == ("ready", 1)
    expect(owner).to_have_value("mallory@lab")  # what was typed stays
    shot(page, "unlock-refused")

    owner.fill(OWNER)
    unlock.click()  # the second dialog is dismissed: nothing is sent
    assert lab.node(name)["locked"] is True
    unlock.click()
    expect(page.get_by_role("status")).to_have_text("Unlocked.")
    assert dialogs[0] == f"Unlock {name} and destroy its server, volumes and DNS name?" and len(dialogs) == 3
    lab.assert_nothing_left([name])
    expect(page.locator("#node-region .badge").first).to_have_text("idle")
    shot(page, "unlocked")

    page.goto(f"{lab.url}/ui/")  # the browser remembers who the user is
    expect(page.get_by_role("link", name=f"Mine ({OWNER})")).to_be_visible()

"""Browser tests of the dashboard: Playwright's Python package driving Debian's chromium.

The lab service is set up as in the integration tests (``tests/integration/test_lab_service.py``: its
``Lab``, devcloud with a real sshd per server, BIND, the DNS service, ``lablease serve`` on SQLite),
but once for all of them: starting it takes seconds, so each test gets it emptied instead (``lab``). Chromium is
``/usr/bin/chromium`` from ``scripts/system-packages.sh``, never a browser Playwright downloads;
without it, or without the ``playwright`` package, every browser test here errors, saying what to install.
Each test saves screenshots in its own ``tmp_path`` (pytest prints where with ``-rA``); set
``LABLEASE_DOCS_SCREENSHOTS=docs`` to also refresh the README's screenshot.
"""

from __future__ import annotations

import concurrent.futures
import importlib.util
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lablease.provision.devlab import devcloud_lab_data, generate_lab_key
from lablease.testing.bind import start_bind
from lablease.testing.components import MissingComponent, require_file
from lablease.testing.devcloud import _merge, start_devcloud
from lablease.testing.dns import start_dns_service
from lablease.testing.lockserver import start_lock_server
from tests.fixtures.devcloud import TEST_DEFAULTS
from tests.integration.test_lab_service import CLOUD, DOMAIN, Lab

CHROMIUM = os.environ.get("LABLEASE_CHROMIUM", "/usr/bin/chromium")
# As root on a closed network: no sandbox, and nothing that phones home (its connections would be refused).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
VIEWPORT = {"width": 1360, "height": 760}


NO_PLAYWRIGHT = "the playwright package is not installed (.venv/bin/pip install -e '.[test]')"


def require_browser(chromium: str = CHROMIUM) -> None:
    """Raise MissingComponent, saying how to install it, when the playwright package or ``chromium`` is missing."""
    if importlib.util.find_spec("playwright") is None:
        raise MissingComponent(NO_PLAYWRIGHT)
    require_file(chromium, package="chromium", what="chromium (the browser tests' browser, driven by Playwright)")


def playwright_expect() -> Callable:
    """Playwright's ``expect`` for the test modules; MissingComponent (how to install it) when it is missing."""
    try:
        from playwright.sync_api import expect
    except ImportError as exc:
        raise MissingComponent(NO_PLAYWRIGHT) from exc
    return expect


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item) -> None:
    """A browser test errors, saying what is missing and how to install it, before any server starts for it:
    a skipped browser test would let CI pass without the dashboard ever being driven."""
    if item.get_closest_marker("browser") is not None:
        require_browser()


@pytest.fixture(scope="package")
def browser() -> Iterator:
    """One headless chromium for these tests (each test gets its own context: cookies and storage apart)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        # Playwright gives every launch a new, empty profile directory of its own (--user-data-dir).
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def shot(tmp_path: Path) -> Callable:
    """``shot(page, name)`` saves ``<tmp_path>/<name>.png``; with LABLEASE_DOCS_SCREENSHOTS set, ``docs=NAME``
    also saves the page there as NAME (the README's picture)."""
    def save(page, name: str, *, docs: str | None = None, full_page: bool = False) -> Path:
        path = tmp_path / f"{name}.png"
        target = os.environ.get("LABLEASE_DOCS_SCREENSHOTS")
        if docs and target:  # one capture of the page's content only, without the empty window below it
            height = page.evaluate("Math.ceil(document.body.getBoundingClientRect().height)")
            page.screenshot(path=str(path), clip={"x": 0, "y": 0, "width": VIEWPORT["width"], "height": height})
            shutil.copyfile(path, Path(target) / docs)
        else:
            page.screenshot(path=str(path), full_page=full_page)
        return path
    return save


@pytest.fixture
def page(browser, tmp_path: Path) -> Iterator:
    """A page with JavaScript, in a fresh context; its last view is saved as ``final.png`` in the test's tmp_path."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    try:
        page.screenshot(path=str(tmp_path / "final.png"), full_page=True)
    finally:
        context.close()


@pytest.fixture(scope="package")
def lab_service(tmp_path_factory) -> Iterator[Lab]:
    """The lab service of test_lab_service's ``lab`` fixture (same cloud and config), started once for these tests."""
    work = tmp_path_factory.mktemp("lab-service")
    started = []
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:  # the two slowest starts overlap
            starting = [pool.submit(start_devcloud, work / "devcloud", _merge(TEST_DEFAULTS, CLOUD)),
                        pool.submit(start_bind, work / "bind")]
            for future in concurrent.futures.as_completed(starting):
                if future.exception() is None:
                    started.append(future.result())
        cloud, bind = (f.result() for f in starting)
        dns = start_dns_service(work / "dns", bind)
        started.append(dns)
        key = generate_lab_key(work / "lab_key")
        top = devcloud_lab_data(cloud, key, nsupdate_url=dns.update_url, lab_domain=DOMAIN, machine_type="dev",
                                max_parallel=10, launch_retries=2, boot_timeout=30, ready_timeout=30,
                                delete_timeout=4)
        db_url = f"sqlite:///{work / 'lab.db'}"
        server = start_lock_server(work / "lab", database_url=db_url, lab_domain=DOMAIN, top=top)
        started.append(server)
        service = Lab(server.url, cloud, bind, key, db_url, server)
        yield service
        service.http.close()
    finally:
        for handle in reversed(started):
            handle.stop()


@pytest.fixture
def lab(lab_service: Lab) -> Lab:
    """The lab service, emptied: no faults, every node unlocked (destroyed) and removed.

    Node events outlive their records, so a test that reads a node's history uses names no other test uses.
    """
    lab_service.cloud.clear_faults()
    nodes = lab_service.http.get("/nodes/").json()
    owners = {n["locked_by"] for n in nodes if n["locked"]}
    for owner in owners:
        names = [n["name"] for n in nodes if n["locked"] and n["locked_by"] == owner]
        assert lab_service.unlock_many(names, owner=owner).status_code == 200
    for node in nodes:
        assert lab_service.http.delete(f"/nodes/{node['name']}/").status_code == 200
    return lab_service

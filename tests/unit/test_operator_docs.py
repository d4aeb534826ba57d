"""What the operator pages say about the code holds: states, the Python API, the systemd units.

Facts only (no services): each check reads a page of docs/ and compares it with the code it names.
"""

from __future__ import annotations

import re
from pathlib import Path

from lablease.store import NodeStore
from lablease.store.lifecycle import NodeState

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_states_docs_lockserver_md_lists_are_exactly_the_node_states():
    text = " ".join((DOCS / "lockserver.md").read_text().split())
    listed = re.search(r"`state` \(([^)]*?)(?::[^)]*)?\)", text)
    assert listed, "docs/lockserver.md no longer lists the states after `state` ("
    assert set(re.findall(r"`([\w-]+)`", listed[1])) == {s.value for s in NodeState}


def test_every_store_method_of_docs_lockserver_md_python_api_exists():
    text = (DOCS / "lockserver.md").read_text()
    block = text[text.index("## Python API"):].split("```")[1]
    named = set(re.findall(r"\bstore\.(\w+)\(", block))
    assert named and "lock_many" in named
    assert sorted(n for n in named if not callable(getattr(NodeStore, n, None))) == []


def _units() -> list[tuple[str, str]]:
    """Every systemd unit of docs/: the files of docs/systemd/ and each ``[Service]`` block of a page."""
    units = [(f"docs/systemd/{p.name}", p.read_text()) for p in sorted((DOCS / "systemd").glob("*.service"))]
    for page in sorted(DOCS.glob("*.md")):
        blocks = re.findall(r"```ini\n(.*?)```", page.read_text(), re.DOTALL)
        units += [(f"docs/{page.name}", b) for b in blocks if "[Service]" in b and "ExecStart=" in b]
    return units


def _settings(unit: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in unit.splitlines() if re.match(r"^\w+=", line))


def test_every_systemd_unit_in_the_docs_stops_as_lab_service_md_says_it_must():
    """SIGTERM to the main process, then SIGKILL to what is left only after TimeoutStopSec: long enough for
    the lab service's drain (shutdown_timeout, then up to max(shutdown_timeout, 60) s of rollback)."""
    from lablease.lockapi.settings import LabSection

    drain = LabSection().shutdown_timeout
    drain += max(drain, 60)
    units = _units()
    assert {where for where, _ in units} >= {"docs/lockserver.md", "docs/lab-service.md",
                                            "docs/systemd/lablease.service", "docs/systemd/lablease-dns.service"}
    for where, unit in units:
        settings = _settings(unit)
        assert settings.get("KillSignal") == "SIGTERM", where
        assert settings.get("KillMode") == "mixed", where
        assert "TimeoutStopSec" in settings, where
        if " dns serve" not in settings["ExecStart"]:
            assert int(settings["TimeoutStopSec"]) > drain, where

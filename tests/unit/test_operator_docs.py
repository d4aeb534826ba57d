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

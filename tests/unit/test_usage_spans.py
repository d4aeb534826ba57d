"""Usage from node events (lab.usage): in use from ready to destroying, provisioning apart, clipped to the period."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from lablease.lab.usage import Trail, in_use_points, last_use_ended, report, spans

T0 = datetime(2026, 12, 1, 10, 0, 0)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def locked_sequence(node: str, owner: str, lock: float, ready: float, unlock: float) -> list[Trail]:
    return [Trail(node, at(lock), {"state": "provisioning", "locked": True, "locked_by": owner}),
            Trail(node, at(lock + 0.5), {"attempt_id": "1-a", "provider": "ovh"}),
            Trail(node, at(ready), {"state": "ready", "seconds": ready - lock}),
            Trail(node, at(unlock), {"state": "destroying"}),
            Trail(node, at(unlock + 3), {"state": "idle", "locked": False, "locked_by": None})]


def test_a_lock_is_in_use_from_ready_to_destroying_and_provisioning_is_counted_apart():
    trail = locked_sequence("n1", "alice", 0, 40, 100) + locked_sequence("n1", "bob", 200, 230, 330)
    rows = {r["key"]: r for r in report(spans(trail, {"n1": "ovh"}), T0, at(1000), "owner", {"ovh": 3.6})["rows"]}
    assert (rows["alice"]["node_seconds"], rows["alice"]["provisioning_seconds"]) == (60, 40)
    assert (rows["bob"]["node_seconds"], rows["bob"]["provisioning_seconds"], rows["bob"]["locks"]) == (100, 30, 1)
    assert rows["alice"]["cost"] == pytest.approx(0.1)  # 100 s at 3.6 per hour


def test_a_period_clips_the_spans_and_a_lock_still_held_counts_up_to_its_end():
    trail = locked_sequence("n1", "alice", 0, 40, 100)[:3]  # never unlocked
    [row] = report(spans(trail, {"n1": "ovh"}), at(50), at(80), "type", {})["rows"]
    assert (row["key"], row["node_seconds"], row["provisioning_seconds"], row["cost"]) == ("ovh", 30, 0, None)


def test_a_warm_claim_is_in_use_from_the_claim_and_an_unlocked_warm_node_is_nobodys():
    trail = [Trail("w1", at(0), {"state": "provisioning", "locked": True, "locked_by": "lablease-pool"}),
             Trail("w1", at(30), {"state": "ready"}),
             Trail("w1", at(31), {"locked": False, "warm": True}),
             Trail("w1", at(100), {"locked": True, "locked_by": "alice", "warm": True}),
             Trail("w1", at(160), {"state": "destroying"})]
    found = spans(trail, {"w1": "ovh"})
    rows = {r["key"]: r for r in report(found, T0, at(200), "owner", {})["rows"]}
    assert rows["alice"]["node_seconds"] == 60 and rows["lablease-pool"]["node_seconds"] == 1
    assert last_use_ended(trail, "ovh").owner == "alice"
    assert in_use_points(found, T0, at(200)) == [(T0, 0), (at(30), 1), (at(31), 0), (at(100), 1), (at(160), 0),
                                                 (at(200), 0)]


def test_a_failed_launch_counts_only_as_provisioning_and_is_not_a_used_lock():
    trail = [Trail("n2", at(0), {"state": "provisioning", "locked": True, "locked_by": "alice"}),
             Trail("n2", at(12), {"state": "idle", "locked": False, "locked_by": None, "last_error": "boot"})]
    [row] = report(spans(trail, {"n2": "ovh"}), T0, at(50), "owner", {})["rows"]
    assert (row["node_seconds"], row["provisioning_seconds"], row["locks"]) == (0, 12, 0)
    assert last_use_ended(trail, "ovh") is None

"""The dashboard's rules without a browser: history from events, the chart, the table's filters and sort."""

from __future__ import annotations

from datetime import datetime, timedelta

from lablease.lab.bus import LabEvent
from lablease.dashboard.chart import step_chart
from lablease.dashboard.history import (
    Event,
    hourly_peaks,
    in_use,
    launch_times,
    percentile,
)
from lablease.dashboard.stages import StageTracker
from lablease.dashboard.views import TableQuery, choices, make_row, select_rows

NOW = datetime(2026, 11, 25, 12, 0, 0)
SINCE = NOW - timedelta(hours=24)


def _lock(node: str, hours_ago: float, locked: bool) -> Event:
    return Event(node, NOW - timedelta(hours=hours_ago), {"locked": not locked}, {"locked": locked})


def test_nodes_in_use_are_worked_back_from_todays_records_and_the_days_lock_changes():
    events = [_lock("a", 20, False), _lock("b", 10, True), _lock("c", 5, True), _lock("e", 3, False),
              _lock("c", 2, False), Event("b", NOW - timedelta(hours=1), {}, {"stage": "ssh"})]  # no lock change
    # a was locked before the window and unlocked in it; b and c locked in it; d locked all day; e deleted since.
    points = in_use(events, {"a": False, "b": True, "c": False, "d": True}, SINCE, NOW)
    assert [c for _, c in points] == [3, 2, 3, 4, 3, 2, 2]
    peaks = hourly_peaks(points, SINCE, 24)
    assert len(peaks) == 24 and peaks[0] == (SINCE, 3) and max(n for _, n in peaks) == 4 and peaks[-1][1] == 2


def test_launch_times_are_p50_and_p95_of_provisioning_to_ready_per_machine_type():
    ready = [Event(f"n{i}", NOW, {"state": "provisioning"}, {"state": "ready", "seconds": float(i)})
             for i in range(1, 21)]
    other = Event("n1", NOW, {"state": "destroying"}, {"state": "idle", "seconds": 99.0})
    [got] = launch_times([*ready, other], {f"n{i}": "ovh" for i in range(1, 21)})
    assert (got.machine_type, got.count, got.p50, got.p95) == ("ovh", 20, 10.0, 19.0)
    assert percentile([4.0], 95) == 4.0


def test_the_step_chart_draws_every_change_inside_its_box():
    chart = step_chart([(SINCE, 1), (NOW - timedelta(hours=12), 3), (NOW, 3)], SINCE, NOW, width=240, height=30)
    assert chart.path == "M0.0,20.0 H120.0 V0.0 H240.0" and chart.top == 3
    assert chart.area.endswith("V30 H0 Z") and [v for _, v in chart.y_ticks] == [3, 1, 0]
    assert len(chart.x_ticks) == 8  # every third hour


def _row(name: str, **node):
    return make_row({"name": name, **node}, node.pop("cloud", True), None, NOW)


def test_rows_filter_by_type_state_and_owner_and_sort_with_empty_values_last():
    rows = [_row("node10", machine_type="ovh", state="ready", locked_by="Alice@lab", locked=True,
                 locked_since="2026-11-25 09:55:00"),
            _row("node2", machine_type="ovh", state="idle", up=False),
            _row("node9", machine_type="smithi", locked=True, locked_by="bob", locked_since="2026-11-25 11:59:30",
                 cloud=False)]
    assert [r.state for r in rows] == ["ready", "idle", "locked"] and rows[0].since_text == "2 h 5 min"
    assert [r.name for r in select_rows(rows, TableQuery())] == ["node2", "node9", "node10"]  # natural order
    assert [r.name for r in select_rows(rows, TableQuery(owner="alice"))] == ["node10"]
    assert [r.name for r in select_rows(rows, TableQuery(state="down"))] == ["node2"]
    assert [r.name for r in select_rows(rows, TableQuery(type="ovh", state="ready"))] == ["node10"]
    assert [r.name for r in select_rows(rows, TableQuery(sort="since", desc=True))] == ["node9", "node10", "node2"]
    assert [r.name for r in select_rows(rows, TableQuery(sort="owner"))] == ["node10", "node9", "node2"]
    query = TableQuery.parse({"sort": "owner", "type": "ovh", "bogus": "x"})
    assert query.sort_link("owner") == "?type=ovh&sort=owner&dir=desc" and query.aria_sort("owner") == "ascending"
    assert TableQuery.parse({"sort": "'; drop"}).sort == "name"
    offered = choices(rows, cloud=True)
    assert offered.types == ["ovh", "smithi"] and offered.owners == ["Alice@lab", "bob"]
    assert offered.states == ["idle", "provisioning", "ready", "destroying", "destroy-failed", "locked", "down"]


def test_a_busy_node_shows_its_latest_stage_and_a_settled_one_none():
    stages = StageTracker()
    stages(LabEvent(node="node1", machine_type="ovh", stage="boot", status="start"))
    stages(LabEvent(node="node1", machine_type="ovh", stage="ssh", status="retry", attempt=2))
    busy = make_row({"name": "node1", "state": "provisioning"}, True, stages, NOW)
    settled = make_row({"name": "node1", "state": "ready"}, True, stages, NOW)
    assert (busy.stage_text, settled.stage_text) == ("ssh retry (attempt 2)", "")


def test_lease_and_attempt_bookkeeping_between_two_state_moves_is_one_line_in_the_node_history():
    from lablease.dashboard.pages import EventLine, group_bookkeeping

    def line(action: str, change: str, error: str = "") -> EventLine:
        return EventLine("2026-11-25 12:00:00", action, "lablease", change, error, None)

    newest_first = [line("state", "state: destroying → idle"), line("lease", "lease_owner: a → b"),
                    line("stage", "stage=ssh"), line("attempt", "dns_written: False → True"),
                    line("attempt", "cloud_server_id: None → s1"), line("state", "state: idle → provisioning"),
                    line("attempt", "attempt_id: None → 1")]
    got = group_bookkeeping(newest_first)
    assert [g.action for g in got] == ["state", "bookkeeping", "stage", "state", "bookkeeping"]
    assert [d.change for d in got[1].details] == ["lease_owner: a → b", "dns_written: False → True",
                                                  "cloud_server_id: None → s1"]
    assert got[1].change == "3 lease and attempt updates" and len(got[4].details) == 1

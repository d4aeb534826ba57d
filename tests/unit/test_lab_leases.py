"""Lease owner ids tell a dead process of this host from a live one, even after its pid was reused."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import datetime, timedelta

from lablease.lab.leases import Owner, abandoned, gone_here, new_owner, start_time


def _dead_pid_owner() -> str:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    owner = f"{socket.gethostname()[:32]}:{proc.pid}:{start_time(proc.pid)}:deadbeef"
    proc.wait()
    return owner


def test_this_process_is_alive_and_a_finished_one_is_gone():
    assert not gone_here(new_owner())
    assert gone_here(_dead_pid_owner())


def test_a_live_pid_with_another_start_time_is_a_reused_pid_so_its_old_owner_is_gone():
    me = Owner.parse(new_owner())
    assert me is not None and me.pid == os.getpid()
    assert gone_here(f"{me.host}:{me.pid}:{int(me.start or 0) - 1}:deadbeef")


def test_owners_of_other_hosts_and_old_ids_cannot_be_told_dead():
    assert not gone_here(f"elsewhere:{os.getpid() + 999999}:123:deadbeef")
    assert not gone_here(f"{socket.gethostname()}-1234-deadbeef")  # the old host-pid-random form
    assert not gone_here(None)


def test_a_lease_is_free_to_take_when_expired_or_its_owner_is_gone_here():
    now = datetime(2026, 1, 1)
    later = now + timedelta(seconds=30)
    assert not abandoned("elsewhere:1:1:x", later, now)
    assert abandoned("elsewhere:1:1:x", now - timedelta(seconds=1), now)
    assert abandoned(_dead_pid_owner(), later, now)

"""Provisioner.cancel(): waits stop at once, nothing new starts, rollbacks still finish; and the signal helper.

The cloud is the in-memory fake of test_provision_engine (the adapter boundary); readiness is the
real SSHProbe against a loopback port nothing listens on.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

import paramiko
import pytest

from lablease.interrupts import AGAIN, FIRST, Interrupts, rollback_on_signal
from lablease.provision.errors import ProvisionError
from lablease.provision.models import CreateRequest
from lablease.provision.readiness import SSHProbe
from lablease.provision.waiting import poll
from lablease.testing.waiting import wait_until
from tests.unit.test_provision_engine import FakeCloud, FakeDNS, FakeProbe, lab_key, make  # noqa: F401 - fixture

QUICK = 1.0  # how soon after cancel() a wait must have given up


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class CountingProbe(SSHProbe):
    """The real SSHProbe, counting its refused TCP tries: a try after the SSH stage began shows the wait is on."""

    refused = 0

    def _port_open(self, host, timeout):
        sock = super()._port_open(host, timeout)
        if sock is None:
            self.refused += 1
        return sock


def _real_probe(lab_key) -> CountingProbe:
    return CountingProbe(user="u", key=paramiko.PKey.from_path(str(lab_key)), port=_closed_port())


def _slow(prov) -> None:
    """Poll as a real engine does (up to 5 s apart), so a wait that ignores cancel shows."""
    prov.lifecycle.poll_first, prov.lifecycle.poll_cap = 1.0, 5.0


class InBackground:
    """Run ``fn`` on a thread; keep what it returned or raised."""

    def __init__(self, fn):
        self.result = self.error = None

        def run():
            try:
                self.result = fn()
            except BaseException as exc:  # noqa: BLE001 - the test looks at it
                self.error = exc

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def join_after(self, cancel) -> float:
        """Call ``cancel`` (at ``self.cancelled_at``); the seconds until the thread was done."""
        self.cancelled_at = time.monotonic()
        cancel()
        self.thread.join(30)
        assert not self.thread.is_alive()
        return time.monotonic() - self.cancelled_at


class SlowDeleteCloud(FakeCloud):
    """Deleted servers linger for a look, as in a real cloud: a rollback has to wait them out."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.deleting: dict[str, int] = {}
        self.deleted_at: float | None = None

    def delete_server(self, server_id):
        self._maybe_fail("delete_server")
        with self.lock:
            self.deleted_at = time.monotonic()
            if server_id in self.servers:
                self.deleting[server_id] = 1

    def get_server(self, server_id):
        with self.lock:
            left = self.deleting.get(server_id)
            if left is not None:
                self.deleting[server_id] -= 1
                if left <= 0:
                    self.servers.pop(server_id, None)
                    del self.deleting[server_id]
        return super().get_server(server_id)


def test_poll_raises_the_cancel_error_within_a_fraction_of_a_second_instead_of_sleeping_out_its_delay():
    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="stopped"):
        poll(lambda: None, 600, lambda: TimeoutError("late"), first=5.0, cap=5.0, cancel=cancel,
             on_cancel=lambda: RuntimeError("stopped"))
    assert time.monotonic() - start < QUICK


def test_cancel_during_a_long_boot_poll_returns_at_once_and_the_rollback_removes_everything(lab_key):
    dns = FakeDNS()
    prov, cloud = make(lab_key, cloud=SlowDeleteCloud(boot_polls=10**9), dns=dns, boot_timeout=600)
    _slow(prov)
    job = InBackground(lambda: prov.create("node1", "ubuntu", "22.04", {"volumes": {"count": 1, "size": 5}}))
    wait_until(lambda: cloud.polls_total() >= 1, what="the first boot poll", interval=0.01)
    job.join_after(prov.cancel)
    assert cloud.deleted_at - job.cancelled_at < QUICK  # the boot wait gave up at once; the rollback began
    assert isinstance(job.error, ProvisionError) and job.error.kind == "cancelled", job.error
    assert "rollback incomplete" not in str(job.error)  # teardown's own waits were not cancelled
    assert not cloud.servers and not cloud.volumes and dns.records == {}
    assert cloud.calls["create_server"] == 1 and prov.cancelled


@pytest.mark.parametrize("early", [True, False], ids=["early-probe", "probe-after-boot"])
def test_cancel_during_the_ssh_wait_returns_at_once_and_the_node_is_rolled_back(lab_key, early):
    dns = FakeDNS()
    probe = _real_probe(lab_key)
    stages = []
    prov, cloud = make(lab_key, cloud=FakeCloud(address_at_create=early), dns=dns, probe=probe, ready_timeout=600,
                       on_progress=lambda event: stages.append((event.stage, event.status)))
    job = InBackground(lambda: prov.create("node1", "ubuntu", "22.04"))
    wait_until(lambda: ("ssh", "start") in stages, what="the SSH stage to start", timeout=10, interval=0.01)
    refused = probe.refused
    wait_until(lambda: probe.refused > refused, what="a refused SSH try after the SSH stage began", timeout=10,
               interval=0.01)
    seconds = job.join_after(prov.cancel)
    assert seconds < QUICK
    assert isinstance(job.error, ProvisionError) and job.error.kind == "cancelled", job.error
    assert job.error.stage.value == "ssh"
    assert not cloud.servers and dns.records == {} and cloud.calls["create_server"] == 1


def test_no_new_attempt_starts_after_cancel(lab_key):
    cloud = FakeCloud()
    cloud.error_servers = 1  # the first attempt fails and would be retried
    prov, _ = make(lab_key, cloud=cloud, launch_retries=3,
                   on_progress=lambda event: prov.cancel() if event.status == "retry" else None)
    with pytest.raises(ProvisionError) as err:
        prov.create("node1", "ubuntu", "22.04")
    assert err.value.kind == "cancelled" and cloud.calls["create_server"] == 1 and not cloud.servers


def test_create_many_after_cancel_starts_no_node_and_destroys_the_ones_that_came_up(lab_key):
    cloud = FakeCloud()
    def on_progress(event):
        if event.stage == "ready" and event.node == "node0":
            prov.cancel()  # node0 is up; node1..3 are not started yet

    prov, _ = make(lab_key, cloud=cloud, probe=FakeProbe(delay=0.05), on_progress=on_progress, max_parallel=1)
    outcomes = prov.create_many([CreateRequest(f"node{i}", "ubuntu", "22.04") for i in range(4)])
    assert [o.ok for o in outcomes] == [False] * 4
    assert all(o.error.kind == "cancelled" for o in outcomes), [str(o.error) for o in outcomes]
    assert "destroyed again because the create was cancelled" in outcomes[0].error.message
    assert cloud.calls["create_server"] == 1 and not cloud.servers


def test_reset_accepts_creates_again_and_destroy_is_never_cancelled(lab_key):
    prov, cloud = make(lab_key)
    node = prov.create("node1", "ubuntu", "22.04")
    prov.cancel()
    with pytest.raises(ProvisionError, match="cancelled"):
        prov.create("node2", "ubuntu", "22.04")
    prov.destroy(node.name)
    assert not cloud.servers
    prov.reset()
    assert not prov.cancelled and prov.create("node2", "ubuntu", "22.04").attempts == 1


def test_nothing_listening_on_the_ssh_port_says_so_with_the_fix_and_is_not_retried(lab_key):
    prov, cloud = make(lab_key, probe=_real_probe(lab_key), ready_timeout=0.6, launch_retries=3)
    with pytest.raises(ProvisionError) as err:
        prov.create("node1", "ubuntu", "22.04")
    message = str(err.value)
    assert "nothing listened on" in message and "ssh_port" in message and "security groups" in message
    assert not err.value.retryable and cloud.calls["create_server"] == 1 and not cloud.servers


def test_the_early_probe_also_names_a_port_nothing_listens_on(lab_key):
    prov, cloud = make(lab_key, cloud=FakeCloud(address_at_create=True), probe=_real_probe(lab_key),
                       ready_timeout=0.6, launch_retries=2)
    with pytest.raises(ProvisionError, match="nothing listened on .* after the server ran: check the provider's ssh_port"):
        prov.create("node1", "ubuntu", "22.04")
    assert cloud.calls["create_server"] == 1


def test_the_first_signal_cancels_and_later_ones_are_only_answered():
    said, cancels = [], []
    interrupts = Interrupts(lambda: cancels.append(1), say=said.append)
    assert interrupts.exit_code is None
    interrupts.handle(signal.SIGTERM)
    interrupts.handle(signal.SIGINT)
    interrupts.handle(signal.SIGINT)
    assert cancels == [1] and said == [FIRST, AGAIN, AGAIN]
    assert interrupts.exit_code == 143 and interrupts.repeats == 2


def test_real_signals_inside_the_block_raise_nothing_and_the_old_handlers_come_back():
    before = signal.getsignal(signal.SIGINT)
    cancels = []
    with rollback_on_signal(lambda: cancels.append(1)) as interrupts:
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        wait_until(lambda: interrupts.repeats == 1, what="the second SIGINT to be answered", interval=0.01)
    assert cancels == [1] and interrupts.exit_code == 130
    assert signal.getsignal(signal.SIGINT) is before


def test_nodes_add_on_real_signals_stops_adding_removes_what_it_added_and_exits_130(monkeypatch):
    from tests.unit.test_lockapi_nodes_cli import StubClient, _add

    class SignalledAfterN2(StubClient):
        def create(self, name, **fields):
            super().create(name, **fields)
            if name == "n2":  # Ctrl-C twice while n2 is being added
                os.kill(os.getpid(), signal.SIGINT)
                os.kill(os.getpid(), signal.SIGINT)

    stub = SignalledAfterN2()
    done = _add(monkeypatch, stub, "n1", "n2", "n3")
    assert done.exit_code == 130 and "interrupted; removed the 2 node(s)" in done.output
    assert stub.existing == []

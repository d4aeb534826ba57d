"""The engine's lifecycle, retries, rollback and parallelism, against an in-memory cloud behind the adapter boundary.

The fake stands in for the narrow CloudAdapter interface only; errors it raises are libcloud's
own exception types, classified by the real OpenStack adapter code.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter

import paramiko
import pytest
from libcloud.common.exceptions import BaseHTTPError, RateLimitReachedError

from lablease.config.lab import LabConfig
from lablease.provision.adapters.base import CloudAdapter, Image, Network, SecurityGroup, Server, Size, Volume
from lablease.provision.adapters.openstack import classify_error
from lablease.provision.engine import Provisioner
from lablease.provision.context import ProvisionerOptions
from lablease.provision.errorkinds import ErrorKind
from lablease.provision.errors import ProvisionError
from lablease.provision.models import TAG_ATTEMPT, TAG_LAB, TAG_NODE, CreateRequest
from lablease.provision.readiness import ReadyResult


class FakeCloud(CloudAdapter):
    """An in-memory cloud: servers boot after ``boot_polls`` looks, volumes become available at once."""

    def __init__(self, boot_polls: int = 1, address_at_create: bool = False):
        self.address_at_create = address_at_create
        self.lock = threading.Lock()
        self.ids = itertools.count(1)
        self.servers: dict[str, Server] = {}
        self.volumes: dict[str, Volume] = {}
        self.polls: Counter = Counter()
        self.calls: Counter = Counter()
        self.boot_polls = boot_polls
        self.fail: dict[str, list[BaseException]] = {}   # operation -> exceptions to raise, in order
        self.error_servers = 0      # this many new servers end in ERROR
        self.error_volumes = 0      # this many new volumes end in error
        self.create_then_fail = 0   # this many create_server calls create the server, then answer 500

    def _maybe_fail(self, op: str) -> None:
        with self.lock:
            self.calls[op] += 1
            queue = self.fail.get(op)
            exc = queue.pop(0) if queue else None
        if exc is not None:
            raise exc

    def authenticate(self) -> None:
        self._maybe_fail("auth")

    def list_images(self):
        self._maybe_fail("list_images")
        return [Image("i1", "Ubuntu 22.04 LTS"), Image("i2", "ubuntu-20.04-server"), Image("i3", "Ubuntu 22.04-old")]

    def list_sizes(self):
        self._maybe_fail("list_sizes")
        return [Size("s0", "tiny", 1000, 10, 1), Size("s1", "m1.large", 8000, 40, 2), Size("s2", "m1.medium", 8000, 20, 1),
                Size("s3", "m1.xlarge", 16000, 80, 8), Size("w", "win-cheap", 8000, 20, 1)]

    def list_networks(self):
        self._maybe_fail("list_networks")
        return [Network("n1", "public"), Network("n2", "admin-only")]

    def list_security_groups(self):
        self._maybe_fail("list_security_groups")
        return [SecurityGroup("g1", "default")]

    def create_server(self, spec):
        self._maybe_fail("create_server")
        with self.lock:
            sid = f"srv-{next(self.ids)}"
            state = "pending"
            if self.error_servers:
                self.error_servers -= 1
                state = "error-soon"
            self.servers[sid] = Server(sid, spec.name, state, metadata=dict(spec.metadata))
            if self.address_at_create:
                self.servers[sid].public_ips = [f"127.9.0.{sid.split('-')[1]}"]
            self.last_spec = spec
            lost = self.create_then_fail > 0
            self.create_then_fail -= lost
        if lost:
            raise BaseHTTPError(500, "500 Internal Server Error")
        return self.servers[sid]

    def get_server(self, server_id):
        self._maybe_fail("get_server")
        with self.lock:
            s = self.servers.get(server_id)
            if s is None:
                return None
            self.polls[server_id] += 1
            if self.polls[server_id] >= self.boot_polls:
                if s.state == "pending":
                    s.state, s.public_ips = "running", [f"127.9.0.{server_id.split('-')[1]}"]
                elif s.state == "error-soon":
                    s.state, s.fault = "error", "No valid host was found."
            return Server(s.id, s.name, s.state, list(s.public_ips), [], dict(s.metadata), s.fault)

    def polls_total(self) -> int:
        with self.lock:
            return sum(self.polls.values())

    def list_servers(self):
        self._maybe_fail("list_servers")
        with self.lock:
            return [Server(s.id, s.name, s.state, list(s.public_ips), [], dict(s.metadata)) for s in self.servers.values()]

    def delete_server(self, server_id):
        self._maybe_fail("delete_server")
        with self.lock:
            self.servers.pop(server_id, None)

    def create_volume(self, name, size, metadata):
        self._maybe_fail("create_volume")
        with self.lock:
            vid = f"vol-{next(self.ids)}"
            state = "available"
            if self.error_volumes:
                self.error_volumes -= 1
                state = "error"
            self.volumes[vid] = Volume(vid, name, state, size, metadata=dict(metadata))
            return self.volumes[vid]

    def get_volume(self, volume_id):
        self._maybe_fail("get_volume")
        with self.lock:
            v = self.volumes.get(volume_id)
            return None if v is None else Volume(v.id, v.name, v.state, v.size, list(v.attached_to), dict(v.metadata))

    def list_volumes(self):
        self._maybe_fail("list_volumes")
        with self.lock:
            return [Volume(v.id, v.name, v.state, v.size, list(v.attached_to), dict(v.metadata)) for v in self.volumes.values()]

    def attach_volume(self, server_id, volume_id):
        self._maybe_fail("attach_volume")
        with self.lock:
            v = self.volumes[volume_id]
            v.state, v.attached_to = "in-use", [server_id]

    def detach_volume(self, volume):
        self._maybe_fail("detach_volume")
        with self.lock:
            v = self.volumes[volume.id]
            v.state, v.attached_to = "available", []

    def delete_volume(self, volume_id):
        self._maybe_fail("delete_volume")
        with self.lock:
            v = self.volumes.get(volume_id)
            if v is not None and v.attached_to:
                raise BaseHTTPError(400, "Volume is in use")
            self.volumes.pop(volume_id, None)

    def classify(self, exc):
        return classify_error(exc)


class FakeDNS:
    def __init__(self):
        self.records: dict[str, list[str]] = {}
        self.down = False

    def update(self, name, ips):
        if self.down:
            raise RuntimeError(f"update of {name}: DNS service at http://127.0.0.1:1 unreachable (ConnectError)")
        self.records[name] = list(ips)
        return "success"

    def delete(self, name):
        if self.down:
            raise RuntimeError(f"delete of {name}: DNS service unreachable")
        self.records.pop(name, None)


class FakeProbe:
    """Readiness without SSH: optionally slow, optionally never ready; counts concurrency."""

    def __init__(self, delay: float = 0.0, never: bool = False, cloud=None):
        self.delay, self.never, self.cloud = delay, never, cloud
        self.calls = []
        self.active = 0
        self.peak = 0
        self.lock = threading.Lock()

    def wait(self, host, timeout, node=None, sleep=time.sleep, cancel=None):
        with self.lock:
            self.calls.append((host, self.cloud.polls_total() if self.cloud else None))
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            time.sleep(self.delay)
            if self.never:
                raise ProvisionError("ssh", node, f"not ready over SSH at ubuntu@{host}:22 after {timeout:.0f}s",
                                     kind=ErrorKind.TIMEOUT)
            return ReadyResult(host_key=f"ecdsa-sha2-nistp256 KEY-OF-{host}", attempts=1, seconds=self.delay)
        finally:
            with self.lock:
                self.active -= 1


@pytest.fixture(scope="module")
def lab_key(tmp_path_factory):
    path = tmp_path_factory.mktemp("key") / "lab_key"
    paramiko.ECDSAKey.generate().write_private_key_file(str(path))
    return path


def make(lab_key, cloud=None, dns=None, probe=None, on_progress=None, **provider):
    settings = {"driver": "openstack", "ssh_key_file": str(lab_key), "launch_retries": 3, "max_parallel": 4,
                "driver_args": {"username": "u", "password": "secret-pw", "ex_force_auth_url": "http://127.0.0.1:1/v2.0/tokens"},
                "api_retry_time": 5, "exclude_image": [".*-old"], **provider}
    config = LabConfig.model_validate({"lab_domain": "lab.example", "libcloud": {"providers": {"dev": settings}}})
    cloud = cloud or FakeCloud()
    options = ProvisionerOptions(adapter=cloud, token_cache_dir=None, probe=probe or FakeProbe(), poll_first=0.001,
                                 poll_cap=0.005)
    prov = Provisioner(config, "dev", dns, options, on_progress=on_progress)
    return prov, cloud


def test_create_picks_the_image_and_smallest_fitting_size_and_registers_the_name(lab_key):
    dns = FakeDNS()
    prov, cloud = make(lab_key, dns=dns, security_groups=["default"])
    node = prov.create("node1.lab.example", "ubuntu", "22.04", {"machine": {"disk": 30}})
    spec = cloud.last_spec
    assert spec.name == "node1" and spec.image.name == "Ubuntu 22.04 LTS"
    assert spec.size.name == "m1.large"  # 8000 MB, 40 GB: the smallest with ram>=8000 and disk>=30
    assert [n.name for n in spec.networks] == ["public", "admin-only"] and [g.name for g in spec.security_groups] == ["default"]
    assert spec.metadata[TAG_LAB] == "lab.example" and spec.metadata[TAG_NODE] == "node1" and spec.metadata[TAG_ATTEMPT]
    assert "ecdsa-sha2-nistp256" in spec.userdata and "touch" in spec.userdata and "node1.lab.example" in spec.userdata
    assert node.name == "node1" and node.fqdn == "node1.lab.example" and node.host_key.startswith("ecdsa-sha2-nistp256")
    assert dns.records == {"node1": [node.address]} and node.attempts == 1


def test_volumes_are_named_after_the_node_created_and_attached(lab_key):
    prov, cloud = make(lab_key)
    node = prov.create("node2", "ubuntu", "22.04", [{"volumes": {"count": 3, "size": 10}}, {"volumes": {"size": 20}}])
    vols = sorted(cloud.volumes.values(), key=lambda v: v.name)
    assert [v.name for v in vols] == ["node2_0", "node2_1", "node2_2"]
    assert all(v.size == 20 and v.attached_to == [node.server_id] for v in vols)
    assert sorted(node.volume_ids) == sorted(v.id for v in vols)


def test_the_two_starts_of_the_volume_stage_say_which_step_they_are(lab_key):
    events = []
    prov, _ = make(lab_key, on_progress=events.append)
    prov.create("node2", "ubuntu", "22.04", {"volumes": {"count": 2, "size": 10}})
    steps = [e.message for e in events if e.stage == "volume" and e.status == "start"]
    assert steps == ["create 2 x 10 GB", "attach 2"]


def test_a_server_ending_in_error_is_removed_and_the_create_retried(lab_key):
    dns = FakeDNS()
    cloud = FakeCloud()
    cloud.error_servers = 1
    prov, _ = make(lab_key, cloud=cloud, dns=dns)
    node = prov.create("node3", "ubuntu", "22.04")
    assert node.attempts == 2
    assert list(cloud.servers) == [node.server_id]  # the ERROR server is gone


def test_quota_exceeded_fails_at_once_and_leaves_nothing(lab_key):
    cloud = FakeCloud()
    cloud.fail["create_server"] = [BaseHTTPError(403, "403 Forbidden Quota exceeded for instances: Requested 1, but already used 10 of 10")]
    prov, _ = make(lab_key, cloud=cloud)
    with pytest.raises(ProvisionError) as err:
        prov.create("node4", "ubuntu", "22.04")
    assert err.value.stage.value == "create" and "quota exceeded" in str(err.value) and not err.value.retryable
    assert cloud.calls["create_server"] == 1 and not cloud.servers


def test_a_rate_limit_waits_for_retry_after_then_succeeds(lab_key):
    cloud = FakeCloud()
    cloud.fail["create_server"] = [RateLimitReachedError(headers={"retry-after": "0.3"})]
    prov, _ = make(lab_key, cloud=cloud)
    start = time.monotonic()
    node = prov.create("node5", "ubuntu", "22.04")
    assert time.monotonic() - start >= 0.3
    assert node.attempts == 1 and cloud.calls["create_server"] == 2 and len(cloud.servers) == 1


def test_server_errors_on_reads_are_retried_with_backoff(lab_key):
    cloud = FakeCloud()
    cloud.fail["list_images"] = [BaseHTTPError(500, "500 oops"), BaseHTTPError(503, "503 busy")]
    prov, _ = make(lab_key, cloud=cloud)
    assert prov.create("node6", "ubuntu", "22.04").attempts == 1
    assert cloud.calls["list_images"] == 3


def test_a_lost_create_answer_is_not_repeated_and_the_server_is_found_by_its_tag_and_kept(lab_key):
    cloud = FakeCloud()
    cloud.create_then_fail = 1  # the POST created it; the answer (libcloud's GET after it) was a 500
    prov, _ = make(lab_key, cloud=cloud)
    node = prov.create("node7", "ubuntu", "22.04")
    assert node.attempts == 1 and cloud.calls["create_server"] == 1 and list(cloud.servers) == [node.server_id]


def test_a_create_that_failed_before_creating_is_a_failed_attempt_not_a_second_post(lab_key):
    cloud = FakeCloud()
    cloud.fail["create_server"] = [BaseHTTPError(500, "500 Internal Server Error")]
    prov, _ = make(lab_key, cloud=cloud)
    node = prov.create("node7", "ubuntu", "22.04")
    assert node.attempts == 2 and cloud.calls["create_server"] == 2 and list(cloud.servers) == [node.server_id]


def test_a_volume_in_error_rolls_back_server_and_volumes_then_retries(lab_key):
    cloud = FakeCloud()
    cloud.error_volumes = 1
    dns = FakeDNS()
    prov, _ = make(lab_key, cloud=cloud, dns=dns)
    node = prov.create("node8", "ubuntu", "22.04", {"volumes": {"count": 2, "size": 5}})
    assert node.attempts == 2
    assert list(cloud.servers) == [node.server_id] and sorted(cloud.volumes) == sorted(node.volume_ids)


def test_the_dns_service_down_is_a_named_failure_with_nothing_left(lab_key):
    cloud, dns = FakeCloud(), FakeDNS()
    prov, _ = make(lab_key, cloud=cloud, dns=dns)
    dns.down = True
    with pytest.raises(ProvisionError) as err:
        prov.create("node9", "ubuntu", "22.04", {"volumes": {"count": 1, "size": 5}})
    assert err.value.stage.value == "dns" and "unreachable" in str(err.value)
    assert not cloud.servers and not cloud.volumes


def test_ssh_never_ready_fails_after_the_retries_and_removes_everything(lab_key):
    cloud, dns = FakeCloud(), FakeDNS()
    events = []
    prov, _ = make(lab_key, cloud=cloud, dns=dns, probe=FakeProbe(never=True), on_progress=events.append,
                   launch_retries=2)
    with pytest.raises(ProvisionError) as err:
        prov.create("node10", "ubuntu", "22.04")
    assert err.value.stage.value == "ssh" and "after 2 attempts" in str(err.value)
    assert not cloud.servers and dns.records == {} and cloud.calls["create_server"] == 2
    assert [e.status for e in events if e.status in ("retry", "failed")] == ["retry", "failed"]


def test_bad_credentials_fail_every_request_of_create_many_at_once(lab_key):
    from libcloud.common.types import InvalidCredsError

    cloud = FakeCloud()
    cloud.fail["auth"] = [InvalidCredsError("bad")]
    prov, _ = make(lab_key, cloud=cloud)
    outcomes = prov.create_many([CreateRequest("node1", "ubuntu", "22.04"), CreateRequest("node2", "ubuntu", "22.04")])
    assert [o.ok for o in outcomes] == [False, False]
    assert all(o.error.stage.value == "auth" and "credentials" in str(o.error) for o in outcomes)
    assert "secret-pw" not in str(outcomes[0].error) and cloud.calls["create_server"] == 0


def test_no_image_and_no_size_fail_without_retrying(lab_key):
    prov, cloud = make(lab_key)
    with pytest.raises(ProvisionError) as err:
        prov.create("node11", "fedora", "40")
    assert err.value.stage.value == "image" and "Ubuntu 22.04 LTS" in str(err.value)
    with pytest.raises(ProvisionError) as err:
        prov.create("node11", "ubuntu", "22.04", {"machine": {"ram": 64000}})
    assert err.value.stage.value == "size" and "win-cheap" not in str(err.value)
    assert cloud.calls["create_server"] == 0


def test_destroy_removes_every_server_of_the_name_its_volumes_and_its_record(lab_key):
    dns = FakeDNS()
    prov, cloud = make(lab_key, dns=dns)
    node = prov.create("node12", "ubuntu", "22.04", {"volumes": {"count": 2, "size": 5}})
    other = prov.create("node13", "ubuntu", "22.04", {"volumes": {"count": 1, "size": 5}})
    cloud.servers["dup"] = Server("dup", "node12", "running")  # a duplicate left by an outage
    prov.destroy(node.fqdn)
    assert set(cloud.servers) == {other.server_id}
    assert [v.name for v in cloud.volumes.values()] == ["node13_0"] and set(dns.records) == {"node13"}
    prov.destroy("node12")  # already gone: still a success


def test_create_many_runs_max_parallel_at_a_time_and_lists_once(lab_key):
    probe = FakeProbe(delay=0.2)
    prov, cloud = make(lab_key, probe=probe, max_parallel=3)
    outcomes = prov.create_many([CreateRequest(f"node{i}", "ubuntu", "22.04") for i in range(7)])
    assert all(o.ok for o in outcomes) and [o.name for o in outcomes] == [f"node{i}" for i in range(7)]
    assert probe.peak == 3
    assert cloud.calls["list_images"] == 1 and cloud.calls["list_sizes"] == 1 and cloud.calls["auth"] == 1


def test_create_many_all_or_nothing_destroys_the_nodes_that_came_up(lab_key):
    cloud = FakeCloud()
    prov, _ = make(lab_key, cloud=cloud, launch_retries=1)
    outcomes = prov.create_many([CreateRequest("node1", "ubuntu", "22.04"),
                                 CreateRequest("node2", "ubuntu", "22.04", {"machine": {"ram": 99999}})],
                                all_or_nothing=True)
    assert [o.ok for o in outcomes] == [False, False] and outcomes[1].error.stage.value == "size"
    assert not cloud.servers


def test_destroy_many_shares_one_listing_and_reports_each_node(lab_key):
    prov, cloud = make(lab_key)
    prov.create_many([CreateRequest(f"node{i}", "ubuntu", "22.04") for i in range(4)])
    before = cloud.calls["list_servers"]
    outcomes = prov.destroy_many([f"node{i}" for i in range(5)])
    assert all(o.ok for o in outcomes) and not cloud.servers
    # One listing finds the servers of all five; one more, begun after the deletes, confirms they are gone.
    assert cloud.calls["list_servers"] - before == 2


def test_list_owned_shows_only_what_carries_this_labs_tag(lab_key):
    prov, cloud = make(lab_key)
    node = prov.create("node1", "ubuntu", "22.04", {"volumes": {"count": 1, "size": 5}})
    cloud.servers["foreign"] = Server("foreign", "node1", "running", metadata={TAG_LAB: "other.lab"})
    owned = prov.list_owned()
    assert [(s.id, s.node) for s in owned.servers] == [(node.server_id, "node1")]
    assert [(v.name, v.node) for v in owned.volumes] == [("node1_0", "node1")]


def test_an_incomplete_rollback_is_reported_and_not_retried(lab_key):
    cloud = FakeCloud()
    cloud.error_servers = 1
    cloud.fail["delete_server"] = [BaseHTTPError(409, "409 Conflict: server is locked")]
    prov, _ = make(lab_key, cloud=cloud)
    with pytest.raises(ProvisionError) as err:
        prov.create("node14", "ubuntu", "22.04")
    assert "rollback incomplete" in str(err.value) and "locked" in str(err.value)
    assert cloud.calls["create_server"] == 1


def test_the_ssh_wait_starts_while_the_server_boots_when_its_address_is_known(lab_key):
    cloud = FakeCloud(boot_polls=4, address_at_create=True)
    probe = FakeProbe(cloud=cloud)
    prov, _ = make(lab_key, cloud=cloud, probe=probe)
    node = prov.create("node15", "ubuntu", "22.04")
    assert len(probe.calls) == 1 and probe.calls[0][0] == node.address
    assert probe.calls[0][1] < 3  # started before the poll that saw the server running (the 4th)
    assert node.host_key.startswith("ecdsa")


def test_an_early_ssh_wait_that_never_succeeds_fails_the_attempt_after_ready_timeout(lab_key):
    cloud = FakeCloud(address_at_create=True)
    prov, _ = make(lab_key, cloud=cloud, probe=FakeProbe(never=True), launch_retries=1)
    with pytest.raises(ProvisionError) as err:
        prov.create("node16", "ubuntu", "22.04")
    assert err.value.stage.value == "ssh" and not cloud.servers


def test_destroy_leaves_a_server_and_volume_of_the_same_name_that_another_lab_tagged(lab_key):
    prov, cloud = make(lab_key)
    prov.create("node1", "ubuntu", "22.04", {"volumes": {"count": 1, "size": 5}})
    cloud.servers["foreign"] = Server("foreign", "node1", "running", metadata={TAG_LAB: "other.lab"})
    cloud.volumes["foreign-vol"] = Volume("foreign-vol", "node1_0", "available", 5, metadata={TAG_LAB: "other.lab"})
    cloud.servers["untagged"] = Server("untagged", "node1", "running")  # made before lablease: still ours by name
    prov.destroy("node1")
    assert set(cloud.servers) == {"foreign"} and set(cloud.volumes) == {"foreign-vol"}


def test_all_or_nothing_says_when_a_node_that_came_up_could_not_be_destroyed_again(lab_key):
    cloud = FakeCloud()
    prov, _ = make(lab_key, cloud=cloud, launch_retries=1, delete_timeout=0.05)
    cloud.fail["delete_server"] = [BaseHTTPError(400, "Cannot delete a locked server")]
    outcomes = prov.create_many([CreateRequest("node1", "ubuntu", "22.04"),
                                 CreateRequest("node2", "ubuntu", "22.04", {"machine": {"ram": 99999}})],
                                all_or_nothing=True)
    assert not outcomes[0].ok and len(cloud.servers) == 1
    assert "may remain" in outcomes[0].error.message and "locked server" in outcomes[0].error.message


def test_provisioner_from_config_closes_the_dns_client_it_opened_when_the_lab_key_is_unreadable(tmp_path, monkeypatch):
    from lablease.config.errors import ConfigError
    from lablease.dns.client import DNSClient
    from lablease.provision.engine import provisioner_from_config

    closed = []
    real_close = DNSClient.close
    monkeypatch.setattr(DNSClient, "close", lambda self: (closed.append(self), real_close(self)))
    bad_key = tmp_path / "lab_key"
    bad_key.write_text("not a private key\n")
    config = LabConfig.model_validate({"lab_domain": "lab.example", "nsupdate_url": "http://127.0.0.1:1/update",
                                       "libcloud": {"providers": {"dev": {
                                           "driver": "openstack", "ssh_key_file": str(bad_key),
                                           "driver_args": {"username": "u", "password": "p",
                                                           "ex_force_auth_url": "http://127.0.0.1:1/v2.0/tokens"}}}}})
    with pytest.raises(ConfigError, match="cannot read the SSH private key"):
        provisioner_from_config(config, "dev", None, ProvisionerOptions(token_cache_dir=None))
    assert len(closed) == 1 and closed[0]._http.is_closed


@pytest.mark.parametrize("name", ["", ".lab.example", "node_1", "node1.other.example", "-node1"])
def test_a_bad_node_name_is_refused_before_anything_is_created_or_destroyed(lab_key, name):
    prov, cloud = make(lab_key)
    cloud.volumes["v"] = Volume("v", "_0", "available", 5)  # what the empty name's volume pattern would match
    [created] = prov.create_many([CreateRequest(name, "ubuntu", "22.04")])
    [destroyed] = prov.destroy_many([name])
    for outcome in (created, destroyed):
        assert not outcome.ok and "bad node name" in outcome.error.message
    with pytest.raises(ProvisionError, match="bad node name"):
        prov.destroy(name)
    assert cloud.calls["create_server"] == 0 and not cloud.servers and set(cloud.volumes) == {"v"}


def test_a_node_named_twice_in_one_batch_is_created_once_and_the_repeat_fails(lab_key):
    prov, cloud = make(lab_key)
    outcomes = prov.create_many([CreateRequest("node1", "ubuntu", "22.04"), CreateRequest("node2", "ubuntu", "22.04"),
                                 CreateRequest("node1.lab.example", "ubuntu", "22.04")])
    assert [o.ok for o in outcomes] == [True, True, False]
    assert "more than once" in outcomes[2].error.message
    assert sorted(s.name for s in cloud.servers.values()) == ["node1", "node2"]


def test_ctrl_c_during_create_many_starts_no_more_nodes_and_destroys_those_that_came_up(lab_key):
    import _thread

    interrupted = []

    def on_progress(event):
        if event.stage == "ready" and not interrupted:
            interrupted.append(event.node)
            _thread.interrupt_main()  # what Ctrl-C does to the thread waiting in create_many

    prov, cloud = make(lab_key, probe=FakeProbe(delay=0.1), on_progress=on_progress, max_parallel=2)
    with pytest.raises(KeyboardInterrupt):
        prov.create_many([CreateRequest(f"node{i}", "ubuntu", "22.04") for i in range(8)])
    assert interrupted and cloud.calls["create_server"] < 8
    assert not cloud.servers and not cloud.volumes

"""The engine with shared polls: waiting nodes read the provider's listings, never one GET each, and
still boot, attach, roll back, cancel and tear down as before.

The cloud is the in-memory fake of test_provision_engine, changed so that its listings move servers
along as its GETs do (as a real cloud's listing and GET show the same rows). Assertions count calls.
"""

from __future__ import annotations

import threading

from libcloud.common.exceptions import RateLimitReachedError

from lablease.config.lab import LabConfig
from lablease.provision.engine import Provisioner
from lablease.provision.context import ProvisionerOptions
from lablease.provision.errors import ProvisionError
from lablease.provision.models import CreateRequest
from tests.unit.test_provision_engine import FakeCloud, FakeDNS, FakeProbe, lab_key  # noqa: F401 - fixture

ONE_VOLUME = {"volumes": {"count": 1, "size": 5}}


class ListingCloud(FakeCloud):
    """FakeCloud whose server listing is a look at every server, as a GET of each would be.

    ``gets`` counts the GETs the engine makes (the listing's own looks are not GETs); ``hide`` servers
    are left out of listings (a truncated page); ``gate``, when set, holds listings until released.
    """

    def __init__(self, **kw):
        super().__init__(**kw)
        self.gets = 0
        self.hide: set[str] = set()
        self.gate: threading.Event | None = None
        self.listing_entered = threading.Event()

    def get_server(self, server_id):
        with self.lock:
            self.gets += 1
        return super().get_server(server_id)

    def list_servers(self):
        self._maybe_fail("list_servers")
        self.listing_entered.set()
        if self.gate is not None:
            self.gate.wait(60)
        with self.lock:
            ids = [sid for sid in self.servers if sid not in self.hide]
        looks = [FakeCloud.get_server(self, sid) for sid in ids]  # moves them along as a GET would
        return [s for s in looks if s is not None]


def make(lab_key, cloud, dns=None, **provider):
    settings = {"driver": "openstack", "ssh_key_file": str(lab_key), "launch_retries": 3, "max_parallel": 8,
                "driver_args": {"username": "u", "password": "pw", "ex_force_auth_url": "http://127.0.0.1:1/v2.0/tokens"},
                "api_retry_time": 5, **provider}
    config = LabConfig.model_validate({"lab_domain": "lab.example", "libcloud": {"providers": {"dev": settings}}})
    return Provisioner(config, "dev", dns, ProvisionerOptions(adapter=cloud, token_cache_dir=None, probe=FakeProbe(), poll_first=0.001, poll_cap=0.005, shared_polls=True))


def test_a_batch_waits_on_shared_listings_without_a_single_get_per_node(lab_key):
    cloud = ListingCloud(boot_polls=3)
    dns = FakeDNS()
    with make(lab_key, cloud, dns) as prov:
        names = [f"node{i}" for i in range(8)]
        outcomes = prov.create_many([CreateRequest(n, "ubuntu", "22.04", ONE_VOLUME) for n in names])
        assert [o.error for o in outcomes] == [None] * 8
        assert all(v.attached_to for v in cloud.volumes.values()) and sorted(dns.records) == names
        assert all(o.ok for o in prov.destroy_many(names))
    assert not cloud.servers and not cloud.volumes and dns.records == {}
    assert cloud.gets == 0 and cloud.calls["get_volume"] == 0, cloud.calls
    # Each listing answered every node waiting then: far fewer listings than per-node looks would have been
    # (unshared, every look would be a listing of its own: 56 or more). How many fewer depends on how the
    # threads' starts fall into poll intervals, so the bound leaves room (seen: 20-29).
    per_node_looks = 8 * (3 + 2 + 2)  # boot polls, volume available + attached, volume + server gone
    assert cloud.calls["list_servers"] + cloud.calls["list_volumes"] < per_node_looks * 2 / 3, cloud.calls
    assert not prov.servers.listing.polling and not prov.volumes.listing.polling  # close() stopped them


def test_a_server_missing_from_the_listing_is_looked_up_once_by_get_not_failed(lab_key):
    cloud = ListingCloud(boot_polls=1)
    with make(lab_key, cloud) as prov:
        cloud.hide = {"srv-1"}  # the first server falls on a page the listing does not show
        node = prov.create("node1", "ubuntu", "22.04")
    assert node.server_id == "srv-1" and node.attempts == 1
    assert cloud.gets >= 1  # the listing could not tell; a GET did


def test_a_server_that_is_really_gone_while_booting_fails_the_attempt_after_one_get(lab_key):
    class Vanishing(ListingCloud):
        def create_server(self, spec):
            server = super().create_server(spec)
            if self.calls["create_server"] == 1:
                with self.lock:
                    del self.servers[server.id]  # gone before anybody looked
            return server

    cloud = Vanishing(boot_polls=1)
    with make(lab_key, cloud) as prov:
        node = prov.create("node1", "ubuntu", "22.04")
    assert node.attempts == 2 and cloud.gets == 1


def test_deleted_things_missing_from_a_complete_listing_are_gone_without_a_get_and_from_a_full_page_with_one(lab_key):
    cloud = ListingCloud(boot_polls=1)
    with make(lab_key, cloud) as prov:
        prov.create("node1", "ubuntu", "22.04", ONE_VOLUME)
        assert all(o.ok for o in prov.destroy_many(["node1"]))
        assert cloud.gets == 0 and cloud.calls["get_volume"] == 0
        # A listing as long as a page may be one page of several: what it lacks is confirmed by GET.
        # (A page limit of 0 makes every listing such a page.)
        prov.servers.listing.page_limit = prov.volumes.listing.page_limit = 0
        prov.create("node2", "ubuntu", "22.04", ONE_VOLUME)
        gets = cloud.gets + cloud.calls["get_volume"]
        assert all(o.ok for o in prov.destroy_many(["node2"]))
    assert cloud.gets + cloud.calls["get_volume"] > gets
    assert not cloud.servers and not cloud.volumes


def test_cancel_ends_the_boot_wait_while_the_listing_hangs_and_the_rollback_still_removes_everything(lab_key):
    cloud = ListingCloud(boot_polls=10**9)
    dns = FakeDNS()
    prov = make(lab_key, cloud, dns, boot_timeout=600)
    box = {}
    deleted_while_hung = threading.Event()
    original_delete = cloud.delete_server

    def delete_server(server_id):
        if cloud.gate is not None and not cloud.gate.is_set():
            deleted_while_hung.set()
        original_delete(server_id)

    cloud.delete_server = delete_server

    def run():
        try:
            box["node"] = prov.create("node1", "ubuntu", "22.04", ONE_VOLUME)
        except ProvisionError as exc:
            box["error"] = exc

    cloud.gate = threading.Event()  # every server listing hangs in the cloud until released
    job = threading.Thread(target=run, daemon=True)
    job.start()
    assert cloud.listing_entered.wait(60)
    prov.cancel()
    # The boot wait gave up without its listing: the rollback deleted the server while the listing still hung.
    assert deleted_while_hung.wait(60)
    cloud.gate.set()
    job.join(60)
    assert not job.is_alive()
    assert box["error"].kind == "cancelled" and "rollback incomplete" not in box["error"].message
    assert not cloud.servers and not cloud.volumes and dns.records == {}
    prov.close()


def test_shared_polls_are_on_for_the_engines_own_adapter_and_off_for_an_injected_one_unless_asked(lab_key):
    settings = {"driver": "openstack", "ssh_key_file": str(lab_key),
                "driver_args": {"username": "u", "password": "pw", "ex_force_auth_url": "http://127.0.0.1:1/v2.0/tokens"}}
    config = LabConfig.model_validate({"lab_domain": "lab.example", "libcloud": {"providers": {"dev": settings}}})
    with Provisioner(config, "dev", None, ProvisionerOptions(token_cache_dir=None, probe=FakeProbe())) as own:
        assert own.servers.listing is not None and own.volumes.listing is not None
    injected = Provisioner(config, "dev", None, ProvisionerOptions(adapter=FakeCloud(), token_cache_dir=None, probe=FakeProbe()))
    assert injected.servers.listing is None and injected.volumes.listing is None


def test_a_create_whose_second_request_is_rate_limited_is_not_repeated_into_a_second_server(lab_key):
    # libcloud's create_node POSTs the server, then GETs it: a 429 on the GET means the server exists.
    class LimitedAfterPost(ListingCloud):
        limited = 1

        def create_server(self, spec):
            server = super().create_server(spec)
            if self.limited:
                self.limited -= 1
                raise RateLimitReachedError(headers={"retry-after": "0"})
            return server

    cloud = LimitedAfterPost(boot_polls=1)
    with make(lab_key, cloud) as prov:
        node = prov.create("node1", "ubuntu", "22.04")
    assert list(cloud.servers) == [node.server_id] and node.attempts == 1
    assert cloud.calls["create_server"] == 1 and cloud.calls["list_servers"] >= 1

"""The engine's small parts: hints, selection, user-data, rate limiter, listings cache, polling, error triage, retries."""

from __future__ import annotations

import threading
import time

import pytest
import requests
import yaml
from libcloud.common.exceptions import BaseHTTPError, RateLimitReachedError
from libcloud.common.types import InvalidCredsError, MalformedResponseError

from lablease.provision.adapters.base import ErrorKind, Image, Network, SecurityGroup, Size
from lablease.provision.adapters.openstack import classify_error
from lablease.provision.calls import CloudCaller
from lablease.provision.errors import ProvisionError, Stage
from lablease.provision.hints import HintsError, Resources, merge_hints
from lablease.provision.lifecycle import volume_names
from lablease.provision.listings import ListingCache
from lablease.provision.ratelimit import RateLimiter
from lablease.provision.selection import select_image, select_networks, select_security_groups, select_size
from lablease.provision.userdata import build_userdata
from lablease.provision.waiting import poll, poll_bound

# -- hints -------------------------------------------------------------------------------------------


def test_hints_default_to_teuthologys_values():
    assert merge_hints(None) == Resources(disk=20, ram=8000, cpus=1, volume_count=0, volume_size=0)


def test_hints_keep_the_largest_value_of_each_key_across_config_job_and_lists():
    config = {"machine": {"ram": 4000, "cpus": 4}}
    job = [{"machine": {"disk": 40}, "volumes": {"count": 2, "size": 10}}, {"volumes": {"count": 1, "size": 30}}]
    assert merge_hints(config, job) == Resources(disk=40, ram=8000, cpus=4, volume_count=2, volume_size=30)


@pytest.mark.parametrize("hints, words", [
    ({"machine": {"ram": "a lot"}}, "machine.ram"),
    ({"volumes": {"count": 2}}, "volumes.size"),
    (["not a mapping"], "must be a mapping"),
])
def test_malformed_hints_name_the_key(hints, words):
    with pytest.raises(HintsError, match=words.replace(".", r"\.")):
        merge_hints(None, hints)


# -- selection ---------------------------------------------------------------------------------------

IMAGES = [Image("1", "CentOS-9-Stream"), Image("2", "ubuntu-22.04-old"), Image("3", "ubuntu-22.04-server"),
          Image("4", "Ubuntu 22.04")]
SIZES = [Size("a", "m1.small", 2048, 20, 1), Size("b", "m1.large", 8192, 80, 4), Size("c", "m1.medium", 8192, 40, 2),
         Size("d", "win-m1.medium", 8192, 40, 2), Size("e", "m1.xl", 16384, 160, 8)]


def test_image_prefers_the_space_form_then_the_dash_form_after_exclusions():
    assert select_image(IMAGES, "ubuntu", "22.04", []).name == "Ubuntu 22.04"
    assert select_image(IMAGES[:3], "ubuntu", "22.04", [".*-old"]).name == "ubuntu-22.04-server"
    assert select_image(IMAGES, "centos", "9", []).name == "CentOS-9-Stream"


def test_no_image_is_a_non_retryable_error_listing_what_exists():
    with pytest.raises(ProvisionError) as err:
        select_image(IMAGES[:2], "ubuntu", "22.04", [".*-old"], node="n1")
    assert err.value.stage is Stage.IMAGE and not err.value.retryable and "CentOS-9-Stream" in str(err.value)


def test_size_is_the_smallest_that_fits_among_the_allowed():
    need = Resources(disk=30, ram=8000, cpus=2, volume_count=0, volume_size=0)
    assert select_size(SIZES, need, [".*"], ["win-.*"]).name == "m1.medium"
    assert select_size(SIZES, need, ["m1.l", "m1.x"], ["win-.*"]).name == "m1.large"
    assert select_size(SIZES, need, [".*"], []).name == "m1.medium"  # win- allowed but not smaller


def test_no_size_fits_is_a_non_retryable_error():
    need = Resources(disk=20, ram=64000, cpus=1, volume_count=0, volume_size=0)
    with pytest.raises(ProvisionError) as err:
        select_size(SIZES, need, [".*"], ["win-.*"])
    assert err.value.stage is Stage.SIZE and not err.value.retryable and "ram>=64000MB" in str(err.value)


def test_networks_and_security_groups_are_chosen_by_pattern_and_by_unique_name():
    nets = [Network("1", "public"), Network("2", "private")]
    assert [n.name for n in select_networks(nets, ["pub"])] == ["public"]
    assert select_networks([], [".*"]) == []
    with pytest.raises(ProvisionError, match="no network matches"):
        select_networks(nets, ["storage"])
    groups = [SecurityGroup("1", "default"), SecurityGroup("2", "ssh"), SecurityGroup("3", "ssh")]
    assert [g.id for g in select_security_groups(groups, ["default"])] == ["1"]
    with pytest.raises(ProvisionError, match="ambiguous"):
        select_security_groups(groups, ["ssh"])
    with pytest.raises(ProvisionError, match="does not exist"):
        select_security_groups(groups, ["web"])


def test_volume_names_are_zero_padded_to_the_width_of_the_last_index():
    assert volume_names("node1", 3) == ["node1_0", "node1_1", "node1_2"]
    assert volume_names("node1", 11)[0] == "node1_00" and volume_names("node1", 11)[-1] == "node1_10"


# -- user-data ---------------------------------------------------------------------------------------


def test_userdata_is_cloud_config_with_keys_hostname_and_the_readiness_marker_last():
    text = build_userdata(hostname="node1", fqdn="node1.lab.example", user="ubuntu", authorized_keys=["ssh-ed25519 AAA lab"],
                          os_type="ubuntu", os_version="22.04")
    assert text.startswith("#cloud-config\n")
    data = yaml.safe_load(text)
    assert data["user"] == "ubuntu" and data["hostname"] == "node1" and data["manage_etc_hosts"] is True
    assert data["ssh_authorized_keys"] == ["ssh-ed25519 AAA lab"]
    assert data["runcmd"][-2:] == [["passwd", "-d", "ubuntu"], ["touch", "/.teuth_provisioned"]]


def test_per_os_userdata_overrides_the_base_and_runs_its_commands_first():
    per_os = {"centos-9": {"packages": ["git", "wget"], "runcmd": [["dnf", "-y", "update"]], "manage_etc_hosts": False,
                           "ssh_authorized_keys": ["ssh-rsa BBB extra"]}}
    data = yaml.safe_load(build_userdata(hostname="n", fqdn="n.x", user="cloud-user", authorized_keys=["ssh-ed25519 AAA"],
                                         os_type="centos", os_version="9", per_os=per_os))
    assert data["packages"] == ["git", "wget"] and data["manage_etc_hosts"] is False and "hostname" not in data
    assert data["runcmd"][0] == ["dnf", "-y", "update"] and data["runcmd"][-1] == ["touch", "/.teuth_provisioned"]
    assert data["ssh_authorized_keys"] == ["ssh-ed25519 AAA", "ssh-rsa BBB extra"]
    assert per_os["centos-9"]["runcmd"] == [["dnf", "-y", "update"]]  # the config is not modified


# -- rate limiter, listings, polling -------------------------------------------------------------------


class FakeClock:
    def __init__(self):
        self.now = 100.0
        self.slept = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(round(seconds, 3))
        self.now += seconds


def test_listing_cache_loads_once_for_many_threads_and_again_after_the_ttl():
    clock = FakeClock()
    cache = ListingCache(ttl=60, clock=clock)
    loads = []

    def load():
        loads.append(1)
        time.sleep(0.05)  # the scenario: a slow listing, so the other threads arrive while it loads
        return ["image"]

    threads = [threading.Thread(target=cache.get, args=("images", load)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(loads) == 1
    clock.now += 61
    assert cache.get("images", load) == ["image"] and len(loads) == 2


def test_poll_backs_off_and_raises_the_timeout_error():
    clock = FakeClock()
    with pytest.raises(TimeoutError, match="late"):
        poll(lambda: None, 5.0, lambda: TimeoutError("late"), sleep=clock.sleep, clock=clock)
    assert clock.slept[0] < clock.slept[3] and max(clock.slept) <= 5.0 and abs(sum(clock.slept) - 5.0) < 0.01
    assert len(clock.slept) + 1 <= poll_bound(5.0)


# -- error triage and retries ------------------------------------------------------------------------------


@pytest.mark.parametrize("exc, kind, after", [
    (RateLimitReachedError(headers={"retry-after": "3"}), ErrorKind.RATE_LIMIT, 3.0),
    (BaseHTTPError(413, "413 Request Entity Too Large This request was rate-limited.", {"retry-after": "2"}),
     ErrorKind.RATE_LIMIT, 2.0),
    (BaseHTTPError(413, "413 VolumeLimitExceeded: Maximum number of volumes allowed (10) exceeded"), ErrorKind.QUOTA, None),
    (BaseHTTPError(403, "403 Forbidden Quota exceeded for instances"), ErrorKind.QUOTA, None),
    (BaseHTTPError(500, "500 oops"), ErrorKind.TRANSIENT, None),
    (BaseHTTPError(404, "404 not found"), ErrorKind.NOT_FOUND, None),
    (BaseHTTPError(400, "400 bad request"), ErrorKind.FATAL, None),
    (InvalidCredsError("x"), ErrorKind.AUTH, None),
    (BaseHTTPError(401, "401 Unauthorized"), ErrorKind.TRANSIENT, None),  # a dropped token: re-auth and retry
    (MalformedResponseError("Malformed response", body="code: 401 body: no"), ErrorKind.AUTH, None),  # Keystone's
    (MalformedResponseError("Malformed response", body="code: 503 body: busy"), ErrorKind.TRANSIENT, None),
    (requests.exceptions.ConnectionError("refused"), ErrorKind.TRANSIENT, None),
])
def test_openstack_errors_are_classified_for_retrying(exc, kind, after):
    info = classify_error(exc)
    assert info.kind is kind and info.retry_after == after


def _caller(max_time=5.0):
    clock = FakeClock()
    return CloudCaller(classify_error, RateLimiter(0), max_time=max_time, sleep=clock.sleep), clock


def test_caller_retries_transient_errors_then_returns():
    caller, clock = _caller()
    answers = iter([BaseHTTPError(500, "500 a"), BaseHTTPError(502, "502 b"), "ok"])

    def fn():
        a = next(answers)
        if isinstance(a, Exception):
            raise a
        return a

    assert caller.call(Stage.IMAGE, None, fn) == "ok" and len(clock.slept) == 2


def test_caller_honours_retry_after_and_fails_quota_at_once():
    caller, clock = _caller()
    calls = []

    def limited():
        calls.append(1)
        if len(calls) == 1:
            raise RateLimitReachedError(headers={"retry-after": "1.5"})
        raise BaseHTTPError(403, "403 Quota exceeded for cores")

    with pytest.raises(ProvisionError) as err:
        caller.call(Stage.CREATE, "n1", limited, what="create server")
    assert clock.slept == [1.5] and len(calls) == 2
    assert err.value.stage is Stage.CREATE and "quota exceeded" in str(err.value) and not err.value.retryable


def test_caller_gives_up_after_the_bounded_time_with_a_clear_error():
    caller = CloudCaller(classify_error, RateLimiter(0), max_time=1.0, backoff_base=0.05)
    calls = []

    def down():
        calls.append(1)
        raise requests.exceptions.ConnectionError("connection refused")

    start = time.monotonic()
    with pytest.raises(ProvisionError) as err:
        caller.call(Stage.BOOT, "n1", down, what="get server")
    assert "gave up after 1s" in str(err.value) and "connection refused" in str(err.value)
    assert time.monotonic() - start < 1.5 and len(calls) > 2


def test_caller_does_not_repeat_a_create_after_a_500_but_marks_it_retryable():
    caller, clock = _caller()
    calls = []

    def create():
        calls.append(1)
        raise BaseHTTPError(500, "500 boom")

    with pytest.raises(ProvisionError) as err:
        caller.call(Stage.CREATE, "n1", create, idempotent=False)
    assert len(calls) == 1 and err.value.retryable and "rolled back" in str(err.value)


def test_bad_credentials_become_an_auth_error():
    caller, _ = _caller()

    def auth():
        raise InvalidCredsError("Invalid credentials")

    with pytest.raises(ProvisionError) as err:
        caller.call(Stage.IMAGE, None, auth)
    assert err.value.stage is Stage.AUTH and not err.value.retryable

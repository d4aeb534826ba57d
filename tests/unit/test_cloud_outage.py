"""A cloud that refuses connections fails fast and visibly: a few short tries, each shown, then one per call."""

from __future__ import annotations

import pytest
import requests

from lablease.netutil import free_port
from lablease.provision.adapters.base import ErrorKind
from lablease.provision.adapters.openstack import classify_error
from lablease.provision.calls import CloudCaller
from lablease.provision.errors import ProvisionError, Stage
from lablease.provision.ratelimit import RateLimiter


def _refused() -> requests.exceptions.ConnectionError:
    """A real refused connection on loopback (a port nobody listens on), as libcloud's requests raises it."""
    try:
        requests.get(f"http://127.0.0.1:{free_port()}/", timeout=2)
    except requests.exceptions.ConnectionError as exc:
        return exc
    raise AssertionError("something listens on a free port")


def test_a_refused_connection_is_an_unreachable_cloud_in_one_short_line():
    info = classify_error(_refused())
    assert info.kind is ErrorKind.UNREACHABLE
    assert info.message.endswith("refused the connection") and "urllib3" not in info.message


def test_an_unreachable_cloud_gets_five_tries_in_eleven_seconds_each_shown_then_one_try_per_call_until_it_answers():
    slept: list[float] = []
    told: list[tuple[str, str | None, str]] = []
    caller = CloudCaller(classify_error, RateLimiter(0), max_time=120, sleep=slept.append,
                         on_retry=lambda stage, node, words: told.append((stage.value, node, words)))
    refused = _refused()
    tries: list[int] = []

    def down() -> None:
        tries.append(1)
        raise refused

    with pytest.raises(ProvisionError) as err:
        caller.call(Stage.CREATE, "node1", down, what="create server", idempotent=False)  # never sent: repeated
    assert len(tries) == 5 and slept == [1.0, 2.0, 4.0, 4.0]
    assert told[1] == ("create", "node1", "cloud unreachable, retry 3 of 5 in 2 s")
    assert err.value.kind is ErrorKind.UNREACHABLE and str(err.value).startswith(
        "node node1: create failed: cloud unreachable: 127.0.0.1:") and len(str(err.value)) < 120
    assert caller.unreachable and caller.trouble_at > 0

    with pytest.raises(ProvisionError):
        caller.call(Stage.DESTROY, "node1", down, what="delete server")
    assert len(tries) == 6  # the outage is known: a rollback's call fails at once

    assert caller.call(Stage.BOOT, None, lambda: "listed") == "listed"
    assert not caller.unreachable
    with pytest.raises(ProvisionError):
        caller.call(Stage.BOOT, None, down)
    assert len(tries) == 11  # answered in between: a new outage gets its five tries again

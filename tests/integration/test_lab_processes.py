"""Two `lablease serve` lab services on one PostgreSQL, 16 clients locking and unlocking through either.

The node_events trail is the witness: every node's state moves form one unbroken chain of allowed moves
(so no node was provisioned twice), and every lock follows an unlock (so no node had two owners).
bench/bench_lab_processes.py runs the same for longer.
"""

from __future__ import annotations

import httpx
import pytest

from lablease.provision.devlab import devcloud_lab_data, generate_lab_key
from lablease.store import NodeStore
from lablease.testing.lockserver import start_lock_server
from lablease.testing.labload import run_load
from lablease.testing.trail import check_trail

pytestmark = pytest.mark.integration

DOMAIN = "lab.example"
CLOUD = {"boot_delay": 0.2, "volume_delay": 0.05, "ssh": {"enabled": True, "delay": 0.1, "runcmd_delay": 0.05},
         "quotas": {"instances": 50, "volumes": 100, "cores": 500, "ram": 1000000}}
NODES, CLIENTS, SECONDS = 8, 16, 12.0


def test_two_service_processes_never_provision_a_node_twice_or_give_it_two_owners(
        postgres_url, devcloud_factory, dns_service, tmp_path):
    cloud = devcloud_factory(CLOUD)
    key = generate_lab_key(tmp_path / "lab_key")
    top = devcloud_lab_data(cloud, key, nsupdate_url=dns_service.update_url, lab_domain=DOMAIN, machine_type="dev",
                            max_parallel=8, boot_timeout=30, ready_timeout=30)
    servers = [start_lock_server(tmp_path / f"lab{i}", database_url=postgres_url, lab_domain=DOMAIN, top=top,
                                 extra={"reconcile_interval": 2}) for i in range(2)]
    try:
        names = [f"node{i}.{DOMAIN}" for i in range(1, NODES + 1)]
        for name in names:
            httpx.post(f"{servers[0].url}/nodes/", json={"name": name, "machine_type": "dev", "up": True,
                                                         "is_vm": True}).raise_for_status()
        load = run_load([s.url for s in servers], "dev", CLIENTS, SECONDS)
        assert load.unlock_errors == [] and load.statuses[200] >= 5 and set(load.statuses) <= {200, 503}, load
        store = NodeStore.open(postgres_url, run_migrations=False, pool_size=2)
        try:
            provisioned = check_trail(store, names)
        finally:
            store.close()
        assert sum(provisioned.values()) >= load.nodes_locked
        assert cloud.resources()["servers"] == [] and cloud.resources()["volumes"] == []
        assert all(dns_service.bind.addresses(n.split(".")[0]) == set() for n in names)
    finally:
        for server in servers:
            server.stop()

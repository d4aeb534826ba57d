"""The servers `make demo` runs on loopback: devcloud (with SSH), BIND, the DNS service, the lock server.

Each is the real program in its own process group on a free port, as in the integration tests;
`running_stack()` starts them and stops every one of them again, whatever happens in between.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from lablease.store import NodeStore
from lablease.testing.bind import BindServer, start_bind
from lablease.testing.devcloud import DevcloudHandle, start_devcloud
from lablease.testing.dns import DnsServiceHandle, start_dns_service
from lablease.testing.lockserver import LockServer, start_lock_server

LAB_DOMAIN = "lab.example"
MACHINE_TYPE = "devcloud"
# Short delays so the demo is quick; the stages are the same as with a real cloud's minutes.
CLOUD_CONFIG = {"boot_delay": 1.0, "volume_delay": 0.2,
                "ssh": {"enabled": True, "delay": 0.3, "runcmd_delay": 0.2}}


@dataclass
class Stack:
    """Handles of the running servers, and the lock server's store for provisioning state."""

    cloud: DevcloudHandle
    bind: BindServer
    dns: DnsServiceHandle
    lock: LockServer
    store: NodeStore


@contextlib.contextmanager
def running_stack(workdir: Path, cloud_config: dict[str, Any] | None = None) -> Iterator[Stack]:
    """Start the four servers under ``workdir`` and yield them; stop them all on the way out.

    ``cloud_config`` is devcloud's config (default CLOUD_CONFIG: SSH on, short delays).
    """
    with contextlib.ExitStack() as stop:
        cloud = start_devcloud(workdir / "devcloud", CLOUD_CONFIG if cloud_config is None else cloud_config)
        stop.callback(cloud.stop)
        bind = start_bind(workdir / "bind", LAB_DOMAIN, f"*.{LAB_DOMAIN}.")
        stop.callback(bind.stop)
        dns = start_dns_service(workdir / "dns", bind, allow_pattern=rf"{MACHINE_TYPE}[0-9]+")
        stop.callback(dns.stop)
        lock = start_lock_server(workdir / "lockserver", lab_domain=LAB_DOMAIN)
        stop.callback(lock.stop)
        # The lock server keeps its inventory in SQLite; provisioning state is written through
        # the store API, as the lab service does (the HTTP API does not take those fields).
        store = NodeStore.open(f"sqlite:///{workdir / 'lockserver' / 'data' / 'lablease.db'}", run_migrations=False)
        stop.callback(store.close)
        yield Stack(cloud=cloud, bind=bind, dns=dns, lock=lock, store=store)

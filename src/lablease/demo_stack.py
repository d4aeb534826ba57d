"""The servers `make demo` runs on loopback: devcloud (with SSH), BIND, the DNS service, the lab service.

Each is the real program in its own process group on a free port, as in the integration tests;
`running_stack()` starts them and stops every one of them again, whatever happens in between. The
lab service is `lablease serve` with the lab's libcloud: section (devcloud as the provider), on SQLite.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from lablease.provision.devlab import devcloud_lab_data, generate_lab_key
from lablease.testing.bind import BindServer, start_bind
from lablease.testing.devcloud import DevcloudHandle, start_devcloud
from lablease.testing.dns import DnsServiceHandle, start_dns_service
from lablease.testing.lockserver import LockServer, start_lock_server

LAB_DOMAIN = "lab.example"
MACHINE_TYPE = "devcloud"
# Short delays so the demo is quick; the stages are the same as with a real cloud's minutes.
CLOUD_CONFIG = {"boot_delay": 1.0, "volume_delay": 0.2,
                "ssh": {"enabled": True, "delay": 0.3, "runcmd_delay": 0.2}}


# One 1 GB volume per node: the lab's global teuthology `openstack:` hints.
VOLUMES = {"count": 1, "size": 1}


@dataclass
class Stack:
    """Handles of the running servers; ``key_file`` is the lab's SSH key (only the lab service uses it)."""

    cloud: DevcloudHandle
    bind: BindServer
    dns: DnsServiceHandle
    lock: LockServer
    key_file: Path
    ssh_user: str


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
        key_file = generate_lab_key(workdir / "lab_key")  # made at run time; its public key goes into user-data
        top = devcloud_lab_data(cloud, key_file, nsupdate_url=dns.update_url, lab_domain=LAB_DOMAIN,
                                machine_type=MACHINE_TYPE)
        top["openstack"] = {"volumes": VOLUMES}
        lock = start_lock_server(workdir / "lockserver", lab_domain=LAB_DOMAIN, top=top)
        stop.callback(lock.stop)
        yield Stack(cloud=cloud, bind=bind, dns=dns, lock=lock, key_file=key_file,
                    ssh_user=top["libcloud"]["providers"][MACHINE_TYPE]["ssh_user"])

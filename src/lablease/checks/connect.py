"""`lablease config check --connect`: ask the cloud and the DNS service whether the config works.

For each provider: authenticate, find the image a lock that names no OS gets (``default_os_type``
and ``default_os_version``) and the size the lab's default hints need; then ask ``nsupdate_url``'s
``/healthz``. Each answer is one ``Probe``: what was checked, whether it passed, and what was found
or why not (the cloud's and lablease's own words, which never carry a credential).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

from lablease.config.lab import LabConfig
from lablease.config.redact import redact_text


@dataclass(frozen=True)
class Probe:
    ok: bool
    what: str
    text: str
    warn: bool = False  # works, but will not do what the lab expects (ok stays True: no failed exit)

    def line(self) -> str:
        """``ok    dev: image: …``, ``warn  dev: quota: …`` or ``FAIL  dev: …``; a URL's password is never shown."""
        mark = "FAIL" if not self.ok else "warn" if self.warn else "ok  "
        return redact_text(f"{mark}  {self.what}: {self.text}")


def connect_probes(lab: LabConfig, *, token_cache_dir: str | None = "~/.cache/lablease/tokens") -> Iterator[Probe]:
    """One probe per check, as each finishes (so a slow cloud shows what is already known)."""
    for name in sorted(lab.libcloud.providers):
        yield from _provider(lab, name, token_cache_dir)
    if lab.nsupdate_url:
        yield _dns(lab.nsupdate_url)


def _provider(lab: LabConfig, name: str, token_cache_dir: str | None) -> Iterator[Probe]:
    from lablease.config.errors import ConfigError
    from lablease.provision.context import ProvisionerOptions
    from lablease.provision.engine import Provisioner
    from lablease.provision.errors import ProvisionError, Stage
    from lablease.provision.hints import merge_hints
    from lablease.provision.floating import pool_network
    from lablease.provision.selection import select_image, select_networks, select_size, wants_boot_volume

    provider = lab.provider(name)
    args = provider.driver_args
    try:
        prov = Provisioner(lab, name, None, ProvisionerOptions(token_cache_dir=token_cache_dir))
    except ConfigError as exc:
        yield Probe(False, name, str(exc))
        return

    def step(what: str, work: Callable[[], str]) -> Probe:
        try:
            return Probe(True, f"{name}: {what}", work())
        except (ProvisionError, ConfigError) as exc:
            return Probe(False, f"{name}: {what}", getattr(exc, "message", str(exc)))

    def listing(stage: Stage, load: Callable[[], list]) -> list:
        return prov.caller.call(stage, None, load, what=f"list {stage.value}s")

    def authenticate() -> str:
        prov.prepare()
        if provider.driver != "openstack":
            return f"authenticated: {prov.adapter.account()}"
        project = args.get("ex_tenant_name") or "-"
        region = args.get("ex_force_service_region") or "-"
        return (f"authenticated as {args.get('username')} (project {project}, region {region}) "
                f"at {args.get('ex_force_auth_url')}")

    def image() -> str:
        os_type, os_version = provider.default_os_type, provider.default_os_version
        images = listing(Stage.IMAGE, prov.adapter.list_images)
        found = select_image(images, os_type, os_version, provider.exclude_image)
        return f"{found.name!r} for {os_type} {os_version} (default_os_type, default_os_version)"

    chosen = []

    def size() -> str:
        need = merge_hints(lab.openstack)
        found = select_size(listing(Stage.SIZE, prov.adapter.list_sizes), need, provider.allow_sizes,
                            provider.exclude_sizes, boot_from_volume=provider.boot_from_volume)
        chosen.append(found)
        root = f", root on a {need.disk} GB volume" if wants_boot_volume(found, provider.boot_from_volume) else ""
        return (f"{found.name!r} ({found.ram} MB, {found.disk} GB, {found.vcpus} cpus{root}) fits the default hints "
                f"(ram {need.ram} MB, disk {need.disk} GB, cpus {need.cpus})")

    def network() -> str:
        listed = listing(Stage.NETWORK, prov.adapter.list_networks)
        pool = pool_network(listed, provider.floating_ip_pool, None) if provider.floating_ip_pool else None
        nets = select_networks([n for n in listed if pool is None or n.id != pool.id], provider.allow_networks,
                               exact=provider.networks)
        names = ", ".join(n.name for n in nets) or "the cloud's default"
        return f"servers on {names}" + (f"; floating IPs from {pool.name} ({pool.id})" if pool else "")

    with prov:
        auth = step("auth", authenticate)
        yield auth
        if not auth.ok:
            return
        yield step("image", image)
        yield step("size", size)
        if provider.floating_ip_pool or provider.networks:
            yield step("network", network)
        if chosen:
            try:
                limits = prov.caller.call(Stage.SIZE, None, prov.adapter.compute_limits, what="get limits")
            except ProvisionError as exc:
                yield Probe(True, f"{name}: quota", f"the cloud did not give its limits ({exc.message})", warn=True)
                return
            if limits:
                yield quota_probe(name, chosen[0], limits, count_records(lab, name))


def capacity(size, limits: dict[str, int]) -> tuple[int, str] | None:  # noqa: ANN001
    """How many nodes of ``size`` the project's limits hold at once, and the limit that decides it."""
    per_node = (("instances", "maxTotalInstances", 1), ("cores", "maxTotalCores", size.vcpus),
                ("RAM MB", "maxTotalRAMSize", size.ram))
    fits = [(limits[key] // each, f"{what} {limits[key]}" + (f" / {each} a node" if each > 1 else ""))
            for what, key, each in per_node if limits.get(key, -1) >= 0 and each > 0]  # Nova: -1 is unlimited
    return min(fits) if fits else None


def count_records(lab: LabConfig, machine_type: str) -> int | str:
    """How many node records of ``machine_type`` the lab's database holds; or why they could not be counted."""
    from pathlib import Path

    from lablease.lockapi.settings import LockSettings
    from lablease.store import NodeFilter, NodeStore

    try:
        url = LockSettings.from_mapping({"lablease": (lab.model_extra or {}).get("lablease") or {}}).database_url
        if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
            return 0  # no database yet: no records (and none is made here)
        store = NodeStore.open(url, run_migrations=False, pool_size=1)
        try:
            return len(store.list(NodeFilter(machine_type=machine_type)))
        finally:
            store.close()
    except Exception as exc:  # noqa: BLE001 - the count is advice; any failure is said, not raised
        return f"the lab's database could not be read ({type(exc).__name__})"


def quota_probe(name: str, size, limits: dict[str, int], records: int | str) -> Probe:  # noqa: ANN001
    """Whether every record of ``name`` can be a node of ``size`` at once within the project's limits."""
    fits = capacity(size, limits)
    if fits is None:
        return Probe(True, f"{name}: quota", "the cloud sets no instance, core or RAM limit")
    at_once, tightest = fits
    held = f"the project's quota holds {at_once} node(s) of {size.name!r} at once ({tightest})"
    if isinstance(records, str):
        return Probe(True, f"{name}: quota", f"{held}; {records}, so its records were not compared", warn=True)
    if records > at_once:
        return Probe(True, f"{name}: quota", f"{records} records of {name} x {size.name!r} exceed it: {held}; a lock "
                     f"of more than {at_once} fails (503) and the warm pool stalls. Raise the quota, lower the "
                     f"openstack: hints or remove records (lablease nodes remove)", warn=True)
    return Probe(True, f"{name}: quota", f"{held}; {name} has {records} record(s)")


def _dns(url: str) -> Probe:
    import httpx

    from lablease.dns.client import DNSClient

    with DNSClient(url) as client:
        health = f"{client.base_url}/healthz"
    try:
        response = httpx.get(health, timeout=5.0)
    except httpx.HTTPError as exc:
        return Probe(False, "nsupdate_url",
                     f"{health} unreachable ({type(exc).__name__}); is lablease dns serve running?")
    if response.status_code != 200:
        answer = " ".join(response.text.split())[:200]
        return Probe(False, "nsupdate_url", f"{health} answered {response.status_code}: {answer}")
    return Probe(True, "nsupdate_url", f"{health} answered 200")

"""What one provider's engine works with, built once from the lab config: the explicit wiring.

``ProvisionerOptions`` are the knobs a caller may set (an injected adapter, the token cache, the poll
pace, the SSH probe, the cloud-call hook); ``build_context`` turns a provider's config and those
options into a ``ProviderContext``, which the ``Provisioner`` and its ``Lifecycle`` are given whole.
Nothing is attached to them after construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from lablease.config.errors import ConfigError
from lablease.config.lab import LabConfig, ProviderConfig
from lablease.provision.adapters import CloudAdapter, adapter_for
from lablease.provision.adapters.base import Server, Volume
from lablease.provision.calls import CallObserver, CloudCaller, RetryObserver
from lablease.provision.cancelscope import CancelScope
from lablease.provision.listings import ListingCache
from lablease.provision.ratelimit import RateLimiter
from lablease.provision.readiness import SSHProbe, load_private_key, public_key_line
from lablease.provision.tokencache import FileTokenCache
from lablease.provision.watch import Watch, shared_listing

_DEFAULT_KEYS = ("~/.ssh/id_ed25519", "~/.ssh/id_rsa")


@dataclass(frozen=True)
class ProvisionerOptions:
    """How to build a provider's engine. ``shared_polls``: waiting nodes look themselves up in one server
    and one volume listing per poll interval (``poller.SharedListing``) instead of one GET each; None
    turns it on when the engine builds its own adapter, since a fake may move its states only when asked
    for one resource. ``on_call`` is told of every cloud request (the lab service's metrics)."""

    adapter: CloudAdapter | None = None
    token_cache_dir: str | Path | None = "~/.cache/lablease/tokens"
    poll_first: float = 0.2
    poll_cap: float = 5.0
    ssh_connect_timeout: float = 10.0
    probe: SSHProbe | None = None
    shared_polls: bool | None = None
    on_call: CallObserver | None = None


@dataclass(frozen=True)
class CloudAccess:
    """How one provider's cloud is reached: the adapter, the caller (spacing, retries, named errors) with
    its rate gate, the cached listings of images and sizes, and the watches on servers and volumes."""

    adapter: CloudAdapter
    caller: CloudCaller
    limiter: RateLimiter
    listings: ListingCache
    servers: Watch[Server]
    volumes: Watch[Volume]

    def close(self) -> None:
        """Stop the shared listings (waits still running raise)."""
        for watch in (self.servers, self.volumes):
            if watch.listing is not None:
                watch.listing.close()


@dataclass(frozen=True)
class Pace:
    """How often a wait looks: first after ``first`` seconds, growing to ``cap``."""

    first: float = 0.2
    cap: float = 5.0


@dataclass(frozen=True)
class ProviderContext:
    """Everything the lifecycle of one provider's nodes needs; ``cancel`` is the engine's cancel flag
    (set, it stops create's waits; a create's own scope can stop that create alone), ``dns`` a
    ``lablease.dns.client.DNSClient`` or None to skip DNS."""

    provider: ProviderConfig
    lab: str
    cloud: CloudAccess
    probe: SSHProbe
    public_keys: list[str]
    dns: Any
    cancel: CancelScope
    pace: Pace


def lab_key(provider: ProviderConfig, machine_type: str):  # noqa: ANN201 - a paramiko PKey
    """The private key the lab logs in to nodes with (ConfigError when there is none or it cannot be read)."""
    path = provider.ssh_key_file
    if path is None:
        path = next((p for p in _DEFAULT_KEYS if Path(p).expanduser().is_file()), None)
    if path is None:
        raise ConfigError("no SSH key pair for logging in to nodes", key=f"libcloud.providers.{machine_type}.ssh_key_file",
                          fix="set ssh_key_file to the lab's private key (its public key is derived from it)")
    try:
        return load_private_key(path, provider.ssh_key_passphrase)
    except Exception as exc:  # paramiko raises several types; never echo the passphrase
        raise ConfigError(f"cannot read the SSH private key ({type(exc).__name__})",
                          key=f"libcloud.providers.{machine_type}.ssh_key_file",
                          fix="give an unencrypted key or the right ssh_key_passphrase") from None


def _watch(kind: str, caller: CloudCaller, get: Callable, list_all: Callable, shared: bool) -> Watch:
    listing = shared_listing(kind, caller, list_all) if shared else None
    return Watch(kind, caller, get, listing, list_all)


def build_context(config: LabConfig, machine_type: str, dns_client: Any, options: ProvisionerOptions,
                  on_retry: RetryObserver | None = None) -> ProviderContext:
    """The context of ``machine_type``'s provider: its adapter (``options.adapter`` or one built from the
    config), caller (``on_retry`` told of every repeated cloud call), rate gate, listings, watches, SSH
    probe and public keys."""
    provider = config.provider(machine_type)
    lab = config.lab_domain
    token_cache = FileTokenCache(options.token_cache_dir) if options.token_cache_dir else None
    adapter = options.adapter or adapter_for(provider, token_cache=token_cache)
    limiter = RateLimiter(provider.rate)
    caller = CloudCaller(adapter.classify, limiter, max_time=provider.api_retry_time, on_call=options.on_call,
                         on_retry=on_retry)
    key = lab_key(provider, machine_type)
    probe = options.probe or SSHProbe(user=provider.ssh_user, key=key, port=provider.ssh_port,
                                      command=provider.ready_command, connect_timeout=options.ssh_connect_timeout)
    public_keys = [public_key_line(key, f"lablease@{lab}")] + provider.public_key_lines()
    shared = options.adapter is None if options.shared_polls is None else options.shared_polls
    cloud = CloudAccess(adapter=adapter, caller=caller, limiter=limiter, listings=ListingCache(provider.listing_ttl),
                        servers=_watch("servers", caller, adapter.get_server, adapter.list_servers, shared),
                        volumes=_watch("volumes", caller, adapter.get_volume, adapter.list_volumes, shared))
    return ProviderContext(provider=provider, lab=lab, cloud=cloud, probe=probe, public_keys=public_keys,
                           dns=dns_client, cancel=CancelScope(), pace=Pace(options.poll_first, options.poll_cap))

"""Cloud adapters: the small, driver-specific part under the generic engine."""

from lablease.provision.adapters.base import (
    CloudAdapter,
    ErrorInfo,
    ErrorKind,
    Image,
    Network,
    SecurityGroup,
    Server,
    ServerSpec,
    Size,
    Volume,
)

__all__ = ["CloudAdapter", "ErrorInfo", "ErrorKind", "Image", "Network", "SecurityGroup", "Server",
           "ServerSpec", "Size", "Volume", "adapter_for"]


def adapter_for(provider, token_cache=None) -> CloudAdapter:
    """Build the adapter for a provider's ``driver`` (only OpenStack so far)."""
    if provider.driver == "openstack":
        from lablease.provision.adapters.openstack import OpenStackAdapter

        return OpenStackAdapter(provider, token_cache=token_cache)
    raise ValueError(f"no adapter for driver {provider.driver!r}")

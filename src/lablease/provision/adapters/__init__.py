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
    """Build the adapter for a provider's ``driver``: ``openstack`` or ``ec2``."""
    if provider.driver == "openstack":
        from lablease.provision.adapters.openstack import OpenStackAdapter

        return OpenStackAdapter(provider, token_cache=token_cache)
    if provider.driver == "ec2":
        from lablease.provision.adapters.ec2 import EC2Adapter

        return EC2Adapter(provider)
    raise ValueError(f"no adapter for driver {provider.driver!r}")

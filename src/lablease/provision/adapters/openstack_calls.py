"""What the OpenStack adapter asks of libcloud's driver beyond its own calls: every page, and floating IPs.

libcloud's OpenStack 2.x driver follows ``next`` links for servers (``servers_links``), volumes
(``volumes_links``) and images (Glance's ``next``), but lists flavors, networks and security groups
with one request; its 1.1 driver follows none. A cloud whose page is smaller than the listing would
hand over only its first page, so every listing here goes through the driver's own pager
(``_paginated_request``, which follows ``<key>_links``), or its 2.x driver's own paged call.

Floating IPs are Neutron's (``/v2.0/floatingips``): allocated already associated with the server's
port and described with lablease's tags in one POST; libcloud's ``ex_create_floating_ip`` and
``ex_attach_floating_ip_to_node`` would take four requests (pool listing, POST, port listing, PUT)
and cannot describe the address, which is how the reconciler knows it.
"""

from __future__ import annotations

from typing import Any

from libcloud import pricing
from libcloud.common.exceptions import BaseHTTPError
from libcloud.compute.drivers.openstack import OpenStack_2_NodeDriver

from lablease.provision.adapters.base import FloatingIP

FIPS = "/v2.0/floatingips"


def _v2(driver: Any) -> OpenStack_2_NodeDriver:
    if not isinstance(driver, OpenStack_2_NodeDriver):
        raise NotImplementedError("floating IPs need the OpenStack 2.x driver (Neutron); this provider uses "
                                  "libcloud's 1.1 driver")
    return driver


def price_list_once(api_name: str) -> None:
    """Make libcloud read its price list (a 4.5 MB JSON file) for ``api_name`` at most once per process.

    libcloud caches a driver's prices only when its file has them, and it has none for OpenStack: so
    every size of every ``list_sizes`` re-read and re-parsed the whole file (~0.1 s and ~10 MB for a
    moment, per size), the ~10 MB RSS steps every ``listing_ttl`` seen in the soak (docs/performance.md,
    "Growth"). Looked up once here; when the file has no prices for the driver, an empty list is cached
    in their place: a size's price is then None, libcloud's "not available", with no read (it was 0.0,
    from the KeyError; lablease reads no price).
    """
    if api_name in pricing.PRICING_DATA["compute"]:
        return
    try:
        pricing.get_pricing("compute", api_name)  # caches what it finds (a custom file may have prices)
    except (KeyError, OSError, ValueError):  # none for this driver, or no readable file: no prices
        pricing.set_pricing("compute", api_name, {})


def paged(driver: Any, url: str, key: str, connection: Any = None, params: dict[str, Any] | None = None) -> dict:
    """``{key: [every item of every page]}``, following ``<key>_links`` ``next`` links."""
    return driver._paginated_request(url, key, connection or driver.connection, params=dict(params or {}))


def list_servers(driver: Any) -> list:
    return driver._to_nodes(paged(driver, "/servers/detail", "servers"))


def list_volumes(driver: Any) -> list:
    if isinstance(driver, OpenStack_2_NodeDriver):
        return driver.list_volumes()  # Cinder's /volumes/detail, paged by libcloud
    return driver._to_volumes(paged(driver, "/os-volumes", "volumes"))


def list_images(driver: Any) -> list:
    if isinstance(driver, OpenStack_2_NodeDriver):
        return driver.list_images()  # Glance v2, paged by libcloud
    return driver._to_images(paged(driver, "/images/detail", "images"), True)


def list_sizes(driver: Any) -> list:
    """Every flavor as libcloud's size (its price list is read once per process: ``price_list_once``)."""
    return driver._to_sizes(paged(driver, "/flavors/detail", "flavors"))


def list_networks(driver: Any) -> list:
    if not isinstance(driver, OpenStack_2_NodeDriver):
        return driver.ex_list_networks()  # Nova's /os-networks: no pages
    return driver._to_networks(paged(driver, "/v2.0/networks", "networks", driver.network_connection))


def list_security_groups(driver: Any) -> list:
    if not isinstance(driver, OpenStack_2_NodeDriver):
        return driver.ex_list_security_groups()
    return driver._to_security_groups(paged(driver, "/v2.0/security-groups", "security_groups",
                                            driver.network_connection))


def _fip(obj: dict[str, Any]) -> FloatingIP:
    return FloatingIP(id=str(obj["id"]), address=str(obj.get("floating_ip_address") or ""),
                      network_id=str(obj.get("floating_network_id") or ""), port_id=obj.get("port_id") or None,
                      description=str(obj.get("description") or ""),
                      revision=obj.get("revision_number") if isinstance(obj.get("revision_number"), int) else None,
                      raw=obj)


def list_floating_ips(driver: Any, network_id: str | None = None) -> list[FloatingIP]:
    params = {"floating_network_id": network_id} if network_id else {}
    answer = paged(_v2(driver), FIPS, "floatingips", driver.network_connection, params)
    return [_fip(obj) for obj in answer["floatingips"]]


def server_port(driver: Any, server_id: str) -> str | None:
    answer = _v2(driver).network_connection.request("/v2.0/ports", params={"device_id": server_id}).object
    ports = sorted((answer or {}).get("ports") or [], key=lambda p: str(p.get("id")))
    return str(ports[0]["id"]) if ports else None


def create_floating_ip(driver: Any, network_id: str, port_id: str, description: str) -> FloatingIP:
    body = {"floatingip": {"floating_network_id": network_id, "port_id": port_id, "description": description}}
    answer = _v2(driver).network_connection.request(FIPS, method="POST", data=body).object
    return _fip(answer["floatingip"])


def associate_floating_ip(driver: Any, fip_id: str, port_id: str, description: str,
                          revision: int | None = None) -> FloatingIP:
    """A PUT; with ``revision``, Neutron's conditional update (``If-Match: revision_number=N``, 412 when the
    floating IP changed since it was listed; a Neutron without the revision_if_match extension ignores it)."""
    body = {"floatingip": {"port_id": port_id, "description": description}}
    headers = {"If-Match": f"revision_number={revision}"} if revision is not None else None
    answer = _v2(driver).network_connection.request(f"{FIPS}/{fip_id}", method="PUT", data=body,
                                                    headers=headers).object
    return _fip(answer["floatingip"])


def delete_floating_ip(driver: Any, fip_id: str) -> None:
    """Neutron disassociates an associated floating IP as it releases it: one DELETE does both."""
    _v2(driver).network_connection.request(f"{FIPS}/{fip_id}", method="DELETE")


class FloatingIPCalls:
    """The adapter's floating IP calls (mixed into ``OpenStackAdapter``, which gives ``_driver``)."""

    def _driver(self) -> Any:
        raise NotImplementedError

    def list_floating_ips(self, network_id: str | None = None) -> list[FloatingIP]:
        return list_floating_ips(self._driver(), network_id)

    def server_port(self, server_id: str) -> str | None:
        return server_port(self._driver(), server_id)

    def create_floating_ip(self, network_id: str, port_id: str, description: str) -> FloatingIP:
        return create_floating_ip(self._driver(), network_id, port_id, description)

    def associate_floating_ip(self, fip_id: str, port_id: str, description: str,
                              revision: int | None = None) -> FloatingIP | None:
        try:
            return associate_floating_ip(self._driver(), fip_id, port_id, description, revision)
        except BaseHTTPError as exc:
            # 412: changed since listed (another process took it); 404: released; 409: Neutron's own refusal
            # to move an address another port holds. Each means: not ours to take.
            if exc.code in (404, 409, 412):
                return None
            raise

    def delete_floating_ip(self, fip_id: str) -> None:
        try:
            delete_floating_ip(self._driver(), fip_id)
        except BaseHTTPError as exc:
            if exc.code != 404:
                raise

"""libcloud's price list is read at most once per process, not once per size of every size listing.

libcloud has no prices for OpenStack, so it cached nothing and re-read its 4.5 MB pricing.json for every
flavor each time sizes were listed: ~10 MB for a moment, every listing_ttl (docs/performance.md, "Growth").
"""

from __future__ import annotations

from libcloud import pricing

from lablease.config.lab import ProviderConfig
from lablease.provision.adapters.openstack import OpenStackAdapter

PROVIDER = {"driver": "openstack", "driver_args": {"username": "u", "password": "p",
                                                    "ex_force_auth_url": "http://127.0.0.1:9",
                                                    "ex_force_auth_version": "3.x_password", "ex_tenant_name": "t"}}


def _count_reads(monkeypatch) -> list[str]:
    reads: list[str] = []
    real = pricing.get_pricing_file_path

    def counted(file_path=None):
        reads.append("read")
        return real(file_path)

    monkeypatch.setattr(pricing, "get_pricing_file_path", counted)
    monkeypatch.setattr(pricing, "PRICING_DATA", {"compute": {}, "storage": {}})  # a fresh process's
    return reads


def test_listing_sizes_again_and_again_reads_libclouds_price_list_at_most_once(monkeypatch):
    reads = _count_reads(monkeypatch)
    adapter = OpenStackAdapter(ProviderConfig(**PROVIDER))
    driver = adapter._new_driver()  # no request is made: building a driver does not connect
    prices = [driver._get_size_price(str(flavor)) for _ in range(3) for flavor in range(5)]  # what list_sizes asks
    assert prices == [None] * 15  # libcloud's "not available" (0.0 before, from its KeyError); unused
    assert len(reads) <= 1
    assert pricing.PRICING_DATA["compute"]["openstack"] == {}


def test_a_second_adapter_does_not_read_it_again(monkeypatch):
    reads = _count_reads(monkeypatch)
    OpenStackAdapter(ProviderConfig(**PROVIDER))
    OpenStackAdapter(ProviderConfig(**PROVIDER))
    assert len(reads) == 1

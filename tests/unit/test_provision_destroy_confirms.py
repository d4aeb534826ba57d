"""A destroy (and a rollback) reports success only when a listing begun after its deletes shows nothing of the node.

The fake cloud here shows a volume the first listing did not: what a create whose answer was lost makes
when the cloud carries it out late. The cloud boundary is faked; the engine is the real one.
"""

from __future__ import annotations

import pytest

from lablease.provision.adapters.base import Volume
from lablease.provision.errors import ProvisionError
from lablease.provision.models import TAG_ATTEMPT, TAG_LAB
from tests.unit.test_provision_engine import FakeCloud, lab_key, make  # noqa: F401 - fixture


class LateCloud(FakeCloud):
    """Each of the first ``late`` deletes makes one more ``<node>_<i>`` volume appear, tagged by this lab."""

    def __init__(self, node: str, late: int, **kwargs):
        super().__init__(**kwargs)
        self.node, self.late = node, late

    def _appear(self) -> None:
        with self.lock:
            if self.late > 0:
                self.late -= 1
                vid = f"late-{self.late}"
                self.volumes[vid] = Volume(vid, f"{self.node}_{self.late}", "available", 1,
                                           metadata={TAG_LAB: "lab.example", TAG_ATTEMPT: "1-lost"})

    def delete_server(self, server_id):
        super().delete_server(server_id)
        self._appear()

    def delete_volume(self, volume_id):
        super().delete_volume(volume_id)
        self._appear()


def test_a_destroy_deletes_what_appears_after_its_first_listing_before_it_reports_success(lab_key):
    cloud = LateCloud("node1", late=1)
    prov, _ = make(lab_key, cloud=cloud)
    prov.create("node1", "ubuntu", "22.04")
    prov.destroy("node1")
    assert cloud.servers == {} and cloud.volumes == {}


def test_a_destroy_that_still_finds_parts_of_the_node_fails_naming_them(lab_key):
    cloud = LateCloud("node2", late=10)
    prov, _ = make(lab_key, cloud=cloud)
    prov.create("node2", "ubuntu", "22.04")
    with pytest.raises(ProvisionError) as err:
        prov.destroy("node2")
    assert "still there" in err.value.message and "node2_" in err.value.message
    assert cloud.volumes  # it said so: something of the node remains


"""A second, independent client (openstacksdk) works against devcloud, so it is not shaped around libcloud."""

from __future__ import annotations

import openstack
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")]


@pytest.mark.parametrize("identity_api_version", ["3", "2"])
def test_openstacksdk_lists_everything_and_creates_and_deletes_a_server(devcloud, identity_api_version):
    auth = {"auth_url": devcloud.url, "username": "demo", "password": "demo-password", "project_name": "demo"}
    if identity_api_version == "3":
        auth.update(user_domain_name="Default", project_domain_name="Default")
    conn = openstack.connect(**auth, region_name="RegionOne", identity_api_version=identity_api_version,
                             load_yaml_config=False, load_envvars=False)
    try:
        assert list(conn.compute.servers()) == []
        assert {"m1.tiny", "win-m1.large"} <= {f.name for f in conn.compute.flavors()}
        assert "CentOS-9-Stream" in {i.name for i in conn.image.images()}
        assert list(conn.block_storage.volumes()) == []
        image = conn.image.find_image("Ubuntu 22.04")
        flavor = conn.compute.find_flavor("m1.small")
        network = conn.network.find_network("public")
        server = conn.compute.create_server(name="sdk-1", image_id=image.id, flavor_id=flavor.id,
                                            networks=[{"uuid": network.id}], metadata={"k": "v"})
        server = conn.compute.wait_for_server(server, interval=0.1, wait=20)
        assert server.status == "ACTIVE" and server.metadata == {"k": "v"}
        assert [a["addr"] for a in server.addresses["public"]] == devcloud.resources()["servers"][0]["addresses"]
        conn.compute.delete_server(server)
        conn.compute.wait_for_delete(server, interval=0.1, wait=20)
        assert list(conn.compute.servers()) == []
        assert "GET <unmatched>" not in devcloud.request_counts()
    finally:
        conn.close()


def test_openstacksdk_creates_attaches_detaches_and_deletes_a_volume(devcloud):
    conn = openstack.connect(auth_url=devcloud.url, username="demo", password="demo-password", project_name="demo",
                             user_domain_name="Default", project_domain_name="Default", region_name="RegionOne",
                             load_yaml_config=False, load_envvars=False)
    try:
        volume = conn.block_storage.create_volume(size=1, name="sdk-vol")
        volume = conn.block_storage.wait_for_status(volume, "available", interval=0.1, wait=20)
        server = conn.compute.create_server(name="sdk-2", image_id=conn.image.find_image("CentOS-9-Stream").id,
                                            flavor_id=conn.compute.find_flavor("m1.tiny").id)
        server = conn.compute.wait_for_server(server, interval=0.1, wait=20)
        conn.compute.create_volume_attachment(server, volume_id=volume.id)
        conn.block_storage.wait_for_status(volume, "in-use", interval=0.1, wait=20)
        assert [a.volume_id for a in conn.compute.volume_attachments(server)] == [volume.id]
        conn.compute.delete_volume_attachment(server, volume.id)
        conn.block_storage.wait_for_status(volume, "available", interval=0.1, wait=20)
        conn.block_storage.delete_volume(volume)
        conn.compute.delete_server(server)
        assert devcloud.resources()["volumes"] == [] and devcloud.resources()["servers"] == []
    finally:
        conn.close()

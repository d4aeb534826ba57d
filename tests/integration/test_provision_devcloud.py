"""The engine end to end: libcloud over HTTP to devcloud (real sshd per server), the DNS service in front of a
real BIND, readiness over real SSH with a lab key generated for the test. Destroy leaves nothing anywhere.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import paramiko
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from lablease.dns.client import DNSClient
from lablease.provision.devlab import devcloud_lab_config, generate_lab_key
from lablease.provision.engine import Provisioner
from lablease.provision.context import ProvisionerOptions
from lablease.provision.models import CreateRequest

pytestmark = pytest.mark.integration

BOOT_DELAY, SSH_DELAY, VOLUME_DELAY = 0.5, 0.3, 0.1
CLOUD = {"boot_delay": BOOT_DELAY, "volume_delay": VOLUME_DELAY,
         "ssh": {"enabled": True, "delay": SSH_DELAY, "runcmd_delay": 0.1},
         "quotas": {"instances": 20, "volumes": 40, "cores": 200, "ram": 400000}}


@pytest.fixture
def lab(devcloud_factory, dns_service, tmp_path):
    cloud = devcloud_factory(CLOUD)
    key = generate_lab_key(tmp_path / "lab_key")
    config = devcloud_lab_config(cloud, key, nsupdate_url=dns_service.update_url, max_parallel=10)
    dns = DNSClient(dns_service.update_url)
    prov = Provisioner(config, "dev", dns, ProvisionerOptions(token_cache_dir=tmp_path / "tokens", poll_cap=1.0))
    yield prov, cloud, dns_service.bind, key
    dns.close()


def _assert_nothing_left(cloud, bind, names):
    res = cloud.resources()
    assert res["servers"] == [] and res["volumes"] == [], res
    assert {n: bind.addresses(n) for n in names} == {n: set() for n in names}


def _ssh_as_lab(node, key_path, user, port):
    client = paramiko.SSHClient()
    seen = {}

    class Pin(paramiko.MissingHostKeyPolicy):
        def missing_host_key(self, _client, _host, key):
            seen["key"] = f"{key.get_name()} {key.get_base64()}"

    client.set_missing_host_key_policy(Pin())
    client.connect(node.address, port=port, username=user, key_filename=str(key_path), look_for_keys=False,
                   allow_agent=False, timeout=10)
    try:
        _, out, _ = client.exec_command("echo hello-from-$(hostname -s 2>/dev/null || echo node)")
        text = out.read().decode()
    finally:
        client.close()
    return text, seen["key"]


def test_one_node_with_volumes_resolves_in_bind_answers_ssh_and_destroy_leaves_nothing(lab):
    prov, cloud, bind, key = lab
    node = prov.create("node1", "ubuntu", "22.04", {"volumes": {"count": 2, "size": 1}})
    assert bind.addresses("node1") == {node.address}
    servers = {s["id"]: s for s in cloud.resources()["servers"]}
    assert set(servers) == {node.server_id}
    vols = cloud.resources()["volumes"]
    assert sorted(v["name"] for v in vols) == ["node1_0", "node1_1"]
    assert all(v["status"] == "in-use" for v in vols)
    text, host_key = _ssh_as_lab(node, key, prov.provider.ssh_user, prov.provider.ssh_port)
    assert "hello-from" in text and host_key == node.host_key
    prov.destroy("node1.lab.example")
    _assert_nothing_left(cloud, bind, ["node1"])


def test_readiness_logs_in_over_the_connection_it_probed_with_so_sshd_serves_one_connection(lab):
    # A probe connection closed at once costs the node a whole sshd child (fork, re-exec): 200 nodes, 200 of them.
    prov, cloud, bind, _ = lab
    node = prov.create("node1", "ubuntu", "22.04", {})
    root = Path(cloud.server_internals(node.server_id)["root"])
    log = (root.parent / "ssh" / "sshd.log").read_text()
    prov.destroy("node1")
    assert log.count("Accepted publickey") == 1, log
    assert "Connection closed" not in log and "kex_exchange_identification" not in log, log
    _assert_nothing_left(cloud, bind, ["node1"])


def test_a_key_exchange_alone_confirms_a_nodes_pinned_host_key_without_logging_in(lab):
    # What a warm pool asks before lending a node it made earlier: the same sshd key, proved by its signature.
    prov, cloud, bind, _ = lab
    node = prov.create("node1", "ubuntu", "22.04", {})
    probe = prov.lifecycle.probe
    ssh_log = Path(cloud.server_internals(node.server_id)["root"]).parent / "ssh" / "sshd.log"
    another = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
    try:
        assert probe.host_key_matches(node.address, node.host_key, 10.0)
        assert not probe.host_key_matches(node.address, another, 10.0)
        assert ssh_log.read_text().count("Accepted publickey") == 1  # the readiness wait's login; no other
    finally:
        prov.destroy("node1")
    with pytest.raises(OSError):  # nothing listens any more: an error, never a match
        probe.host_key_matches(node.address, node.host_key, 2.0)
    _assert_nothing_left(cloud, bind, ["node1"])


def test_ten_nodes_in_parallel_each_resolve_to_their_server_and_all_go_away(lab):
    prov, cloud, bind, key = lab
    names = [f"node{i}" for i in range(10)]
    outcomes = prov.create_many([CreateRequest(n, "ubuntu", "22.04", {"volumes": {"count": 1, "size": 1}}) for n in names])
    assert [o.error for o in outcomes] == [None] * 10
    by_id = {s["id"]: s for s in cloud.resources()["servers"]}
    assert set(by_id) == {o.node.server_id for o in outcomes}
    for o in outcomes:
        assert bind.addresses(o.name) == {o.node.address}
    assert len({o.node.address for o in outcomes}) == 10
    text, _ = _ssh_as_lab(outcomes[7].node, key, prov.provider.ssh_user, prov.provider.ssh_port)
    assert "hello-from" in text
    assert all(o.ok for o in prov.destroy_many(names))
    _assert_nothing_left(cloud, bind, names)


# teuthology 1.3.0's own backend against devcloud, one volume per node (docs/provisioning.md): requests per node.
TEUTHOLOGY_CREATE, TEUTHOLOGY_DESTROY = 10.1, 6.0
# Per node, whatever the batch (one volume): POST server and libcloud's GET of it, POST volume, POST
# attachment; DELETE attachment, DELETE volume, DELETE server. Everything else is shared by the batch.
OWN_REQUESTS = ("POST /compute/v2.1/servers", "GET /compute/v2.1/servers/{server_id}", "POST /compute/v2.1/os-volumes",
                "POST /compute/v2.1/servers/{server_id}/os-volume_attachments",
                "DELETE /compute/v2.1/servers/{server_id}/os-volume_attachments/{volume_id}",
                "DELETE /compute/v2.1/os-volumes/{volume_id}", "DELETE /compute/v2.1/servers/{server_id}")
SHARED_REQUESTS = ("POST /v2.0/tokens", "GET /compute/v2.1/images/detail", "GET /compute/v2.1/flavors/detail",
                   "GET /compute/v2.1/os-networks", "GET /compute/v2.1/servers/detail", "GET /compute/v2.1/os-volumes")


def _count(cloud, prov, names, volumes):
    """Requests devcloud counted to create ``names`` together and then destroy them together."""
    cloud.reset_counts()
    outcomes = prov.create_many([CreateRequest(n, "ubuntu", "22.04", {"volumes": {"count": volumes, "size": 1}})
                                 for n in names])
    assert all(o.ok for o in outcomes), [str(o.error) for o in outcomes]
    create = Counter(cloud.request_counts())
    cloud.reset_counts()
    assert all(o.ok for o in prov.destroy_many(names))
    return create, Counter(cloud.request_counts())


def test_requests_per_node_fall_as_the_batch_grows_and_stay_below_teuthologys(devcloud_factory, dns_service, tmp_path):
    # Shared polls: one server listing and one volume listing per interval answer every waiting node, so
    # per node only its own 7 requests remain, plus the batch's shared ones divided by N.
    cloud = devcloud_factory({**CLOUD, "quotas": {"instances": 50, "volumes": 50, "cores": 500, "ram": 1000000}})
    key = generate_lab_key(tmp_path / "lab_key")
    dns = DNSClient(dns_service.update_url)
    per_node = {}
    for n in (1, 10, 20, 50):
        config = devcloud_lab_config(cloud, key, nsupdate_url=dns_service.update_url, max_parallel=n)
        # Polls from 0.5 s up to 2 s (the engine defaults to 0.2 s and 5 s): from 0.2 s up to 1 s, a loaded
        # machine's slower boots added enough listings to cross the bound (8.15 once in a parallel suite).
        with Provisioner(config, "dev", dns, ProvisionerOptions(token_cache_dir=tmp_path / f"tokens-{n}", poll_first=0.5, poll_cap=2.0)) as prov:
            names = [f"node{i}" for i in range(n)]
            create, destroy = _count(cloud, prov, names, volumes=1)
        both = create + destroy
        per_node[n] = (sum(create.values()) / n, sum(destroy.values()) / n)
        # No per-node polling: each node makes its own requests once (the only GET of one server is
        # libcloud's own after its POST; there is no GET of one volume); all the rest are batch listings.
        assert {k: both[k] for k in OWN_REQUESTS} == {k: n for k in OWN_REQUESTS}, both
        assert set(both) == set(OWN_REQUESTS) | set(SHARED_REQUESTS), both
        # Shared things happen once per batch, not once per node.
        assert create["POST /v2.0/tokens"] == 1 and create["GET /compute/v2.1/images/detail"] == 1, create
        assert create["GET /compute/v2.1/flavors/detail"] == 1, create
        _assert_nothing_left(cloud, dns_service.bind, names)
    dns.close()
    total = {n: sum(v) for n, v in per_node.items()}
    assert total[1] > total[10] > total[20] > total[50], per_node
    for n in (10, 20, 50):
        create, destroy = per_node[n]
        assert create < TEUTHOLOGY_CREATE and destroy < TEUTHOLOGY_DESTROY, per_node
    assert total[20] <= 8, per_node  # the goal: 8 requests per node for create and destroy at N = 20


def test_separate_processes_share_the_token_through_the_disk_cache(lab, tmp_path):
    prov, cloud, _, _ = lab
    cloud.reset_counts()
    prov.prepare()
    code = ("import sys; from lablease.provision.adapters.openstack import OpenStackAdapter;"
            "from lablease.provision.tokencache import FileTokenCache; from lablease.config.lab import LabConfig;"
            "import json; cfg = LabConfig.model_validate(json.loads(sys.argv[1]));"
            "a = OpenStackAdapter(cfg.provider('dev'), FileTokenCache(sys.argv[2])); a.authenticate();"
            "print(len(a.list_sizes()))")
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", code, prov.config.model_dump_json(), str(tmp_path / "tokens")],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and int(out.stdout) >= 4, out.stderr
    assert cloud.request_counts().get("POST /v2.0/tokens") == 1
    assert all("demo-password" not in p.read_text() for p in (tmp_path / "tokens").iterdir() if p.is_file())


def test_the_operator_cli_creates_lists_and_destroys_without_showing_any_secret(lab, tmp_path):
    import yaml

    prov, cloud, bind, _ = lab
    path = tmp_path / "teuthology.yaml"
    path.write_text(yaml.safe_dump(prov.config.model_dump(mode="json", exclude_defaults=True)))
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}

    def cli(*args):
        out = subprocess.run([sys.executable, "-m", "lablease", *args, "-m", "dev", "-c", str(path)],
                             capture_output=True, text=True, env=env, timeout=120)
        assert "demo-password" not in out.stdout + out.stderr
        return out

    made = cli("provision", "create", "node3", "--hints", '{"volumes": {"count": 1, "size": 1}}')
    assert made.returncode == 0, made.stderr[-2000:]
    assert '"name": "node3"' in made.stdout and len(bind.addresses("node3")) == 1
    listed = cli("provision", "list")
    assert "name=node3 node=node3" in listed.stdout and "name=node3_0" in listed.stdout
    gone = cli("provision", "destroy", "node3")
    assert gone.returncode == 0 and "node3: destroyed" in gone.stdout
    _assert_nothing_left(cloud, bind, ["node3"])


def test_the_newer_openstack_api_with_keystone_v3_works_the_same(lab, dns_service, tmp_path):
    """`api_version: '2.0'` (Glance v2, Neutron, Cinder v3) and `3.x_password` auth, security groups by name."""
    prov, cloud, bind, key = lab
    config = devcloud_lab_config(cloud, key, nsupdate_url=dns_service.update_url, security_groups=["default"],
                                 driver_args=cloud.driver_args("3.x_password", "2.0"))
    v2 = Provisioner(config, "dev", prov.dns_client, ProvisionerOptions(token_cache_dir=tmp_path / "tokens-v3", poll_cap=1.0))
    node = v2.create("node4", "ubuntu", "22.04", {"volumes": {"count": 2, "size": 1}})
    assert bind.addresses("node4") == {node.address}
    owned = v2.list_owned()
    assert [s.id for s in owned.servers] == [node.server_id]
    assert sorted(v.name for v in owned.volumes) == ["node4_0", "node4_1"]
    assert all(v.attached_to == [node.server_id] for v in owned.volumes)
    counts = cloud.request_counts()
    assert counts["POST /volume/v3/{project_id}/volumes"] == 2 and counts["GET /network/v2.0/security-groups"] == 1
    v2.destroy("node4")
    _assert_nothing_left(cloud, bind, ["node4"])


def test_a_token_expiring_during_a_batch_is_renewed_once_not_once_per_thread(devcloud_factory, tmp_path):
    # Tokens live 20 s; servers take 11 s to boot, so the batch outlives the token's usable part.
    cloud = devcloud_factory({**CLOUD, "token_lifetime": 20, "boot_delay": 11})
    key = generate_lab_key(tmp_path / "lab_key")
    prov = Provisioner(devcloud_lab_config(cloud, key), "dev", None, ProvisionerOptions(token_cache_dir=tmp_path / "tokens", poll_cap=1.0))
    outcomes = prov.create_many([CreateRequest(f"node{i}", "ubuntu", "22.04") for i in range(4)])
    assert [o.error for o in outcomes] == [None] * 4
    assert all(o.ok for o in prov.destroy_many([o.name for o in outcomes]))
    assert 2 <= cloud.request_counts()["POST /v2.0/tokens"] <= 3
    assert cloud.resources()["servers"] == []

"""Randomised fault run: create and destroy nodes against devcloud under random faults, and check every report.

Each cycle draws, from one seeded sequence, 1-2 nodes with 0-2 volumes and a set of faults: answers lost
after the cloud acted (cut or held past the client's timeout) on server, volume and attachment creates,
latency, 500s, a revocation of every token (one 401, then a fresh token). A neighbour lab shares the
project with servers and volumes of the same names. After each create and each destroy the cloud is
listed (devcloud's admin view, unfaulted) and BIND asked:

* a node reported ready exists and is complete: one server of ours, ACTIVE, its volumes attached, its name;
* a node reported failed left nothing (unless its error says something may remain);
* a destroy reported ok left nothing;
* after the cycle, nothing of this lab is left (a leak) and the neighbour's resources are all still there.

    .venv/bin/python bench/bench_fault_run.py [--cycles 500] [--seed N]

Prints the seed, leaks and wrong reports; writes bench/results/fault-run-<stamp>.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lablease.dns.client import DNSClient
from lablease.provision.adapters.base import ServerSpec
from lablease.provision.adapters.openstack import OpenStackAdapter
from lablease.provision.context import ProvisionerOptions
from lablease.provision.devlab import devcloud_lab_config, generate_lab_key
from lablease.provision.engine import Provisioner
from lablease.provision.errorkinds import ErrorKind
from lablease.provision.models import TAG_LAB, CreateRequest

RESULTS = Path(__file__).resolve().parent / "results"
LAB, NEIGHBOUR = "lab.example", "neighbour.example"
NAMES = [f"node{i}" for i in range(4)]
CLOUD: dict[str, Any] = {
    "boot_delay": 0.2, "volume_delay": 0.05,
    "ssh": {"enabled": True, "delay": 0.1, "runcmd_delay": 0.05},
    "quotas": {"instances": 50, "volumes": 100, "cores": 1000, "ram": 10_000_000, "gigabytes": 100_000},
}
CREATES = ["POST /compute/v2.1/servers", "POST /compute/v2.1/os-volumes",
           "POST /compute/v2.1/servers/{server_id}/os-volume_attachments"]
PROVIDER = {"launch_retries": 3, "api_timeout": 1, "api_retry_time": 8, "boot_timeout": 20, "ready_timeout": 20,
            "volume_timeout": 15, "delete_timeout": 15}


def draw_faults(rng: random.Random, slow: float = 0.4) -> tuple[dict[str, Any], list[str], bool]:
    """One cycle's devcloud faults, their short names, and whether every token is revoked first.

    ``slow``: the share of lost answers that time out or come late (a second or two each) rather than being cut.
    """
    faults: dict[str, Any] = {"seed": rng.randrange(2 ** 31), "lost_answers": [], "errors": [], "latency": []}
    names = []
    if rng.random() < 0.7:
        for key in CREATES:
            # Mostly cut (instant); sometimes held past the client's 1 s timeout, or carried out only after
            # the client gave up (each costs a second or two).
            mode = rng.choices(("reset", "timeout", "late"), (1 - slow, slow / 2, slow / 2))[0]
            seconds = round(rng.uniform(1.1, 1.6), 2) if mode == "late" else 1.3
            faults["lost_answers"].append({"match": key, "probability": 0.35, "mode": mode, "seconds": seconds})
        names.append("lost")
    if rng.random() < 0.3:
        faults["errors"] = [{"match": m, "probability": 0.05} for m in ("GET *", "POST *", "DELETE *")]
        names.append("500")
    if rng.random() < 0.3:
        faults["latency"] = [{"match": "*", "seconds": round(rng.uniform(0.005, 0.05), 3)}]
        names.append("latency")
    revoke = rng.random() < 0.15
    if revoke:
        names.append("401")
    return faults, names, revoke


class FaultRun:
    """The engine, devcloud and BIND of one run, and what was found wrong so far."""

    def __init__(self, cloud, dns_service, key_file: Path, work: Path, seed: int, slow: float = 0.4):
        self.cloud, self.bind = cloud, dns_service.bind
        self.rng = random.Random(seed)
        self.seed, self.slow = seed, slow
        config = devcloud_lab_config(cloud, key_file, nsupdate_url=dns_service.update_url, lab_domain=LAB, **PROVIDER)
        self.dns = DNSClient(dns_service.update_url)
        self.prov = Provisioner(config, "dev", self.dns, ProvisionerOptions(token_cache_dir=work / "tokens",
                                                                            poll_first=0.05, poll_cap=0.15))
        self.leaks: list[dict[str, Any]] = []
        self.wrong: list[dict[str, Any]] = []
        self.cycles: list[dict[str, Any]] = []
        self.neighbour = plant_neighbour(cloud, key_file)

    def close(self) -> None:
        self.prov.close()
        self.dns.close()

    # -- what the cloud holds -----------------------------------------------------------------

    def ours(self, name: str) -> tuple[list[dict], list[dict]]:
        res = self.cloud.resources()
        return ([s for s in res["servers"] if s["name"] == name and s["metadata"].get(TAG_LAB) == LAB],
                [v for v in res["volumes"] if v["name"].startswith(f"{name}_") and v["metadata"].get(TAG_LAB) == LAB])

    def _wrong(self, cycle: int, node: str, what: str) -> None:
        self.wrong.append({"cycle": cycle, "node": node, "what": what})

    def check_ready(self, cycle: int, node, volumes: int) -> None:
        servers, vols = self.ours(node.name)
        if [s["id"] for s in servers] != [node.server_id] or servers[0]["status"] != "ACTIVE":
            self._wrong(cycle, node.name, f"reported ready; servers of ours {[(s['id'], s['status']) for s in servers]}")
        elif sorted(v["id"] for v in vols) != sorted(node.volume_ids) or len(vols) != volumes or \
                any(v["attached_to"] != [node.server_id] for v in vols):
            self._wrong(cycle, node.name, f"reported ready; volumes {[(v['name'], v['status']) for v in vols]}")
        elif self.bind.addresses(node.name) != {node.address}:
            self._wrong(cycle, node.name, f"reported ready; DNS holds {self.bind.addresses(node.name)}")

    def check_gone(self, cycle: int, name: str, report: str) -> None:
        servers, vols = self.ours(name)
        if servers or vols or self.bind.addresses(name):
            self._wrong(cycle, name, f"{report}; left servers {[s['id'] for s in servers]} volumes "
                                     f"{[v['name'] for v in vols]} dns {sorted(self.bind.addresses(name))}")

    # -- one cycle -------------------------------------------------------------------------------

    def cycle(self, number: int) -> None:
        rng = self.rng
        names = rng.sample(NAMES, rng.choice((1, 1, 2)))
        volumes = rng.choice((0, 1, 2))
        faults, fault_names, revoke = draw_faults(rng, self.slow)
        started = time.monotonic()
        self.cloud.set_faults(faults)
        if revoke:
            self.cloud.revoke_tokens()
        hints = {"volumes": {"count": volumes, "size": 1}}
        outcomes = self.prov.create_many([CreateRequest(n, "ubuntu", "22.04", hints) for n in names])
        self.cloud.clear_faults()  # the check lists an unfaulted cloud; the destroy runs under faults again
        for o in outcomes:
            if o.ok:
                self.check_ready(number, o.node, volumes)
            elif o.error.kind is not ErrorKind.LEFTOVER:  # LEFTOVER says something may remain
                self.check_gone(number, o.name, f"reported failed ({o.error.message[:200]})")
        self.cloud.set_faults(faults)
        destroyed = self.prov.destroy_many(names)
        self.cloud.clear_faults()
        for d in destroyed:
            if d.ok:
                self.check_gone(number, d.name, "destroy reported ok")
        self.sweep(number, names)
        self.cycles.append({"cycle": number, "nodes": names, "volumes": volumes, "faults": fault_names,
                            "created": sum(o.ok for o in outcomes), "destroyed": sum(d.ok for d in destroyed),
                            "seconds": round(time.monotonic() - started, 2)})

    def sweep(self, number: int, names: list[str]) -> None:
        """Nothing of this lab may be left once the cycle is over (a failed destroy is asked again, unfaulted)."""
        left = [n for n in names if any(self.ours(n))]
        if left:
            self.prov.destroy_many(left)
        for name in names:
            servers, vols = self.ours(name)
            if servers or vols:
                self.leaks.append({"cycle": number, "node": name, "servers": [s["id"] for s in servers],
                                   "volumes": [v["name"] for v in vols]})
                self.prov.remove_leaks([s["id"] for s in servers], [v["id"] for v in vols])
        res = self.cloud.resources()
        present = {s["id"] for s in res["servers"]} | {v["id"] for v in res["volumes"]}
        missing = [rid for rid in self.neighbour if rid not in present]
        if missing:
            self._wrong(number, "(neighbour)", f"the neighbour lab lost {missing}")
            self.neighbour = [rid for rid in self.neighbour if rid in present]

    def run(self, cycles: int, progress: bool = False) -> dict[str, Any]:
        started = time.monotonic()
        for number in range(cycles):
            self.cycle(number)
            if progress and (number + 1) % 10 == 0:
                print(f"cycle {number + 1}/{cycles}: leaks {len(self.leaks)} wrong reports {len(self.wrong)} "
                      f"({time.monotonic() - started:.0f} s)", flush=True)
        return {"seed": self.seed, "cycles": cycles, "seconds": round(time.monotonic() - started, 1),
                "leaks": self.leaks, "wrong_reports": self.wrong,
                "created": sum(c["created"] for c in self.cycles), "requested": sum(len(c["nodes"]) for c in self.cycles),
                "destroyed": sum(c["destroyed"] for c in self.cycles), "per_cycle": self.cycles}


def plant_neighbour(cloud, key_file: Path) -> list[str]:
    """Servers and volumes of another lab in the same project, named like ours; returns their ids."""
    config = devcloud_lab_config(cloud, key_file, lab_domain=NEIGHBOUR)
    adapter = OpenStackAdapter(config.provider("dev"))
    image = next(i for i in adapter.list_images() if i.name == "Ubuntu 22.04")
    size = min(adapter.list_sizes(), key=lambda s: s.ram)
    ids = []
    for name in NAMES[:2]:
        tags = {TAG_LAB: NEIGHBOUR}
        ids.append(adapter.create_server(ServerSpec(name, image, size, [], [], "", tags)).id)
        ids.append(adapter.create_volume(f"{name}_0", 1, tags).id)
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=500)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(2 ** 31)
    print(f"seed {seed}", flush=True)
    logging.basicConfig(level=logging.ERROR)
    from lablease.testing.bind import start_bind
    from lablease.testing.devcloud import start_devcloud
    from lablease.testing.dns import start_dns_service

    work = Path(tempfile.mkdtemp(prefix="bench-fault-run-"))
    cloud = start_devcloud(work / "cloud", CLOUD)
    bind = start_bind(work / "bind")
    dns_service = start_dns_service(work / "dns", bind)
    try:
        run = FaultRun(cloud, dns_service, generate_lab_key(work / "lab_key"), work, seed)
        try:
            result = run.run(args.cycles, progress=True)
        finally:
            run.close()
    finally:
        dns_service.stop()
        bind.stop()
        cloud.stop()
    print(f"seed {seed}: {args.cycles} cycles in {result['seconds']} s, {result['created']}/{result['requested']} "
          f"nodes created, leaks {len(result['leaks'])}, wrong reports {len(result['wrong_reports'])}")
    for item in result["leaks"] + result["wrong_reports"]:
        print(" ", item)
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"fault-run-{stamp}.json"
    out.write_text(json.dumps({"benchmark": "fault-run", **result}, indent=1))
    print(f"wrote {out}")
    sys.exit(1 if result["leaks"] or result["wrong_reports"] else 0)


if __name__ == "__main__":
    main()

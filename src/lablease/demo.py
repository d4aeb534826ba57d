"""`make demo`: start devcloud, run a short libcloud session (node + volume, show, delete), stop it.

Until the lab service exists this is the main job; it shows libcloud's real OpenStack driver
doing a whole node lifecycle over HTTP against devcloud on loopback.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from lablease.testing.devcloud import DevcloudHandle, start_devcloud

console = Console(soft_wrap=True)


def _wait_volume(driver, volume_id: str, state: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while (volume := driver.ex_get_volume(volume_id)).state != state:
        if time.monotonic() > deadline:
            raise TimeoutError(f"volume {volume_id} stayed {volume.state}, wanted {state}")
        time.sleep(0.2)
    return volume


def session(cloud: DevcloudHandle) -> None:
    """The libcloud part: what a provisioner does for one node with one volume."""
    driver = cloud.driver("3.x_password")
    console.print(f"[bold]libcloud[/] {type(driver).__name__} authenticated at {cloud.url} (Keystone v3)")
    image = next(i for i in driver.list_images() if i.name == "Ubuntu 22.04")
    size = next(s for s in driver.list_sizes() if s.name == "m1.small")
    console.print(f"  image [cyan]{image.name}[/], size [cyan]{size.name}[/] ({size.vcpus} vCPU, {size.ram} MB)")
    node = driver.create_node(name="demo-node-001", size=size, image=image,
                              ex_userdata="#cloud-config\nruncmd:\n  - touch /.teuth_provisioned\n",
                              ex_metadata={"locked_by": "demo@lablease"})
    console.print(f"  created node [cyan]{node.name}[/] ({node.id}), state {node.state}")
    [(node, ips)] = driver.wait_until_running([node], wait_period=0.5, timeout=60)
    console.print(f"  node is {node.state} at {', '.join(ips)}")
    volume = driver.create_volume(10, f"{node.name}_0")
    _wait_volume(driver, volume.id, "available")
    driver.attach_volume(node, volume)
    volume = _wait_volume(driver, volume.id, "inuse")
    device = volume.extra["attachments"][0]["device"]
    console.print(f"  volume [cyan]{volume.name}[/] ({volume.size} GB) attached as {device}")

    table = Table(title="what the cloud holds now")
    for column in ("kind", "name", "state", "detail"):
        table.add_column(column)
    for n in driver.list_nodes():
        table.add_row("node", n.name, n.state, ", ".join(n.public_ips + n.private_ips))
    for v in driver.list_volumes():
        table.add_row("volume", v.name, v.state, f"{v.size} GB on {device}")
    console.print(table)

    driver.detach_volume(volume)
    _wait_volume(driver, volume.id, "available")
    driver.destroy_volume(volume)
    driver.destroy_node(node)
    console.print("  detached and destroyed the volume, destroyed the node")
    left = cloud.resources()
    if left["servers"] or left["volumes"]:
        raise RuntimeError(f"devcloud still holds {left}")
    counts = cloud.request_counts()
    console.print(f"  nothing left behind; libcloud made {sum(counts.values())} API requests:")
    for key, n in counts.items():
        console.print(f"    {n:3d}  {key}")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="lablease-demo-") as tmp:
        console.print("[bold]devcloud[/] starting (an OpenStack-compatible cloud on loopback)")
        cloud = start_devcloud(Path(tmp), {"boot_delay": 1.0, "volume_delay": 0.3})
        try:
            session(cloud)
        except Exception as exc:  # show what devcloud saw, then fail the demo
            console.print(f"[red]demo failed:[/] {exc}")
            console.print(cloud.log_tail())
            return 1
        finally:
            cloud.stop()
        console.print("[bold green]demo done[/]: devcloud stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())

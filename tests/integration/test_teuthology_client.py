"""teuthology 1.3.0's own `teuthology-lock`, installed from PyPI into its own venv, against
`lablease serve` (subprocess): list, brief, summary, lock, unlock, lock-many and update.

Cloud nodes (is_vm, machine type `ovh`) are unlocked through teuthology's libcloud backend,
which asks the devcloud to destroy them first (as in the seed's lab); bare nodes (`smithi`)
are locked one by one and many at once. Unlocking a bare node would make teuthology SSH to it
(resolving its name through the lab's DNS), so bare nodes are not unlocked here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import filelock
import pytest
import yaml

from lablease.store import NodeStore
from lablease.testing.components import MissingComponent
from lablease.testing.lockserver import start_lock_server

pytestmark = pytest.mark.integration

TEUTHOLOGY = "teuthology==1.3.0"
LAB_DOMAIN = "front.example.com"
OWNER = "tester@lab"


def teuthology_venv() -> Path:
    """A cached venv with teuthology (installed once, ~1 min); MissingComponent, saying why, when it cannot be made.

    Never a skip: without teuthology's own client these tests would pass CI having tested nothing.
    """
    venv = Path(os.environ.get("LABLEASE_TEUTHOLOGY_VENV", "~/.cache/lablease/teuthology-venv")).expanduser()
    marker = venv / ".lablease-installed"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(str(venv) + ".lock", timeout=900):
        if marker.exists() and marker.read_text().strip() == TEUTHOLOGY and (venv / "bin" / "teuthology-lock").exists():
            return venv
        made = subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], capture_output=True, text=True)
        if made.returncode != 0:
            raise MissingComponent(f"teuthology's venv: `{sys.executable} -m venv {venv}` failed (Debian: apt-get "
                                   f"install python3-venv): {made.stderr[-500:]}")
        pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", TEUTHOLOGY],
                             capture_output=True, text=True, timeout=900)
        if pip.returncode != 0:
            raise MissingComponent(f"teuthology's venv: pip cannot install {TEUTHOLOGY} from PyPI into {venv} (PyPI "
                                   f"must be reachable, or set LABLEASE_TEUTHOLOGY_VENV to a venv holding it): "
                                   f"{pip.stderr.strip()[-800:]}")
        marker.write_text(TEUTHOLOGY + "\n")
    return venv


def commands(home: Path, venv: Path) -> tuple[Callable[..., subprocess.CompletedProcess], ...]:
    """``lablease`` and teuthology's ``teuthology-lock`` as a user whose HOME is ``home`` runs them."""
    # Lab names resolve only in the test's own BIND; teuthology's unlock looks them up through the system
    # resolver (stop_node's SSH), whose nameserver may not answer here: one short try, not glibc's 2 x 5 s per name.
    env = {"HOME": str(home), "PATH": f"{venv / 'bin'}:/usr/bin:/bin", "LANG": "C.UTF-8",
           "RES_OPTIONS": "timeout:1 attempts:1"}

    def lablease(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "lablease", *args], env={**os.environ, "HOME": str(home)},
                              capture_output=True, text=True, timeout=60)

    def teuthology_lock(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(venv / "bin" / "teuthology-lock"), *args], env=env, cwd=home,
                              capture_output=True, text=True, timeout=300)

    return lablease, teuthology_lock


@pytest.fixture(scope="module")
def venv() -> Path:
    return teuthology_venv()


@pytest.fixture
def lab(tmp_path, venv, devcloud):
    """lablease serve on SQLite, a HOME whose .teuthology.yaml points at it, and the devcloud."""
    server = start_lock_server(tmp_path / "server", lab_domain=LAB_DOMAIN)
    home = tmp_path / "home"
    (home / ".cache").mkdir(parents=True)  # teuthology keeps its cloud token lock there
    (home / ".teuthology.yaml").write_text(yaml.safe_dump({
        "lock_server": server.url, "results_server": server.url, "lab_domain": LAB_DOMAIN,
        "libcloud": {"providers": {"ovh": {"driver": "openstack", "driver_args": devcloud.driver_args()}}},
    }))
    lablease, teuthology_lock = commands(home, venv)
    db = f"sqlite:///{tmp_path / 'server' / 'data' / 'lablease.db'}"
    store = NodeStore.open(db, run_migrations=False, pool_size=2)
    yield lablease, teuthology_lock, store
    store.close()
    server.stop()


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-3000:]}"
    return proc.stdout


def fqdn(short: str) -> str:
    return f"{short}.{LAB_DOMAIN}"


def test_teuthology_lock_works_against_lablease(lab):
    lablease, tl, store = lab
    # The seed's set-up: cloud nodes with is_vm true, created by the admin; plus bare nodes.
    ok(lablease("nodes", "add", "--machine-type", "ovh", "--vm", "--count", "3"))
    ok(lablease("nodes", "add", "--machine-type", "smithi", "--count", "4"))
    assert [n.name for n in store.list()][:3] == [fqdn("ovh001"), fqdn("ovh002"), fqdn("ovh003")]
    assert all(n.is_vm for n in store.list() if n.machine_type == "ovh")

    listed = json.loads(ok(tl("--list", "-a")))
    assert sorted(n["name"] for n in listed) == sorted(n.name for n in store.list())

    brief = ok(tl("--brief", "-a")).splitlines()
    assert len(brief) == 7 and all(" up " in line and "unlocked" in line for line in brief)

    summary = ok(tl("--summary"))
    assert "ovh" in summary and "smithi" in summary and "(free)" in summary

    # --lock one bare node, by short name (teuthology adds the lab domain).
    ok(tl("--lock", "--owner", OWNER, "--desc", "by hand", "smithi001"))
    node = store.get(fqdn("smithi001"))
    assert node.locked and node.locked_by == OWNER and node.description == "by hand"
    # locking it again as someone else fails, and teuthology says so
    again = tl("--lock", "--owner", "other@lab", "smithi001")
    assert again.returncode != 0 and "already-locked" in again.stderr

    # --lock-many N -m TYPE: prints the targets it got
    out = ok(tl("--lock-many", "2", "-m", "smithi", "--owner", OWNER, "--desc", "many"))
    targets = yaml.safe_load(out)["targets"]
    assert sorted(targets) == [fqdn("smithi002"), fqdn("smithi003")]  # name order, skipping the held one
    assert all(store.get(n).locked_by == OWNER for n in targets)
    too_many = tl("--lock-many", "5", "-m", "smithi", "--owner", OWNER)
    assert too_many.returncode != 0 and "only 1 nodes available" in too_many.stderr

    brief = ok(tl("--brief", "--owner", OWNER)).splitlines()
    assert sorted(line.split()[0] for line in brief) == sorted([fqdn("smithi001"), *targets])

    # --update --status down
    ok(tl("--update", "--status", "down", "smithi004"))
    assert store.get(fqdn("smithi004")).up is False
    assert "down" in ok(tl("--brief", "-a", "--machine-type", "smithi")).splitlines()[-1]

    # --unlock of cloud nodes: teuthology destroys them through its libcloud backend first.
    lock_many = json.loads(ok(lablease("nodes", "list", "--json")))  # sanity: the CLI reads the same store
    assert len(lock_many) == 7
    for short in ("ovh001", "ovh002", "ovh003"):
        store.update_values(fqdn(short), {"locked": True, "locked_by": OWNER, "description": "vm job"})
    ok(tl("--unlock", "--owner", OWNER, "ovh001", "ovh002"))
    assert not store.get(fqdn("ovh001")).locked and not store.get(fqdn("ovh002")).locked
    refused = tl("--unlock", "--owner", "other@lab", "ovh003")
    assert refused.returncode != 0 and "locked by tester@lab" in refused.stderr
    assert store.get(fqdn("ovh003")).locked_by == OWNER

    summary = ok(tl("--summary")).splitlines()
    assert any(line.split()[:3] == ["smithi", "3", "3"] and OWNER in line for line in summary), summary
    # every change teuthology made is in the audit trail
    actions = [e.action for e in store.events(fqdn("ovh001"))]
    assert actions[-2:] == ["lock", "unlock"]

"""Bigger schemathesis runs than CI's: every lablease server, every check, every phase, more examples.

CI (tests/integration/test_*_api_fuzz.py) runs every phase, coverage included, with 100 examples per operation
and one seed; this runs as many examples and seeds as asked, longer stateful chains, and every devcloud route
(the aliases CI leaves out too):

    .venv/bin/python bench/fuzz_apis.py [--examples 1000] [--seeds 3] [--only lock-sqlite,lock-postgresql,lab,devcloud]

The lock server runs on SQLite (one worker) and PostgreSQL (two workers, admin token); the lab service's own
endpoints against devcloud. Prints one line per run and writes the runs' reports under bench/results/.
Exit status 1 when a run found something.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lablease.provision.devlab import devcloud_lab_data, generate_lab_key  # noqa: E402
from lablease.testing.devcloud import start_devcloud  # noqa: E402
from lablease.testing.lockserver import start_lock_server  # noqa: E402
from lablease.testing.postgres import start_postgres  # noqa: E402
from tests.integration.api_fuzz import (  # noqa: E402
    ALL_PHASES, DEVCLOUD_RULES, DEVCLOUD_SKIP, LAB_PATHS, LAB_RULES, LOCK_API_RULES, SEED, Run, failure_report,
    keystone_token, run_all,
)

RESULTS = REPO / "bench" / "results"
TOKEN = "bench-fuzz-token"
CLOUD = {"boot_delay": 0.1, "volume_delay": 0.05, "ssh": {"enabled": False}}
STATEFUL = (40, 12)  # chains, steps per chain (CI: api_fuzz.STATEFUL)


def bench_run(schema_url: str, workdir: Path, rules: list, **kwargs) -> Run:
    """A run of every phase (coverage included) with longer stateful chains than CI's."""
    return Run(schema_url, workdir, rules, phases=ALL_PHASES, stateful=STATEFUL, **kwargs)


def _nodes(url: str) -> None:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        for i in range(5):
            http.post("/nodes/", json={"name": f"n{i}.lab", "machine_type": "t", "up": True})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--only", default="lock-sqlite,lock-postgresql,lab,devcloud")
    args = parser.parse_args()
    wanted = set(args.only.split(","))
    work = Path(tempfile.mkdtemp(prefix="fuzz-apis-"))
    os.chmod(work, 0o755)  # the postgres account must reach its data directory
    stops, results, found = [], [], False
    try:
        runs: dict[str, Run] = {}
        for seed in range(SEED, SEED + args.seeds):
            if "lock-sqlite" in wanted:
                server = start_lock_server(work / f"sqlite-{seed}")
                stops.append(server.stop)
                _nodes(server.url)
                runs[f"lock-sqlite seed={seed}"] = bench_run(f"{server.url}/openapi.json", work / f"st-sqlite-{seed}",
                                                       LOCK_API_RULES, examples=args.examples, seed=seed)
            if "lock-postgresql" in wanted:
                postgres = start_postgres(work / f"pg-{seed}")
                stops.append(postgres.stop)
                server = start_lock_server(work / f"postgresql-{seed}", database_url=postgres.create_database("fuzz"),
                                           workers=2, admin_token=TOKEN)
                stops.append(server.stop)
                _nodes(server.url)
                runs[f"lock-postgresql seed={seed}"] = bench_run(f"{server.url}/openapi.json", work / f"st-pg-{seed}",
                                                           LOCK_API_RULES, examples=args.examples, seed=seed,
                                                           token=TOKEN)
            if "lab" in wanted:
                cloud = start_devcloud(work / f"lab-cloud-{seed}", CLOUD)
                stops.append(cloud.stop)
                top = devcloud_lab_data(cloud, generate_lab_key(work / f"lab-key-{seed}"), machine_type="dev")
                server = start_lock_server(work / f"lab-{seed}", top=top, admin_token=TOKEN,
                                           extra={"reconcile_interval": 0})
                stops.append(server.stop)
                runs[f"lab seed={seed}"] = bench_run(f"{server.url}/openapi.json", work / f"st-lab-{seed}", LAB_RULES,
                                               examples=args.examples, seed=seed, token=TOKEN,
                                               args=("--include-path-regex", LAB_PATHS))
            if "devcloud" in wanted:
                cloud = start_devcloud(work / f"cloud-{seed}", CLOUD)
                stops.append(cloud.stop)
                extra = f'[auth.openapi.keystoneToken]\napi_key = "{keystone_token(cloud.url)}"\n'
                skip = [arg for name in DEVCLOUD_SKIP for arg in ("--exclude-name", name)]
                runs[f"devcloud seed={seed}"] = bench_run(f"{cloud.url}/devcloud/openapi.json", work / f"st-dc-{seed}",
                                                    DEVCLOUD_RULES, examples=args.examples, seed=seed, extra=extra,
                                                    args=tuple(skip))
        names = list(runs)
        for i in range(0, len(names), 2):  # two at a time: one per core
            batch = names[i:i + 2]
            start = time.monotonic()
            for name, done in zip(batch, run_all(*(runs[n] for n in batch), timeout=6 * 3600)):
                seconds = round(time.monotonic() - start, 1)
                ok = done.returncode == 0
                found |= not ok
                print(f"{name}: {'nothing found' if ok else 'FOUND SOMETHING'} ({seconds}s)", flush=True)
                if not ok:
                    print(failure_report(done))
                results.append({"run": name, "ok": ok, "seconds": seconds, "examples": args.examples,
                                "output_tail": done.stdout[-4000:]})
    finally:
        for stop in reversed(stops):
            stop()
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"fuzz-apis-{stamp}.json").write_text(json.dumps(results, indent=1))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())

"""Run schemathesis (its CLI, as CI and a person would) against a running lablease server's OpenAPI document.

Every check, every phase (examples, coverage: schemathesis' boundary values and undocumented methods, fuzzing,
stateful), a fixed seed, and the hooks of ``hostile_hooks`` (unpaired surrogates and deep nesting, which
schemathesis does not generate itself). The tests in tests/ run it with ``EXAMPLES`` per operation and
``STATEFUL`` chains; bench/fuzz_apis.py runs it with more.

What a server answers that its schema cannot state is configured per operation here, and only that:
- ``not_a_server_error``: lock_many answers 503 when too few nodes are free (paddles' protocol: teuthology
  reads 503 as "not enough nodes"); the lab's reconcile 502 when the cloud is down (not in these runs).
- ``positive_data_acceptance``: paddles answers 400 to a well-formed request that the nodes' current state
  refuses (a name that exists, names in unlock_many that are not nodes, a vm_host that is not a node, a lock
  change without locked_by): each documented in the operation's 400. (A method a path does not serve is 405
  with ``Allow`` and not in the documents; the DNS service's names and addresses have patterns and formats.)
- ``use_after_free``: a node's audit trail (GET /nodes/{name}/events/) is kept after the node is deleted.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SEED = 20261113
EXAMPLES = 100  # per operation, in the fuzzing phase (issue 13: at least 100)
STATEFUL = (10, 6)  # the stateful phase: chains, and steps per chain
ALL_PHASES = ("examples", "coverage", "fuzzing", "stateful")
CI_PHASES = ALL_PHASES


@dataclass
class Rule:
    """A per-operation schemathesis setting: the operations (``"POST /nodes/"``), then TOML lines."""

    names: tuple[str, ...]
    lines: tuple[str, ...]

    def toml(self) -> str:
        names = ", ".join(f'"{n}"' for n in self.names)
        return "\n".join(["[[operations]]", f"include-name = [{names}]", *self.lines]) + "\n"


def statuses(check: str, *codes: str) -> str:
    listed = ", ".join(f'"{c}"' for c in codes)
    return f"checks.{check}.expected-statuses = [{listed}]"


POSITIVE = ("2xx", "3xx", "401", "403", "404", "409", "429")
STATE_400 = statuses("positive_data_acceptance", *POSITIVE, "400")

LOCK_API_RULES = [
    Rule(("POST /nodes/lock_many/",), (statuses("not_a_server_error", "2xx", "3xx", "4xx", "503"),
                                       statuses("positive_data_acceptance", *POSITIVE, "503"))),
    Rule(("POST /nodes/", "PUT /nodes/{name}/", "PUT /nodes/{name}/lock/", "POST /nodes/{name}/lock/",
          "POST /nodes/unlock_many/"), (STATE_400,)),
    # A node's audit trail outlives the node (that is what it is for): not a deleted resource still served.
    Rule(("GET /nodes/{name}/events/",), ("checks.use_after_free.enabled = false",)),
]

# devcloud (what OpenStack answers that its schema cannot say): a server's key_name, an attachment's volume and
# device and a metadata item's key must name what exists or match the path; a boot volume's image or volume must
# exist (and be available); a floating IP comes only from an external network, and is added only to a server
# that has an address (Nova's 400s); volumes run into the quota (413).
DEVCLOUD_RULES = [
    Rule(("POST /compute/v2.1/servers", "POST /compute/v2.1/servers/{server_id}/os-volume_attachments",
          "PUT /compute/v2.1/servers/{server_id}/metadata/{key}", "POST /network/v2.0/floatingips",
          "POST /compute/v2.1/servers/{server_id}/action"), (STATE_400,)),
    Rule(("POST /compute/v2.1/os-volumes", "POST /volume/v3/{project_id}/volumes",
          "POST /volume/v2/{project_id}/volumes"), (statuses("positive_data_acceptance", *POSITIVE, "413"),)),
]
# Left out: setting faults would make every later answer an injected one, and revoking every token every later answer
# a 401, in both halves of the run (the coverage phase calls each operation early). test_devcloud_faults.py covers
# faults, test_devcloud_api_fuzz.py the revocation.
DEVCLOUD_SKIP = ("PUT /devcloud/admin/faults", "DELETE /devcloud/admin/tokens")
# Second spellings of routes fuzzed under their first (the same handlers): bench/fuzz_apis.py runs them too.
DEVCLOUD_ALIASES = ("POST /v2.0/tokens/v2.0/tokens", "POST /v3/auth/tokens/v3/auth/tokens", "GET /compute/v2.1",
                    "GET /image", "GET /network")
DEVCLOUD_ALIAS_PATHS = r"^/volume/v2/"  # Cinder v2: the v3 handlers

# The lab service's own endpoints. The progress stream never ends: schemathesis reads it until its timeout.
LAB_RULES = [
    Rule(("GET /lab/progress/",), ("request-timeout = 0.3",)),
    Rule(("POST /lab/reconcile/",), (statuses("not_a_server_error", "2xx", "3xx", "4xx", "502"),)),
]
LAB_PATHS = r"^/(lab/|metrics$|lablease/$)"
# The suite fuzzes them in two runs at the same time, each mostly waiting (on the cloud's listings, on the stream's
# timeout): the reconcile passes alone, and the rest (of about the same length; one run took both one after the other).
RECONCILE = "POST /lab/reconcile/"
LAB_HALVES = {"reconcile": ("--include-name", RECONCILE),
              "rest": ("--include-path-regex", LAB_PATHS, "--exclude-name", RECONCILE)}

# The DNS service (docs/dns.md): its document gives names a host-name pattern and addresses the ipv4/ipv6 formats,
# so what it admits is never a 400; a name outside the zone or the allow pattern is a 403, which the check expects.
DNS_RULES: list[Rule] = []


def config_text(rules: list[Rule], *, examples: int, stateful: tuple[int, int] = STATEFUL, token: str | None = None,
                extra: str = "") -> str:
    """The schemathesis.toml of a run; ``extra`` is more TOML (devcloud's keystone token, say)."""
    chains, steps = stateful
    head = [
        "[checks]", "enabled = true", "",  # every check (--checks on the command line would override the rules below)
        "[generation]", f"max-examples = {examples}", "allow-x00 = true", 'database = "none"', "",
        # The stateful phase chains operations along the links it infers.
        "[phases.stateful]", f"max-steps = {steps}", "", "[phases.stateful.generation]", f"max-examples = {chains}", "",
    ]
    if token:
        head += ["[auth.openapi.adminToken]", f'bearer = "{token}"', ""]
    return "\n".join(head) + extra + "\n" + "\n".join(r.toml() for r in rules)


@dataclass
class Run:
    """One schemathesis run: where it works and, once started, its process."""

    schema_url: str
    workdir: Path
    rules: list[Rule]
    examples: int = EXAMPLES
    stateful: tuple[int, int] = STATEFUL
    phases: tuple[str, ...] = CI_PHASES
    seed: int = SEED
    token: str | None = None
    extra: str = ""
    args: tuple[str, ...] = ()
    process: subprocess.Popen | None = None

    def start(self) -> "Run":
        """``st run`` with every check and ``phases``, in the background."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "schemathesis.toml"
        config.write_text(config_text(self.rules, examples=self.examples, stateful=self.stateful, token=self.token,
                                        extra=self.extra))
        env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.integration.hostile_hooks",
               "HOSTILE_HOOKS_LOG": str(self.workdir / "hostile.log"),
               "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
        cli = Path(sys.executable).with_name("schemathesis")
        command = [str(cli), "--config-file", str(config), "--no-color", "run", self.schema_url,
                   "--phases", ",".join(self.phases), "--seed", str(self.seed), "--workers", "1",
                   "--request-timeout", "20", "--report", "junit", "--report-dir", str(self.workdir / "report"),
                   *self.args]
        self.output = open(self.workdir / "output.txt", "w+")
        self.process = subprocess.Popen(command, cwd=self.workdir, env=env, stdout=self.output,
                                        stderr=subprocess.STDOUT, text=True)
        return self

    def wait(self, timeout: float = 1200) -> subprocess.CompletedProcess:
        assert self.process is not None
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self.output.seek(0)
        text = self.output.read()
        self.output.close()
        return subprocess.CompletedProcess(self.process.args, code, text, "")


def run_all(*runs: Run, timeout: float = 1200) -> list[subprocess.CompletedProcess]:
    """Run several at once (one per core is what a CI machine has to spare: each is CPU-bound and single-threaded)."""
    for run in runs:
        run.start()
    return [run.wait(timeout) for run in runs]


def run_schemathesis(schema_url: str, workdir: Path, rules: list[Rule], **kwargs) -> subprocess.CompletedProcess:
    """One run, to its end (its output is the report)."""
    return run_all(Run(schema_url, workdir, rules, **kwargs))[0]


def start_lab(work: Path, token: str):  # noqa: ANN201
    """The lab service (the lock server with a libcloud: section, admin ``token``) on a devcloud of its own,
    with two nodes (one of the cloud type ``dev``); returns (server, cloud), both to be stopped."""
    import httpx

    from lablease.provision.devlab import devcloud_lab_data, generate_lab_key
    from lablease.testing.devcloud import start_devcloud
    from lablease.testing.lockserver import start_lock_server

    cloud = start_devcloud(work / "cloud", {"boot_delay": 0.2, "volume_delay": 0.05, "ssh": {"enabled": False}})
    try:
        top = devcloud_lab_data(cloud, generate_lab_key(work / "lab_key"), lab_domain="lab.example",
                                machine_type="dev", api_retry_time=2)
        server = start_lock_server(work / "lab", lab_domain="lab.example", top=top, admin_token=token,
                                   extra={"reconcile_interval": 0})
    except BaseException:
        cloud.stop()
        raise
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
        for name, machine_type in (("dev1.lab.example", "dev"), ("plain1.lab.example", "plain")):
            response = http.post("/nodes/", json={"name": name, "machine_type": machine_type, "up": True,
                                                  "is_vm": True})
            assert response.status_code == 200, response.text
    return server, cloud


def keystone_token(url: str, http=None) -> str:  # noqa: ANN001
    """A project-scoped token of devcloud's default user (what schemathesis sends as X-Auth-Token); ``http``: a
    client to ask instead (a TestClient)."""
    import httpx

    response = (http or httpx).post(f"{url}/v3/auth/tokens", json={"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": "demo", "password": "demo-password", "domain": {"name": "Default"}}}},
        "scope": {"project": {"name": "demo", "domain": {"id": "default"}}}}})
    assert response.status_code == 201, response.text
    return response.headers["X-Subject-Token"]


def hostile_sent(workdir: Path) -> set[str]:
    """What the hooks sent: ``surrogate``, ``nul``, ``deep`` (see hostile_hooks.before_call)."""
    log = workdir / "hostile.log"
    return set(log.read_text().split()) if log.exists() else set()


def checks_enabled(workdir: Path) -> set[str]:
    """The checks the written config enables (all of schemathesis' built-in ones, we expect)."""
    from schemathesis.config import SchemathesisConfig
    from schemathesis.config._checks import _BUILTIN_CHECK_CONFIGS

    checks = SchemathesisConfig.from_path(str(workdir / "schemathesis.toml")).projects.default.checks
    return {name for name in _BUILTIN_CHECK_CONFIGS if checks.get_by_name(name=name).enabled}


def all_checks() -> set[str]:
    from schemathesis.config._checks import _BUILTIN_CHECK_CONFIGS

    return set(_BUILTIN_CHECK_CONFIGS)


def failure_report(done: subprocess.CompletedProcess) -> str:
    """The part of schemathesis' output that says what failed (for the assertion message)."""
    out = done.stdout + done.stderr
    start = out.find("FAILURES")
    return out[start if start >= 0 else max(0, len(out) - 6000):][:12000]

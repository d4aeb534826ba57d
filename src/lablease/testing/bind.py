"""A real BIND 9 for tests, benchmarks and the demo: one dynamic zone, a fresh TSIG key, loopback only.

`start_bind()` writes a zone, a key made by `tsig-keygen` and a named.conf into a work directory,
then runs Debian's `named -g` in its own process group (as `nobody` when we are root).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsigkeyring
import dns.zone

from lablease.netutil import free_port
from lablease.testing.components import require_program
from lablease.testing.processes import ServerProcess



def bind_programs(path: str | None = None) -> tuple[str, str]:
    """``named`` and ``tsig-keygen`` (Debian's bind9), looked up on ``path`` (default PATH) then in /usr/sbin.

    Raises MissingComponent naming the program and the package when BIND is not installed: a test that
    needs BIND fails with that message rather than being skipped.
    """
    named = require_program("named", package="bind9", what="BIND 9", default=None if path else "/usr/sbin/named",
                            path=path)
    keygen = require_program("tsig-keygen", package="bind9", what="BIND 9's tsig-keygen",
                             default=None if path else "/usr/sbin/tsig-keygen", path=path)
    return named, keygen

_CONF = """\
options {{
  directory "{dir}";
  pid-file none;
  session-keyfile none;
  listen-on port {port} {{ {host}; }};
  listen-on-v6 {{ none; }};
  recursion no;
  dnssec-validation no;
  notify no;
}};
controls {{ }};
logging {{ channel stderr_log {{ stderr; severity info; }}; category default {{ stderr_log; }}; }};
include "{key_file}";
zone "{zone}" {{
  type primary;
  file "{zone_file}";
  allow-transfer {{ {transfer}; }};
  update-policy {{ grant {key_name}. wildcard {policy_names} A AAAA; }};
}};
"""

_ZONE = """\
$TTL 300
@ IN SOA ns.{zone}. hostmaster.{zone}. ( 1 3600 600 86400 300 )
@ IN NS ns.{zone}.
ns IN A 127.0.0.1
"""


@dataclass
class BindServer:
    """A running `named` serving one dynamic zone on a loopback port."""

    host: str
    port: int
    zone: str
    key_file: Path
    key_name: str
    workdir: Path
    state_dir: Path
    process: ServerProcess = field(repr=False)

    def addresses(self, name: str) -> set[str]:
        """The A and AAAA addresses BIND holds for ``name`` (short or absolute), asked over TCP."""
        fqdn = self.fqdn(name)
        found: set[str] = set()
        for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            answer = dns.query.tcp(dns.message.make_query(fqdn, rdtype), self.host, port=self.port, timeout=5)
            if answer.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
                raise RuntimeError(f"BIND answered {dns.rcode.to_text(answer.rcode())} for {fqdn} {dns.rdatatype.to_text(rdtype)}")
            for rrset in answer.answer:
                found.update(rr.to_text() for rr in rrset)
        return found

    def zone_dump(self) -> list[str]:
        """Every record of the zone, SOA serial included, by zone transfer (AXFR): to prove nothing changed.

        Signed with the zone's key: BIND allows the transfer to the key only (as a lab should).
        """
        keyring = dns.tsigkeyring.from_file(self.key_file)
        transfer = dns.query.xfr(self.host, self.zone, port=self.port, timeout=5, lifetime=10,
                                 keyring=keyring, keyname=self.key_name)
        zone = dns.zone.from_xfr(transfer)
        return sorted(zone.to_text(relativize=False).splitlines())

    def fqdn(self, name: str) -> str:
        """``name`` as an absolute name in this zone (a short name gets the zone appended)."""
        if name.endswith("."):
            return name
        if name == self.zone or name.endswith("." + self.zone):
            return name + "."
        return f"{name}.{self.zone}."

    def alive(self) -> bool:
        return self.process.alive()

    def stop(self) -> None:
        """Stop named (its whole process group) and remove its state; safe to call twice."""
        self.process.stop()
        if self.state_dir != self.workdir:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def restart(self) -> None:
        """Start named again on the same port with the zone as it was (journal kept)."""
        self.process.stop()
        self.process.start()
        _wait_until_serving(self)


def _write_key(workdir: Path, key_name: str, keygen: str) -> Path:
    key_file = workdir / f"{key_name}.key"
    out = subprocess.run([keygen, "-a", "hmac-sha256", key_name], check=True, capture_output=True, text=True)
    key_file.write_text(out.stdout)
    key_file.chmod(0o640)
    return key_file


def _state_dir(workdir: Path) -> Path:
    """Where named's config, key, zone and journal live.

    As root, named runs as `nobody`, which cannot enter pytest's 0700 temporary directories:
    it then gets a fresh directory of its own under the system temp dir, removed by stop().
    """
    if os.geteuid() != 0:
        return workdir
    state = Path(tempfile.mkdtemp(prefix="lablease-bind-"))
    state.chmod(0o755)
    return state


def _give_to_nobody(state: Path) -> None:
    # named drops to `nobody` when started as root; it must read the config and write the journal.
    nobody = pwd.getpwnam("nobody")
    for path in [state, *state.iterdir()]:
        os.chown(path, nobody.pw_uid, nobody.pw_gid)


def _wait_until_serving(server: BindServer, timeout: float = 20.0) -> None:
    """Wait until named answers the zone's SOA (listening alone is not loaded)."""
    deadline = time.monotonic() + timeout
    query = dns.message.make_query(server.zone + ".", dns.rdatatype.SOA)
    while True:
        try:
            answer = dns.query.tcp(query, server.host, port=server.port, timeout=2)
            if answer.rcode() == dns.rcode.NOERROR and answer.answer:
                return
        except (OSError, EOFError, dns.exception.DNSException):
            pass
        if time.monotonic() > deadline or not server.process.alive():
            server.stop()
            raise RuntimeError(f"named did not serve {server.zone}: {server.process.log_tail()}")
        time.sleep(0.05)


def start_bind(
    workdir: Path,
    zone: str = "lab.example",
    policy_names: str = "*.lab.example.",
    host: str = "127.0.0.1",
    key_name: str = "lablease-key",
    allow_transfer: bool = True,
) -> BindServer:
    """Start named with dynamic ``zone`` in ``workdir``; the key may update A/AAAA of ``policy_names``.

    The key may also transfer the zone (AXFR), which the DNS service's name listing needs, unless
    ``allow_transfer`` is false (then nobody may). A free port can be taken by another process
    before named binds it: then it tries a new one.
    """
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    zone = zone.rstrip(".")
    programs = bind_programs()
    for attempt in range(3):
        try:
            return _start_once(workdir, zone, policy_names, host, key_name, allow_transfer, programs)
        except RuntimeError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _start_once(workdir: Path, zone: str, policy_names: str, host: str, key_name: str,
                allow_transfer: bool, programs: tuple[str, str]) -> BindServer:
    named, keygen = programs
    port = free_port(host)
    state = _state_dir(workdir)
    key_file = _write_key(state, key_name, keygen)
    zone_file = state / f"db.{zone}"
    zone_file.write_text(_ZONE.format(zone=zone))
    for stale in state.glob(f"db.{zone}.jnl"):  # a journal left from an earlier run would replay old records
        stale.unlink()
    conf = state / "named.conf"
    conf.write_text(_CONF.format(
        dir=state, port=port, host=host, key_file=key_file, zone=zone, zone_file=zone_file,
        key_name=key_name, policy_names=policy_names, transfer=f"key {key_name}" if allow_transfer else "none",
    ))
    argv = [named, "-g", "-c", str(conf)]
    if os.geteuid() == 0:
        _give_to_nobody(state)
        argv += ["-u", "nobody"]
    process = ServerProcess(argv, log_path=workdir / "named.log", cwd=str(state)).start()
    server = BindServer(host=host, port=port, zone=zone, key_file=key_file, key_name=key_name,
                        workdir=workdir, state_dir=state, process=process)
    try:
        _wait_until_serving(server, timeout=10.0)
    except BaseException:
        server.stop()
        raise
    return server

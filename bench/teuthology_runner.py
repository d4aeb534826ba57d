"""Create or destroy nodes with teuthology 1.3.0's own libcloud OpenStack backend, serially, as its lock client does.

Runs with the Python of teuthology's own venv (it imports no lablease code), started by
bench/bench_compare.py against the same devcloud, DNS service and BIND as lablease. HOME must hold the
`.teuthology.yaml` (lab_domain, nsupdate_url, libcloud providers) and `.ssh/id_rsa[.pub]` the bench wrote.

    python teuthology_runner.py create|destroy --names n1,n2 --machine-type dev --bind-port P --ssh-port S \
        [--os-type ubuntu --os-version 22.04 --hints '{"openstack": {"volumes": {"count": 1, "size": 1}}}']

For each name, in order, it calls what teuthology's `create_if_vm` / `destroy_if_vm` call for a libcloud
machine type (`teuthology.provision.cloud.get_provisioner(...).create()` / `.destroy()`) and prints one
JSON line: the seconds and result of each node. The lock server part of the lock client (is_vm lookup,
host-key update) is left out: it makes no cloud request.

What is changed so that it runs on devcloud at all, and nothing more (never its sleeps, polls, or retries):

1. Name resolution. Its SSH check connects to the node's short name through the system resolver; here
   a bare node name is resolved as `<name>.<lab_domain>` through the bench's BIND (`dig`), as a resolver
   with `search <lab_domain>` pointing at the lab's DNS server would. Its own DNS update put it there.
2. SSH port and login. devcloud runs one sshd per server address on its own port (22 needs root and may
   be taken), and lets in only the account it runs as (there is no `ubuntu` here): paramiko's connect is
   given that port and account. The key is teuthology's own choice (`~/.ssh/id_rsa`, which its
   cloud-config installs).
3. Readiness marker. Its wait runs `while [ ! -e '/.teuth_provisioned' ]; do sleep 5; done` on the node;
   devcloud's cloud-init leaves the marker under the server's own root, which its sshd exports as
   DEVCLOUD_ROOT, so the command tests `$DEVCLOUD_ROOT/.teuth_provisioned` instead (same loop, same sleep).
"""

from __future__ import annotations

import argparse
import getpass
import json
import socket
import subprocess
import sys
import time


def _patch(bind_port: int, lab_domain: str, ssh_port: int) -> None:
    """The three changes listed in the module docstring."""
    import paramiko
    import teuthology.orchestra.remote as remote

    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):  # 1. <name> -> <name>.<lab_domain> through the bench's BIND
        if isinstance(host, str) and host and "." not in host and host != "localhost":
            out = subprocess.run(["dig", "+short", "+tcp", "-p", str(bind_port), "@127.0.0.1",
                                  f"{host}.{lab_domain}", "A"], capture_output=True, text=True, timeout=10)
            found = [line for line in out.stdout.split() if line[:1].isdigit()]
            if not found:
                raise socket.gaierror(socket.EAI_NONAME, f"{host}.{lab_domain} not in DNS")
            host = found[0]
        return real_getaddrinfo(host, port, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo

    real_connect = paramiko.SSHClient.connect
    me = getpass.getuser()

    def connect(self, hostname, port=22, username=None, *args, **kwargs):  # 2. devcloud's port and account
        return real_connect(self, hostname, ssh_port, me, *args, **kwargs)

    paramiko.SSHClient.connect = connect

    real_run = remote.Remote.run

    def run(self, *args, **kwargs):  # 3. the marker under the server's own root
        command = kwargs.get("args")
        if isinstance(command, str) and "'/.teuth_provisioned'" in command:
            kwargs["args"] = command.replace("'/.teuth_provisioned'", '"${DEVCLOUD_ROOT:-}/.teuth_provisioned"')
        return real_run(self, *args, **kwargs)

    remote.Remote.run = run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["create", "destroy"])
    parser.add_argument("--names", required=True)
    parser.add_argument("--machine-type", default="dev")
    parser.add_argument("--os-type", default="ubuntu")
    parser.add_argument("--os-version", default="22.04")
    parser.add_argument("--hints", default="{}")
    parser.add_argument("--bind-port", type=int, required=True)
    parser.add_argument("--ssh-port", type=int, required=True)
    args = parser.parse_args()

    from teuthology.config import config
    from teuthology.provision import cloud

    _patch(args.bind_port, config.lab_domain, args.ssh_port)
    hints = json.loads(args.hints)
    nodes = []
    for name in args.names.split(","):
        provisioner = cloud.get_provisioner(args.machine_type, name, args.os_type, args.os_version, conf=hints)
        start = time.monotonic()
        result = provisioner.create() if args.command == "create" else provisioner.destroy()
        nodes.append({"name": name, "seconds": round(time.monotonic() - start, 3), "ok": bool(result)})
        print(f"teuthology {args.command} {name}: {nodes[-1]['seconds']:.1f}s ok={nodes[-1]['ok']}",
              file=sys.stderr, flush=True)
    print(json.dumps({"command": args.command, "nodes": nodes}))


if __name__ == "__main__":
    main()

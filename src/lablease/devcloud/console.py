"""Each server's console: the boot log it writes as it boots, and Nova's os-getConsoleOutput action."""

from __future__ import annotations

import fnmatch
from typing import Any

from lablease.devcloud.config import BootFault
from lablease.devcloud.errors import CloudError
from lablease.devcloud.state import Server

MAX_LINES = 1000  # a server's log keeps its last lines only


def write(server: Server, *lines: str) -> None:
    """Append ``lines`` to the server's console (the caller holds the cloud's lock)."""
    server.console.extend(line for text in lines for line in text.splitlines())
    del server.console[:-MAX_LINES]


def created(server: Server) -> None:
    write(server, "SeaBIOS (version 1.16.3-debian-1.16.3-2)", f"Booting from Hard Disk... ({server.name})")


def kernel(server: Server) -> None:
    write(server, "[    0.000000] Linux version 6.1.0-devcloud (devcloud@localhost) #1 SMP",
          "[    0.912345] Freeing unused kernel image (initmem) memory: 2048K",
          "[    1.234567] systemd[1]: Reached target basic.target - Basic System.")


def cloud_init(server: Server) -> None:
    write(server, f"[    3.141592] cloud-init[512]: Cloud-init v. 23.1 running 'modules:final' on {server.name}",
          f"{server.name} login: ")


def boot_fault(fault: BootFault, name: str) -> BootFault | None:
    """The boot fault that applies to the server named ``name``, if any."""
    return fault if fnmatch.fnmatchcase(name, fault.match_name) else None


def output(server: Server, body: Any) -> dict[str, str]:
    """os-getConsoleOutput: ``{"length": N}`` (N >= 0: the last N lines; -1 or null: all of it)."""
    length = body.get("length") if isinstance(body, dict) else None
    if not isinstance(body, dict) or (length is not None and (
            isinstance(length, bool) or not isinstance(length, int) or length < -1)):
        raise CloudError(400, "Invalid input for field/attribute length. Value should be an integer >= -1 or null",
                         "nova")
    lines = server.console if length in (None, -1) else server.console[len(server.console) - length:] \
        if length else []
    return {"output": "".join(line + "\n" for line in lines)}

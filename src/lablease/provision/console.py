"""A failed boot's console log: fetched once from the cloud, cut to its end and cleared of secrets.

When a boot or the SSH wait fails, what the server printed says why far better than a timeout does
(a kernel panic, cloud-init's error). The engine asks for it before the rollback deletes the server;
the failure event keeps it (``ProgressEvent.console``).
"""

from __future__ import annotations

import logging

from lablease.config.redact import redact_log
from lablease.provision.calls import CloudCaller
from lablease.provision.errorkinds import ErrorKind
from lablease.provision.errors import ProvisionError, Stage

log = logging.getLogger(__name__)

CONSOLE_BYTES = 4096  # the end of the log is kept: where a boot stopped
CONSOLE_STAGES = frozenset({Stage.BOOT, Stage.SSH})


def tail(text: str, limit: int = CONSOLE_BYTES) -> str:
    """The last ``limit`` bytes of ``text`` (whole characters), from a line start when there is one."""
    data = text.encode("utf-8", errors="replace")
    if len(data) <= limit:
        return text
    cut = data[-limit:].decode("utf-8", errors="ignore")
    newline = cut.find("\n")
    return cut[newline + 1:] if 0 <= newline < len(cut) - 1 else cut


def failure_console(caller: CloudCaller, adapter, error: ProvisionError, server_ids: list[str]) -> str:  # noqa: ANN001
    """The console of the attempt's last server when ``error`` is a boot or SSH failure; "" otherwise, and
    when the cloud shows none or the call fails (a failure's report never waits on a second failure)."""
    if error.stage not in CONSOLE_STAGES or not server_ids:
        return ""
    if error.kind is ErrorKind.UNREACHABLE or caller.unreachable:
        return ""  # a cloud that does not answer has no console to give: the failure's report must not wait on it
    server_id = server_ids[-1]
    try:
        # One try (idempotent=False: a 5xx is not repeated): the log is a courtesy, the rollback comes first.
        text = caller.call(error.stage, error.node, lambda: adapter.console_output(server_id),
                           what="console output", idempotent=False)
    except Exception as exc:  # noqa: BLE001
        log.info("no console output node=%s server=%s error=%s", error.node, server_id, exc)
        return ""
    return redact_log(tail(text)) if text else ""

"""The engine's one error type: which stage failed, for which node, why, and whether retrying can help."""

from __future__ import annotations

from enum import Enum

from lablease.provision.errorkinds import ErrorKind


class Stage(str, Enum):
    """Where in a node's life a failure happened; the CLI and metrics report these names."""

    AUTH = "auth"
    IMAGE = "image"
    SIZE = "size"
    NETWORK = "network"
    CREATE = "create"
    BOOT = "boot"
    FLOATING_IP = "floating-ip"
    VOLUME = "volume"
    DNS = "dns"
    SSH = "ssh"
    DESTROY = "destroy"
    LIST = "list"


class ProvisionError(Exception):
    """A failed stage of one node, of one ``ErrorKind``; ``retryable`` (whether a fresh attempt could
    succeed) follows from the kind (``errorkinds.RULES``).

    Messages carry the cloud's own words but never a credential: the engine only ever puts
    the cloud's error text and its own explanation here.
    """

    def __init__(self, stage: Stage | str, node: str | None, message: str, *, kind: ErrorKind | str = ErrorKind.FATAL):
        self.stage = Stage(stage)
        self.node = node
        self.message = message
        self.kind = ErrorKind(kind)
        super().__init__(str(self))

    @property
    def retryable(self) -> bool:
        return self.kind.rule.retry_attempt

    def __str__(self) -> str:
        who = f"node {self.node}: " if self.node else ""
        return f"{who}{self.stage.value} failed: {self.message}"

    def __reduce__(self):  # keep pickling (process pools, logging handlers) working with keyword args
        return (_rebuild, (self.stage.value, self.node, self.message, self.kind.value))


def _rebuild(stage: str, node: str | None, message: str, kind: str) -> ProvisionError:
    return ProvisionError(stage, node, message, kind=kind)

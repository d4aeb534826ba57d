"""The engine's one error type: which stage failed, for which node, why, and whether retrying can help."""

from __future__ import annotations

from enum import Enum


class Stage(str, Enum):
    """Where in a node's life a failure happened; the CLI and metrics report these names."""

    AUTH = "auth"
    IMAGE = "image"
    SIZE = "size"
    NETWORK = "network"
    CREATE = "create"
    BOOT = "boot"
    VOLUME = "volume"
    DNS = "dns"
    SSH = "ssh"
    DESTROY = "destroy"
    LIST = "list"


class ProvisionError(Exception):
    """A failed stage of one node. ``retryable`` says whether a fresh attempt could succeed.

    Messages carry the cloud's own words but never a credential: the engine only ever puts
    the cloud's error text and its own explanation here.
    """

    def __init__(self, stage: Stage | str, node: str | None, message: str, retryable: bool = False,
                 *, kind: str = "fatal"):
        self.stage = Stage(stage)
        self.node = node
        self.message = message
        self.retryable = retryable
        self.kind = kind
        super().__init__(str(self))

    def __str__(self) -> str:
        who = f"node {self.node}: " if self.node else ""
        return f"{who}{self.stage.value} failed: {self.message}"

    def __reduce__(self):  # keep pickling (process pools, logging handlers) working with keyword args
        return (_rebuild, (self.stage.value, self.node, self.message, self.retryable, self.kind))


def _rebuild(stage: str, node: str | None, message: str, retryable: bool, kind: str) -> ProvisionError:
    return ProvisionError(stage, node, message, retryable, kind=kind)

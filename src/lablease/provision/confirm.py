"""A destroy is done only when listings begun after its deletes show nothing of the node.

One server listing and one volume listing answer a whole batch of destroys; only a node they still
show anything of is torn down again (``Teardown.confirm_gone``) and fails, naming what remains,
when that does not help. The engine's destroy and destroy_many end here.
"""

from __future__ import annotations

import logging
from typing import Callable

from lablease.provision.adapters.base import Server, Volume
from lablease.provision.errors import ProvisionError, Stage
from lablease.provision.models import ProgressCallback, ProgressEvent
from lablease.provision.teardown import Teardown

log = logging.getLogger(__name__)

Mine = Callable[[str, list[Server], list[Volume]], tuple[list[str], list[Volume]]]


class DestroyCheck:
    """Confirms destroys for one provider: ``snapshot`` lists everything now, ``mine`` picks a node's part of it."""

    def __init__(self, teardown: Teardown, snapshot: Callable[[], tuple[list, list]], mine: Mine,
                 emit: ProgressCallback):
        self.teardown = teardown
        self.snapshot = snapshot
        self.mine = mine
        self.emit = emit

    def confirm(self, nodes: list[str]) -> dict[str, ProvisionError]:
        """The error of each of ``nodes`` (short names, torn down) that the listings still show something of."""
        if not nodes:
            return {}
        try:
            servers, volumes = self.snapshot()
        except ProvisionError as exc:
            return {node: self._failed(node, [f"could not confirm that nothing of {node} is left: {exc.message}"])
                    for node in nodes}
        errors = {}
        for node in nodes:
            left_servers, left_volumes = self.mine(node, servers, volumes)
            problems = self.teardown.confirm_gone(node, lambda s, v, node=node: self.mine(node, s, v)) \
                if left_servers or left_volumes else []
            if problems:
                errors[node] = self._failed(node, problems)
            else:
                self.emit(ProgressEvent(node, Stage.DESTROY.value, "done"))
                log.info("node destroyed node=%s", node)
        return errors

    def _failed(self, node: str, problems: list[str]) -> ProvisionError:
        message = "; ".join(problems)
        self.emit(ProgressEvent(node, Stage.DESTROY.value, "failed", message=message))
        return ProvisionError(Stage.DESTROY, node, message)

"""What a failed lock request does with each of its nodes: the shortest way back that leaves nothing behind.

- A launch that failed and whose rollback confirmed nothing remains (its error is not LEFTOVER) made
  nothing: its record goes straight back to idle and unlocked, the failure kept as its last error.
- A node that did come up, or whose rollback could not finish, is destroyed by name; it ends
  ``destroy-failed`` only when that destroy cannot confirm everything is gone.
- While the cloud is unreachable a destroy would only fail: such nodes are left ``destroy-failed`` at
  once, for the reconciler, which destroys and frees them when the cloud answers again. The lock's
  answer does not wait for the outage.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from lablease.lab.workers import ProviderWorker
from lablease.provision.errorkinds import ErrorKind
from lablease.provision.errors import ProvisionError
from lablease.store import NodeRecord, NodeState, NodeStore

LINE = 200  # characters of one node's line in the answer
HANDED_OVER = ("the cloud is unreachable, so nothing could be destroyed yet; the reconciler destroys and frees "
               "this node once the cloud answers again")


def clean(result: Any) -> bool:
    """Whether a launch's result says it failed and nothing of it remains (its rollback saw to that)."""
    return isinstance(result, ProvisionError) and result.kind is not ErrorKind.LEFTOVER


def node_line(node: NodeRecord, exc: BaseException) -> str:
    """``node1: boot failed: cloud unreachable: ...``: one short line, without the rollback's list of problems."""
    if isinstance(exc, ProvisionError):
        words = exc.message.split("; rollback incomplete:", 1)[0]
        text = f"{node.name}: {exc.stage.value} failed: {words}"
        if exc.kind is ErrorKind.LEFTOVER:
            text += " (its rollback could not finish)"
    else:
        text = f"{node.name}: unexpected {type(exc).__name__}: {exc}"
    return text if len(text) <= LINE else text[:LINE - 1] + "…"


class FailedLock:
    """Undoes the nodes of one failed request of ``worker``'s provider; ``destroy`` is the service's destroy of one
    node already in ``destroying`` (True when it was freed)."""

    def __init__(self, store: NodeStore, worker: ProviderWorker,
                 destroy: Callable[[str, str | None], Awaitable[bool]]):
        self.store = store
        self.worker = worker
        self.destroy = destroy

    async def undo(self, nodes: list[NodeRecord], results: list[Any], reason: str, request: str | None, *,
                   lost: set[str] = frozenset(), abandoned: bool = False) -> tuple[list[str], list[str]]:
        """Free, destroy or hand over every node but the ``lost`` ones (forced free by an admin, or taken over:
        whoever holds them now destroys them); returns (names left destroy-failed, names handed over).
        ``abandoned``: the client went away, so ``reason`` (saying so) is each node's error, not its cancelled create."""
        outcomes = await asyncio.gather(*(self._one(n, r, reason, request, abandoned)
                                          for n, r in zip(nodes, results) if n.name not in lost))
        nodes = [n for n in nodes if n.name not in lost]
        left = [n.name for n, o in zip(nodes, outcomes) if o == "left"]
        handed = [n.name for n, o in zip(nodes, outcomes) if o == "handed"]
        return left, handed

    async def _one(self, node: NodeRecord, result: Any, reason: str, request: str | None, abandoned: bool) -> str:
        why = (node_line(node, result) if isinstance(result, BaseException) and not abandoned else reason)[:2000]
        if clean(result):
            await asyncio.to_thread(self.store.release, node.name, why, who="lablease")
            return "freed"
        await asyncio.to_thread(self.store.transition, node.name, NodeState.PROVISIONING, NodeState.DESTROYING,
                                who="lablease", last_error=reason[:2000])
        if self.worker.prov.caller.unreachable:
            await asyncio.to_thread(self.store.transition, node.name, NodeState.DESTROYING, NodeState.DESTROY_FAILED,
                                    who="lablease", last_error=f"{why[:1000]}; {HANDED_OVER}",
                                    lease_owner=None, lease_expires=None)
            return "handed"
        return "freed" if await self.destroy(node.name, request) else "left"


def failure_message(reason: str, freed: int, handed: list[str], left: list[str]) -> str:
    """The 503 answer of a failed lock request: why, and where each of its nodes ended."""
    message = f"provisioning failed, so no node of the request was kept: {reason}"
    if freed:
        message += f"; {freed} node(s) made nothing and are free again"
    if handed:
        message += (f"; the cloud is unreachable, so {', '.join(handed)} stay locked in destroy-failed until "
                    "the reconciler destroys and frees them once it answers")
    if left:
        message += (f"; destroying {', '.join(left)} failed too, so they stay locked in "
                    "destroy-failed until their owner unlocks them again (which retries the destroy)")
    return message


async def gather_unless(futures: list[Awaitable[Any]], abandoned: asyncio.Event | None,
                        stop: threading.Event) -> list[Any]:
    """Every future's result or exception; when ``abandoned`` is set first, ``stop`` is set (the creates end
    at once, each rolling back what it made) and their ends are awaited all the same."""
    gathered = asyncio.gather(*futures, return_exceptions=True)
    if abandoned is not None:
        gone = asyncio.ensure_future(abandoned.wait())
        await asyncio.wait({gathered, gone}, return_when=asyncio.FIRST_COMPLETED)
        gone.cancel()
        if abandoned.is_set():
            stop.set()
    return list(await gathered)

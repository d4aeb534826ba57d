"""Creates that survive a lost answer: after a create whose answer never came, look for what it made.

A create (a POST: server, volume, attachment) whose connection broke or timed out may have
acted. Repeating it could make a second one; giving up would leave the first behind. So after
such an answer the cloud is asked, by a listing or a GET and never by a second POST, for the
thing by its name and this attempt's tag: found, it is adopted as if the answer had come; not
found, the error goes up and the attempt's rollback lists by tag once more.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable, TypeVar

from lablease.provision.adapters.base import CloudAdapter, Server, Volume
from lablease.provision.calls import CloudCaller
from lablease.provision.errorkinds import ErrorKind
from lablease.provision.errors import ProvisionError, Stage
from lablease.provision.models import TAG_ATTEMPT

log = logging.getLogger(__name__)
T = TypeVar("T")

# What an attachment's look answers when the attach acted (attach_volume itself returns nothing).
ATTACHED = True


class Adopter:
    """Runs one create call so that its effect is used whether or not its answer arrived.

    A request the client gave up on may still be carried out a little later (it waited in the cloud's
    queue); so when the first look finds nothing, it looks once more ``settle`` seconds later (the
    provider's api_timeout), unless ``cancel`` is set meanwhile.
    """

    def __init__(self, adapter: CloudAdapter, caller: CloudCaller, settle: float, cancel: threading.Event):
        self.adapter = adapter
        self.caller = caller
        self.settle = settle
        self.cancel = cancel

    def create(self, stage: Stage, node: str, what: str, create: Callable[[], T], find: Callable[[], T | None]) -> T:
        """``create()`` once (repeated by the caller only after a rate limit), adopting ``find()``'s answer when
        the create's answer was lost. ``find`` returns what this create made, or None when the cloud has none."""
        tries = [0]

        def once() -> T:
            tries[0] += 1
            if tries[0] > 1:  # libcloud's create is a POST and a GET: a rate limit on the GET means it exists
                made = find()
                if made is not None:
                    return made
            try:
                return create()
            except Exception as exc:
                info = self.adapter.classify(exc)
                if info.kind is not ErrorKind.TRANSIENT:
                    raise
                made = self._look(stage, node, what, find)
                if made is None and not self.cancel.wait(self.settle):
                    made = self._look(stage, node, what, find)
                if made is None:
                    raise exc from None
                log.info("%s: the answer was lost (%s) but the cloud acted; adopted node=%s", what, info.message, node)
                return made

        return self.caller.call(stage, node, once, what=what, idempotent=False)

    def _look(self, stage: Stage, node: str, what: str, find: Callable[[], T | None]) -> T | None:
        try:  # a look, never a second POST: the caller's rules for creates still hold
            return self.caller.call(stage, node, find, what=f"find after {what}")
        except ProvisionError:
            return None  # the attempt fails; its rollback lists by tag

    # -- what to look for ----------------------------------------------------------------------

    def server_of(self, name: str, attempt_id: str) -> Callable[[], Server | None]:
        def find() -> Server | None:
            made = [s for s in self.adapter.list_servers()
                    if s.name == name and s.metadata.get(TAG_ATTEMPT) == attempt_id]
            return made[0] if made else None
        return find

    def volume_of(self, name: str, attempt_id: str) -> Callable[[], Volume | None]:
        def find() -> Volume | None:
            made = [v for v in self.adapter.list_volumes()
                    if v.name == name and v.metadata.get(TAG_ATTEMPT) == attempt_id]
            return made[0] if made else None
        return find

    def attachment_of(self, server_id: str, volume_id: str) -> Callable[[], bool | None]:
        """The volume was available and only this attempt attaches it: attaching or attached means the attach acted."""
        def find() -> bool | None:
            vol = self.adapter.get_volume(volume_id)
            if vol is not None and (server_id in vol.attached_to or vol.state in ("attaching", "in-use")):
                return ATTACHED
            return None
        return find

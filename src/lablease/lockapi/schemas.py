"""Request bodies of the /nodes API; unknown keys are ignored, as paddles does."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from lablease.store import models as m

MAX_COUNT = 1_000_000


def _no_nul(value: str) -> str:
    # PostgreSQL cannot store NUL characters in text; refuse them on every database alike.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


Text = Annotated[str, AfterValidator(_no_nul)]
Name = Annotated[Text, Field(min_length=1, max_length=m.NAME_LEN)]
RequestId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]


class NodeFields(BaseModel):
    """Fields a client may set on a node (``PUT /nodes/<name>/``, ``POST /nodes/``, ``/lock/``)."""

    model_config = ConfigDict(extra="ignore")

    description: Text | None = None
    up: bool | None = None
    machine_type: Text | None = Field(None, max_length=m.MACHINE_TYPE_LEN)
    is_vm: bool | None = None
    vm_host: Text | None = Field(None, max_length=m.NAME_LEN)
    os_type: Text | None = Field(None, max_length=m.OS_TYPE_LEN)
    os_version: Text | None = Field(None, max_length=m.OS_VERSION_LEN)
    arch: Text | None = Field(None, max_length=m.ARCH_LEN)
    locked: bool | None = None
    locked_by: Text | None = Field(None, max_length=m.LOCKED_BY_LEN)
    locked_since: Text | None = None
    request_id: RequestId | None = None  # lablease: progress id of a cloud node's lock (see LockMany)
    mac_address: Text | None = Field(None, max_length=m.MAC_LEN)
    ssh_pub_key: Text | None = None

    @field_validator("os_version", mode="before")
    @classmethod
    def _version_as_text(cls, value):  # noqa: ANN001, ANN206
        # teuthology and YAML files give versions like 22.04 as numbers.
        return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value

    def values(self) -> dict:
        """Only the keys the client sent (paddles applies exactly those)."""
        data = self.model_dump(exclude_unset=True)
        if data.get("is_vm") is None:
            data.pop("is_vm", None)  # is_vm is never null
        return data


class NodeCreate(NodeFields):
    name: Name


class LockMany(BaseModel):
    """``POST /nodes/lock_many/``: the four keys are required; description may be null."""

    model_config = ConfigDict(extra="ignore")

    count: int = Field(..., ge=1, le=MAX_COUNT)
    locked_by: Text = Field(..., min_length=1, max_length=m.LOCKED_BY_LEN)
    machine_type: Text = Field(..., min_length=1)
    description: Text | None = Field(...)
    os_type: Text | None = None
    os_version: Text | None = None
    arch: Text | None = None
    # lablease's own keys (paddles clients never send them): the id under which the lab service
    # publishes this request's progress (GET /lab/progress/?request=ID), and the job's resource
    # hints for a cloud type, as teuthology's job config carries them.
    request_id: RequestId | None = None
    openstack: dict | list | None = None

    _version = field_validator("os_version", mode="before")(NodeFields._version_as_text.__func__)

    @field_validator("count", mode="before")
    @classmethod
    def _no_bool_count(cls, value):  # noqa: ANN001, ANN206
        if isinstance(value, bool):
            raise ValueError("must be an integer")
        return value


class UnlockMany(BaseModel):
    """``POST /nodes/unlock_many/``."""

    model_config = ConfigDict(extra="ignore")

    names: list[Name]
    locked_by: Text = Field(..., min_length=1, max_length=m.LOCKED_BY_LEN)
    description: Text | None = None

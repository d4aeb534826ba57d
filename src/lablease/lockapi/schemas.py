"""Request bodies of the /nodes API; unknown keys are ignored, as paddles does."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from lablease.store import models as m

Name = Annotated[str, Field(min_length=1, max_length=m.NAME_LEN)]


class NodeFields(BaseModel):
    """Fields a client may set on a node (``PUT /nodes/<name>/``, ``POST /nodes/``, ``/lock/``)."""

    model_config = ConfigDict(extra="ignore")

    description: str | None = None
    up: bool | None = None
    machine_type: str | None = Field(None, max_length=m.MACHINE_TYPE_LEN)
    is_vm: bool | None = None
    vm_host: str | None = Field(None, max_length=m.NAME_LEN)
    os_type: str | None = Field(None, max_length=m.OS_TYPE_LEN)
    os_version: str | None = Field(None, max_length=m.OS_VERSION_LEN)
    arch: str | None = Field(None, max_length=m.ARCH_LEN)
    locked: bool | None = None
    locked_by: str | None = Field(None, max_length=m.LOCKED_BY_LEN)
    locked_since: str | None = None
    mac_address: str | None = Field(None, max_length=m.MAC_LEN)
    ssh_pub_key: str | None = None

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

    count: int = Field(..., ge=1)
    locked_by: str = Field(..., min_length=1, max_length=m.LOCKED_BY_LEN)
    machine_type: str = Field(..., min_length=1)
    description: str | None = Field(...)
    os_type: str | None = None
    os_version: str | None = None
    arch: str | None = None

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
    locked_by: str = Field(..., min_length=1, max_length=m.LOCKED_BY_LEN)
    description: str | None = None

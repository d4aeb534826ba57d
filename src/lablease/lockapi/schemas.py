"""Request bodies of the /nodes API (unknown keys are ignored, as paddles does) and the answers' shapes.

The JSON schema of each type says exactly what the server accepts, because clients and schemathesis
read it: booleans are JSON booleans (or 0/1), ``count`` an integer (or its decimal text), versions a
string or a number. Text is checked once, at the edge (lockapi.middleware: no NUL, no unpaired
surrogate); the schema states the NUL rule as a pattern.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Union  # noqa: F401 - Union: the string of Hint below

from pydantic import (
    AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, GetJsonSchemaHandler, Strict, TypeAdapter, WithJsonSchema,
)
from pydantic_core import CoreSchema
from typing_extensions import TypeAliasType

from lablease.store import models as m

MAX_COUNT = 1_000_000
NO_NUL = r"^[^\x00]*$"
COUNT_TEXT = r"^(?:[1-9][0-9]{0,5}|1000000)$"  # 1 .. MAX_COUNT written in decimal
DIGITS = r"^[0-9]+$"
assert re.fullmatch(COUNT_TEXT, str(MAX_COUNT)) and not re.fullmatch(COUNT_TEXT, str(MAX_COUNT + 1))


class _TextRule:
    """The text rule in the JSON schema (a pattern); the check itself is the edge's (lockapi.middleware)."""

    @classmethod
    def __get_pydantic_json_schema__(cls, core: CoreSchema, handler: GetJsonSchemaHandler) -> dict[str, Any]:
        schema = handler(core)
        schema["pattern"] = NO_NUL
        schema.setdefault("description", "text: no NUL character, no unpaired surrogate")
        return schema


class _KeyRule:
    """The text rule for the keys of an object, in the JSON schema."""

    @classmethod
    def __get_pydantic_json_schema__(cls, core: CoreSchema, handler: GetJsonSchemaHandler) -> dict[str, Any]:
        schema = handler(core)
        schema["propertyNames"] = {"pattern": NO_NUL}
        return schema


def _flag(value: Any) -> Any:
    """A JSON boolean, or 0/1 as some paddles clients send them (JSON does not tell 1 from 1.0)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value in (0, 1):
        return bool(value)
    return value


def _count(value: Any) -> Any:
    """An integer, or its decimal text (paddles clients send ``"2"``); never a boolean, a float or ``" 2"``."""
    if isinstance(value, str):
        if not re.fullmatch(COUNT_TEXT, value):
            raise ValueError("must be an integer from 1 to 1000000")
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)  # 2.0 is the integer 2 to JSON (and to JSON schema)
    return value


def digits_only(value: Any) -> Any:
    """A query's integer: plain decimal digits only (no sign, no spaces, no ``5.0``, no ``5_0``)."""
    if isinstance(value, str) and not re.fullmatch(DIGITS, value):
        raise ValueError("must be an integer")
    return value


def _version_text(max_len: int | None):  # noqa: ANN202
    def convert(value: Any) -> Any:
        # teuthology and YAML files give versions like 22.04 as numbers; a long one is shortened to 9 digits.
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not -1e300 <= value <= 1e300:
                raise ValueError("must be a version such as 22.04")
            text = str(value)
            if max_len is not None and len(text) > max_len:
                text = f"{float(value):.9g}"  # at most 16 characters: "-1.23456789e-308"
            return text
        if isinstance(value, str) and max_len is not None and len(value) > max_len:
            raise ValueError(f"must be at most {max_len} characters")
        return value
    return convert


def _version_schema(max_len: int | None) -> dict[str, Any]:
    text: dict[str, Any] = {"type": "string", "pattern": NO_NUL}
    if max_len is not None:
        text["maxLength"] = max_len
    number = {"type": "number", "minimum": -1e300, "maximum": 1e300,
              "description": "taken as its text (22.04 -> \"22.04\")"}
    return {"anyOf": [text, number, {"type": "null"}]}


Text = Annotated[str, _TextRule]
# Any JSON value whose text keeps the text rule (what a body may hold besides its fields; the edge also
# refuses nesting deeper than 32 levels, which a schema cannot say).
Hint = TypeAliasType("Hint", "Union[Text, int, float, bool, None, list[Hint], Annotated[dict[str, Hint], _KeyRule]]")
_HINT_CORE = TypeAdapter(Hint).core_schema
def _addressable(value: str) -> str:
    # Stored without its final dot, "." would be "" and ".." would be "..": no URL could reach such a node.
    if value.removesuffix(".") in ("", ".", ".."):
        raise ValueError(f"{value!r} cannot be a node's name: /nodes/{value}/ would not reach it")
    return value


UNADDRESSABLE = [".", "..", "..."]
Name = Annotated[Text, Field(min_length=1, max_length=m.NAME_LEN), AfterValidator(_addressable),
                 Field(json_schema_extra={"not": {"enum": UNADDRESSABLE}, "pattern": r"^[^/\x00]*$"})]
RequestId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
Flag = Annotated[bool, BeforeValidator(_flag), Strict(),
                 WithJsonSchema({"anyOf": [{"type": "boolean"}, {"type": "integer", "enum": [0, 1]}]})]
Count = Annotated[int, BeforeValidator(_count), Strict(), Field(ge=1, le=MAX_COUNT),
                  WithJsonSchema({"anyOf": [{"type": "integer", "minimum": 1, "maximum": MAX_COUNT},
                                            {"type": "string", "pattern": COUNT_TEXT}]})]
NodeVersion = Annotated[str | None, BeforeValidator(_version_text(m.OS_VERSION_LEN)),
                        WithJsonSchema(_version_schema(m.OS_VERSION_LEN))]
AnyVersion = Annotated[str | None, BeforeValidator(_version_text(None)), WithJsonSchema(_version_schema(None))]
# paddles' time format, or ISO 8601 (2026-11-25T12:58:02Z): a date of 1900-2999 that exists, a time of day
# (seconds and up to 6 digits of fraction optional), an offset (UTC when none). The pattern is the whole rule:
# every text it admits is a time the store reads, so the schema says exactly what is accepted.
_YEAR = "(?:19|2[0-9])[0-9]{2}"
_LEAP = "(?:(?:19|2[0-9])(?:0[48]|[2468][048]|[13579][26])|2[048]00)"
_DATE = (f"(?:{_YEAR}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
         f"|02-(?:0[1-9]|1[0-9]|2[0-8]))|{_LEAP}-02-29)")
_CLOCK = "[T ](?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\\.[0-9]{1,6})?)?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])?"
TIME_TEXT = f"^{_DATE}(?:{_CLOCK})?$"
TIME_EXAMPLE = "'2026-11-25 12:58:02.472657' (UTC) or ISO 8601 (2026-11-25T12:58:02Z)"


def _time(value: Any) -> Any:
    if isinstance(value, str) and not re.fullmatch(TIME_TEXT, value):
        raise ValueError(f"must be a time like {TIME_EXAMPLE}")
    return value


Time = Annotated[str, AfterValidator(_time), WithJsonSchema(
    {"type": "string", "pattern": TIME_TEXT, "description": f"a time like {TIME_EXAMPLE}"})]


MAX_LOCK_HOURS = 24 * 366
LockHours = Annotated[float, Strict(), Field(gt=0, le=MAX_LOCK_HOURS, allow_inf_nan=False,
                                             description="hours until the lock expires (a cloud type with a policy)")]


class _Body(BaseModel):
    """A request body: a JSON object whose unknown keys are ignored (and, as all its text, keep the text rule)."""

    model_config = ConfigDict(extra="ignore")

    @classmethod
    def __get_pydantic_json_schema__(cls, core: CoreSchema, handler: GetJsonSchemaHandler) -> dict[str, Any]:
        schema = handler(core)
        target = handler.resolve_ref_schema(schema)
        target["propertyNames"] = {"pattern": NO_NUL}
        target["additionalProperties"] = handler(_HINT_CORE)
        return schema


class NodeFields(_Body):
    """Fields a client may set on a node (``PUT /nodes/<name>/``, ``POST /nodes/``, ``/lock/``)."""

    description: Text | None = None
    up: Flag | None = None
    machine_type: Text | None = Field(None, max_length=m.MACHINE_TYPE_LEN)
    is_vm: Flag | None = None
    vm_host: Text | None = Field(None, max_length=m.NAME_LEN, description="the host node's name")
    os_type: Text | None = Field(None, max_length=m.OS_TYPE_LEN)
    os_version: NodeVersion = None
    arch: Text | None = Field(None, max_length=m.ARCH_LEN)
    locked: Flag | None = None
    locked_by: Text | None = Field(None, max_length=m.LOCKED_BY_LEN)
    locked_since: Time | None = None
    request_id: RequestId | None = None  # lablease: progress id of a cloud node's lock (see LockMany)
    mac_address: Text | None = Field(None, max_length=m.MAC_LEN)
    ssh_pub_key: Text | None = None

    def values(self) -> dict:
        """Only the keys the client sent (paddles applies exactly those)."""
        data = self.model_dump(exclude_unset=True)
        if data.get("is_vm") is None:
            data.pop("is_vm", None)  # is_vm is never null
        return data


class NodeCreate(NodeFields):
    name: Name = Field(description="the node's name (a host name; never holds '/')")


class LockMany(_Body):
    """``POST /nodes/lock_many/``: the four keys are required; description may be null."""

    count: Count
    locked_by: Text = Field(..., min_length=1, max_length=m.LOCKED_BY_LEN)
    machine_type: Text = Field(..., min_length=1, description="a machine type, or several as `a|b`")
    description: Text | None = Field(...)
    os_type: Text | None = None
    os_version: AnyVersion = None
    arch: Text | None = None
    # lablease's own keys (paddles clients never send them): the id under which the lab service
    # publishes this request's progress (GET /lab/progress/?request=ID), and the job's resource
    # hints for a cloud type, as teuthology's job config carries them.
    request_id: RequestId | None = None
    openstack: Annotated[dict[str, Hint], _KeyRule] | list[Hint] | None = None
    # lablease's: a cloud lock that should expire sooner than its machine type's default (docs/lab-service.md)
    lock_hours: LockHours | None = None


class UnlockMany(_Body):
    """``POST /nodes/unlock_many/``."""

    names: list[Name]
    locked_by: Text = Field(..., min_length=1, max_length=m.LOCKED_BY_LEN)
    description: Text | None = None


# -- answers (documentation only: the routes send these shapes as JSON themselves) -----------------------


class Node(BaseModel):
    """A node: paddles' keys, then lablease's own (paddles clients ignore them)."""

    name: str
    description: str | None
    up: bool | None
    machine_type: str | None
    is_vm: bool
    vm_host: Node | None
    os_type: str | None
    os_version: str | None
    arch: str | None
    locked: bool
    locked_since: str | None
    locked_by: str | None
    mac_address: str | None
    ssh_pub_key: str | None
    state: str
    cloud_server_id: str | None
    addresses: list[str]
    last_error: str | None
    created_at: str | None
    updated_at: str | None
    provider: str | None = Field(None, description="the provider (a libcloud.providers key) that made the node's "
                                 "resources while it is held; null for a free node or a plain machine")
    expires_at: str | None = Field(None, description="a cloud lock's expiry (UTC), when its type has a policy")
    hold_until: str | None = Field(None, description="the end (UTC) of a hold keeping it past its expiry")
    hold_reason: str | None = Field(None, description="why it is held")


class ShortNode(BaseModel):
    """The lock endpoints' short answer for one node."""

    name: str
    locked: bool
    locked_by: str | None
    machine_type: str | None
    is_vm: bool


class NodeEvent(BaseModel):
    """One entry of a node's audit trail."""

    id: int
    node: str
    action: str
    who: str | None
    at: str
    old: dict[str, Any] | None
    new: dict[str, Any] | None


class About(BaseModel):
    """``GET /lablease/``."""

    server: Literal["lablease"]
    version: str
    lab_domain: str | None
    cloud_machine_types: list[str]


class Empty(BaseModel):
    """``{}``: paddles' answer to a create, an update or a delete."""

    model_config = ConfigDict(extra="forbid")

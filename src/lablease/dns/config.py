"""The DNS service's configuration (`dns.yaml`): validated once at start, then passed in."""

from __future__ import annotations

import hashlib
import ipaddress
import re
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lablease.config import ConfigError, load_yaml_file, validate_section
from lablease.config.patterns import check_regex

_HEX64 = re.compile(r"[0-9a-f]{64}")


def _check_pattern(value: str) -> str:
    return check_regex(value, hint="; it is matched against the whole short name")


class TokenConfig(BaseModel):
    """One bearer token: an id for the audit log, its SHA-256 (or a file holding it), its own allow pattern."""

    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")]
    sha256: str | None = None
    token_file: Path | None = None
    allow_pattern: str | None = None

    @field_validator("sha256")
    @classmethod
    def _hex_digest(cls, value: str | None) -> str | None:
        if value is not None and not _HEX64.fullmatch(value.lower()):
            raise ValueError("must be 64 hex digits: the SHA-256 of the token (printf %s TOKEN | sha256sum)")
        return value.lower() if value else value

    @field_validator("allow_pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        return _check_pattern(value) if value is not None else value

    @model_validator(mode="after")
    def _one_source(self) -> "TokenConfig":
        if (self.sha256 is None) == (self.token_file is None):
            raise ValueError("give exactly one of sha256 or token_file")
        return self

    def digest(self) -> bytes:
        """The SHA-256 of the token; a token file is read here, once, and only its hash is kept."""
        if self.sha256 is not None:
            return bytes.fromhex(self.sha256)
        assert self.token_file is not None
        try:
            token = self.token_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read token_file: {exc.strerror}", key=f"tokens[{self.id}].token_file",
                              fix="point it at a readable file holding the token") from None
        if not token:
            raise ConfigError("token_file is empty", key=f"tokens[{self.id}].token_file", fix="write the token into it")
        return hashlib.sha256(token.encode()).digest()


class DnsConfig(BaseModel):
    """Everything `lablease dns serve` needs; unknown keys are errors so typos do not pass silently."""

    model_config = ConfigDict(extra="forbid")

    listen_host: str = "127.0.0.1"
    listen_port: Annotated[int, Field(ge=0, le=65535)] = 8053
    base_path: str = ""
    zone: Annotated[str, Field(min_length=1)]
    server: str = "127.0.0.1"
    server_port: Annotated[int, Field(ge=1, le=65535)] = 53
    key_file: Path
    key_name: str | None = None
    ttl: Annotated[int, Field(ge=1, le=2147483647)] = 300
    allow_pattern: str
    timeout: Annotated[float, Field(gt=0, le=120)] = 5.0
    max_addresses: Annotated[int, Field(ge=1, le=1000)] = 32
    tokens: list[TokenConfig] = []
    workers: Annotated[int, Field(ge=1, le=64)] = 1
    log_level: str = "INFO"
    access_log: bool = True  # one line per request: method, path, status, duration, client

    @field_validator("zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        zone = value.strip().rstrip(".").lower()
        labels = zone.split(".")
        if not all(re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", label) for label in labels):
            raise ValueError("must be a domain name such as lab.example (letters, digits, hyphens, dots)")
        return zone

    @field_validator("server")
    @classmethod
    def _server_ip(cls, value: str) -> str:
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            raise ValueError("must be the DNS server's IP address, not a host name") from None

    @field_validator("base_path")
    @classmethod
    def _base_path(cls, value: str) -> str:
        value = value.rstrip("/")
        if value and not re.fullmatch(r"(/[A-Za-z0-9._~-]+)+", value):
            raise ValueError("must be empty or a URL path such as /nsupdate (the service answers at <base_path>/update)")
        return value

    @field_validator("allow_pattern")
    @classmethod
    def _pattern(cls, value: str) -> str:
        return _check_pattern(value)

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        if value.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return value.upper()

    @model_validator(mode="after")
    def _unique_token_ids(self) -> "DnsConfig":
        ids = [t.id for t in self.tokens]
        if len(ids) != len(set(ids)):
            raise ValueError("token ids must be unique (the audit log names the token by id)")
        return self


def load_dns_config(path: str | Path) -> DnsConfig:
    """Read and validate `dns.yaml`; a relative key_file or token_file is taken relative to the file."""
    data = load_yaml_file(path)
    config = validate_section(DnsConfig, data, file=str(path))
    base = Path(path).expanduser().resolve().parent
    updates: dict = {}
    if not config.key_file.is_absolute():
        updates["key_file"] = base / config.key_file
    tokens = [t.model_copy(update={"token_file": base / t.token_file})
              if t.token_file is not None and not t.token_file.is_absolute() else t for t in config.tokens]
    return config.model_copy(update={**updates, "tokens": tokens})

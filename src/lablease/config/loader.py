"""Read a YAML config file and validate sections with pydantic, turning errors into ConfigError."""

from __future__ import annotations

import difflib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from lablease.config.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def load_yaml_file(path: str | Path) -> dict[str, Any]:
    """Load a YAML mapping from ``path``; an empty file is an empty mapping."""
    p = Path(path).expanduser()
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ConfigError("file not found", file=str(p), fix="pass --config with an existing file") from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=str(p)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"not valid YAML{where}: {getattr(exc, 'problem', exc)}", file=str(p)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"the top level must be a mapping, not {type(data).__name__}", file=str(p))
    return data


def _key_path(prefix: str, loc: tuple[Any, ...]) -> str:
    parts = [prefix] if prefix else []
    parts += [str(p) for p in loc]
    return ".".join(parts)


def did_you_mean(key: str, known: typing.Iterable[str], cutoff: float = 0.75) -> str | None:
    """The known key ``key`` is probably a misspelling of (``worker`` -> ``workers``), or None."""
    if not isinstance(key, str):
        return None
    lowered = {k.lower(): k for k in known}
    found = difflib.get_close_matches(key.lower(), list(lowered), n=1, cutoff=cutoff)
    return lowered[found[0]] if found and found[0] != key else None


def _unwrap(kind: Any) -> Any:
    """``X`` of ``X | None``."""
    while typing.get_origin(kind) in (typing.Union, types.UnionType):
        kind = next((a for a in typing.get_args(kind) if a is not type(None)), None)
    return kind


def _fields_at(model: Any, loc: tuple[Any, ...]) -> list[str]:
    """The keys the model allows at ``loc`` (a pydantic error location without its last part)."""
    kind: Any = model
    for part in loc:
        kind = _unwrap(kind)
        if isinstance(kind, type) and issubclass(kind, BaseModel) and part in kind.model_fields:
            kind = kind.model_fields[part].annotation
        elif typing.get_origin(kind) in (dict, list) and typing.get_args(kind):
            kind = typing.get_args(kind)[-1]  # the value type; ``part`` is a key or an index
        else:
            return []
    kind = _unwrap(kind)
    return list(kind.model_fields) if isinstance(kind, type) and issubclass(kind, BaseModel) else []


def validate_section(model: type[M], data: Any, *, file: str | None = None, prefix: str = "") -> M:
    """Validate ``data`` as ``model``; the first error becomes a ConfigError naming its key path.

    The offending value is never echoed, because it may be a password.
    """
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as exc:
        err = exc.errors()[0]
        key = _key_path(prefix, tuple(err.get("loc", ())))
        msg = err.get("msg", "invalid value")
        if err.get("type") == "extra_forbidden":
            loc = tuple(err.get("loc", ()))
            guess = did_you_mean(loc[-1], _fields_at(model, loc[:-1])) if loc else None
            msg = "unknown key"
            fix = f"did you mean {guess!r}? otherwise remove it" if guess else "remove it or check its spelling"
        elif err.get("type") == "missing":
            msg, fix = "required key is missing", "add it"
        else:
            fix = None
        raise ConfigError(msg, file=file, key=key or None, fix=fix) from None

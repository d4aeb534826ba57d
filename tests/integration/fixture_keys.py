"""Key paths of JSON answers, and which of them libcloud's parsers read (for test_devcloud_matches_fixtures.py).

A key path names a key by the keys above it: ``servers.[].addresses.*.[].OS-EXT-IPS:type``, where ``[]`` is any item
of a list and ``*`` any key of a map whose keys are data (a server's ``addresses`` by network, ``metadata``).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterator

import libcloud

FIXTURES = Path(libcloud.__file__).parent / "test" / "compute" / "fixtures"
DATA_KEYED = {"addresses", "metadata", "extra_specs", "OS-FLV-WITH-EXT-SPECS:extra_specs"}


def child(path: str, key: str, parent_key: str | None) -> str:
    name = "*" if parent_key in DATA_KEYED else key
    return f"{path}.{name}" if path else name


def key_paths(value: Any, path: str = "", parent_key: str | None = None) -> Iterator[str]:
    """Every key path of a JSON value."""
    if isinstance(value, dict):
        for key, inner in value.items():
            here = child(path, key, parent_key)
            yield here
            yield from key_paths(inner, here, key)
    elif isinstance(value, list):
        for item in value:
            yield from key_paths(item, f"{path}.[]" if path else "[]")


class Reads(dict):
    """A JSON object that notes each key that code reads from it (present keys only: a ``get`` of an absent key
    is code that copes without it)."""

    def __init__(self, data: dict[str, Any], path: str, log: set[str], parent_key: str | None = None):
        self._path, self._log, self._parent = path, log, parent_key
        super().__init__({k: wrap(v, child(path, k, parent_key), log, k) for k, v in data.items()})

    def _note(self, key: Any) -> None:
        if dict.__contains__(self, key):
            self._log.add(child(self._path, key, self._parent))

    def __getitem__(self, key):
        self._note(key)
        return super().__getitem__(key)

    def get(self, key, default=None):
        self._note(key)
        return super().get(key, default)

    def pop(self, key, *default):
        self._note(key)
        return super().pop(key, *default)

    def __contains__(self, key) -> bool:
        self._note(key)
        return super().__contains__(key)


def wrap(value: Any, path: str, log: set[str], key: str | None = None) -> Any:
    if isinstance(value, dict):
        return Reads(value, path, log, key)
    if isinstance(value, list):
        return [wrap(v, f"{path}.[]" if path else "[]", log) for v in value]
    return value


def reads(parse: Callable[[Any], Any], answer: dict[str, Any]) -> set[str]:
    """The key paths of ``answer`` that ``parse`` reads."""
    log: set[str] = set()
    parse(wrap(json.loads(json.dumps(answer)), "", log))
    return log


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


class Canned:
    """A libcloud connection stand-in that answers each request with the next of ``answers`` (then {})."""

    def __init__(self, *answers: Any, driver: Any = None):
        self.answers = list(answers)
        self.driver = driver

    def request(self, *args: Any, **kwargs: Any) -> SimpleNamespace:
        body = self.answers.pop(0) if self.answers else {}
        return SimpleNamespace(object=body, status=200 if not isinstance(body, dict) or body else 200,
                               body=json.dumps(body), headers={"x-subject-token": "t"}, success=lambda: True)

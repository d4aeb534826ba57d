"""schemathesis hooks (``SCHEMATHESIS_HOOKS=tests.integration.hostile_hooks``): what schemathesis cannot generate.

schemathesis never generates unpaired surrogates (its text must encode for the wire) and rarely nests JSON
deeply. A negative case, which the server must refuse with a 4xx anyway, gets one more attack at times:
a string of its JSON body replaced with one holding ``\\ud800`` (JSON carries it as an escape), or a value
of it nested hundreds of levels deep (the hand-written test sends 10,000). Positive cases stay as generated:
they must be accepted. With ``HOSTILE_HOOKS_LOG`` set, each request sent with such a body adds a line there
(``surrogate``, ``nul``, ``deep``), so a test can tell that they were sent.
"""

from __future__ import annotations

import os
from typing import Any

import schemathesis
from hypothesis import strategies as st

SURROGATES = ["\ud800", "a\udfffb", "\udbff", "node\ud83d"]  # lone high, lone low, unpaired at the end
NUL = ["\x00", "a\x00b"]


def _deep(depth: int, kind: str) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value] if kind == "list" else {"k": value}
    return value


def _paths(value: Any, path: tuple = ()) -> list[tuple]:
    """Every place in ``value`` a new value can go (the root, dict values, list items)."""
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*path, index))
    return found


def _replace(value: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = _replace(copy[path[0]], path[1:], new)
    return copy


def _hostile(body: Any) -> st.SearchStrategy:
    places = _paths(body)
    attack = st.one_of(
        st.sampled_from(SURROGATES + NUL),
        st.builds(_deep, st.sampled_from([33, 100, 250]), st.sampled_from(["list", "dict"])),
    )
    return st.builds(lambda path, new: _replace(body, path, new), st.sampled_from(places), attack)


@schemathesis.hook
def flatmap_case(context, case):  # noqa: ANN001, ANN201
    meta = case.meta
    negative = meta is not None and meta.generation.mode.is_negative
    if not negative or not isinstance(case.body, (dict, list)):
        return st.just(case)

    def with_body(body: Any):  # noqa: ANN202
        # Set around schemathesis' change tracking: it would re-validate the body with jsonschema-rs, which
        # cannot hold a lone surrogate; the case stays what it is, negative.
        object.__setattr__(case, "body", body)
        return case

    return st.one_of(st.just(case), _hostile(case.body).map(with_body))


def _kinds(value: Any, depth: int = 0) -> set[str]:
    if depth > 32:
        return {"deep"}
    if isinstance(value, str):
        return ({"nul"} if "\x00" in value else set()) | (
            {"surrogate"} if any("\ud800" <= c <= "\udfff" for c in value) else set())
    items = list(value.items()) if isinstance(value, dict) else list(enumerate(value)) if isinstance(value, list) else []
    found: set[str] = set()
    for key, item in items:
        found |= _kinds(key, depth) | _kinds(item, depth + 1)
    return found


@schemathesis.hook
def before_call(context, case, kwargs):  # noqa: ANN001, ANN201
    log = os.environ.get("HOSTILE_HOOKS_LOG")
    if log and isinstance(case.body, (dict, list, str)):
        kinds = _kinds(case.body)
        if kinds:
            with open(log, "a") as out:
                out.write(" ".join(sorted(kinds)) + "\n")

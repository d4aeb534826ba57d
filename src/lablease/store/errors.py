"""Store errors; each maps to one HTTP status of the paddles API."""

from __future__ import annotations


class StoreError(Exception):
    """Base: ``status`` is the HTTP status the lock API answers with."""

    status = 500

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidRequest(StoreError):
    status = 400


class Forbidden(StoreError):
    status = 403


class NotFound(StoreError):
    status = 404


class Unavailable(StoreError):
    """Too few free nodes, or the database kept failing after retries."""

    status = 503


class Shortage(Unavailable):
    """Too few free nodes: ``wanted`` were asked for, ``available`` are free. The message is paddles'."""

    def __init__(self, wanted: int, available: int):
        super().__init__(f"only {available} nodes available")
        self.wanted = wanted
        self.available = available

    def __reduce__(self):  # noqa: ANN204 - pickles with its numbers
        return (Shortage, (self.wanted, self.available))


class Conflict(StoreError):
    """The node is not in the state the caller expected (someone else moved it)."""

    status = 409

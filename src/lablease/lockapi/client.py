"""A small HTTP client of the /nodes API, used by ``lablease nodes`` (and usable by other tools)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx


class LockClientError(RuntimeError):
    """The server refused a request or could not be reached; the message says which and why."""


@dataclass
class LockClient:
    """``base_url`` is the lock server (``lock_server`` of teuthology.yaml)."""

    base_url: str
    admin_token: str | None = field(default=None, repr=False)  # repr ends up in logs and tracebacks
    timeout: float = 30.0

    def __post_init__(self) -> None:
        headers = {"Authorization": f"Bearer {self.admin_token}"} if self.admin_token else {}
        self._http = httpx.Client(base_url=self.base_url.rstrip("/"), headers=headers, timeout=self.timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "LockClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            resp = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise LockClientError(f"cannot reach the lock server at {self.base_url}: {exc}") from None
        try:
            body = resp.json()
        except ValueError:
            body = None
        if resp.status_code >= 400:
            text = body.get("message") if isinstance(body, dict) else None
            raise LockClientError(f"{method} {path}: {resp.status_code} {text or resp.text[:200]}")
        if body is None and resp.content.strip() != b"null":
            raise LockClientError(f"{method} {path}: the answer is not JSON; is {self.base_url} a lablease lock server?")
        return body

    def list(self, **filters: Any) -> list[dict[str, Any]]:
        params = {k: (int(v) if isinstance(v, bool) else v) for k, v in filters.items() if v is not None}
        return self._call("GET", "/nodes/", params=params)

    def get(self, name: str) -> dict[str, Any]:
        return self._call("GET", f"/nodes/{name}/")

    def create(self, name: str, **fields: Any) -> None:
        self._call("POST", "/nodes/", json={"name": name, **fields})

    def delete(self, name: str) -> None:
        self._call("DELETE", f"/nodes/{name}/")

    def lock_many(self, count: int, machine_type: str, locked_by: str, description: str | None) -> list[dict]:
        return self._call("POST", "/nodes/lock_many/", json={
            "count": count, "machine_type": machine_type, "locked_by": locked_by, "description": description})

    def unlock_many(self, names: list[str], locked_by: str) -> list[dict]:
        return self._call("POST", "/nodes/unlock_many/", json={"names": names, "locked_by": locked_by})

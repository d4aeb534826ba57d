"""libcloud OpenStack auth tokens cached on disk under a file lock, shared by threads and processes.

libcloud's ``OpenStackIdentityConnection`` asks its ``auth_cache`` (``ex_auth_cache`` of the
driver) before authenticating and stores every new token there. This cache keeps one JSON file
per entry with mode 0600 (directory 0700), and hands a token out only until ``margin`` seconds
before it expires, so nobody starts a long operation on a dying token.

libcloud's own key (auth URL, user, project, domain) leaves out the password and the region, so a
config with a wrong password would be handed the token another config earned. Adapters therefore
use the cache through ``ScopedTokenCache``, which puts a hash of everything that identifies the
credentials (``credential_scope``) in front of every key: a token is only ever reused by the very
same credentials.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import Iterator

from filelock import FileLock
from libcloud.common.openstack_identity import OpenStackAuthenticationCache, OpenStackAuthenticationContext

log = logging.getLogger(__name__)

DEFAULT_DIR = "~/.cache/lablease/tokens"
DEFAULT_MARGIN = 300.0


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def credential_scope(*parts: object) -> str:
    """A SHA-256 of ``parts`` (user, password, project, auth URL, region, ...): equal only for equal credentials.

    Only this hash is ever written (as part of a file name); the parts themselves never are.
    """
    return hashlib.sha256(json.dumps([None if p is None else str(p) for p in parts]).encode()).hexdigest()


class ScopedTokenCache(OpenStackAuthenticationCache):
    """``cache`` seen through one set of credentials: every key gets ``scope`` (a credential hash) in front."""

    def __init__(self, cache: OpenStackAuthenticationCache, scope: str):
        self.cache = cache
        self.scope = scope

    def _key(self, key) -> tuple:
        return (self.scope, *tuple(key))

    def get(self, key):
        return self.cache.get(self._key(key))

    def put(self, key, context) -> None:
        self.cache.put(self._key(key), context)

    def clear(self, key) -> None:
        self.cache.clear(self._key(key))

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Serialise authentication with these credentials across threads (and processes, for a file cache)."""
        with self.cache.lock(self.scope):
            yield


class FileTokenCache(OpenStackAuthenticationCache):
    """An ``OpenStackAuthenticationCache`` backed by files; safe across threads and processes."""

    def __init__(self, directory: str | Path = DEFAULT_DIR, margin: float = DEFAULT_MARGIN):
        self.directory = Path(directory).expanduser()
        self.margin = margin
        self._thread_lock = threading.RLock()
        # What this process last read or wrote, so that threads building their drivers do not
        # queue on the file lock for a token that is known to be good.
        self._memo: dict = {}
        self._private = False  # whether the directory is known to be 0700

    def _ensure_private_directory(self) -> None:
        """The directory exists and only its owner may enter it (also one made before, or by hand, 0755)."""
        if self._private:
            return
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.directory.stat().st_mode & 0o077:
            os.chmod(self.directory, 0o700)
        self._private = True

    def _path(self, key) -> Path:
        ident = "\0".join(str(part) for part in key)
        return self.directory / (hashlib.sha256(ident.encode()).hexdigest()[:32] + ".json")

    @contextlib.contextmanager
    def locked(self, key) -> Iterator[None]:
        """Hold the cache entry of ``key`` exclusively (threads of this process and other processes)."""
        self._ensure_private_directory()
        with self._thread_lock, FileLock(str(self._path(key)) + ".lock", timeout=120):
            yield

    @contextlib.contextmanager
    def lock(self, ident: str) -> Iterator[None]:
        """Serialise authentication for one account (``ident``) across threads and processes.

        Held around "ask the cache, else authenticate, then store", so N workers starting
        together, or N processes, authenticate once.
        """
        with self.locked(("auth", ident)):
            yield

    def get(self, key) -> OpenStackAuthenticationContext | None:
        memo = self._memo.get(key)
        if memo is not None and dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) < memo.expiration:
            return memo
        with self.locked(key):
            path = self._path(key)
            try:
                data = json.loads(path.read_text())
                expires = _utc(dt.datetime.fromisoformat(data["expiration"]))
                issued = _utc(dt.datetime.fromisoformat(data.get("issued", data["expiration"])))
            except (OSError, ValueError, KeyError):
                return None
            # Short-lived tokens (tests, some clouds) get a proportionally smaller margin.
            margin = min(self.margin, max(0.0, (expires - issued).total_seconds() / 5))
            if dt.datetime.now(dt.timezone.utc) >= expires - dt.timedelta(seconds=margin):
                return None
            # libcloud compares naive UTC times; it gets the expiry early by the margin, so every
            # thread re-authenticates (once, through this cache) before the token really expires.
            early = (expires - dt.timedelta(seconds=margin)).astimezone(dt.timezone.utc).replace(tzinfo=None)
            context = OpenStackAuthenticationContext(
                data["token"], expiration=early, user=data.get("user"), roles=data.get("roles"), urls=data.get("urls"),
            )
            self._memo[key] = context
            return context

    def put(self, key, context: OpenStackAuthenticationContext) -> None:
        if context.expiration is None:
            return  # a token without an expiry cannot be reused safely
        record = {
            "token": context.token,
            "expiration": _utc(context.expiration).isoformat(),
            "issued": dt.datetime.now(dt.timezone.utc).isoformat(),
            "user": context.user,
            "roles": context.roles,
            "urls": context.urls,
        }
        with self.locked(key):
            path = self._path(key)
            tmp = path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump(record, fh, default=str)
            os.replace(tmp, path)
            self._memo.pop(key, None)  # the next get reads the file and applies the margin
        log.info("token cached entry=%s expires=%s", self._path(key).stem, record["expiration"])

    def clear(self, key) -> None:
        self._memo.pop(key, None)
        with self.locked(key):
            with contextlib.suppress(FileNotFoundError):
                self._path(key).unlink()


class MemoryTokenCache(OpenStackAuthenticationCache):
    """The same contract kept in memory: threads of one process share a token, nothing touches disk."""

    def __init__(self, margin: float = DEFAULT_MARGIN):
        self.margin = margin
        self._lock = threading.RLock()
        self._entries: dict = {}

    @contextlib.contextmanager
    def lock(self, ident: str) -> Iterator[None]:
        with self._lock:
            yield

    def get(self, key):
        with self._lock:
            context = self._entries.get(key)
        if context is None or context.expiration is None:
            return None
        expires = _utc(context.expiration)
        if dt.datetime.now(dt.timezone.utc) >= expires - dt.timedelta(seconds=self.margin):
            return None
        return context

    def put(self, key, context) -> None:
        with self._lock:
            self._entries[key] = context

    def clear(self, key) -> None:
        with self._lock:
            self._entries.pop(key, None)

"""The OpenStack adapter: libcloud's OpenStack driver (API 1.1 or 2.x), one call per operation.

libcloud keeps the last HTTP response on its connection object, so a driver must not be used by
two threads at once. Each worker thread gets its own driver built from the same ``driver_args``;
all of them share one token through the token cache, and authentication is serialised, so a
provider authenticates once per token lifetime however many threads or processes run.
"""

from __future__ import annotations

import datetime as dt
import difflib
import inspect
import logging
import re
import socket
import threading
from typing import Any

import requests
from libcloud.common.base import BaseDriver
from libcloud.common.exceptions import BaseHTTPError, RateLimitReachedError
from libcloud.common.openstack import OpenStackDriverMixin
from libcloud.common.types import InvalidCredsError, MalformedResponseError
from libcloud.compute.base import Node, StorageVolume
from libcloud.compute.providers import get_driver
from libcloud.compute.types import NodeState, Provider
from urllib3.exceptions import NameResolutionError, NewConnectionError

from lablease.config.lab import ProviderConfig
from lablease.provision.adapters import openstack_calls as calls
from lablease.provision.adapters.base import (
    CloudAdapter,
    ErrorInfo,
    ErrorKind,
    FloatingIP,
    Image,
    Network,
    SecurityGroup,
    Server,
    ServerSpec,
    Size,
    Volume,
)
from lablease.provision.tokencache import MemoryTokenCache, ScopedTokenCache, credential_scope

log = logging.getLogger(__name__)

_STATES = {
    NodeState.RUNNING: "running",
    NodeState.PENDING: "pending",
    NodeState.REBOOTING: "pending",
    NodeState.STARTING: "pending",
    NodeState.ERROR: "error",
    NodeState.TERMINATED: "deleted",
}
_CODE_IN_BODY = re.compile(r"code:\s*(\d{3})")
# Neutron's 409s say "Quota exceeded for resources: ['floatingip']" and, for an exhausted floating IP pool,
# "No more IP addresses available on network": both a shortage that retrying now does not cure.
_QUOTA = re.compile(r"quota|limit exceeded|overlimit|no more ip addresses available", re.IGNORECASE)
# libcloud errors that mean "the token has no usable catalog": usually the project (tenant) or the region.
_NO_CATALOG = re.compile(r"could not find specified endpoint|must provide tenant_name", re.IGNORECASE)
# The driver_args libcloud's OpenStack drivers take: the OpenStack mixin's and the base driver's keyword
# arguments, and those the drivers and their connection pop from **kwargs. Any other key is ignored by
# libcloud without a word, so a misspelt one (ex_tennant_name) silently changes what is asked for.
KNOWN_DRIVER_ARGS = frozenset(
    {*inspect.signature(OpenStackDriverMixin.__init__).parameters, *inspect.signature(BaseDriver.__init__).parameters,
     "username", "password", "timeout", "retry_delay", "backoff", "proxy_url", "ex_force_api_version",
     "ex_force_image_url", "ex_force_volume_url", "ex_force_network_url"}
    - {"self", "args", "kwargs", "key", "secret"}
)
# What identifies the credentials a token was issued for (the token cache is keyed by their hash).
_CREDENTIAL_ARGS = ("ex_force_auth_url", "ex_force_auth_version", "ex_tenant_name", "ex_domain_name",
                    "ex_tenant_domain_id", "ex_token_scope", "ex_force_service_region", "region", "ex_force_auth_token")


def unknown_driver_args(driver_args: dict[str, Any]) -> list[str]:
    """The keys of ``driver_args`` libcloud's OpenStack driver does not know, each with its likely intended key."""
    found = []
    for key in sorted(k for k in driver_args if k not in KNOWN_DRIVER_ARGS):
        guess = difflib.get_close_matches(str(key), sorted(KNOWN_DRIVER_ARGS), n=1, cutoff=0.75)
        found.append(f"{key!r}" + (f" (did you mean {guess[0]!r}?)" if guess else ""))
    return found


# Above libcloud's own 5 s grace, so this check (under the auth lock) always comes first.
_EXPIRY_MARGIN = dt.timedelta(seconds=10)
CONSOLE_LINES = 100  # os-getConsoleOutput asks for the log's last lines (provision.console keeps the last 4 KB)


def _usable(expires: dt.datetime) -> bool:
    """Whether a token expiring at ``expires`` (naive means UTC, as libcloud keeps it) is still good to use."""
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=dt.timezone.utc)
    return dt.datetime.now(dt.timezone.utc) < expires - _EXPIRY_MARGIN


class OpenStackAdapter(calls.FloatingIPCalls, CloudAdapter):
    def __init__(self, provider: ProviderConfig, token_cache=None):
        calls.price_list_once(get_driver(Provider.OPENSTACK).api_name)
        self.provider = provider
        args = dict(provider.driver_args)
        self._username = args.pop("username")
        self._password = args.pop("password")
        self._args = args
        self._args.setdefault("timeout", int(provider.api_timeout))
        # Keyed by everything that identifies the credentials, the password included: a token is only
        # ever reused by the same credentials, never handed to a config with a wrong password.
        scope = credential_scope(self._username, self._password, *(args.get(k) for k in _CREDENTIAL_ARGS))
        self._token_cache = ScopedTokenCache(token_cache if token_cache is not None else MemoryTokenCache(), scope)
        self._local = threading.local()
        self._token_expires: dt.datetime | None = None  # of the token the last locked authentication left

    def __repr__(self) -> str:  # never show driver_args: they hold the password
        return f"OpenStackAdapter(auth_url={self._args.get('ex_force_auth_url')!r})"

    # -- drivers and authentication -------------------------------------------------------

    def _new_driver(self):
        cls = get_driver(Provider.OPENSTACK)
        return cls(self._username, self._password, ex_auth_cache=self._token_cache, **self._args)

    @staticmethod
    def _expiring(driver) -> bool:
        expires = getattr(driver.connection, "auth_token_expires", None)
        return expires is not None and not _usable(expires)

    def _driver(self):
        """This thread's driver, authenticated (through the shared token) before first use."""
        driver = getattr(self._local, "driver", None)
        if driver is not None and not self._expiring(driver):
            return driver
        driver = self._new_driver()
        if self._shared_token_valid():
            driver.connection.get_service_catalog()  # loads the shared token; no HTTP
        else:
            # One thread (and one process) at a time asks the cache and, if it must, authenticates.
            with self._token_cache.lock():
                driver.connection.get_service_catalog()
                self._token_expires = driver.connection.auth_token_expires
        self._local.driver = driver
        return driver

    def _shared_token_valid(self) -> bool:
        expires = self._token_expires
        return expires is not None and _usable(expires)

    def authenticate(self) -> None:
        self._driver()

    @property
    def _v2(self) -> bool:
        from libcloud.compute.drivers.openstack import OpenStack_2_NodeDriver

        return isinstance(self._driver(), OpenStack_2_NodeDriver)

    # -- listings ---------------------------------------------------------------------------

    def list_images(self) -> list[Image]:
        return [Image(i.id, i.name or "", raw=i) for i in calls.list_images(self._driver())]

    def list_sizes(self) -> list[Size]:
        return [
            Size(s.id, s.name or "", int(s.ram or 0), int(s.disk or 0), int(getattr(s, "vcpus", 0) or 0), raw=s)
            for s in calls.list_sizes(self._driver())
        ]

    def compute_limits(self) -> dict[str, int] | None:
        """Nova's ``GET /limits`` (libcloud's ex_limits reads only the old XML API)."""
        answer = self._driver().connection.request("/limits").object
        absolute = (answer or {}).get("limits", {}).get("absolute", {}) if isinstance(answer, dict) else {}
        return {k: int(v) for k, v in absolute.items() if isinstance(v, (int, float))} or None

    def list_networks(self) -> list[Network]:
        return [Network(n.id, n.name or "", raw=n) for n in calls.list_networks(self._driver())]

    def list_security_groups(self) -> list[SecurityGroup]:
        return [SecurityGroup(g.id, g.name or "", raw=g) for g in calls.list_security_groups(self._driver())]

    # -- servers ------------------------------------------------------------------------------

    @staticmethod
    def _server(node) -> Server:
        fault = node.extra.get("fault") if node.extra else None
        if isinstance(fault, dict):
            fault = fault.get("message") or str(fault)
        return Server(
            id=node.id, name=node.name, state=_STATES.get(node.state, "other"),
            public_ips=list(node.public_ips or []), private_ips=list(node.private_ips or []),
            metadata=dict((node.extra or {}).get("metadata") or {}), fault=fault, raw=node,
        )

    def create_server(self, spec: ServerSpec) -> Server:
        # Boot from volume: no imageRef, a block device mapping that makes the root volume from the image.
        bdm = None if spec.boot_volume_size is None else [{
            "boot_index": 0, "uuid": spec.image.id, "source_type": "image", "destination_type": "volume",
            "volume_size": spec.boot_volume_size, "delete_on_termination": True}]
        node = self._driver().create_node(
            name=spec.name, size=spec.size.raw, image=spec.image.raw if bdm is None else None,
            ex_userdata=spec.userdata, networks=[n.raw for n in spec.networks],
            ex_security_groups=[g.raw for g in spec.security_groups], ex_metadata=spec.metadata,
            ex_blockdevicemappings=bdm, ex_availability_zone=spec.availability_zone, ex_keyname=spec.key_name,
            ex_config_drive=spec.config_drive or None,
        )
        return self._server(node)

    def get_server(self, server_id: str) -> Server | None:
        node = self._driver().ex_get_node_details(server_id)
        return None if node is None else self._server(node)

    def console_output(self, server_id: str) -> str | None:
        driver = self._driver()
        answer = driver.ex_get_console_output(Node(server_id, None, None, [], [], driver), length=CONSOLE_LINES)
        return answer.get("output") if isinstance(answer, dict) else None

    def list_servers(self) -> list[Server]:
        return [self._server(n) for n in calls.list_servers(self._driver())]

    def delete_server(self, server_id: str) -> None:
        driver = self._driver()
        try:
            driver.destroy_node(Node(server_id, None, None, [], [], driver))
        except BaseHTTPError as exc:
            if exc.code != 404:
                raise

    # -- volumes ------------------------------------------------------------------------------

    @staticmethod
    def _volume(vol) -> Volume:
        extra = vol.extra or {}
        state = str(extra.get("state") or vol.state or "other").lower()
        attached = [a.get("serverId") or a.get("server_id") for a in extra.get("attachments") or []]
        return Volume(id=vol.id, name=vol.name or "", state=state, size=int(vol.size or 0),
                      attached_to=[a for a in attached if a], metadata=dict(extra.get("metadata") or {}), raw=vol)

    def create_volume(self, name: str, size: int, metadata: dict[str, str]) -> Volume:
        # libcloud's create_volume fixes the metadata to {"contents": name}; lablease needs its tags
        # on volumes too (leak detection), so this posts the same request with them.
        driver = self._driver()
        if self._v2:
            body = {"volume": {"name": name, "description": name, "size": size, "metadata": metadata}}
            resp = driver._get_volume_connection().request("/volumes", method="POST", data=body)
        else:
            body = {"volume": {"display_name": name, "display_description": name, "size": size, "metadata": metadata}}
            resp = driver.connection.request("/os-volumes", method="POST", data=body)
        return self._volume(driver._to_volume(resp.object))

    def get_volume(self, volume_id: str) -> Volume | None:
        try:
            return self._volume(self._driver().ex_get_volume(volume_id))
        except BaseHTTPError as exc:
            if exc.code == 404:
                return None
            raise

    def list_volumes(self) -> list[Volume]:
        return [self._volume(v) for v in calls.list_volumes(self._driver())]

    def attach_volume(self, server_id: str, volume_id: str) -> None:
        driver = self._driver()
        driver.attach_volume(Node(server_id, None, None, [], [], driver),
                             StorageVolume(volume_id, None, 0, driver), device=None)

    def detach_volume(self, volume: Volume) -> None:
        driver = self._driver()
        raw = volume.raw if volume.raw is not None else driver.ex_get_volume(volume.id)
        try:
            driver.detach_volume(raw)
        except BaseHTTPError as exc:
            if exc.code != 404:
                raise

    def delete_volume(self, volume_id: str) -> None:
        driver = self._driver()
        try:
            driver.destroy_volume(StorageVolume(volume_id, None, 0, driver))
        except BaseHTTPError as exc:
            if exc.code != 404:
                raise

    # -- errors ---------------------------------------------------------------------------------

    def classify(self, exc: BaseException) -> ErrorInfo:
        return self._explained(classify_error(exc))

    def _explained(self, info: ErrorInfo) -> ErrorInfo:
        """``info`` with the likely cause added when libcloud's words do not name it (a misspelt driver_args key)."""
        if info.kind not in (ErrorKind.AUTH, ErrorKind.FATAL):
            return info
        unknown = unknown_driver_args(self.provider.driver_args)
        ignored = f"driver_args has keys libcloud's OpenStack driver ignores: {', '.join(unknown)}"
        if _NO_CATALOG.search(info.message):
            region = self._args.get("ex_force_service_region") or "not set"
            cause = ignored if unknown else (
                "the project (ex_tenant_name) or the region (ex_force_service_region, here "
                f"{region}) in driver_args does not match the account")
            message = (f"the cloud's service catalog gave no compute endpoint for these credentials; likely cause: "
                       f"{cause} (libcloud said: {info.message})")
        elif unknown:
            message = f"{info.message}; note: {ignored}"
        else:
            return info
        return ErrorInfo(info.kind, message, info.retry_after)


def classify_error(exc: BaseException) -> ErrorInfo:
    """What a libcloud OpenStack exception means for retrying (usable without an adapter)."""
    message = _message(exc)
    if isinstance(exc, InvalidCredsError):
        return ErrorInfo(ErrorKind.AUTH, message)
    if isinstance(exc, RateLimitReachedError):
        return ErrorInfo(ErrorKind.RATE_LIMIT, message, _retry_after(exc))
    if isinstance(exc, BaseHTTPError):
        return _classify_code(int(exc.code), message, _retry_after(exc))
    if isinstance(exc, MalformedResponseError):
        # libcloud's identity code reports any non-200 auth answer this way ("code: 500 body: ...").
        match = _CODE_IN_BODY.search(str(getattr(exc, "body", "")))
        if match:
            code = int(match.group(1))
            return ErrorInfo(ErrorKind.AUTH, message) if code in (401, 403) else _classify_code(code, message, None)
        return ErrorInfo(ErrorKind.FATAL, message)
    unreachable = _unreachable(exc)
    if unreachable is not None:
        return ErrorInfo(ErrorKind.UNREACHABLE, unreachable)
    # ChunkedEncodingError: the connection broke inside the answer, after the cloud may have acted.
    if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                        requests.exceptions.ChunkedEncodingError, socket.timeout, ConnectionError, TimeoutError)):
        return ErrorInfo(ErrorKind.TRANSIENT, message)
    return ErrorInfo(ErrorKind.FATAL, message)  # LibcloudError and anything else the cloud refused


def _unreachable(exc: BaseException) -> str | None:
    """A short line when ``exc`` says no connection could be made (refused, or the name does not resolve):
    the request was never sent. None for anything else, a connect timeout included."""
    if isinstance(exc, requests.exceptions.Timeout):
        return None
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    seen: set[int] = set()
    todo: list[object] = [exc]
    while todo:  # requests wraps urllib3's MaxRetryError, whose reason is the NewConnectionError
        item = todo.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, NewConnectionError):
            conn = getattr(item, "conn", None)
            where = f"{getattr(conn, 'host', '?')}:{getattr(conn, 'port', '?')}"
            if isinstance(item, NameResolutionError):
                return f"the name of {getattr(conn, 'host', 'the endpoint')} does not resolve"
            return f"{where} refused the connection"
        todo.extend([*item.args, getattr(item, "reason", None), item.__cause__, item.__context__])
    return None


def _classify_code(code: int, message: str, retry_after: float | None) -> ErrorInfo:
    if code == 429 or (code == 413 and retry_after is not None):
        return ErrorInfo(ErrorKind.RATE_LIMIT, message, retry_after)
    if code in (413, 403, 409) and _QUOTA.search(message):
        return ErrorInfo(ErrorKind.QUOTA, message)
    if code == 413:  # Nova's overLimit without Retry-After: an absolute limit, i.e. a quota
        return ErrorInfo(ErrorKind.QUOTA, message)
    if code == 401:
        # A 401 from an API call (not from Keystone, which raises InvalidCredsError) means the token
        # was revoked or expired early; libcloud has dropped it, so the retry authenticates again.
        return ErrorInfo(ErrorKind.TRANSIENT, message)
    if code == 404:
        return ErrorInfo(ErrorKind.NOT_FOUND, message)
    if code >= 500:
        return ErrorInfo(ErrorKind.TRANSIENT, message)
    return ErrorInfo(ErrorKind.FATAL, message)


def _retry_after(exc: BaseException) -> float | None:
    headers: dict[str, Any] = getattr(exc, "headers", None) or {}
    value = headers.get("retry-after") or headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        return None


def _message(exc: BaseException) -> str:
    """The cloud's words, on one line and bounded; libcloud never puts credentials in these."""
    if isinstance(exc, MalformedResponseError):
        text = f"{exc.value}: {getattr(exc, 'body', '')}"
    elif isinstance(exc, InvalidCredsError):
        text = "invalid credentials (HTTP 401)"
    else:
        text = str(exc) or type(exc).__name__
    if isinstance(exc, (requests.exceptions.RequestException, OSError)):
        text = f"{type(exc).__name__}: {text}"
    return " ".join(text.split())[:500]

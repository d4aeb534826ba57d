"""Client of the DNS service for the rest of lablease (engine, reconciler): update, delete, lookup, list names.

Retries a bounded number of times on 5xx answers and connection errors (the DNS server or the
service may be restarting); never on 4xx, which will not get better by asking again.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from lablease.config.redact import redact_text
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential


class DNSClientError(Exception):
    """The service refused or failed a request; the message names the host and the service's answer.

    ``sent`` is False when no try got a connection (refused): the service never saw the request.
    """

    def __init__(self, message: str, status: int | None = None, sent: bool = True):
        super().__init__(message)
        self.status = status
        self.sent = sent


class _Retryable(Exception):
    def __init__(self, error: DNSClientError):
        super().__init__(str(error))
        self.error = error


def _base_url(update_url: str) -> str:
    """``http://h:p/prefix/update`` -> ``http://h:p/prefix`` (the other paths hang off the same prefix)."""
    url = update_url.rstrip("/")
    if url.endswith("/update"):
        url = url[: -len("/update")]
    return url


class DNSClient:
    """Talks to `lablease dns serve` at ``update_url`` (teuthology's `nsupdate_url`)."""

    def __init__(self, update_url: str, token: str | None = None, timeout: float = 5.0, retries: int = 3):
        self.update_url = update_url.rstrip("/")
        self.base_url = _base_url(update_url)
        self._retries = max(1, retries)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(timeout=timeout, headers=headers)

    def __repr__(self) -> str:  # keeps the token out of logs
        return f"DNSClient(update_url={redact_text(self.update_url)!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "DNSClient":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _request(self, what: str, method: str, url: str, params: dict | None = None,
                 tries: int | None = None) -> httpx.Response:
        sent = [False]

        def attempt() -> httpx.Response:
            try:
                response = self._http.request(method, url, params=params)
            except httpx.HTTPError as exc:
                # A refused connection never carried the request; anything later (a timeout) may have.
                sent[0] = sent[0] or not isinstance(exc, httpx.ConnectError)
                raise _Retryable(DNSClientError(f"{what}: DNS service at {redact_text(self.base_url)} unreachable "
                                                f"({type(exc).__name__})", sent=sent[0])) from None
            sent[0] = True
            if response.status_code >= 500:
                raise _Retryable(DNSClientError(f"{what}: DNS service answered {response.status_code}: {_answer(response)}", response.status_code))
            if response.status_code >= 400:
                raise DNSClientError(f"{what}: DNS service answered {response.status_code}: {_answer(response)}", response.status_code)
            return response

        retrying = Retrying(
            stop=stop_after_attempt(tries or self._retries),
            wait=wait_random_exponential(multiplier=0.2, max=2.0),
            retry=retry_if_exception(lambda e: isinstance(e, _Retryable)),
            reraise=True,
        )
        try:
            return retrying(attempt)
        except _Retryable as exc:
            raise exc.error from None

    def check(self) -> None:
        """One quick look that the service is up and its DNS server serves the zone (``/healthz``), no retry:
        the lab's preflight before a lock creates anything."""
        self._request("health check", "GET", f"{self.base_url}/healthz", tries=1)

    def update(self, name: str, ips: list[str]) -> str:
        """Make ``ips`` the only addresses of ``name``; return "success" or "no-change"."""
        response = self._request(f"update of {name}", "GET", self.update_url, params={"name": name, "ip": list(ips)})
        result = response.text.strip()
        if result not in ("success", "no-change"):
            raise DNSClientError(f"update of {name}: unexpected answer from DNS service: {result[:200]}", response.status_code)
        return result

    def delete(self, name: str) -> None:
        """Remove the A and AAAA records of ``name``; an absent name is not an error."""
        self._request(f"delete of {name}", "DELETE", f"{self.base_url}/records/{quote(name, safe='')}")

    def lookup(self, name: str) -> list[str]:
        """The addresses the DNS server holds for ``name`` now."""
        what = f"lookup of {name}"
        response = self._request(what, "GET", f"{self.base_url}/records/{quote(name, safe='')}")
        return list(_field(response, "addresses", list, what))

    def names(self) -> list[str]:
        """The short names (sorted) the service's allow pattern admits that have A/AAAA records: the lab's names in the zone."""
        what = "listing of the zone"
        return sorted(_field(self._request(what, "GET", f"{self.base_url}/records"), "names", dict, what))


def _field(response: httpx.Response, key: str, kind: type, what: str) -> Any:
    """``key`` of the service's JSON answer, of type ``kind``; DNSClientError when the answer is not what the service sends."""
    try:
        value = response.json()[key]
    except (ValueError, KeyError, TypeError):
        value = None
    if not isinstance(value, kind):
        raise DNSClientError(f"{what}: unexpected answer from DNS service: {response.text[:200]}", response.status_code)
    return value


def _answer(response: httpx.Response) -> str:
    """The service's one-line answer, shortened; it never contains the token (we never send it back)."""
    return " ".join(response.text.split())[:300] or response.reason_phrase

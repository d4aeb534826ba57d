"""What the DNS service's OpenAPI document says of each route: its parameters and every answer it gives.

The handlers read ``name`` and ``ip`` from the request themselves, so that a missing or bad value
is nsupdate-web's one-line plain-text 400 and never FastAPI's JSON 422; the parameters are
therefore declared here, as the server applies them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from lablease.dns.config import DnsConfig

Responses = dict[int | str, dict[str, Any]]


class Addresses(BaseModel):
    """``GET /records/{name}``: the name's current addresses, as the DNS server answers them."""

    name: str
    addresses: list[str]


class ZoneNames(BaseModel):
    """``GET /records``: the short names the allow pattern admits that have A/AAAA records, with their addresses."""

    zone: str
    names: dict[str, list[str]]


class HealthOk(BaseModel):
    """``GET /healthz`` 200: the DNS server answers the zone's SOA, in ``dns_ms`` milliseconds."""

    status: Literal["ok"]
    zone: str
    dns_ms: float


class HealthFailing(BaseModel):
    """``GET /healthz`` 503: why the DNS server does not serve the zone."""

    status: Literal["failing"]
    message: str


_STRING = {"type": "string"}


def _text(description: str, schema: dict[str, Any] = _STRING) -> dict[str, Any]:
    return {"description": description, "content": {"text/plain": {"schema": schema}}}


def _errors(*codes: int) -> Responses:
    """The one-line plain-text error answers among ``codes``."""
    described = {
        400: "the name (or, on /update, an address) is missing or malformed, or there are more addresses than max_addresses",
        401: "no token, or a wrong one (`Authorization: Bearer <token>`)",
        403: "the name does not fully match the allow pattern, is outside the zone, or is its apex",
        502: "the DNS server (BIND) refused, rejected our TSIG signature, or cannot be reached",
        504: "the DNS server (BIND) did not answer within the configured timeout",
    }
    return {code: _text(described[code]) for code in codes}


class ApiDocs:
    """Per-route OpenAPI declarations for one configuration (401 exists only when tokens are configured)."""

    def __init__(self, config: DnsConfig):
        self._auth: tuple[int, ...] = (401,) if config.tokens else ()
        self._max_addresses = config.max_addresses

    def change(self, outcome: str) -> Responses:
        """Answers of /update, /delete and DELETE /records/{name}: ``success`` or ``no-change``, or an error."""
        ok = _text(outcome, {"type": "string", "enum": ["success", "no-change"]})
        return {200: ok, **_errors(400, *self._auth, 403, 502, 504)}

    def lookup(self) -> Responses:
        return {200: {"model": Addresses, "description": "the addresses, asked of the DNS server"},
                **_errors(400, 403, 502, 504)}

    def listing(self) -> Responses:
        return {200: {"model": ZoneNames, "description": "the lab's names in the zone, read by a zone transfer"},
                **_errors(*self._auth, 502, 504)}

    @staticmethod
    def health() -> Responses:
        return {200: {"model": HealthOk, "description": "the DNS server serves the zone"},
                503: {"model": HealthFailing, "description": "the DNS server does not answer for the zone"}}

    def update_parameters(self) -> dict[str, Any]:
        """``name`` and ``ip`` of /update, both required (the service never falls back to X-Real-IP)."""
        addresses = {"type": "array", "minItems": 1, "maxItems": self._max_addresses,
                     "items": ADDRESS}
        ip = {"name": "ip", "in": "query", "required": True, "style": "form", "explode": True, "schema": addresses,
              "description": "the name's new addresses, one `ip=` each; unlike nsupdate-web, X-Real-IP is never used"}
        return {"parameters": [_name("query"), ip]}

    @staticmethod
    def name_parameter(where: Literal["query", "path"]) -> dict[str, Any]:
        return {"parameters": [_name(where)]}


# A host name as hostnames.check_host_name takes it: labels of letters, digits and '-' (not at an edge), 1 to 63
# characters each, at most 253 in all, or 254 with a final dot. What the form admits may still be outside the zone,
# its apex or not match the allow pattern: 403, which the answers list.
_LABEL = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = f"{_LABEL}(?:\\.{_LABEL})*"
HOST_NAME = {"anyOf": [{"type": "string", "maxLength": 253, "pattern": f"^{_HOST}$"},
                       {"type": "string", "maxLength": 254, "pattern": f"^{_HOST}\\.$"}]}
# validation.check_addresses: a plain address (no zone suffix, no port, no brackets).
ADDRESS = {"anyOf": [{"type": "string", "format": "ipv4"}, {"type": "string", "format": "ipv6", "pattern": "^[^%]*$"}],
           "description": "a plain IPv4 or IPv6 address"}


def _name(where: Literal["query", "path"]) -> dict[str, Any]:
    return {"name": "name", "in": where, "required": True, "schema": HOST_NAME,
            "description": "a short name (`node1`) or a name inside the zone (`node1.lab.example`)"}

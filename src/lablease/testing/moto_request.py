"""Reading an EC2 Query request from WSGI, and the corrections the harness makes to it before moto sees it.

Each correction makes moto accept what EC2 accepts; each cites the EC2 API reference page it follows
(https://docs.aws.amazon.com/AWSEC2/latest/APIReference/<page>).
"""

from __future__ import annotations

import io
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import parse_qsl, urlencode

CREDENTIAL = re.compile(r"Credential=[^/,\s]+/\d{8}/([a-z0-9-]+)/([a-z0-9-]+)/aws4_request")


@dataclass
class Ec2Request:
    """One Query API request: its parameters in order, where they came from, and its signing scope."""

    params: dict[str, str]
    in_body: bool  # POST form body (boto3) rather than the query string (libcloud's GET)
    region: str | None = None  # from the SigV4 credential scope; None for SigV2 / unsigned
    service: str | None = None
    notes: list[str] = field(default_factory=list)  # the corrections applied, for the log

    @property
    def action(self) -> str:
        return self.params.get("Action", "")


def read_request(environ: dict[str, Any]) -> Ec2Request:
    """The request's parameters; the body is read and put back so moto can read it again."""
    method = environ.get("REQUEST_METHOD", "GET")
    ctype = environ.get("CONTENT_TYPE", "")
    in_body = method == "POST" and ctype.startswith("application/x-www-form-urlencoded")
    if in_body:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        text = raw.decode("utf-8", "replace")
    else:
        text = environ.get("QUERY_STRING", "")
    params = dict(parse_qsl(text, keep_blank_values=True))
    match = CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", "") or params.get("X-Amz-Credential", ""))
    req = Ec2Request(params=params, in_body=in_body)
    if match:
        req.region, req.service = match.group(1), match.group(2)
    write_request(environ, req)
    return req


def write_request(environ: dict[str, Any], req: Ec2Request) -> None:
    """Put the (corrected) parameters back where moto reads them (moto checks no signature)."""
    encoded = urlencode(list(req.params.items()))
    if req.in_body:
        body = encoded.encode()
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
    else:
        environ["QUERY_STRING"] = encoded


def renumber_lists(params: dict[str, str]) -> tuple[dict[str, str], bool]:
    """Number every list member 1..n in its order, as moto expects; EC2 accepts any numbering.

    Follows "Query requests for Amazon EC2" (Query-Requests.html) and e.g. CreateTags
    (API_CreateTags.html: ``ResourceId.N``, ``Tag.N``): EC2 groups a list's members by the number
    after the name and keeps their order, and answers libcloud's 0-based ``ResourceId.0`` /
    ``Tag.0.Key`` (its CreateTags/DeleteTags since libcloud 0.x) as it answers 1-based ones. moto
    5.2 drops member 0 and fails the request. Only lists that are not already 1..n are renumbered.
    """
    split = {key: key.split(".") for key in params}
    seen: dict[tuple[str, ...], set[int]] = {}
    for parts in split.values():
        for i, part in enumerate(parts):
            if part.isdigit() and i > 0:
                seen.setdefault(tuple(parts[:i]), set()).add(int(part))
    remap = {prefix: {old: new for new, old in enumerate(sorted(idx), start=1)}
             for prefix, idx in seen.items() if sorted(idx) != list(range(1, len(idx) + 1))}
    if not remap:
        return params, False
    out: dict[str, str] = {}
    for key, parts in split.items():
        new = list(parts)
        for i, part in enumerate(parts):
            mapping = remap.get(tuple(parts[:i])) if part.isdigit() and i > 0 else None
            if mapping is not None:
                new[i] = str(mapping[int(part)])
        out[".".join(new)] = params[key]
    return out, True


def launch_into_subnet(params: dict[str, str], subnet_id: str) -> tuple[dict[str, str], bool]:
    """RunInstances without a subnet goes into the harness's 127.x subnet.

    Follows RunInstances (API_RunInstances.html, ``SubnetId``): "If you don't specify a subnet ID,
    we choose a default subnet from your default VPC for you". The harness's default subnet is its
    127.x one; moto would pick its own 172.31.x default subnets (or EC2-Classic 10.x addresses), so
    the request is given ``SubnetId`` explicitly: moto ties default subnets to availability zones and
    cannot be told which is default. A primary network interface that names no subnet gets it there
    instead (EC2 refuses an instance-level ``SubnetId`` beside ``NetworkInterface.N``).
    """
    if params.get("Action") != "RunInstances" or "SubnetId" in params:
        return params, False
    nic_keys = [k for k in params if k.startswith("NetworkInterface.")]
    if not nic_keys:
        return {**params, "SubnetId": subnet_id}, True
    primary = next((k.rsplit(".", 1)[0] for k in nic_keys
                    if k.endswith(".DeviceIndex") and params[k] == "0"), None)
    if primary is None or f"{primary}.SubnetId" in params or f"{primary}.NetworkInterfaceId" in params:
        return params, False
    return {**params, f"{primary}.SubnetId": subnet_id}, True


def detach_names_instance(params: dict[str, str],
                          attached_to: Callable[[str], str | None]) -> tuple[dict[str, str], bool]:
    """DetachVolume without InstanceId detaches the volume from the instance it is attached to.

    Follows DetachVolume (API_DetachVolume.html): ``InstanceId`` is "Required: No" ("If you are
    detaching a Multi-Attach enabled volume, you must specify an instance ID"); moto 5.2 looks the
    instance up by the missing id and fails with a 500. The harness adds the id from moto's own
    attachment; a volume attached nowhere keeps the request as it is (moto's IncorrectState answer).
    """
    if params.get("Action") != "DetachVolume" or params.get("InstanceId") or not params.get("VolumeId"):
        return params, False
    instance_id = attached_to(params["VolumeId"])
    if instance_id is None:
        return params, False
    return {**params, "InstanceId": instance_id}, True


def no_public_address(params: dict[str, str]) -> tuple[dict[str, str], bool]:
    """With ``public_ips: none``, RunInstances asking for a public address gets none (harness policy).

    Not an EC2 behaviour but the harness's address rule: its instances have private 127.x addresses
    only, as instances in a subnet without ``MapPublicIpOnLaunch`` have on EC2 (API_RunInstances.html,
    ``NetworkInterface.N.AssociatePublicIpAddress``); asking for one is answered as if not asked.
    """
    if params.get("Action") != "RunInstances":
        return params, False
    keys = [k for k, v in params.items() if k.endswith(".AssociatePublicIpAddress") and v.lower() == "true"]
    if not keys:
        return params, False
    return {**params, **{k: "false" for k in keys}}, True


SIGNING = ("X-Amz-", "Signature", "Timestamp", "AWSAccessKeyId", "Expires")


class ClientTokens:
    """RunInstances with a ClientToken is idempotent, as on EC2; moto 5.2 launches again.

    Follows "Ensuring idempotency in Amazon EC2 API requests" (Run_Instance_Idempotency.html, linked
    from API_RunInstances.html ``ClientToken``): a retry with the same token and the same parameters
    answers the first request's instances and launches nothing; the same token with other parameters
    is ``IdempotentParameterMismatch``. A client whose RunInstances answer was lost can retry safely.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: dict[str, tuple[dict[str, str], bytes]] = {}

    @staticmethod
    def _key(params: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in params.items() if not k.startswith(SIGNING)}

    def earlier(self, params: dict[str, str]) -> tuple[bool, bytes | None]:
        """(mismatch, the first answer) for a RunInstances whose token was seen; (False, None) otherwise."""
        token = params.get("ClientToken")
        if params.get("Action") != "RunInstances" or not token:
            return False, None
        with self.lock:
            first = self.seen.get(token)
        if first is None:
            return False, None
        return first[0] != self._key(params), first[1]

    def remember(self, params: dict[str, str], answer: bytes) -> None:
        token = params.get("ClientToken")
        if params.get("Action") == "RunInstances" and token:
            with self.lock:
                self.seen.setdefault(token, (self._key(params), answer))

    def clear(self) -> None:
        with self.lock:
            self.seen.clear()

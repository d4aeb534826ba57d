"""The WSGI middleware in front of moto's own app: moto answers as EC2 does, with delays and faults.

Per request: admin paths go to the admin API; anything but an EC2 Query request for the harness's
region is refused; fault rules may answer instead of moto; the request corrections of
``moto_request`` are applied; moto answers; the answer corrections below are applied; the
addresses in it are checked (loopback only); a lost-answer rule may then drop the answer.

Answer corrections, each following the EC2 API reference
(https://docs.aws.amazon.com/AWSEC2/latest/APIReference/<page>):

- namespace: every EC2 answer's root element is in ``http://ec2.amazonaws.com/doc/<Version>/``
  (the API version the request asked for, with a trailing slash: the example responses of every
  action page, e.g. API_DescribeInstances.html). moto 5.2 answers ``.../doc/2016-11-15`` without
  the slash, so libcloud's namespaced lookups find nothing and every listing is empty.
- ``<return>true</return>``: actions whose only answer is success (API_CreateTags.html,
  API_DeleteTags.html, API_DeleteVolume.html, API_DeleteKeyPair.html, ...: "return — Is true if
  the request succeeds, and an error otherwise") carry it; moto 5.2 answers just the requestId,
  which libcloud reads as False.
- pending: RunInstances answers its instances ``pending`` (code 0) (API_RunInstances.html, example
  response; API_InstanceState.html), and they stay pending for the configured delay
  (``moto_nodes``); moto makes them ``running`` at once.
- errors: EC2's error body is ``<Response><Errors><Error>...`` in no namespace (errors-overview.html,
  "Example error response"); moto 5.2 puts ``<Response>`` in the EC2 namespace, so libcloud's
  ``Errors/Error`` lookup finds nothing and its exceptions lose the code. An answer that is not
  XML at all (moto's crash page) becomes EC2's 500 ``InternalError``.
- account attributes: DescribeAccountAttributes answers only the ``AttributeName.N`` asked for
  (API_DescribeAccountAttributes.html); moto 5.2 answers all of them, and libcloud's
  ``ex_get_limits`` then fails reading ``supported-platforms: EC2`` as a number.
- creating: CreateVolume answers ``creating`` and the volume stays so for the configured delay
  (API_CreateVolume.html: "status — The volume state", example ``creating``); AttachVolume on a
  volume still creating is ``IncorrectState`` (errors-overview.html). moto makes volumes available
  at once.
"""

from __future__ import annotations

import logging
import re
import socket
import struct
import xml.etree.ElementTree as ET
from typing import Any, Callable, Iterable

from lablease.testing.moto_faults import FaultBook, error_answer, rule_answer
from lablease.testing.moto_request import (
    Ec2Request, detach_names_instance, launch_into_subnet, no_public_address, read_request, renumber_lists,
    write_request,
)
from lablease.testing.moto_settings import LOOPBACK, NotLoopback

log = logging.getLogger(__name__)

ADMIN_PREFIX = "/moto-harness/admin"
DEFAULT_VERSION = "2016-11-15"
ROOT_NS = re.compile(rb'(<\w+Response\s+xmlns=")http://ec2\.amazonaws\.com/doc/[^"]*(")')
BARE_SUCCESS = re.compile(rb'^(\s*(?:<\?xml[^>]*\?>)?\s*<(\w+)Response\s[^>]*>\s*<requestId>[^<]*</requestId>)\s*'
                          rb'(</\2Response>\s*)$')
ADDRESS_TAGS = {"privateIpAddress", "ipAddress", "publicIp", "carrierIp", "customerOwnedIp"}
ADDRESS_ACTIONS = {"RunInstances", "DescribeInstances", "DescribeNetworkInterfaces", "DescribeAddresses",
                   "AllocateAddress", "AssociateAddress"}

StartResponse = Callable[..., Any]


class Answer:
    """An HTTP answer held back for correction: status code, headers, body."""

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes):
        self.status, self.headers, self.body = status, headers, body

    @classmethod
    def error(cls, status: int, code: str, message: str) -> "Answer":
        return cls(status, [("Content-Type", "text/xml")], error_answer(code, message))

    def send(self, start_response: StartResponse) -> list[bytes]:
        headers = [(k, v) for k, v in self.headers if k.lower() not in ("content-length", "transfer-encoding")]
        headers.append(("Content-Length", str(len(self.body))))
        start_response(f"{self.status} {_reason(self.status)}", headers)
        return [self.body]


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


class Ec2AsEc2:
    """The harness's WSGI app: admin API, faults, corrections, then moto."""

    def __init__(self, moto_app: Any, world: Any, nodes: Any, faults: FaultBook, admin: Any):
        self.moto_app = moto_app
        self.world = world
        self.nodes = nodes
        self.faults = faults
        self.admin = admin

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "").startswith(ADMIN_PREFIX):
            return self.admin(environ, start_response)
        req = read_request(environ)
        self.admin.count(req.action or "<none>")
        answer = self._refusal(req) or self._fault(req) or self._precondition(req)
        if answer is None:
            answer = self._answer(environ, req)
            answer.body = ROOT_NS.sub(rb"\1http://ec2.amazonaws.com/doc/" + self._version(req).encode() + rb"/\2",
                                      answer.body)
            answer = self._check_addresses(req, answer)
            lost = self.faults.pick(req.action, lost=True) if 200 <= answer.status < 300 else None
            if lost is not None:
                log.info("fault lost answer action=%s mode=%s", req.action, lost.mode)
                if lost.mode == "reset":
                    return _reset(environ)
                status, body = rule_answer(lost)
                answer = Answer(status, [("Content-Type", "text/xml")], body)
        return answer.send(start_response)

    # --- before moto --------------------------------------------------------------------------
    def _refusal(self, req: Ec2Request) -> Answer | None:
        if req.service not in (None, "ec2") or not req.action:
            return Answer.error(400, "UnsupportedOperation", "the moto EC2 harness serves EC2 Query requests only")
        region = self.world.settings.region
        if req.region not in (None, region):
            # A SigV4 request signed for another region is refused by a regional endpoint.
            return Answer.error(401, "AuthFailure", f"Credential should be scoped to a valid region, not "
                                f"'{req.region}': this endpoint serves {region}")
        return None

    def _fault(self, req: Ec2Request) -> Answer | None:
        rule = self.faults.pick(req.action, lost=False)
        if rule is None:
            return None
        status, body = rule_answer(rule)
        log.info("fault action=%s kind=%s status=%d", req.action, rule.kind, status)
        return Answer(status, [("Content-Type", "text/xml")], body)

    def _precondition(self, req: Ec2Request) -> Answer | None:
        volume_id = req.params.get("VolumeId", "")
        if req.action == "AttachVolume" and self.world.volume_creating(volume_id):
            return Answer.error(400, "IncorrectState", f"vol '{volume_id}' is not 'available'.")
        if (req.action == "DetachVolume" and not req.params.get("InstanceId")
                and volume_id in self.world.backend.volumes and self.world.attached_to(volume_id) is None):
            # EC2 answers IncorrectState for a volume attached nowhere (API_DetachVolume.html,
            # errors-overview.html); moto 5.2 crashes looking up the missing instance.
            return Answer.error(400, "IncorrectState", f"Volume '{volume_id}' is in the 'available' state.")
        limit = self.world.settings.max_instances
        if req.action == "RunInstances" and limit is not None:
            # EC2 refuses a launch beyond the account's limit on instances running at once (pending and
            # running ones count, terminated ones not) with InstanceLimitExceeded (errors-overview.html);
            # moto has no such limit.
            with self.world.moto_lock:
                live = sum(i["state"] in ("pending", "running") for i in self.world.instances())
            if live + int(req.params.get("MinCount") or 1) > limit:
                return Answer.error(400, "InstanceLimitExceeded", "You have requested more instances "
                                    f"({live} running) than your current instance limit of {limit} allows.")
        return None

    def _answer(self, environ: dict[str, Any], req: Ec2Request) -> Answer:
        """moto's answer, corrected; or the first answer of an idempotent RunInstances retry."""
        tokens = self.world.tokens
        mismatch, first = tokens.earlier(req.params)
        if mismatch:
            return Answer.error(400, "IdempotentParameterMismatch", "Arguments on this idempotent request are "
                                "inconsistent with arguments used in previous request(s).")
        if first is not None:
            log.info("idempotent RunInstances: the first answer of token %s", req.params.get("ClientToken"))
            return Answer(200, [("Content-Type", "text/xml")], first)
        asked = dict(req.params)
        self._correct_request(environ, req)
        with self.world.moto_lock:  # one moto call at a time: its backend is not made for threads
            answer = self._call_moto(environ)
            if 200 <= answer.status < 300:
                self._after_success(req, answer)
        if not 200 <= answer.status < 300:
            return _ec2_error(req, answer)
        tokens.remember(asked, answer.body)
        return answer

    def _correct_request(self, environ: dict[str, Any], req: Ec2Request) -> None:
        params, changed = renumber_lists(req.params)
        notes = ["lists renumbered 1..n"] if changed else []
        params, changed = launch_into_subnet(params, self.world.network.subnet_id)
        notes += ["default subnet"] if changed else []
        params, changed = detach_names_instance(params, self.world.attached_to)
        notes += ["InstanceId of the attachment"] if changed else []
        if self.world.settings.public_ips == "none":
            params, changed = no_public_address(params)
            notes += ["no public address"] if changed else []
        if notes:
            req.params = params
            req.notes = notes
            write_request(environ, req)
            log.info("request corrected action=%s: %s", req.action, "; ".join(notes))

    def _call_moto(self, environ: dict[str, Any]) -> Answer:
        captured: dict[str, Any] = {}

        def keep(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            captured["status"], captured["headers"] = int(status.split()[0]), list(headers)
            return lambda data: None

        result = self.moto_app(environ, keep)
        try:
            body = b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        return Answer(captured.get("status", 500), captured.get("headers", []), body)

    # --- after moto ---------------------------------------------------------------------------
    def _after_success(self, req: Ec2Request, answer: Answer) -> None:
        if req.action == "RunInstances":
            ids = re.findall(rb"<instanceId>([^<]+)</instanceId>", answer.body)
            self.nodes.launched([i.decode() for i in dict.fromkeys(ids)])
            answer.body = re.sub(rb"<instanceState>\s*<code>16</code>\s*<name>running</name>\s*</instanceState>",
                                 b"<instanceState><code>0</code><name>pending</name></instanceState>", answer.body)
        elif req.action == "CreateVolume":
            match = re.search(rb"<volumeId>([^<]+)</volumeId>", answer.body)
            if match:
                self.world.volume_created(match.group(1).decode())
        if req.action in ("CreateVolume", "DescribeVolumes") and self.world.creating_until:
            answer.body = self._creating(answer.body)
        elif req.action == "DescribeAccountAttributes":
            asked = {v for k, v in req.params.items() if re.fullmatch(r"AttributeName\.\d+", k)}
            if asked:
                answer.body = _only_attributes(answer.body, asked)
        match = BARE_SUCCESS.match(answer.body)
        if match:
            answer.body = match.group(1) + b"<return>true</return>" + match.group(3)

    def _creating(self, body: bytes) -> bytes:
        """``creating`` for the volumes still in their creating delay (CreateVolume's one, DescribeVolumes' set)."""
        root = ET.fromstring(body)
        ns = root.tag[1:].split("}", 1)[0] if root.tag.startswith("{") else ""
        q = f"{{{ns}}}" if ns else ""
        volume_set = root.find(f"{q}volumeSet")
        changed = False
        for volume in ([root] if volume_set is None else list(volume_set)):
            status = volume.find(f"{q}status")
            if status is not None and self.world.volume_creating(volume.findtext(f"{q}volumeId") or ""):
                status.text, changed = "creating", True
        if not changed:
            return body
        return ET.tostring(root, encoding="utf-8", xml_declaration=True, default_namespace=ns or None)

    def _check_addresses(self, req: Ec2Request, answer: Answer) -> Answer:
        """Never hand out an address outside 127.0.0.0/8: answer InternalError instead, and log it loudly."""
        if req.action not in ADDRESS_ACTIONS or not 200 <= answer.status < 300:
            return answer
        try:
            root = ET.fromstring(answer.body)
        except ET.ParseError:
            return answer
        for el in root.iter():
            tag = el.tag.rsplit("}", 1)[-1]
            if tag in ADDRESS_TAGS and el.text and el.text.strip():
                try:
                    from ipaddress import ip_address

                    ok = ip_address(el.text.strip()) in LOOPBACK
                except ValueError:
                    ok = False
                if not ok:
                    log.error("REFUSED: %s answer holds %s=%s outside 127.0.0.0/8", req.action, tag, el.text)
                    return Answer.error(500, "InternalError", str(NotLoopback(
                        f"moto EC2 harness: the {req.action} answer held {tag} {el.text}, outside 127.0.0.0/8")))
        return answer

    @staticmethod
    def _version(req: Ec2Request) -> str:
        version = req.params.get("Version", "")
        return version if re.fullmatch(r"\d{4}-\d{2}-\d{2}", version) else DEFAULT_VERSION


def _only_attributes(body: bytes, asked: set[str]) -> bytes:
    root = ET.fromstring(body)
    ns = root.tag[1:].split("}", 1)[0] if root.tag.startswith("{") else ""
    q = f"{{{ns}}}" if ns else ""
    attributes = root.find(f"{q}accountAttributeSet")
    if attributes is None:
        return body
    for item in list(attributes):
        if item.findtext(f"{q}attributeName") not in asked:
            attributes.remove(item)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True, default_namespace=ns or None)


ERROR_ROOT = re.compile(rb"<Response\s+xmlns=\"[^\"]*\"\s*>")


def _ec2_error(req: Ec2Request, answer: Answer) -> Answer:
    """moto's error answer in EC2's shape: ``<Response>`` in no namespace; a crash page becomes InternalError."""
    if not answer.body.lstrip().startswith(b"<?xml") and not answer.body.lstrip().startswith(b"<Response"):
        log.error("moto crashed on %s (%d); answering InternalError: %s", req.action, answer.status,
                  answer.body[:2000].decode("utf-8", "replace"))
        return Answer.error(500, "InternalError", "An internal error has occurred.")
    answer.body = ERROR_ROOT.sub(b"<Response>", answer.body, count=1)
    return answer


def _reset(environ: dict[str, Any]) -> list[bytes]:
    """Reset the client's connection (RST, no answer at all), as a dropped answer looks to the client."""
    sock: socket.socket | None = environ.get("werkzeug.socket")
    if sock is not None:
        # linger 0, so the close sends a RST; the shutdown ends the connection now (werkzeug would
        # otherwise keep it open for the next request while the client waits for this answer).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    # werkzeug treats ConnectionError as a dropped connection: no answer is written
    raise ConnectionResetError("moto EC2 harness: answer lost on purpose (fault rule)")

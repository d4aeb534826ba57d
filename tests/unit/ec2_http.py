"""A narrow fake of the EC2 Query API on 127.0.0.1 for the EC2 adapter's unit tests.

It answers each Action with libcloud's own recorded EC2 fixture (or a body a test sets), records
every request's parameters and headers, and can answer an action with an EC2 error first. The
adapter reaches it through libcloud's stock driver over real HTTP (``host``/``port``/``secure`` in
driver_args), so signing, parameters and parsing are libcloud's own.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import libcloud

FIXTURES = Path(libcloud.__file__).parent / "test" / "compute" / "fixtures" / "ec2"
FILES = {
    "DescribeImages": "describe_images.xml", "RunInstances": "run_instances.xml",
    "DescribeInstances": "describe_instances.xml", "TerminateInstances": "terminate_instances.xml",
    "CreateVolume": "create_volume.xml", "DescribeVolumes": "describe_volumes.xml",
    "AttachVolume": "attach_volume.xml", "DetachVolume": "detach_volume.xml", "DeleteVolume": "delete_volume.xml",
    "DescribeSubnets": "describe_subnets.xml", "DescribeSecurityGroups": "describe_security_groups.xml",
    "DescribeAvailabilityZones": "describe_availability_zones.xml", "CreateTags": "create_tags.xml",
    "DescribeAddresses": "describe_addresses.xml",
}


def error_body(code: str, message: str) -> str:
    return (f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors>"
            "<RequestID>fake-request</RequestID></Response>")


@dataclass
class Request:
    action: str
    params: dict[str, str]
    headers: dict[str, str]


@dataclass
class FakeEC2:
    requests: list[Request] = field(default_factory=list)
    bodies: dict[str, str] = field(default_factory=dict)                     # action -> answer body
    errors: dict[str, list[tuple[int, str]]] = field(default_factory=dict)   # action -> (status, body), first
    server: ThreadingHTTPServer | None = None

    def fail(self, action: str, status: int, code: str, message: str = "refused", times: int = 1) -> None:
        self.errors.setdefault(action, []).extend([(status, error_body(code, message))] * times)

    def actions(self) -> list[str]:
        return [r.action for r in self.requests]

    def of(self, action: str) -> list[Request]:
        return [r for r in self.requests if r.action == action]

    def answer(self, action: str) -> tuple[int, str]:
        queued = self.errors.get(action)
        if queued:
            return queued.pop(0)
        if action in self.bodies:
            return 200, self.bodies[action]
        return 200, (FIXTURES / FILES[action]).read_text()

    def start(self) -> "FakeEC2":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                params = dict(parse_qsl(urlsplit(self.path).query)) | dict(parse_qsl(body))
                action = params.get("Action", "")
                fake.requests.append(Request(action, params, {k.lower(): v for k, v in self.headers.items()}))
                status, text = fake.answer(action)
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def driver_args(self) -> dict[str, object]:
        assert self.server is not None
        return {"key": "AKIDFAKEKEY0001", "secret": "fake-secret-do-not-show", "region": "us-east-1",
                "host": "127.0.0.1", "port": self.server.server_address[1], "secure": False}

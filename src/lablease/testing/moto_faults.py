"""Fault rules of the moto EC2 harness: which EC2 Action fails, how, how often; and EC2's error answer.

Errors follow the EC2 API reference, "Error codes for the Amazon EC2 API"
(https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html): client errors
carry a 400-series status, server errors (InternalError, InsufficientInstanceCapacity,
RequestLimitExceeded, Unavailable) a 500-series one, RequestLimitExceeded being 503 as EC2 answers
throttled requests; the body is
``<Response><Errors><Error><Code/><Message/></Error></Errors><RequestID/></Response>``
(the page's "Example error response").
"""

from __future__ import annotations

import fnmatch
import random
import threading
import uuid
from dataclasses import asdict, dataclass
from typing import Any
from xml.sax.saxutils import escape

# kind -> (EC2 error code, HTTP status, message as EC2 words it)
ERRORS: dict[str, tuple[str, int, str]] = {
    "throttle": ("RequestLimitExceeded", 503, "Request limit exceeded."),
    "capacity": ("InsufficientInstanceCapacity", 500,
                 "We currently do not have sufficient capacity in the Availability Zone you requested."),
    "instance_limit": ("InstanceLimitExceeded", 400,
                       "You have requested more instances than your current instance limit allows."),
    "volume_limit": ("VolumeLimitExceeded", 400, "You have exceeded your maximum gp2 storage limit."),
    "bad_ami": ("InvalidAMIID.NotFound", 400, "The image id '[ami-0000000000000000]' does not exist"),
    "bad_parameter": ("InvalidParameterValue", 400, "Value for parameter is invalid."),
    "internal": ("InternalError", 500, "An internal error has occurred."),
    "unavailable": ("Unavailable", 503, "The server is overloaded and can't handle the request."),
}
# A lost answer: the action is carried out in moto, then the client gets no answer ("reset": the
# connection is reset before a byte of it) or a 500 InternalError in its place ("error").
LOST = "lost"
LOST_MODES = ("reset", "error")


@dataclass
class FaultRule:
    """One fault: requests whose EC2 ``Action`` matches ``action`` (fnmatch, e.g. "RunInstances", "Describe*")
    fail as ``kind`` (a key of ERRORS, or "lost") with ``probability``, at most ``count`` times (None: always).

    ``message`` overrides the error message; ``mode`` is how a lost answer is lost ("reset" or "error").
    """

    action: str
    kind: str
    probability: float = 1.0
    count: int | None = None
    message: str | None = None
    mode: str = "reset"
    fired: int = 0

    def __post_init__(self) -> None:
        if self.kind != LOST and self.kind not in ERRORS:
            raise ValueError(f"fault kind {self.kind!r}: one of {sorted(ERRORS)} or {LOST!r}")
        if self.mode not in LOST_MODES:
            raise ValueError(f"lost-answer mode {self.mode!r}: one of {LOST_MODES}")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError("probability must be within 0..1")
        if self.count is not None and self.count < 0:
            raise ValueError("count must be >= 0")

    def spent(self) -> bool:
        return self.count is not None and self.fired >= self.count


class FaultBook:
    """The active rules, their random sequence and what they did; shared by the request threads."""

    def __init__(self, rules: list[dict[str, Any]] | None = None, seed: int = 0):
        self.lock = threading.Lock()
        self.rules: list[FaultRule] = []
        self.rng = random.Random(seed)
        self.seed = seed
        self.replace(rules or [], seed)

    def replace(self, rules: list[dict[str, Any]], seed: int | None = None) -> list[FaultRule]:
        """Set the rules (each a FaultRule's fields); ValueError/TypeError on a bad one, nothing changed."""
        parsed = [FaultRule(**{k: v for k, v in r.items() if k != "fired"}) for r in rules]
        with self.lock:
            self.rules = parsed
            if seed is not None:
                self.seed = seed
            self.rng = random.Random(self.seed)
        return parsed

    def add(self, rule: dict[str, Any]) -> FaultRule:
        parsed = FaultRule(**{k: v for k, v in rule.items() if k != "fired"})
        with self.lock:
            self.rules.append(parsed)
        return parsed

    def pick(self, action: str, lost: bool) -> FaultRule | None:
        """The first rule for ``action`` that fires now: error rules (lost=False) or lost-answer rules."""
        with self.lock:
            for rule in self.rules:
                if (rule.kind == LOST) != lost or rule.spent() or not fnmatch.fnmatchcase(action, rule.action):
                    continue
                if rule.probability >= 1.0 or self.rng.random() < rule.probability:
                    rule.fired += 1
                    return rule
        return None

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {"seed": self.seed, "rules": [asdict(r) for r in self.rules]}


def error_answer(code: str, message: str) -> bytes:
    """EC2's error body (errors-overview.html, "Example error response")."""
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>{escape(code)}</Code>'
            f"<Message>{escape(message)}</Message></Error></Errors>"
            f"<RequestID>{uuid.uuid4()}</RequestID></Response>").encode()


def rule_answer(rule: FaultRule) -> tuple[int, bytes]:
    """(HTTP status, body) of an error rule; a lost answer in mode "error" is EC2's InternalError."""
    code, status, message = ERRORS["internal" if rule.kind == LOST else rule.kind]
    return status, error_answer(code, rule.message or message)

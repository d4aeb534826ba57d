"""What an EC2 error means for retrying: the EC2 API's error codes mapped to lablease's error kinds.

libcloud's EC2 driver raises ``InvalidCredsError`` for AuthFailure, SignatureDoesNotMatch,
InvalidClientTokenId and OptInRequired, ``IdempotentParamError`` for a client token reused with
other parameters, and ``BaseHTTPError(status, "Code: message")`` for every other error answer
(https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html). It retries none of
them: throttling (RequestLimitExceeded, HTTP 503) is repeated by lablease's CloudCaller behind the
provider's rate gate. Transport errors (refused, reset, timed out) mean what they mean for every
libcloud driver and are classified as the OpenStack adapter does.
"""

from __future__ import annotations

import re

from libcloud.common.exceptions import BaseHTTPError, RateLimitReachedError
from libcloud.common.types import InvalidCredsError, MalformedResponseError
from libcloud.compute.drivers.ec2 import IdempotentParamError

from lablease.provision.adapters.base import ErrorInfo
from lablease.provision.errorkinds import ErrorKind

# Throttling: the account's request rate (RequestLimitExceeded) or an API's own (Throttling).
RATE_LIMIT_CODES = frozenset({"RequestLimitExceeded", "Throttling", "ThrottlingException", "RequestThrottled",
                              "RequestLimitExceededException"})
# The account's limits or the zone's capacity: repeating the call now cannot help.
QUOTA_CODES = frozenset({"InsufficientInstanceCapacity", "InstanceLimitExceeded", "VolumeLimitExceeded",
                         "VcpuLimitExceeded", "InsufficientVolumeCapacity", "MaxSpotInstanceCountExceeded",
                         "InsufficientFreeAddressesInSubnet", "AddressLimitExceeded", "ResourceLimitExceeded",
                         "TagLimitExceeded", "InsufficientCapacity", "InsufficientHostCapacity"})
# Something the config names does not exist or is refused: an operator must change the config.
CONFIG_CODES = re.compile(r"^(InvalidAMIID\..*|InvalidParameterValue|InvalidParameterCombination|InvalidParameter|"
                          r"MissingParameter|InvalidSubnetID\..*|InvalidSubnet|InvalidGroup\..*|InvalidKeyPair\..*|"
                          r"InvalidBlockDeviceMapping|Unsupported|UnsupportedOperation|InvalidInstanceType|"
                          r"InvalidAvailabilityZone|InvalidVpcID\..*)$")
# The resource is gone: a delete of it has nothing left to do.
NOT_FOUND_CODES = re.compile(r"^(InvalidInstanceID\.(NotFound|Malformed)|InvalidVolume\.NotFound|"
                             r"InvalidVolumeID\.Malformed|InvalidAttachment\.NotFound)$")
# EC2's own failures: the call is repeated (creates are first looked for, see provision/adopt.py).
SERVER_CODES = frozenset({"InternalError", "InternalFailure", "ServiceUnavailable", "Unavailable"})
# Answered 403 by IAM: the credentials are good but the policy does not allow the action.
UNAUTHORIZED_CODES = frozenset({"UnauthorizedOperation", "AccessDenied", "Blocked"})


class EC2ConfigError(Exception):
    """Something the provider's ``ec2:`` keys name is not in the account (a subnet): not retried."""


_CODE = re.compile(r"^\s*([A-Za-z][A-Za-z0-9.]*):")


def error_code(exc: BaseException) -> str:
    """The EC2 error code libcloud put at the start of the message ("RequestLimitExceeded: ..."), or ""."""
    match = _CODE.match(str(getattr(exc, "message", "") or exc))
    return match.group(1) if match else ""


def classify_ec2_error(exc: BaseException) -> ErrorInfo:
    """What an exception of libcloud's EC2 driver means for retrying (usable without an adapter)."""
    from lablease.provision.adapters.openstack import classify_error  # transport errors: the same for all drivers

    message = _message(exc)
    if isinstance(exc, EC2ConfigError):
        return ErrorInfo(ErrorKind.CONFIG, message)
    if isinstance(exc, InvalidCredsError):
        return ErrorInfo(ErrorKind.AUTH, message)
    if isinstance(exc, RateLimitReachedError):
        return ErrorInfo(ErrorKind.RATE_LIMIT, message)
    if isinstance(exc, BaseHTTPError):
        return _by_code(error_code(exc), int(exc.code), message)
    if isinstance(exc, MalformedResponseError):
        # An error answer that is no EC2 XML (a proxy's or load balancer's page): the service misbehaved.
        return ErrorInfo(ErrorKind.TRANSIENT, message)
    if isinstance(exc, IdempotentParamError):
        return ErrorInfo(ErrorKind.FATAL, message)
    return classify_error(exc)


def _by_code(code: str, status: int, message: str) -> ErrorInfo:
    if code in RATE_LIMIT_CODES or status == 429:
        return ErrorInfo(ErrorKind.RATE_LIMIT, message)
    if code in QUOTA_CODES:
        return ErrorInfo(ErrorKind.QUOTA, message)
    if code in UNAUTHORIZED_CODES:
        return ErrorInfo(ErrorKind.AUTH, f"{message} (the IAM policy of these credentials does not allow this "
                                         "action; docs/ec2.md lists the actions lablease calls)")
    if NOT_FOUND_CODES.match(code):
        return ErrorInfo(ErrorKind.NOT_FOUND, message)
    if CONFIG_CODES.match(code):
        return ErrorInfo(ErrorKind.CONFIG, f"{message} (the provider's config names something EC2 refuses; "
                                           "not retried)")
    if code in SERVER_CODES or status >= 500:
        return ErrorInfo(ErrorKind.TRANSIENT, message)
    if status in (401, 403):
        return ErrorInfo(ErrorKind.AUTH, message)
    return ErrorInfo(ErrorKind.FATAL, message)


def _message(exc: BaseException) -> str:
    """The cloud's words on one line, bounded; EC2's error answers never hold the secret key."""
    if isinstance(exc, MalformedResponseError):
        text = f"{exc.value}: {str(getattr(exc, 'body', ''))[:200]}"
    elif isinstance(exc, BaseHTTPError):
        text = f"{exc.message} (HTTP {exc.code})"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())[:500]

"""What each EC2 error means for retrying, and what an EC2 provider's config must hold (errors that say the fix)."""

from __future__ import annotations

import pytest
import requests
from libcloud.common.exceptions import BaseHTTPError
from libcloud.common.types import InvalidCredsError, MalformedResponseError
from libcloud.compute.drivers.ec2 import IdempotentParamError

from lablease.config.errors import ConfigError
from lablease.config.lab import parse_lab_config
from lablease.config.redact import redact
from lablease.provision.adapters.ec2_errors import classify_ec2_error
from lablease.provision.errorkinds import ErrorKind

ARGS = {"key": "AKIDEXAMPLE", "secret": "wJalrXUtnFEMI-example-secret", "region": "eu-west-1"}


def http(status: int, code: str, words: str = "words") -> BaseHTTPError:
    return BaseHTTPError(status, f"{code}: {words}")


@pytest.mark.parametrize("exc, kind", [
    (http(503, "RequestLimitExceeded", "Request limit exceeded."), ErrorKind.RATE_LIMIT),
    (http(400, "Throttling"), ErrorKind.RATE_LIMIT),
    (http(500, "InsufficientInstanceCapacity", "no t3.micro capacity in us-east-1a"), ErrorKind.QUOTA),
    (http(400, "InstanceLimitExceeded"), ErrorKind.QUOTA),
    (http(400, "VolumeLimitExceeded"), ErrorKind.QUOTA),
    (http(400, "VcpuLimitExceeded"), ErrorKind.QUOTA),
    (http(400, "InvalidAMIID.NotFound"), ErrorKind.CONFIG),
    (http(400, "InvalidAMIID.Malformed"), ErrorKind.CONFIG),
    (http(400, "InvalidParameterValue"), ErrorKind.CONFIG),
    (http(400, "InvalidSubnetID.NotFound"), ErrorKind.CONFIG),
    (http(400, "InvalidGroup.NotFound"), ErrorKind.CONFIG),
    (http(400, "InvalidKeyPair.NotFound"), ErrorKind.CONFIG),
    (http(400, "InvalidInstanceID.NotFound"), ErrorKind.NOT_FOUND),
    (http(400, "InvalidVolume.NotFound"), ErrorKind.NOT_FOUND),
    (http(500, "InternalError"), ErrorKind.TRANSIENT),
    (http(503, "Unavailable"), ErrorKind.TRANSIENT),
    (http(502, ""), ErrorKind.TRANSIENT),
    (http(403, "UnauthorizedOperation"), ErrorKind.AUTH),
    (http(400, "IncorrectState"), ErrorKind.FATAL),
    (InvalidCredsError("AuthFailure: AWS was not able to validate the provided access credentials"), ErrorKind.AUTH),
    (IdempotentParamError("IdempotentParameterMismatch: token reused"), ErrorKind.FATAL),
    (MalformedResponseError("Failed to parse XML", body="<html>502 Bad Gateway</html>"), ErrorKind.TRANSIENT),
    (requests.exceptions.ReadTimeout("read timed out"), ErrorKind.TRANSIENT),
    (ConnectionRefusedError(111, "refused"), ErrorKind.UNREACHABLE),
])
def test_each_ec2_error_has_the_kind_the_issue_names(exc, kind):
    assert classify_ec2_error(exc).kind is kind


def test_a_missing_iam_permission_says_where_the_needed_actions_are_listed():
    info = classify_ec2_error(http(403, "UnauthorizedOperation", "You are not authorized to perform this operation."))
    assert "docs/ec2.md" in info.message and "not authorized" in info.message


def provider(**entry):
    data = {"libcloud": {"providers": {"aws": {"driver": "ec2", "driver_args": dict(ARGS), **entry}}}}
    return parse_lab_config(data, file="teuthology.yaml").provider("aws")


def config_error(**entry) -> str:
    with pytest.raises(ConfigError) as err:
        provider(**entry)
    return str(err.value)


def test_an_ec2_provider_gets_ubuntu_amis_from_canonical_and_x86_sizes_by_default():
    p = provider()
    assert p.driver == "ec2" and p.ec2 is not None
    assert p.ec2.ami_owners == ["099720109477"] and "ubuntu-22.04" in p.ec2.ami_name_patterns
    assert p.allow_sizes != [".*"] and p.ec2.volume_type == "gp3"


def test_allow_sizes_given_by_the_operator_is_kept():
    assert provider(allow_sizes="t3\\.").allow_sizes == ["t3\\."]


def test_missing_secret_names_the_key_and_what_it_is():
    text = config_error(driver_args={"key": "AKIDEXAMPLE"})
    assert "driver_args needs secret" in text and "secret access key" in text


def test_an_unknown_region_is_refused_with_an_example():
    assert "not an EC2 region" in config_error(driver_args={**ARGS, "region": "mars-north-1"})


def test_a_misspelt_driver_arg_is_an_error_listing_the_keys_libcloud_takes():
    text = config_error(driver_args={**ARGS, "regoin": "eu-west-1"})
    assert "'regoin'" in text or "regoin" in text
    assert "region" in text and "signature_version" in text


def test_a_bad_ami_owner_and_a_bad_os_key_say_what_is_expected():
    assert "12-digit account id" in config_error(ec2={"ami_owners": ["canonical"]})
    assert "<os_type>-<os_version>" in config_error(ec2={"ami_name_patterns": {"ubuntu": "x*"}})


def test_an_unknown_ec2_key_is_an_error():
    assert "subnett" in config_error(ec2={"subnett": "lab"})


def test_ec2_keys_on_an_openstack_provider_are_refused():
    data = {"libcloud": {"providers": {"os": {"driver": "openstack", "ec2": {"subnet": "x"},
                                               "driver_args": {"username": "u", "password": "p",
                                                               "ex_force_auth_url": "http://127.0.0.1:5000"}}}}}
    with pytest.raises(ConfigError) as err:
        parse_lab_config(data)
    assert "the ec2 key is for providers whose driver is ec2" in str(err.value)


def test_the_secret_key_is_hidden_in_shown_config_and_reprs():
    p = provider()
    shown = redact({"driver_args": p.driver_args})
    assert shown["driver_args"]["secret"] == "***" and "wJalrXUtnFEMI" not in repr(p)


def test_the_aws_config_of_docs_ec2_md_passes_config_check_and_config_show_hides_its_secret(tmp_path):
    import re
    from pathlib import Path

    from typer.testing import CliRunner

    from lablease.cli import app
    from lablease.provision.devlab import generate_lab_key

    page = (Path(__file__).resolve().parents[2] / "docs" / "ec2.md").read_text()
    block = re.search(r"<!-- doc-test: ec2-teuthology.yaml -->\s*```yaml\n(.*?)```", page, re.DOTALL)
    assert block, "docs/ec2.md lost its marked config block"
    text = block.group(1).replace("/etc/lablease/id_ed25519", str(generate_lab_key(tmp_path / "lab_key")))
    path = tmp_path / "teuthology.yaml"
    path.write_text(text)
    checked = CliRunner().invoke(app, ["config", "check", "--config", str(path)])  # no --connect: no request
    assert checked.exit_code == 0, checked.output
    shown = CliRunner().invoke(app, ["config", "show", "--config", str(path)])
    assert shown.exit_code == 0, shown.output
    assert "wJalrXUtnFEMI" not in shown.output and "secret: '***'" in shown.output
    assert "ami_name_patterns" in shown.output

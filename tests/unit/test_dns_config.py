"""dns.yaml validation: errors name the key and the fix, never the secret."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from lablease.config import ConfigError
from lablease.dns.auth import Authenticator
from lablease.dns.config import DnsConfig, load_dns_config
from lablease.dns.updater import read_key_file
from lablease.dns.validation import Rejection

KEY = 'key "lab-key" {\n\talgorithm hmac-sha256;\n\tsecret "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI=";\n};\n'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "dns.yaml"
    path.write_text(text)
    return path


def test_a_minimal_config_loads_with_defaults_and_a_relative_key_file(tmp_path):
    (tmp_path / "lab.key").write_text(KEY)
    config = load_dns_config(write(tmp_path, "zone: Lab.Example.\nkey_file: lab.key\nallow_pattern: 'node[0-9]+'\n"))
    assert config.zone == "lab.example"
    assert config.key_file == tmp_path / "lab.key"
    assert (config.ttl, config.max_addresses, config.timeout, config.base_path) == (300, 32, 5.0, "")


@pytest.mark.parametrize("text,key", [
    ("zone: lab.example\nkey_file: k\n", "allow_pattern"),
    ("zone: lab.example\nkey_file: k\nallow_pattern: 'node(['\n", "allow_pattern"),
    ("zone: lab.example\nkey_file: k\nallow_pattern: x\nserver: dns.example\n", "server"),
    ("zone: 'lab example'\nkey_file: k\nallow_pattern: x\n", "zone"),
    ("zone: lab.example\nkey_file: k\nallow_pattern: x\nttl: 0\n", "ttl"),
    ("zone: lab.example\nkey_file: k\nallow_pattern: x\nmax_ip: 3\n", "max_ip"),
    ("zone: lab.example\nkey_file: k\nallow_pattern: x\nbase_path: 'a b'\n", "base_path"),
    ("zone: lab.example\nkey_file: k\nallow_pattern: x\ntokens: [{id: ci, sha256: 'supersecretvalue'}]\n", "tokens.0.sha256"),
])
def test_bad_config_names_the_key(tmp_path, text, key):
    with pytest.raises(ConfigError) as info:
        load_dns_config(write(tmp_path, text))
    assert info.value.key == key
    assert "supersecretvalue" not in str(info.value)


def test_a_key_file_that_is_not_a_bind_key_is_refused_without_showing_it(tmp_path):
    (tmp_path / "bad.key").write_text("secret hunter2\n")
    with pytest.raises(ConfigError) as info:
        read_key_file(tmp_path / "bad.key")
    assert info.value.key == "key_file" and "hunter2" not in str(info.value)
    with pytest.raises(ConfigError):
        read_key_file(tmp_path / "missing.key")


def test_the_key_is_read_and_its_repr_hides_the_secret(tmp_path):
    (tmp_path / "lab.key").write_text(KEY)
    key = read_key_file(tmp_path / "lab.key")
    assert key.name.to_text() == "lab-key."
    assert "c2VjcmV0" not in repr(key)


def config_with_tokens(tmp_path: Path) -> DnsConfig:
    (tmp_path / "ops.token").write_text("ops-token-value\n")
    return DnsConfig(zone="lab.example", key_file=tmp_path / "k", allow_pattern=r"node[0-9]+", tokens=[
        {"id": "ci", "sha256": hashlib.sha256(b"ci-token-value").hexdigest()},
        {"id": "ops", "token_file": tmp_path / "ops.token", "allow_pattern": r"(node|infra)[0-9]+"},
    ])


def test_tokens_identify_the_caller_and_carry_their_own_pattern(tmp_path):
    auth = Authenticator(config_with_tokens(tmp_path))
    ci = auth.identify("Bearer ci-token-value", "127.0.0.1")
    assert ci.who == "token=ci" and ci.allow.fullmatch("node1") and not ci.allow.fullmatch("infra1")
    ops = auth.identify("bearer ops-token-value", "127.0.0.1")
    assert ops.who == "token=ops" and ops.allow.fullmatch("infra1")


@pytest.mark.parametrize("header", [None, "", "Bearer", "Basic Y2k6eA==", "Bearer wrong", "Bearer ci-token-valu"])
def test_missing_or_wrong_tokens_are_unauthorized(tmp_path, header):
    with pytest.raises(Rejection) as info:
        Authenticator(config_with_tokens(tmp_path)).identify(header, "127.0.0.1")
    assert info.value.status == 401
    assert "ci-token-value" not in info.value.message


def test_without_tokens_the_service_is_open_and_names_the_client_address(tmp_path):
    auth = Authenticator(DnsConfig(zone="lab.example", key_file=tmp_path / "k", allow_pattern="node[0-9]+"))
    caller = auth.identify(None, "127.0.0.9")
    assert caller.who == "client=127.0.0.9" and caller.allow.pattern == "node[0-9]+"
    assert re.compile(caller.allow.pattern).fullmatch("node7")


def test_duplicate_token_ids_are_refused(tmp_path):
    digest = hashlib.sha256(b"x").hexdigest()
    with pytest.raises(ValueError, match="unique"):
        DnsConfig(zone="lab.example", key_file=tmp_path / "k", allow_pattern="x",
                  tokens=[{"id": "a", "sha256": digest}, {"id": "a", "sha256": digest}])


def test_hash_token_prints_the_sha256_that_tokens_expect():
    from typer.testing import CliRunner

    from lablease.cli import app

    result = CliRunner().invoke(app, ["dns", "hash-token"], input="s3cret\n")
    assert result.exit_code == 0
    assert result.output.strip() == hashlib.sha256(b"s3cret").hexdigest()
    assert CliRunner().invoke(app, ["dns", "hash-token"], input="\n").exit_code == 2

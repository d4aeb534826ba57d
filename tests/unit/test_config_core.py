"""The shared config core: YAML errors name the file, validation errors name the key, secrets are redacted."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict

from lablease.config import ConfigError, load_yaml_file, redact, validate_section


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")
    port: int
    password: str = ""


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_yaml_file(tmp_path / "nope.yaml")
    assert "nope.yaml" in str(err.value) and "not found" in str(err.value)


def test_broken_yaml_names_the_line(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("a: 1\nb: [\n")
    with pytest.raises(ConfigError) as err:
        load_yaml_file(f)
    assert "c.yaml" in str(err.value) and "line" in str(err.value)


def test_top_level_must_be_a_mapping(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("- 1\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_yaml_file(f)


def test_validation_error_names_key_path_without_echoing_the_value():
    with pytest.raises(ConfigError) as err:
        validate_section(_Section, {"port": "x", "password": "hunter2"}, file="f.yaml", prefix="dns")
    assert "f.yaml: dns.port" in str(err.value)
    with pytest.raises(ConfigError) as err:
        validate_section(_Section, {"port": 1, "password": ["hunter2-secret"]}, file="f.yaml")
    assert "hunter2-secret" not in str(err.value)


def test_unknown_key_is_named_with_a_fix():
    with pytest.raises(ConfigError) as err:
        validate_section(_Section, {"port": 1, "prot": 2}, file="f.yaml", prefix="dns")
    assert "dns.prot" in str(err.value) and "unknown key" in str(err.value)


def test_redact_hides_secret_values_at_any_depth():
    data = {"libcloud": {"providers": {"ovh": {"driver_args": {"username": "u", "password": "p", "ex_tenant_name": "t"}}}},
            "tokens": [{"id": "ci", "token": "abc"}], "api_key": "k"}
    shown = redact(data)
    args = shown["libcloud"]["providers"]["ovh"]["driver_args"]
    assert args == {"username": "u", "password": "***", "ex_tenant_name": "t"}
    assert shown["tokens"][0] == {"id": "ci", "token": "***"} and shown["api_key"] == "***"
    assert data["libcloud"]["providers"]["ovh"]["driver_args"]["password"] == "p"


def test_redact_hides_plain_values_listed_under_a_secret_key():
    shown = redact({"tokens": ["abc", ["def"]], "passwords": ("p1",), "names": ["n1"], "token": None})
    assert shown == {"tokens": ["***", ["***"]], "passwords": ["***"], "names": ["n1"], "token": None}


def test_a_broken_regex_is_named_by_position_without_echoing_it():
    from lablease.config.patterns import check_regex

    assert check_regex("node[0-9]+") == "node[0-9]+"
    with pytest.raises(ValueError) as err:
        check_regex("node(secret", hint="; more")
    assert "position 4" in str(err.value) and str(err.value).endswith("; more")
    assert "secret" not in str(err.value)

"""Configuration: YAML loading, validation errors that name the key, secret redaction."""

from lablease.config.errors import ConfigError
from lablease.config.loader import load_yaml_file, validate_section
from lablease.config.redact import REDACTED, is_secret_key, redact, redact_log, redact_text

__all__ = ["ConfigError", "REDACTED", "is_secret_key", "load_yaml_file", "redact", "redact_log", "redact_text", "validate_section"]

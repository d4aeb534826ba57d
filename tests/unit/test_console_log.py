"""A failed boot's console log: cut to its last 4 KB and cleared of secrets; devcloud's os-getConsoleOutput."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from lablease.config.redact import redact_log
from lablease.devcloud import console
from lablease.devcloud.errors import CloudError
from lablease.devcloud.state import Server
from lablease.provision.console import tail


def test_tail_keeps_the_last_4_kb_from_a_line_start():
    text = "".join(f"line {i}\n" for i in range(2000))
    cut = tail(text)
    assert len(cut.encode()) <= 4096 and cut.startswith("line ") and cut.endswith("line 1999\n")
    assert tail("short\n") == "short\n"


def test_redact_log_hides_secret_settings_url_passwords_and_private_keys():
    text = ("ci-info: password: hunter2\nAPI_KEY=abc123\n\"token\": \"zzz\"\nfetch http://u:pw@h/x\n"
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----\nlogin: ")
    out = redact_log(text)
    assert not any(secret in out for secret in ("hunter2", "abc123", "zzz", ":pw@", "b3Blbn"))
    assert "password: ***" in out and "login: " in out


def _server() -> Server:
    now = datetime.now(timezone.utc)
    return Server(id="s1", name="node1", project_id="p", user_id="u", flavor_id="f", image_id="i", key_name=None,
                  metadata={}, user_data=None, security_groups=[], addresses=[], created=now, updated=now)


def test_devcloud_console_output_answers_the_last_n_lines_or_all_of_them():
    server = _server()
    console.created(server)
    console.kernel(server)
    console.cloud_init(server)
    assert console.output(server, {"length": 1}) == {"output": "node1 login: \n"}
    assert console.output(server, {"length": 0}) == {"output": ""}
    everything = console.output(server, {"length": None})["output"]
    assert everything.startswith("SeaBIOS") and everything == console.output(server, {"length": -1})["output"]
    for bad in ({"length": -2}, {"length": "3"}, {"length": True}, []):
        with pytest.raises(CloudError):
            console.output(server, bad)

"""Credentials and secrets, against devcloud and a real `lablease serve`: a cached token never stands in
for a wrong password, and no secret of the config reaches any output — `config show`, `config check`,
the logs of `lablease serve` (lab service included), or an error message.
"""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest
import yaml
from sqlalchemy.engine import make_url

from lablease.provision.devlab import devcloud_lab_data, generate_lab_key
from lablease.provision.engine import Provisioner
from lablease.provision.context import ProvisionerOptions
from lablease.provision.errors import ProvisionError
from lablease.config.lab import LabConfig
from lablease.testing.lockserver import start_lock_server
from lablease.testing.waiting import wait_until

pytestmark = pytest.mark.integration


def _provisioner(cloud, key, tokens, **driver_args) -> Provisioner:
    data = devcloud_lab_data(cloud, key)
    data["libcloud"]["providers"]["dev"]["driver_args"].update(driver_args)
    return Provisioner(LabConfig.model_validate(data), "dev", None, ProvisionerOptions(token_cache_dir=tokens))


def test_a_wrong_password_is_refused_even_when_another_config_cached_a_token_for_the_same_account(devcloud, tmp_path):
    key = generate_lab_key(tmp_path / "lab_key")
    right = _provisioner(devcloud, key, tmp_path / "tokens")
    right.prepare()
    assert right.adapter.list_sizes()  # the token works and is in the shared cache now
    wrong = _provisioner(devcloud, key, tmp_path / "tokens", password="wrong")
    with pytest.raises(ProvisionError) as err:
        wrong.prepare()
    assert err.value.stage.value == "auth" and "invalid credentials" in err.value.message
    assert devcloud.request_counts()["POST /v2.0/tokens"] == 2  # the wrong one really asked Keystone
    # ...and the right one still reuses its own token.
    again = _provisioner(devcloud, key, tmp_path / "tokens")
    again.prepare()
    assert devcloud.request_counts()["POST /v2.0/tokens"] == 2


# -- no secret anywhere ---------------------------------------------------------------------------

SECRETS = {
    "password": "Pw-driver-0001",
    "secret_key": "Sk-driver-0002",
    "api_token": "Tk-driver-0003",
    "ssh_key_passphrase": "Pp-phrase-0004",
    "admin_token": "Adm-token-0005",
    "database_url_password": "Db-pass-0006",
    "dns_token": "Dns-token-0007",
    "tsig_secret": "Tsig-key-0008",
    "db_password": "Other-pass-0009",
    "nsupdate_password": "Ns-pass-0010",
}


def _secret_config(cloud, key, tmp_path, database_url: str) -> dict:
    """A lab config with a secret in every place one can go (each value unique, so a leak names its place)."""
    data = devcloud_lab_data(cloud, key)
    provider = data["libcloud"]["providers"]["dev"]
    provider["driver_args"]["password"] = SECRETS["password"]
    provider["driver_args"]["secret_key"] = SECRETS["secret_key"]
    provider["driver_args"]["api_token"] = SECRETS["api_token"]
    provider["ssh_key_passphrase"] = SECRETS["ssh_key_passphrase"]
    data["nsupdate_url"] = f"http://lablease:{SECRETS['nsupdate_password']}@127.0.0.1:9/update"
    data["lablease"] = {"admin_token": SECRETS["admin_token"], "database_url": database_url,
                        "data_dir": str(tmp_path / "data")}
    data["dns"] = {"token": SECRETS["dns_token"], "tsig_secret": SECRETS["tsig_secret"]}  # teuthology-side keys
    data["db_password"] = SECRETS["db_password"]
    return data


def _assert_no_secret(text: str, where: str) -> None:
    leaked = [name for name, value in SECRETS.items() if value in text]
    assert leaked == [], f"{where} shows {leaked}:\n{text[-3000:]}"


def _cli(tmp_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lablease", *args], capture_output=True, text=True, timeout=120,
                          env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})


def test_config_show_check_and_their_errors_show_no_secret_from_any_place_of_the_config(devcloud, tmp_path):
    key = generate_lab_key(tmp_path / "lab_key")
    url = f"postgresql+psycopg://lablease:{SECRETS['database_url_password']}@127.0.0.1:9/lablease"
    path = tmp_path / "teuthology.yaml"
    path.write_text(yaml.safe_dump(_secret_config(devcloud, key, tmp_path, url)))
    shown = _cli(tmp_path, "config", "show", "-c", str(path))
    assert shown.returncode == 0, shown.stderr
    _assert_no_secret(shown.stdout + shown.stderr, "config show")
    assert "postgresql+psycopg://lablease:***@127.0.0.1:9/lablease" in shown.stdout
    assert "http://lablease:***@127.0.0.1:9/update" in shown.stdout
    checked = _cli(tmp_path, "config", "check", "-c", str(path), "--log-level", "DEBUG")
    assert checked.returncode == 2 and "ssh_key_file" in checked.stderr  # the passphrase does not fit the key
    _assert_no_secret(checked.stdout + checked.stderr, "config check")
    usable = yaml.safe_load(path.read_text())
    usable["libcloud"]["providers"]["dev"].pop("ssh_key_passphrase")
    path.write_text(yaml.safe_dump(usable))
    connected = _cli(tmp_path, "config", "check", "--connect", "-c", str(path), "--log-level", "DEBUG")
    assert connected.returncode == 1  # the cloud password is wrong:
    assert "FAIL  dev: auth: authenticate: " in connected.stdout and "invalid credentials" in connected.stdout
    assert "FAIL  nsupdate_url: http://lablease:***@127.0.0.1:9/healthz unreachable" in connected.stdout
    _assert_no_secret(connected.stdout + connected.stderr, "config check --connect")
    # Errors: a bad value next to the secrets, a missing provider, a wrong password at the cloud.
    broken = yaml.safe_load(path.read_text())
    broken["lablease"]["port"] = "eighty"
    path.write_text(yaml.safe_dump(broken))
    for args in (("config", "check"), ("provision", "list", "-m", "nope"), ("serve",)):
        out = _cli(tmp_path, *args, "-c", str(path))
        assert out.returncode == 2, (args, out.stderr)
        _assert_no_secret(out.stdout + out.stderr, " ".join(args))
    del broken["lablease"]["port"]
    path.write_text(yaml.safe_dump(broken))
    out = _cli(tmp_path, "provision", "create", "node1", "-m", "dev", "-c", str(path), "--log-level", "DEBUG")
    assert out.returncode == 1 and "invalid credentials" in out.stderr
    _assert_no_secret(out.stdout + out.stderr, "provision create with a wrong password")


def test_the_logs_of_lablease_serve_show_no_secret_from_any_place_of_the_config(devcloud, postgres_url, tmp_path):
    key = generate_lab_key(tmp_path / "lab_key")
    # The test cluster trusts loopback, so the URL's password is carried but never checked.
    url = make_url(postgres_url).set(password=SECRETS["database_url_password"]).render_as_string(hide_password=False)
    data = _secret_config(devcloud, key, tmp_path, url)
    data["libcloud"]["providers"]["dev"].pop("ssh_key_passphrase")  # the service must start
    data["lablease"]["log_level"] = "DEBUG"
    section = data.pop("lablease")
    server = start_lock_server(tmp_path / "srv", database_url=section["database_url"],
                               admin_token=section["admin_token"], top=data,
                               extra={"log_level": "DEBUG", "reconcile_interval": 0})
    try:
        headers = {"Authorization": f"Bearer {SECRETS['admin_token']}"}
        created = httpx.post(f"{server.url}/nodes/", json={"name": "node1.lab.example", "machine_type": "dev",
                                                           "up": True, "is_vm": True}, headers=headers, timeout=30)
        assert created.status_code == 200, created.text
        locked = httpx.post(f"{server.url}/nodes/lock_many/", json={"count": 1, "machine_type": "dev",
                            "locked_by": "me@h", "description": "secrets"}, timeout=120)
        assert locked.status_code == 503  # the wrong cloud password: provisioning fails
        assert httpx.get(f"{server.url}/nodes/", headers={"Authorization": "Bearer wrong"}, timeout=30).status_code == 200
        # Access lines are written after the answer went out: the last request's line says the log has them all.
        wait_until(lambda: "access method=GET path=/nodes/ status=200" in server.process.log_tail(10**6),
                   what="the access line of GET /nodes/ in lablease serve's log")
    finally:
        server.stop()
    log = (tmp_path / "srv" / "lockserver.log").read_text()
    assert "access method=POST path=/nodes/lock_many/ status=503" in log
    _assert_no_secret(log, "lablease serve's log")

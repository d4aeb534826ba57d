"""A request the admin token guards is refused with a message naming what was asked (not always "creating
or deleting nodes"), and never the token.

The admin endpoints' routers in a bare FastAPI app: the token check runs before any handler, so no store
or lab service is needed behind them.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from lablease.lab.http import router as lab_router
from lablease.lockapi.routes import router as lock_router
from lablease.web.errors import install_message_handlers

TOKEN = "s3cret-admin-token"


@pytest.fixture(scope="module")
def http():
    app = FastAPI()
    app.include_router(lock_router)
    app.include_router(lab_router)
    install_message_handlers(app)
    app.state.settings = SimpleNamespace(admin_token=SecretStr(TOKEN))
    with TestClient(app) as client:
        yield client


@pytest.mark.parametrize("method, path, what", [
    ("POST", "/lab/reconcile/", "a reconciler pass"),
    ("POST", "/lab/nodes/n1.lab/force-unlock/", "forcing a node free"),
    ("POST", "/nodes/", "creating a node"),
    ("DELETE", "/nodes/n1.lab/", "deleting a node"),
])
@pytest.mark.parametrize("header, status", [(None, 401), ("Bearer wrong", 403)])
def test_an_admin_refusal_names_what_was_asked_and_never_the_token(http, method, path, what, header, status):
    headers = {"Authorization": header} if header else {}
    r = http.request(method, path, headers=headers, json={"name": "n1.lab"})
    assert r.status_code == status
    text = r.json()["message"]
    assert text.startswith(what) and "admin token" in text
    assert "create or delete nodes" not in text and TOKEN not in r.text
